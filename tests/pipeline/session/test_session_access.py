"""Beside the live session: session creation, authorization (tokens, the check every call
makes) and settings merging, all without HTTP."""

from __future__ import annotations

import asyncio
import base64
import re
from typing import Any

import pytest
from redis.asyncio import Redis

from pipeline.log import EventLog, create_redis
from pipeline.session import (
    LiveSession,
    SessionEngines,
    SessionTokens,
    authorize,
    create_session,
    merge_settings,
    new_session_id,
)
from schemas import (
    ApiSettings,
    AuthError,
    ErrorCode,
    EventLogSettings,
    InvalidAudioError,
    ProtocolError,
    SessionError,
    SessionSettings,
    Settings,
)
from tests.support.engines import ScriptedLLM

KEY = b"k" * 32


# --- SessionTokens ----------------------------------------------------------------------


def test_token_round_trip() -> None:
    tokens = SessionTokens(KEY)
    token = tokens.issue("sess-1")
    tokens.verify("sess-1", token)  # no error
    assert tokens.issue("sess-1") == token  # deterministic: any replica can check it
    # URL-safe (it travels as ?token=) and without padding
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
    assert len(base64.urlsafe_b64decode(token + "=")) == 32


@pytest.mark.parametrize(
    "wrong",
    [
        "x" * 43,
        "AAAA",
        SessionTokens(KEY).issue("sess-2"),  # another session's token
        SessionTokens(b"z" * 32).issue("sess-1"),  # this session under another key
    ],
)
def test_a_wrong_token_is_forbidden(wrong: str) -> None:
    tokens = SessionTokens(KEY)
    with pytest.raises(AuthError) as info:
        tokens.verify("sess-1", wrong)
    assert info.value.code is ErrorCode.FORBIDDEN
    assert info.value.http_status == 403


@pytest.mark.parametrize("missing", [None, ""])
def test_a_missing_token_is_unauthorized(missing: str | None) -> None:
    with pytest.raises(AuthError) as info:
        SessionTokens(KEY).verify("sess-1", missing)
    assert info.value.code is ErrorCode.UNAUTHORIZED
    assert info.value.http_status == 401


def test_a_non_ascii_token_is_forbidden() -> None:
    with pytest.raises(AuthError) as info:
        SessionTokens(KEY).verify("sess-1", "tök€n")
    assert info.value.code is ErrorCode.FORBIDDEN


def test_tokens_differ_per_session_and_per_key() -> None:
    one, two = SessionTokens(KEY), SessionTokens(b"q" * 32)
    sessions = [f"sess-{i}" for i in range(20)]
    issued = {one.issue(sid) for sid in sessions} | {two.issue(sid) for sid in sessions}
    assert len(issued) == 40


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError):
        SessionTokens(b"short")
    SessionTokens(b"x" * 16)  # the least accepted


