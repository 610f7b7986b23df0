"""A deployment that fails to start is named with its own error (``voxline.server.
deploy_failures``): Serve's exception says only "failed to update the deployments
['Transcriber']", and the reason (a bad engine option, a missing model) sat in the
replica's log file. The statuses here are shaped as ``serve.status()`` returns them."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from voxline.server import APP_NAME, deploy_failures

#: the end of a failed replica's message as Serve reports it (its constructor's traceback)
VALIDATION = """The deployment failed to start 3 times in a row. This may be due to a problem \
with its constructor or initial health check failing. See controller logs for details. \
Error:
ray::ServeReplica:voxline:Transcriber.initialize_and_get_metadata() (pid=10976)
  File "/work/main/deployments/stt.py", line 40, in reconfigure
    engine = create_engine("stt", name, options)
pydantic_core._pydantic_core.ValidationError: 1 validation error for LanguageRoutingOptions
engine_options
  Input should be a valid dictionary [type=dict_type, input_value='{"cpu_threads": 1}']
    For further information visit https://errors.pydantic.dev/2.14/v/dict_type
"""


def status(**deployments: tuple[str, str]) -> Any:
    return SimpleNamespace(applications={APP_NAME: SimpleNamespace(deployments={
        name: SimpleNamespace(status=SimpleNamespace(value=state), message=message)
        for name, (state, message) in deployments.items()})})


def test_each_failed_deployment_is_named_with_its_last_error() -> None:
    failures = deploy_failures(status(
        Gateway=("HEALTHY", ""),
        Transcriber=("DEPLOY_FAILED", VALIDATION),
        Synthesizer=("UNHEALTHY", "Traceback:\n  ...\nschemas.ModelMissingError: no Piper "
                                  "voice file at /x.onnx: fix VOXLINE_TTS__MODEL_PATH\n"),
    ))
    assert failures == [
        "Transcriber: ValidationError: 1 validation error for "
        "LanguageRoutingOptions engine_options Input should be a valid dictionary "
        "[type=dict_type, input_value='{\"cpu_threads\": 1}']",
        "Synthesizer: ModelMissingError: no Piper voice file at /x.onnx: fix "
        "VOXLINE_TTS__MODEL_PATH",
    ]


def test_a_message_without_a_traceback_gives_its_last_line() -> None:
    assert deploy_failures(status(LanguageModel=("DEPLOY_FAILED", "first\nlast words\n"))) == [
        "LanguageModel: last words"]
    assert deploy_failures(status(LanguageModel=("DEPLOY_FAILED", ""))) == [
        "LanguageModel: failed"]


def test_no_app_or_nothing_failed_is_nothing_to_say() -> None:
    assert deploy_failures(SimpleNamespace(applications={})) == []
    assert deploy_failures(status(Gateway=("UPDATING", "starting"))) == []
