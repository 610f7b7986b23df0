"""Encryption at rest through the API: a phrase typed and a phrase spoken in a session
are in no Redis key's bytes, no AOF file and no RDB dump (read from a Redis of the test's
own with persistence on), while every reader of the session (the socket, the event
stream, the messages) gets them back; erased, the session opens for nobody."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from loadtests._gateway import serve_api
from pipeline.log import create_redis
from schemas import EventLogSettings
from tests.support.api_harness import Harness
from tests.support.audio_fixtures import tone
from tests.support.engines import EnergyVAD, ScriptedLLM, ScriptedSTT, ScriptedTTS
from voxline.redis_server import RedisServer, start_redis_server

pytestmark = pytest.mark.redis

TYPED = "violet harbour ninety one"
SPOKEN = "amber lighthouse seventeen"


@pytest.fixture
def persistent_redis() -> Iterator[RedisServer]:
    server = start_redis_server(extra_args=["--appendonly", "yes", "--save", "3600 1"])
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def harness(persistent_redis: RedisServer, key_prefix: str) -> AsyncIterator[Harness]:
    log = EventLogSettings(key_prefix=key_prefix, encrypt=True,
                           master_key=SecretStr(base64.b64encode(os.urandom(32)).decode()))
    async with serve_api(persistent_redis.url, log, llm=ScriptedLLM(["Noted."]),
                         tts=ScriptedTTS(chunks_per_piece=1), stt=ScriptedSTT(SPOKEN),
                         vad=EnergyVAD()) as harness:
        yield harness


def files_bytes(workdir: Path) -> bytes:
    return b"".join(path.read_bytes() for path in workdir.rglob("*")
                    if path.is_file() and path.suffix in (".aof", ".rdb", ".manifest"))


async def test_typed_and_spoken_words_are_nowhere_in_redis_but_every_reader_gets_them(
    harness: Harness, persistent_redis: RedisServer, key_prefix: str,
) -> None:
    client = harness.client
    session = await client.create_session()
    async with client.connect(session) as conn:
        await conn.send_text(f"Remember {TYPED}.")
        typed = [e async for e in conn.until_done()]
        audio = tone(0.3, False, 16000) + tone(1.0, True, 16000) + tone(0.8, False, 16000)
        await conn.send_audio(audio)
        spoken = [e async for e in conn.until_done()]
    assert any(e.type == "input.text" and TYPED in e.data.text for e in typed)  # type: ignore[union-attr]
    assert any(e.type == "transcript.final" and e.data.text == SPOKEN  # type: ignore[union-attr]
               for e in spoken)
    messages = await client.http.get(f"/v1/sessions/{session.session_id}/messages",
                                     headers=session.auth)
    assert TYPED in messages.text and SPOKEN in messages.text  # readers get them back
    redis = create_redis(persistent_redis.url)
    try:
        dumped = b""
        async for key in redis.scan_iter(match=f"{key_prefix}:*", count=1000):
            dumped += key + (await redis.dump(key) or b"")
        await redis.save()  # the RDB dump
        await redis.bgrewriteaof()  # and the AOF, rewritten from what Redis holds
        await asyncio.sleep(1.0)
    finally:
        await redis.aclose()
    on_disk = files_bytes(persistent_redis.workdir)
    assert on_disk and dumped
    for secret in (TYPED, SPOKEN):
        assert secret.encode() not in dumped, secret
        assert secret.encode() not in on_disk, secret
    erased = await client.http.delete(f"/v1/sessions/{session.session_id}",
                                      headers=session.auth)
    assert erased.json()["removed"]["data_key"] == 1
