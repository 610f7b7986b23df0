"""The Serve layer without a cluster: error mapping, stage replicas, profiles, the builder.

Deployments are exercised as the plain classes behind them (``func_or_class``), so no
Ray cluster starts; a test checks that building the application does not start one.
"""

from __future__ import annotations

import asyncio
import gc
import pickle
import shutil
from collections.abc import AsyncGenerator, Iterator
from typing import Any

import pytest
import ray
from pydantic import ValidationError
from ray.exceptions import RayActorError, RayTaskError
from ray.serve import Application
from ray.serve.exceptions import BackPressureError

from deployments._stage import StageConfig, StageReplica
from deployments.app import (
    CONSUMING_GATEWAY,
    IN_PROCESS_STAGES,
    PROFILES,
    AppArgs,
    build_app,
    check_capacity,
    stage_user_config,
)
from deployments.app import STAGES as STAGE_DEPLOYMENTS
from deployments.handles import remote_error
from deployments.llm import LanguageModelReplica
from deployments.reranker import RerankerReplica
from deployments.stt import TranscriberReplica
from deployments.tts import SynthesizerReplica
from deployments.workers import MetricsReplica, NarratorReplica
from pipeline.engines import Synthesizer
from schemas import (
    AudioChunk,
    AuthError,
    ChatMessage,
    ConfigurationError,
    EngineError,
    ErrorCode,
    GenerationRequest,
    GenerationUsage,
    InvalidAudioError,
    OverloadedError,
    ResyncRequiredError,
    Settings,
    SynthesisRequest,
    VoxlineError,
)
from tests.support.engines import ScriptedLLM, tokenize
from tests.support.import_check import loaded_after

HANG = 10.0  # seconds; only reached when something hangs
REDIS_URL = "redis://127.0.0.1:6379/0"
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")


@pytest.fixture(autouse=True)
def _no_ray_cluster() -> Iterator[None]:
    """Nothing here may start (or need) Ray (a Serve test may have started it before)."""
    before = ray.is_initialized()
    yield
    assert ray.is_initialized() == before, "a test started Ray"


def task_error(cause: BaseException) -> RayTaskError:
    return RayTaskError(
        function_name="f",
        traceback_str="tb",
        cause=cause,
        proctitle="ray::f",
        pid=1,
        ip="127.0.0.1",
    )


def fields(error: VoxlineError) -> dict[str, Any]:
    return {
        "class": type(error),
        "str": str(error),
        "message": error.message,
        "code": error.code,
        "transient": error.transient,
        "stage": error.stage,
        "recoverable": error.recoverable,
        "http_status": error.http_status,
        "details": error.details,
    }


VOXLINE_ERRORS = [
    EngineError("synthesis crashed", code=ErrorCode.TTS_FAILED, stage="tts", piece=3),
    EngineError("busy", code=ErrorCode.LLM_FAILED, transient=True, stage="llm"),
    InvalidAudioError("not a WAV", code=ErrorCode.UNSUPPORTED_FORMAT, format="ogg"),
    AuthError.forbidden("not your session"),
    ResyncRequiredError("trimmed", recoverable=False, oldest="5-0"),
    ConfigurationError("no model", setting="VOXLINE_LLM__MODEL"),
]


# --- remote_error -----------------------------------------------------------------------


@pytest.mark.parametrize("error", VOXLINE_ERRORS, ids=lambda e: type(e).__name__)
def test_a_voxline_error_passes_through_unchanged(error: VoxlineError) -> None:
    assert remote_error(error, "llm") is error


