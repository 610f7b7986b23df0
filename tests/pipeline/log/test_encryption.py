"""Encryption at rest: a session's payloads are sealed in Redis and open again for every
reader; the same append retried stays a duplicate; erasure destroys the key first, after
which a kept copy of the entries (a backup) opens for nobody."""

from __future__ import annotations

import base64
import os

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from pipeline.log import EventLog, erase_from_log
from schemas import (
    AudioChunkData,
    ConfigurationError,
    EventLogSettings,
    InputText,
    InputTextData,
    ResponseAudioChunk,
    SessionError,
)

pytestmark = pytest.mark.redis

PHRASE = "purple elephant forty two"
SOUND = b"\x11\x22" * 400


def sealed_settings(prefix: str) -> EventLogSettings:
    master = base64.b64encode(os.urandom(32)).decode()
    return EventLogSettings(key_prefix=prefix, encrypt=True, master_key=SecretStr(master))


def events(session: str) -> list[InputText | ResponseAudioChunk]:
    return [InputText(session_id=session, turn_id="t1", data=InputTextData(text=PHRASE)),
            ResponseAudioChunk(session_id=session, turn_id="t1", data=AudioChunkData(
                sample_rate=16000, audio=SOUND, sentence_index=0, chunk_index=0))]


async def every_byte(redis: Redis, prefix: str) -> bytes:
    """Everything Redis holds under the prefix, as it would be dumped."""
    dumped = b""
    async for key in redis.scan_iter(match=f"{prefix}:*", count=1000):
        dumped += key + (await redis.dump(key) or b"")
    return dumped


async def test_payloads_are_sealed_in_redis_and_open_for_readers(
    redis: Redis, key_prefix: str,
) -> None:
    clear = EventLog(redis, EventLogSettings(key_prefix=f"{key_prefix}-clear"))
    await clear.append_batch(events("sess_clear"))  # the scan finds what is in clear
    assert PHRASE.encode() in await every_byte(redis, f"{key_prefix}-clear")
    log = EventLog(redis, sealed_settings(key_prefix))
    result = await log.append_batch(events("sess_enc"))
    raw = await every_byte(redis, key_prefix)
    assert PHRASE.encode() not in raw and SOUND[:64] not in raw
    assert b"input.text" in raw  # the type stays clear: metrics, traces, resume
    read = await log.read_all("sess_enc")
    assert read[0].data.text == PHRASE and read[1].data.audio == SOUND  # type: ignore[union-attr]
    again = await log.append_batch(list(result.events))  # a retry after a lost reply
    assert again.duplicate
    other = EventLog(redis, log.settings)  # another process, the same master key
    assert (await other.read_all("sess_enc"))[0].data.text == PHRASE  # type: ignore[union-attr]


async def test_erasure_destroys_the_key_so_a_kept_copy_opens_for_nobody(
    redis: Redis, key_prefix: str,
) -> None:
    log = EventLog(redis, sealed_settings(key_prefix))
    await log.append_batch(events("sess_shred"))
    stream = log.keys.session("sess_shred")
    backup = await redis.xrange(stream)  # what a replica, an AOF or a backup still holds
    receipt = await erase_from_log(log, "sess_shred", by="test")
    assert receipt.removed["data_key"] == 1
    assert await log.data_key("sess_shred") is None
    await redis.xadd(stream, backup[0][1], id=backup[0][0])  # the backup, restored
    with pytest.raises(SessionError) as shredded:
        await EventLog(redis, log.settings).read_all("sess_shred")
    assert shredded.value.code.value == "session_erased"


def test_encryption_without_a_master_key_says_how_to_make_one() -> None:
    with pytest.raises(ConfigurationError) as missing:
        EventLog(Redis(), EventLogSettings(encrypt=True))
    assert "VOXLINE_LOG__MASTER_KEY" in missing.value.message
    with pytest.raises(ConfigurationError):
        EventLog(Redis(), EventLogSettings(encrypt=True, master_key=SecretStr("c2hvcnQ=")))
