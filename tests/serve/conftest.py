"""One real Voxline Serve app for the whole module set: Ray, the four deployments and
the real CPU engines (Whisper tiny.en for speed, llama.cpp + Gemma, Piper), on 127.0.0.1
and a free port, against the test Redis under a key prefix of its own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from schemas import AdmissionSettings, EventLogSettings, Settings
from schemas._settings import SttEngineSettings
from tests.serve._app import App
from tests.support.api_harness import forget_keys
from voxline.client import VoxlineClient
from voxline.redis_server import free_port
from voxline.server import running_server


@pytest.fixture(scope="session")
def app(redis_url: str) -> Iterator[App]:
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
    )
    try:
        with running_server(settings, profile="cpu", say=lambda _: None) as server:
            yield App(server.url, settings)
    finally:
        forget_keys(redis_url, settings.log.key_prefix)


@pytest.fixture
async def client(app: App) -> AsyncIterator[VoxlineClient]:
    async with VoxlineClient(app.url, timeout=180) as client:
        yield client
