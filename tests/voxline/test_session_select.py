"""Sessions chosen by when they began and by tag (``voxline evaluate``/``export``
``--since``/``--until``/``--tag``): the moments understood, the range half-open, the most
recent kept, only sessions created with the tag, and the CLI refusing ids and a choice
together."""

from __future__ import annotations

import asyncio

import pytest
from redis import Redis
from typer.testing import CliRunner

from pipeline.log import EventLog, create_redis
from pipeline.session import create_session
from schemas import ConfigurationError, EventLogSettings, SessionSettings, Settings
from voxline.cli import app
from voxline.session_select import parse_moment, sessions_between

NOW = 1_800_000_000_000


@pytest.mark.parametrize(("text", "expected"), [
    ("90m", NOW - 90 * 60_000),
    ("12h", NOW - 12 * 3_600_000),
    ("7d", NOW - 7 * 86_400_000),
    ("30s", NOW - 30_000),
    ("1.5h", NOW - 5_400_000),
    ("2026-11-27", 1_795_737_600_000),  # midnight UTC
    ("2026-11-27T09:30", 1_795_737_600_000 + 9.5 * 3_600_000),
    ("2026-11-27T09:30+01:00", 1_795_737_600_000 + 8.5 * 3_600_000),
])
def test_moments_are_iso_times_in_utc_or_spans_back_from_now(text: str, expected: int) -> None:
    assert parse_moment(text, now_ms=NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "5 weeks", "-3h", ""])
def test_anything_else_is_refused_naming_the_option_and_the_forms(text: str) -> None:
    with pytest.raises(ConfigurationError, match=r"--until .* neither an ISO 8601") as caught:
        parse_moment(text, option="--until")
    assert caught.value.details["setting"] == "--until"


@pytest.fixture
def logged(redis_url: str, key_prefix: str) -> Settings:
    """Four sessions that began at 1, 2, 3 and 4 s past the epoch (their first ids)."""
    client = Redis.from_url(redis_url)
    for second in (1, 2, 3, 4):
        key = f"{key_prefix}:session:sess_{second}"
        client.xadd(key, {"e": "x"}, id=f"{second * 1000}-0")
        client.xadd(key, {"e": "y"}, id=f"{second * 1000 + 500}-0")  # later events
    client.close()
    return Settings(redis_url=redis_url, log=EventLogSettings(key_prefix=key_prefix))


@pytest.mark.redis
async def test_the_range_is_half_open_and_the_most_recent_are_kept(logged: Settings) -> None:
    assert await sessions_between(logged, 2000, 4000, 10) == ["sess_2", "sess_3"]
    assert await sessions_between(logged, 2001, None, 10) == ["sess_3", "sess_4"]
    assert await sessions_between(logged, None, 2000, 10) == ["sess_1"]
    assert await sessions_between(logged, None, None, 2) == ["sess_3", "sess_4"]
    assert await sessions_between(logged, 5000, None, 10) == []
    with pytest.raises(ConfigurationError, match="--until must come after --since"):
        await sessions_between(logged, 4000, 4000, 10)


@pytest.mark.redis
def test_the_cli_takes_ids_or_a_range_not_both(logged: Settings, tmp_path: object) -> None:
    url = logged.redis_url
    assert url is not None
    refused = CliRunner().invoke(app, ["export", "sess_1", "--since", "1h",
                                       "--out", str(tmp_path), "--redis-url", url])
    assert refused.exit_code == 2
    assert "not both" in refused.output
    empty = CliRunner().invoke(app, ["evaluate", "--since", "1h", "--candidate",
                                     "a=end_of_speech_ms=900", "--redis-url", url],
                               env={"VOXLINE_LOG__KEY_PREFIX": logged.log.key_prefix})
    assert empty.exit_code == 2  # the fixture's sessions began in 1970
    assert "0 session(s) began in that range" in empty.output


@pytest.fixture
def tagged(redis_url: str, key_prefix: str) -> tuple[Settings, list[str]]:
    """Five sessions created with these tags, oldest first, a millisecond apart at least."""
    settings = Settings(redis_url=redis_url, log=EventLogSettings(key_prefix=key_prefix))

    async def make() -> list[str]:
        redis = create_redis(redis_url, settings.redis)
        log, made = EventLog(redis, settings.log), []
        for tags in (("beta",), (), ("beta", "release=2"), ("release=2",), ("beta",)):
            made.append(await create_session(log, SessionSettings(tags=tags)))
            await asyncio.sleep(0.002)
        await redis.aclose()
        return made

    return settings, asyncio.run(make())


@pytest.mark.redis
def test_a_tag_chooses_the_most_recent_sessions_created_with_it(
        tagged: tuple[Settings, list[str]]) -> None:
    settings, made = tagged

    def chosen(limit: int, tag: str | None) -> list[str]:
        return asyncio.run(sessions_between(settings, None, None, limit, tag))

    assert chosen(10, "beta") == [made[0], made[2], made[4]]
    assert chosen(2, "beta") == [made[2], made[4]]
    assert chosen(10, "release=2") == made[2:4]
    assert chosen(10, "nobody") == []
    assert chosen(10, None) == made


@pytest.mark.redis
def test_the_cli_says_what_a_tag_chose_and_refuses_it_beside_ids(
        tagged: tuple[Settings, list[str]], tmp_path: object) -> None:
    settings, made = tagged
    url = settings.redis_url
    assert url is not None
    nobody = CliRunner().invoke(
        app, ["evaluate", "--tag", "nobody", "--candidate", "a=end_of_speech_ms=900",
              "--redis-url", url], env={"VOXLINE_LOG__KEY_PREFIX": settings.log.key_prefix})
    assert nobody.exit_code == 2
    assert "0 session(s) tagged 'nobody' began (all the log holds)" in nobody.output
    mixed = CliRunner().invoke(app, ["export", made[0], "--tag", "beta",
                                     "--out", str(tmp_path), "--redis-url", url])
    assert mixed.exit_code == 2 and "not both" in mixed.output
