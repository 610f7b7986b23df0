"""One real Voxline Serve app for the whole module set: Ray, the four deployments and
the real CPU engines (Whisper tiny.en for speed, llama.cpp + Gemma, Piper), on 127.0.0.1
and a free port, against the test Redis under a key prefix of its own. It traces its
turns over OTLP to a receiver of the session's (``otlp``): every process of the app
inherits the variables when Ray starts; this process's are put back right after."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from schemas import (
    AdmissionSettings,
    ApiSettings,
    EventLogSettings,
    McpServerSettings,
    Settings,
    ToolSettings,
)
from schemas._settings import SttEngineSettings
from tests.serve._app import App
from tests.support.api_harness import forget_keys
from tests.support.audio_fixtures import piper_pcm16
from tests.support.otlp_receiver import OtlpReceiver
from voxline.client import VoxlineClient
from voxline.demo import RATE
from voxline.redis_server import free_port
from voxline.server import running_server

#: what the app's processes are given to trace with (export soon after each turn, and
#: the metrics every second)
_TRACING = {"OTEL_BSP_SCHEDULE_DELAY": "200", "OTEL_METRIC_EXPORT_INTERVAL": "1000"}

QUESTION = "What is the capital of France?"


@pytest.fixture(scope="session")
def spoken_question() -> bytes:
    """The question in the server's default voice (Piper's en_US-joe-medium), 24 kHz PCM16.

    Rendered here without Piper's sampling noise rather than by ``/v1/audio/speech``,
    which draws new noise on every call: Whisper tiny.en heard one draw in about thirty
    as "the capital of friends", and a test that checks the transcript failed by chance.
    """
    return piper_pcm16(QUESTION, RATE)


@pytest.fixture(scope="session")
def otlp() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="session")
def app(redis_url: str, otlp: OtlpReceiver) -> Iterator[App]:
    settings = Settings(
        redis_url=redis_url,
        host="127.0.0.1",
        port=free_port(),
        metrics_port=free_port(),
        stt=SttEngineSettings(model="whisper-tiny.en"),
        log=EventLogSettings(key_prefix=f"voxserve:{uuid.uuid4().hex[:8]}"),
        # above the CPU profile's measured turn limit (1) on purpose: these tests hold
        # several turns at once to reach the stages' own back-pressure
        admission=AdmissionSettings(max_turns=16),
        # the replica's counts every half second: test_back_pressure waits on its LLM calls
        api=ApiSettings(metrics_report_s=0.5),
        # the example MCP server, started by the Gateway replica (its tools: spoken turns)
        tools=ToolSettings(mcp_servers={"weather": McpServerSettings(
            command=(sys.executable, "-m", "voxline.mcp_weather"))}),
    )
    tracing = {**_TRACING, "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url}
    saved = {name: os.environ.get(name) for name in tracing}
    try:
        os.environ.update(tracing)  # Ray's processes start with them
        try:
            with running_server(settings, profile="cpu", say=lambda _: None) as server:
                _restore(saved)
                yield App(server.url, settings)
        finally:
            _restore(saved)
    finally:
        forget_keys(redis_url, settings.log.key_prefix)


def _restore(saved: dict[str, str | None]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
async def client(app: App) -> AsyncIterator[VoxlineClient]:
    async with VoxlineClient(app.url, timeout=180) as client:
        yield client