@pytest.mark.parametrize("error", VOXLINE_ERRORS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("wrap", ["plain", "dual", "pickled", "pickled-dual"])
def test_a_voxline_error_from_a_replica_comes_back_as_itself(
    error: VoxlineError, wrap: str
) -> None:
    wrapped: BaseException = task_error(error)
    if wrap.startswith("pickled"):  # as it crosses the process boundary
        wrapped = pickle.loads(pickle.dumps(wrapped))
    if wrap.endswith("dual"):  # what ray.get and handle responses raise
        wrapped = wrapped.as_instanceof_cause()  # type: ignore[attr-defined]
        assert isinstance(wrapped, type(error))
    result = remote_error(wrapped, "tts")
    assert isinstance(result, VoxlineError)
    assert not isinstance(result, RayTaskError)
    assert fields(result) == fields(error)
    # a fresh instance: raising it `from` the wrapper makes no cycle through `.cause`
    assert result is not wrapped.cause  # type: ignore[attr-defined]


def test_a_rebuilt_error_is_a_fresh_instance_that_can_be_raised() -> None:
    error = EngineError("boom", code=ErrorCode.STT_FAILED, stage="stt")
    result = remote_error(task_error(error).as_instanceof_cause(), "stt")
    with pytest.raises(EngineError, match=r"^boom$") as info:
        raise result
    assert info.value.to_payload() == error.to_payload()


@pytest.mark.parametrize(
    "wrap", [lambda e: e, lambda e: task_error(e).as_instanceof_cause()], ids=["direct", "dual"]
)
def test_back_pressure_becomes_a_transient_overload(wrap: Any) -> None:
    exc = wrap(BackPressureError(num_queued_requests=10, max_queued_requests=10))
    result = remote_error(exc, "llm")
    assert type(result) is OverloadedError  # the client sees the Gateway's own refusal code
    assert result.code is ErrorCode.OVERLOADED
    assert result.transient is True and result.http_status == 503
    assert result.stage == "llm"
    assert result.to_payload().details["retry_after_ms"] > 0


@pytest.mark.parametrize(
    ("stage", "code"),
    [("stt", ErrorCode.STT_FAILED), ("llm", ErrorCode.LLM_FAILED), ("tts", ErrorCode.TTS_FAILED)],
)
def test_a_dead_replica_is_a_transient_stage_failure(stage: str, code: ErrorCode) -> None:
    result = remote_error(RayActorError(), stage)
    assert type(result) is EngineError
    assert result.code is code
    assert result.transient is True
    assert result.stage == stage


@pytest.mark.parametrize(
    ("stage", "code"),
    [("stt", ErrorCode.STT_FAILED), ("llm", ErrorCode.LLM_FAILED), ("tts", ErrorCode.TTS_FAILED)],
)
@pytest.mark.parametrize("wrap", ["direct", "plain", "dual"])
def test_other_errors_become_the_stages_failure(stage: str, code: ErrorCode, wrap: str) -> None:
    cause = ValueError("tensor shape mismatch")
    exc: BaseException = cause
    if wrap == "plain":
        exc = task_error(cause)
    elif wrap == "dual":
        exc = task_error(cause).as_instanceof_cause()
    result = remote_error(exc, stage)
    assert type(result) is EngineError
    assert result.code is code
    assert result.stage == stage
    assert result.transient is False
    assert "ValueError" in result.message and "tensor shape mismatch" in result.message
    assert "tb" not in result.message  # no remote traceback in a client-facing message


# --- StageReplica -----------------------------------------------------------------------


class TtsReplica(StageReplica):
    stage = "tts"


class FakeSynthesizer(Synthesizer):
    name = "fake"
    sample_rate = 8000

    def __init__(self, ready: bool = True) -> None:
        self._ready = ready
        self.closed = 0

    @property
    def ready(self) -> bool:
        return self._ready

    async def close(self) -> None:
        self.closed += 1

    async def synthesize(self, request: SynthesisRequest) -> AsyncGenerator[AudioChunk, None]:
        return
        yield  # an async generator that yields nothing


def record_close(engine: Any) -> list[int]:
    closes: list[int] = []

    async def close() -> None:
        closes.append(1)

    engine.close = close
    return closes


@needs_espeak
async def test_a_stage_replica_loads_the_engine_its_user_config_names() -> None:
    replica = TtsReplica()
    await replica.reconfigure({"engine": "espeak"})
    engine = await replica.engine()
    assert engine.name == "espeak"
    assert engine.ready
    described = await replica.describe()
    assert {"de", "en", "en-us"} <= set(described.pop("languages"))  # what a session may pick
    assert "de" in described.pop("voices")
    assert described == {
        "stage": "tts",
        "engine": "espeak",
        "ready": True,
        "sample_rate": 22050,
        "default_voice": None,  # espeak-ng's follows the language
    }
    replica.check_health()  # a loaded engine is healthy


@needs_espeak
async def test_a_loaded_replica_keeps_its_start_up_heap_out_of_collections() -> None:
    """A full collection walks every tracked object (on the Gateway, on its event loop):
    what a replica made while it started is frozen once its engine has loaded, so later
    collections walk only what serving made (pipeline/aio/_heap.py)."""
    gc.unfreeze()
    try:
        replica = TtsReplica()
        await replica.reconfigure({"engine": "espeak"})
        before = gc.get_freeze_count()
        assert before > 1000  # this process's imports and the engine
        made_later = [[n] for n in range(5000)]
        assert gc.get_freeze_count() == before  # what comes after is still collected
        await replica.reconfigure({"engine": "espeak", "words_per_minute": 220})
        assert gc.get_freeze_count() > before  # a new engine is start-up too
        del made_later
    finally:
        gc.unfreeze()


@needs_espeak
async def test_the_same_config_keeps_the_engine() -> None:
    replica = TtsReplica()
    await replica.reconfigure({"engine": "espeak", "words_per_minute": 200})
    engine = await replica.engine()
    closes = record_close(engine)
    await replica.reconfigure({"engine": "espeak", "words_per_minute": 200})
    # the same options given as one object are the same choice
    await replica.reconfigure({"engine": "espeak", "options": {"words_per_minute": 200}})
    # how streams travel is not the engine's business
    await replica.reconfigure(
        {
            "engine": "espeak",
            "words_per_minute": 200,
            "stream_max_items": 4,
            "stream_max_wait_ms": 10,
        }
    )
    assert await replica.engine() is engine
    assert closes == []
    assert replica.stream_window()["max_items"] == 4
    assert replica.stream_window()["max_wait_s"] == 0.01


@needs_espeak
async def test_a_changed_option_builds_a_new_engine_and_closes_the_old() -> None:
    replica = TtsReplica()
    await replica.reconfigure({"engine": "espeak"})
    old = await replica.engine()
    closes = record_close(old)
    await replica.reconfigure({"engine": "espeak", "words_per_minute": 220})
    new = await replica.engine()
    assert new is not old
    assert new.options.words_per_minute == 220  # type: ignore[attr-defined]
    assert new.ready
    assert closes == [1]
    assert replica.config is not None and replica.config.engine_options() == {
        "words_per_minute": 220
    }


@pytest.mark.parametrize(
    "user_config",
    [
        {"engine": "nope"},
        {"engine": "espeak", "stream_max_items": 0},
        {"engine": "espeak", "stream_max_wait_ms": -1},
        {"engine": "espeak", "stream_eager_items": -1},
        {"engine": "espeak", "words_per_minute": 5},
        {"engine": "espeak", "no_such_option": 1},
        {"options": {}},
    ],
)
async def test_an_invalid_user_config_is_a_configuration_error(
    user_config: dict[str, Any],
) -> None:
    replica = TtsReplica()
    with pytest.raises(ConfigurationError):
        await replica.reconfigure(user_config)
    assert replica.config is None
    assert replica._engine is None


@needs_espeak
async def test_an_invalid_user_config_keeps_the_running_engine() -> None:
    replica = TtsReplica()
    await replica.reconfigure({"engine": "espeak", "stream_max_items": 5})
    engine = await replica.engine()
    closes = record_close(engine)
    for bad in ({"engine": "nope"}, {"engine": "espeak", "stream_max_items": 0}):
        with pytest.raises(ConfigurationError):
            await replica.reconfigure(bad)
    assert await replica.engine() is engine
    assert replica.stream_window()["max_items"] == 5
    assert closes == []


async def test_health_follows_the_engine() -> None:
    replica = TtsReplica()
    replica.check_health()  # nothing loaded yet: Serve must not restart it for that
    replica._engine = FakeSynthesizer(ready=False)
    with pytest.raises(EngineError) as info:
        replica.check_health()
    assert info.value.stage == "tts"
    replica._engine = FakeSynthesizer(ready=True)
    replica.check_health()


async def test_stream_window_defaults_and_units() -> None:
    replica = TtsReplica()
    assert replica.stream_window() == {"max_items": 16, "max_wait_s": 0.04, "eager_items": 8}
    replica.config = StageConfig(engine="x", stream_max_items=3, stream_max_wait_ms=250,
                                 stream_eager_items=0)
    assert replica.stream_window() == {"max_items": 3, "max_wait_s": 0.25, "eager_items": 0}


@needs_espeak
async def test_the_synthesizer_deployment_streams_its_engines_audio() -> None:
    replica = SynthesizerReplica.func_or_class()
    await replica.reconfigure({"engine": "espeak", "chunk_ms": 100})
    assert (await replica.describe())["engine"] == "espeak"

    async def run() -> list[Any]:
        return [c async for c in replica.synthesize(SynthesisRequest(text="Hello there."))]

    chunks = await asyncio.wait_for(run(), HANG)
    assert chunks
    assert all(c.sample_rate == 22050 and len(c.audio) % 2 == 0 for c in chunks)


def test_each_deployment_names_its_stage() -> None:
    assert TranscriberReplica.func_or_class.stage == "stt"
    assert LanguageModelReplica.func_or_class.stage == "llm"
    assert SynthesizerReplica.func_or_class.stage == "tts"
    for deployment in (TranscriberReplica, LanguageModelReplica, SynthesizerReplica):
        assert issubclass(deployment.func_or_class, StageReplica)


# --- the language-model deployment ------------------------------------------------------

REPLY = "Paris is the capital of France. It is lovely in spring, they say."
TOKENS = tokenize(REPLY)
REQUEST = GenerationRequest(
    request_id="req-1", messages=(ChatMessage(role="user", content="Capital of France?"),)
)


def llm_replica(
    engine: ScriptedLLM, max_items: int = 3, max_wait_ms: float = 60_000, eager_items: int = 1
) -> Any:
    replica = LanguageModelReplica.func_or_class()
    replica._engine = engine
    replica.config = StageConfig(engine="x", stream_max_items=max_items,
                                 stream_max_wait_ms=max_wait_ms, stream_eager_items=eager_items)
    return replica


async def collect(replica: Any) -> list[str]:
    async def run() -> list[str]:
        return [item async for item in replica.generate(REQUEST)]

    return await asyncio.wait_for(run(), HANG)


async def test_llm_items_join_to_the_reply_and_the_first_is_one_token() -> None:
    engine = ScriptedLLM(TOKENS)
    items = await collect(llm_replica(engine, max_items=3))
    assert "".join(items) == REPLY
    assert items[0] == TOKENS[0]
    # an instant engine fills every later item up to the limit
    rest = TOKENS[1:]
    assert items[1:] == ["".join(rest[i : i + 3]) for i in range(0, len(rest), 3)]
    assert len(items) < len(TOKENS)
    assert engine.completed == 1


async def test_llm_items_are_single_tokens_until_the_eager_ones_are_sent() -> None:
    # the reply's first piece is cut on its first few tokens: they never wait for a window
    replica = LanguageModelReplica.func_or_class()
    replica._engine = ScriptedLLM(TOKENS)
    replica.config = StageConfig(engine="x", stream_max_wait_ms=60_000)  # eager by default
    eager = replica.config.stream_eager_items
    items = await collect(replica)
    assert items[:eager] == TOKENS[:eager]
    assert "".join(items[eager:]) == "".join(TOKENS[eager:])
    assert len(items) < len(TOKENS)


async def test_llm_items_with_a_slow_engine_still_join_to_the_reply() -> None:
    engine = ScriptedLLM(TOKENS, delay=lambda i: 0.002 if i % 4 == 0 else 0)
    items = await collect(llm_replica(engine, max_items=3, max_wait_ms=1))
    assert "".join(items) == REPLY
    assert items[0] == TOKENS[0]
    assert all(item for item in items)


async def test_llm_engine_failure_comes_after_the_text_before_it() -> None:
    engine = ScriptedLLM(TOKENS, fail_at=5)
    replica = llm_replica(engine, max_items=2)
    items: list[str] = []
    with pytest.raises(EngineError) as info:
        async for item in replica.generate(REQUEST):
            items.append(item)
    assert "".join(items) == "".join(TOKENS[:5])
    assert info.value.code is ErrorCode.LLM_FAILED


async def test_leaving_the_llm_stream_early_aborts_the_engine() -> None:
    engine = ScriptedLLM(TOKENS, gate_at=4)
    replica = llm_replica(engine, max_items=3)
    stream = replica.generate(REQUEST)
    assert await asyncio.wait_for(anext(stream), HANG) == TOKENS[0]
    assert await asyncio.wait_for(anext(stream), HANG) == "".join(TOKENS[1:4])
    await asyncio.wait_for(stream.aclose(), HANG)
    assert len(engine.interrupted) == 1
    assert engine.records[0].items == 4


# --- the application --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cpu", "cpu-replicas"])
def test_the_one_machine_profiles_fit_two_cores_with_one_replica_each(name: str) -> None:
    profile = PROFILES[name]
    assert set(profile) == {"Gateway", "Transcriber", "LanguageModel", "Synthesizer",
                            "Reranker"}
    placed = {n: o for n, o in profile.items() if "ray_actor_options" in o}
    total = sum(options["ray_actor_options"]["num_cpus"] for options in placed.values())
    assert 0 < total < 2
    for deployment, options in placed.items():
        assert options["num_replicas"] == 1, deployment
        assert "num_gpus" not in options["ray_actor_options"], deployment
        assert "autoscaling_config" not in options, deployment


def test_the_cpu_profile_runs_the_stages_in_the_gateway_with_their_bounds() -> None:
    """Its Gateway's share is its own and the three stages' as replicas would have them,
    and each stage's entry keeps only its bounds (enforced in the Gateway)."""
    cpu, apart = PROFILES["cpu"], PROFILES["cpu-replicas"]
    assert {"cpu"} == IN_PROCESS_STAGES
    share = sum(apart[n]["ray_actor_options"]["num_cpus"]
                for n in ("Gateway", *STAGE_DEPLOYMENTS))
    assert cpu["Gateway"]["ray_actor_options"]["num_cpus"] == pytest.approx(share)
    for name in STAGE_DEPLOYMENTS:
        bounds = {"max_ongoing_requests", "max_queued_requests"}
        assert set(cpu[name]) == bounds
        assert {k: apart[name][k] for k in bounds} == cpu[name], name


def test_every_profile_covers_every_deployment() -> None:
    """The feed's consumers are either the Gateway's own (one machine) or Narrator and
    Metrics apart (the GPU profile: each scales on its own)."""
    names = {d.name for d in (TranscriberReplica, LanguageModelReplica, SynthesizerReplica,
                              RerankerReplica)} | {"Gateway"}
    apart = {NarratorReplica.name, MetricsReplica.name}
    assert {name for name in PROFILES if name.startswith("cpu")} == CONSUMING_GATEWAY
    for name, profile in PROFILES.items():
        workers = set() if name in CONSUMING_GATEWAY else apart
        assert set(profile) == names | workers, name


def test_app_args_reject_unknown_keys_and_values() -> None:
    assert AppArgs.model_validate({}).profile == "cpu"
    with pytest.raises(ValidationError):
        AppArgs.model_validate({"profile": "cpu", "replicas": 3})
    with pytest.raises(ValidationError):
        AppArgs.model_validate({"profile": "tpu"})
    with pytest.raises(ValidationError):
        AppArgs.model_validate({"speech_mode": "eventually"})


def bound(app: Application) -> Any:
    return app._bound_deployment


def test_build_app_places_the_cpu_profile_without_starting_ray() -> None:
    settings = Settings(redis_url=REDIS_URL)
    ray_was_up = ray.is_initialized()
    app = build_app({"profile": "cpu"}, settings=settings)
    assert isinstance(app, Application)
    assert ray.is_initialized() == ray_was_up  # building is not deploying
    gateway = bound(app)
    assert gateway.name == "Gateway"
    assert gateway.ray_actor_options["num_cpus"] == 1.9
    stt, llm, tts, passed, options, workers = gateway.init_args
    assert passed.redis_url == REDIS_URL
    assert options == {"mode": "streaming"}
    # the Gateway runs the stages and consumes the feed itself: no other replica
    assert (stt, llm, tts, workers) == (None, None, None, {})
    assert gateway.init_kwargs["consumers"] is True
    assert gateway.init_kwargs["stages"] == {
        "stt": {"ongoing": 4, "queued": 8}, "llm": {"ongoing": 4, "queued": 8},
        "tts": {"ongoing": 8, "queued": 32}}
    # no scaling: a stopping replica checks its work at once, not after Ray's 2 s
    assert gateway._deployment_config.graceful_shutdown_wait_loop_s == 0.25


def test_build_app_places_the_stages_apart_on_cpu_replicas() -> None:
    settings = Settings(
        redis_url=REDIS_URL,
        llm={"engine": "openai", "model": "m"},
        tts={"engine": "espeak", "options": {"words_per_minute": 160}},
    )
    gateway = bound(build_app({"profile": "cpu-replicas"}, settings=settings))
    assert (
        gateway.ray_actor_options["num_cpus"]
        == PROFILES["cpu-replicas"]["Gateway"]["ray_actor_options"]["num_cpus"]
    )
    stt, llm, tts, _passed, _options, workers = gateway.init_args
    assert workers == {} and gateway.init_kwargs["consumers"] is True
    assert gateway.init_kwargs["stages"] is None
    for child, choice in ((stt, settings.stt), (llm, settings.llm), (tts, settings.tts)):
        deployment = bound(child)
        profile = PROFILES["cpu-replicas"][deployment.name]
        assert deployment.ray_actor_options == profile["ray_actor_options"]
        assert deployment.num_replicas == 1
        assert deployment.user_config == stage_user_config(choice)
        assert deployment._deployment_config.graceful_shutdown_wait_loop_s == 0.25
    assert bound(llm).user_config == {"engine": "openai", "options": {"model": "m"}}
    assert bound(tts).user_config == {"engine": "espeak", "options": {"words_per_minute": 160}}
    # what the replica makes of it is the same choice
    assert StageConfig.model_validate(bound(tts).user_config).engine_options() == {
        "words_per_minute": 160
    }


def test_build_app_takes_redis_and_mode_from_its_args() -> None:
    app = build_app(
        {"redis_url": "redis://elsewhere:6380/2", "speech_mode": "sequential"},
        settings=Settings(redis_url=None),
    )
    *_, passed, options, _workers = bound(app).init_args
    assert passed.redis_url == "redis://elsewhere:6380/2"
    assert options == {"mode": "sequential"}


def test_build_app_needs_redis() -> None:
    with pytest.raises(ConfigurationError) as info:
        build_app({"profile": "cpu"}, settings=Settings(redis_url=None))
    assert info.value.details.get("setting") == "VOXLINE_REDIS_URL"


def test_build_app_rejects_unknown_args() -> None:
    with pytest.raises(ValidationError):
        build_app({"profile": "cpu", "replicas": 2}, settings=Settings(redis_url=REDIS_URL))


def test_the_gpu_profile_builds_too() -> None:
    app = build_app({"profile": "gpu"}, settings=Settings(redis_url=REDIS_URL))
    stt, llm, tts, *_ = bound(app).init_args
    for child in (stt, llm, tts):
        deployment = bound(child)
        assert deployment.ray_actor_options == PROFILES["gpu"][deployment.name]["ray_actor_options"]
        assert deployment.ray_actor_options["num_gpus"] > 0
        # scaled: routers get Ray's 2 s to stop sending to a replica being removed
        assert deployment._deployment_config.graceful_shutdown_wait_loop_s == 2
    workers = bound(app).init_args[5]  # apart, each scaled on its own
    assert {name: bound(w).name for name, w in workers.items()} == {
        "narrator": "Narrator", "metrics": "Metrics"}
    assert bound(app).init_kwargs["consumers"] is False


def test_the_app_and_its_ingress_never_import_torch_or_a_model_runtime() -> None:
    heavy = {"torch", "llama_cpp", "faster_whisper", "ctranslate2", "piper", "vllm",
             "whisperx", "TTS"}
    assert loaded_after("deployments.app, deployments.api", heavy) == []


def test_every_stage_deployment_has_a_bounded_queue_in_every_profile() -> None:
    for name, profile in PROFILES.items():
        for stage in STAGE_DEPLOYMENTS:
            options = profile[stage]
            assert options["max_ongoing_requests"] >= 1, (name, stage)
            assert options["max_queued_requests"] >= 1, (name, stage)
        check_capacity(profile, Settings(redis_url=REDIS_URL))


def test_an_unbounded_stage_queue_is_refused() -> None:
    profile = {**PROFILES["cpu"],
               "LanguageModel": {**PROFILES["cpu"]["LanguageModel"], "max_queued_requests": -1}}
    with pytest.raises(ConfigurationError, match="LanguageModel"):
        check_capacity(profile, Settings(redis_url=REDIS_URL))


def test_admission_limits_must_fit_under_the_gateways_ongoing_requests() -> None:
    settings = Settings(redis_url=REDIS_URL, admission={"max_sessions": 2100})
    with pytest.raises(ConfigurationError) as info:
        check_capacity(PROFILES["cpu"], settings)
    assert info.value.details["setting"] == "VOXLINE_ADMISSION__MAX_SESSIONS"
    with pytest.raises(ConfigurationError):
        build_app({"profile": "cpu"}, settings=settings)


class _RefusedResponse:
    """A streaming handle response refused by Serve: iterating raises back-pressure, and
    so does cancelling it (Ray re-raises a failed response's error on cancel)."""

    def __init__(self) -> None:
        self.error = BackPressureError(num_queued_requests=1, max_queued_requests=1)

    def __aiter__(self) -> _RefusedResponse:
        return self

    async def __anext__(self) -> str:
        raise self.error

    def cancel(self) -> None:
        raise self.error


class _RefusingHandle:
    def options(self, **_: Any) -> _RefusingHandle:
        return self

    @property
    def generate(self) -> Any:
        return type("Method", (), {"remote": staticmethod(
            lambda _request, _context=None: _RefusedResponse())})


async def test_a_refused_stage_call_raises_overloaded_not_serves_error() -> None:
    from deployments.handles import RemoteLanguageModel

    llm = RemoteLanguageModel(_RefusingHandle())
    request = GenerationRequest(request_id="r", messages=(ChatMessage(role="user", content="hi"),))
    with pytest.raises(OverloadedError) as info:
        _ = [delta async for delta in llm.generate(request)]
    assert info.value.stage == "llm" and info.value.retry_after_ms > 0


async def test_llm_usage_comes_after_the_batches_and_counts_tokens_not_items() -> None:
    """The replica batches deltas (fewer items than tokens); the engine's own count
    travels after them, so a client's usage is tokens, not batches."""
    replica = llm_replica(ScriptedLLM(TOKENS), max_items=3)

    async def run() -> list[Any]:
        return [item async for item in replica.generate_with_usage(REQUEST)]

    items = await asyncio.wait_for(run(), HANG)
    *texts, usage = items
    assert "".join(texts) == REPLY and len(texts) < len(TOKENS)
    assert isinstance(usage, GenerationUsage)
    assert usage.completion_tokens == len(TOKENS)


class _StreamingHandle:
    """A handle whose every streaming method answers with ``items`` (and says which)."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items
        self.called: list[str] = []
        self.contexts: list[dict[str, str]] = []

    def options(self, **_: Any) -> _StreamingHandle:
        return self

    def __getattr__(self, method: str) -> Any:
        handle = self

        class Response:
            def __init__(self) -> None:
                self.left = iter(handle.items)

            def __aiter__(self) -> Response:
                return self

            async def __anext__(self) -> Any:
                try:
                    return next(self.left)
                except StopIteration:
                    raise StopAsyncIteration from None

            def cancel(self) -> None:
                pass

        def remote(_request: Any, context: dict[str, str]) -> Response:
            handle.called.append(method)
            handle.contexts.append(context)
            return Response()

        return type("Method", (), {"remote": staticmethod(remote)})


async def test_the_remote_llm_asks_the_replica_for_usage() -> None:
    from deployments.handles import RemoteLanguageModel

    usage = GenerationUsage(completion_tokens=7, prompt_tokens=12, finish_reason="stop")
    handle = _StreamingHandle(["The capital of France", " is Paris.", usage])
    llm = RemoteLanguageModel(handle)
    items = [item async for item in llm.generate_with_usage(REQUEST)]
    assert items[-1] == usage and handle.called == ["generate_with_usage"]


async def test_a_stage_call_carries_the_session_and_turn_and_the_replica_adopts_them() -> None:
    from deployments.handles import RemoteLanguageModel
    from pipeline.tracing import bind_session, carrier, turn_context, turn_trace
    from schemas import InputText, InputTextData

    handle = _StreamingHandle(["Hi."])
    llm = RemoteLanguageModel(handle)

    async def in_a_turn() -> list[str]:
        return [d async for d in llm.generate(REQUEST)]

    async def session() -> None:
        bind_session("sess_c")
        await asyncio.create_task(in_a_turn(), context=turn_context("turn_c"))

    await asyncio.create_task(session())
    [sent] = handle.contexts
    # the turn's root span (as its trace will record it) is the call's parent
    typed = InputText(session_id="sess_c", turn_id="turn_c", ts=1,
                      data=InputTextData(text="hi"))
    traced = turn_trace("sess_c", "turn_c", [typed])
    assert traced is not None
    assert sent == {"session_id": "sess_c", "turn_id": "turn_c",
                    "traceparent": f"00-{traced.trace_id}-{traced.root.span_id}-01"}

    replica = llm_replica(ScriptedLLM(TOKENS))

    async def serve_the_call() -> dict[str, str]:  # a replica's request task
        _ = [item async for item in replica.generate(REQUEST, handle.contexts[0])]
        return carrier()

    adopted = await asyncio.create_task(serve_the_call())
    assert adopted == sent  # no tracer here: the call is not traced, only adopted


async def test_a_traced_stage_call_is_a_span_under_its_turns_root() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    replica = llm_replica(ScriptedLLM(TOKENS))
    replica._tracer = provider.get_tracer("test")  # as OTEL_EXPORTER_OTLP_ENDPOINT would
    trace, root = "8a73ad5da747d4bcd5cbfbb3160a11dc", "0f484180acf38eab"
    context = {"session_id": "s", "turn_id": "t", "traceparent": f"00-{trace}-{root}-01"}
    items = [item async for item in replica.generate_with_usage(REQUEST, context)]
    assert isinstance(items[-1], GenerationUsage)
    [span] = exporter.get_finished_spans()
    assert span.name == "llm.generate"
    assert f"{span.context.trace_id:032x}" == trace and f"{span.parent.span_id:016x}" == root
    assert span.attributes["voxline.tokens"] == len(TOKENS)
    _ = [item async for item in replica.generate(REQUEST, {"session_id": "s"})]
    assert len(exporter.get_finished_spans()) == 1  # no turn, no span
    provider.shutdown()