class NoRedis:
    """Stands in for Redis where none must be used: any command fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"Redis used: {name}")


async def test_from_settings_uses_the_configured_secret() -> None:
    secret = "a-secret-of-enough-length-0123456789"
    settings = Settings(api=ApiSettings(secret=secret))
    tokens = await SessionTokens.from_settings(settings, NoRedis())  # type: ignore[arg-type]
    assert tokens.issue("sess-1") == SessionTokens(secret.encode()).issue("sess-1")
    assert tokens.issue("sess-1") != SessionTokens(KEY).issue("sess-1")


@pytest.mark.redis
async def test_from_settings_shares_one_key_through_redis(
    redis: Redis, redis_url: str, key_prefix: str
) -> None:
    settings = Settings(api=ApiSettings(), log=EventLogSettings(key_prefix=key_prefix))
    name = f"{key_prefix}:token-key"
    assert await redis.exists(name) == 0
    first = await SessionTokens.from_settings(settings, redis)
    stored = await redis.get(name)
    assert isinstance(stored, bytes) and len(stored) >= 16
    assert first.issue("sess-1") == SessionTokens(stored).issue("sess-1")
    # a second replica, with a connection of its own, finds the same key (SET NX)
    other = create_redis(redis_url)
    try:
        second = await SessionTokens.from_settings(settings, other)
    finally:
        await other.aclose()
    assert await redis.get(name) == stored
    token = first.issue("sess-1")
    second.verify("sess-1", token)
    assert second.issue("sess-9") == first.issue("sess-9")


@pytest.mark.redis
async def test_from_settings_replicas_starting_together_agree(
    redis: Redis, key_prefix: str
) -> None:
    settings = Settings(api=ApiSettings(), log=EventLogSettings(key_prefix=key_prefix))
    replicas = await asyncio.gather(
        *(SessionTokens.from_settings(settings, redis) for _ in range(8))
    )
    assert len({r.issue("sess-1") for r in replicas}) == 1


@pytest.mark.redis
async def test_from_settings_keeps_an_existing_key(redis: Redis, key_prefix: str) -> None:
    name = f"{key_prefix}:token-key"
    await redis.set(name, KEY)
    settings = Settings(api=ApiSettings(), log=EventLogSettings(key_prefix=key_prefix))
    tokens = await SessionTokens.from_settings(settings, redis)
    assert await redis.get(name) == KEY
    assert tokens.issue("sess-1") == SessionTokens(KEY).issue("sess-1")


@pytest.mark.redis
async def test_from_settings_keys_differ_per_prefix(redis: Redis, key_prefix: str) -> None:
    a = await SessionTokens.from_settings(
        Settings(api=ApiSettings(), log=EventLogSettings(key_prefix=f"{key_prefix}:a")), redis
    )
    b = await SessionTokens.from_settings(
        Settings(api=ApiSettings(), log=EventLogSettings(key_prefix=f"{key_prefix}:b")), redis
    )
    assert a.issue("sess-1") != b.issue("sess-1")


# --- create_session() -------------------------------------------------------------------


def test_session_ids_are_unique_and_opaque() -> None:
    ids = {new_session_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"sess_[0-9a-f]{32}", i) for i in ids)


@pytest.mark.redis
async def test_create_session_appends_session_created(event_log: EventLog) -> None:
    settings = SessionSettings(voice="alba")
    session_id = await create_session(event_log, settings)
    [created] = await event_log.read_all(session_id)
    assert created.type == "session.created"
    assert created.data.settings == settings  # type: ignore[union-attr]


# --- authorize() ------------------------------------------------------------------------


@pytest.mark.redis
async def test_authorize_returns_the_fold_and_the_log(event_log: EventLog) -> None:
    tokens = SessionTokens(KEY)
    session_id = await create_session(event_log, SessionSettings(voice="alba"))
    state, events = await authorize(event_log, tokens, session_id, tokens.issue(session_id))
    assert state.created and not state.closed and state.settings.voice == "alba"
    assert events == await event_log.read_all(session_id)
    assert state.last_event_id == events[-1].id


@pytest.mark.redis
async def test_an_unknown_session_is_not_found_before_any_token_is_looked_at(
    event_log: EventLog,
) -> None:
    with pytest.raises(SessionError) as info:
        await authorize(event_log, SessionTokens(KEY), "sess_nobody", None)
    assert info.value.code is ErrorCode.SESSION_NOT_FOUND
    assert info.value.http_status == 404


@pytest.mark.redis
@pytest.mark.parametrize(("token", "code"), [(None, ErrorCode.UNAUTHORIZED),
                                             ("wrong", ErrorCode.FORBIDDEN),
                                             ("another session's", ErrorCode.FORBIDDEN)])
async def test_a_session_needs_its_own_token(
    event_log: EventLog, token: str | None, code: ErrorCode
) -> None:
    tokens = SessionTokens(KEY)
    session_id = await create_session(event_log, SessionSettings())
    if token == "another session's":
        token = tokens.issue(await create_session(event_log, SessionSettings()))
    with pytest.raises(AuthError) as info:
        await authorize(event_log, tokens, session_id, token)
    assert info.value.code is code


class CountingLog(EventLog):
    """Counts how often a session's log is read whole."""

    reads = 0

    async def read_remaining(self, session_id: str, after: str | None = None) -> Any:
        self.reads += 1
        return await super().read_remaining(session_id, after)


@pytest.mark.redis
async def test_one_read_of_the_log_authorizes_and_opens(
    redis: Redis, log_settings: EventLogSettings
) -> None:
    log = CountingLog(redis, log_settings)
    tokens = SessionTokens(KEY)
    session_id = await create_session(log, SessionSettings())
    state, _ = await authorize(log, tokens, session_id, tokens.issue(session_id))
    session = await LiveSession.open(session_id, log, SessionEngines(llm=ScriptedLLM([])),
                                     state=state)
    assert session.state is state and log.reads == 1
    await session.close()


# --- merge_settings() -------------------------------------------------------------------


def test_merge_settings_takes_a_patch_whole() -> None:
    merged = merge_settings(SessionSettings(), {"voice": "alba", "input_sample_rate": 24000})
    assert (merged.voice, merged.input_sample_rate) == ("alba", 24000)


def test_merge_settings_refuses_a_patch_whole() -> None:
    with pytest.raises(ProtocolError) as info:
        merge_settings(SessionSettings(), {"voice": "alba", "speech_speed": 9.0,
                                           "input_sample_rate": 12345})
    assert info.value.code is ErrorCode.INVALID_SETTINGS
    assert "speech_speed" in info.value.message and "input_sample_rate" in info.value.message


@pytest.mark.parametrize("field", ["input_sample_rate", "output_sample_rate"])
def test_a_bad_rate_alone_is_an_unsupported_sample_rate(field: str) -> None:
    with pytest.raises(InvalidAudioError) as info:
        merge_settings(SessionSettings(), {field: 12345})
    assert info.value.code is ErrorCode.UNSUPPORTED_SAMPLE_RATE
