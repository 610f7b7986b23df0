"""Erasure: ``DELETE /v1/sessions/{id}`` removes a session everywhere and answers a
receipt; every later call is 404 ``session_erased``; a socket of the session is closed
(4404) during a live turn and nothing of it comes back; on a standalone Redis and on the
cluster. Closing is ``POST .../close``. The engines are scripted; Redis and the API real."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis
from typer.testing import CliRunner
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from deployments.api._auth import key_digest, retention_by_key
from pipeline.log import create_redis
from schemas import ApiSettings, Settings
from tests.support.api_harness import Harness, call_api
from voxline.cli import app
from voxline.client import SessionInfo
from voxline.inspect import erase_stored

pytestmark = pytest.mark.redis

ADMIN = "admin-key-for-tests"


@pytest.fixture
def redis_url(both_redis_urls: str) -> str:
    return both_redis_urls


@pytest.fixture
async def harness(redis_url: str, key_prefix: str) -> AsyncIterator[Harness]:
    async with call_api(redis_url, key_prefix, words=60, delay=0.02) as harness:
        yield harness


async def session_keys(redis_url: str, prefix: str, session_id: str) -> list[str]:
    """Every key under the prefix that names the session (on every primary)."""
    redis: Redis = create_redis(redis_url)
    try:
        keys = [k.decode() async for k in redis.scan_iter(match=f"{prefix}:*", count=1000)]
        pointers = []
        for key in keys:
            if await redis.type(key) == b"stream":
                entries = await redis.xrange(key)
                pointers += [f"{key} -> {entry_id!r}" for entry_id, fields in entries
                             if session_id.encode() in b"".join([*fields.keys(),
                                                                 *fields.values()])]
        return [k for k in keys if session_id in k] + pointers
    finally:
        await redis.aclose()


async def stored_bytes(redis_url: str, prefix: str) -> bytes:
    """Every key under the prefix as Redis would write it to an RDB snapshot (DUMP):
    what XDEL only marked deleted is still in there."""
    redis: Redis = create_redis(redis_url)
    try:
        keys = [k async for k in redis.scan_iter(match=f"{prefix}:*", count=1000)]
        return b"".join([await redis.dump(key) or b"" for key in keys])
    finally:
        await redis.aclose()


def kept_on_purpose(left: list[str]) -> bool:
    """Whether what is left of an erased session is only its tombstone and the audit's
    entries of who read it (no content in either)."""
    return all(":erased:" in key or ":audit ->" in key for key in left)


async def a_turn(harness: Harness, session: SessionInfo) -> None:
    async with harness.client.connect(session) as conn:
        await conn.send_text("Tell me a story.")
        [event async for event in conn.until_done()]


async def test_an_erased_session_is_gone_everywhere_and_answers_session_erased(
    harness: Harness, redis_url: str, key_prefix: str,
) -> None:
    http = harness.client.http
    session = await harness.client.create_session()
    await a_turn(harness, session)
    sid = session.session_id
    assert await session_keys(redis_url, key_prefix, sid)  # the stream, feed pointers
    erased = await http.delete(f"/v1/sessions/{sid}", headers=session.auth)
    assert erased.status_code == 200, erased.text
    receipt = erased.json()
    assert receipt["session_id"] == sid and receipt["by"] == "session token"
    assert receipt["removed"]["events"] > 10 and receipt["removed"]["feed_entries"] >= 2
    assert not receipt["already"]
    left = await session_keys(redis_url, key_prefix, sid)
    assert kept_on_purpose(left), left  # only the tombstone and the audit of its reads
    for method, path, body in [
        ("GET", f"/v1/sessions/{sid}", None),
        ("GET", f"/v1/sessions/{sid}/events?follow=false", None),
        ("GET", f"/v1/sessions/{sid}/messages", None),
        ("POST", "/v1/chat/stream", {"message": "Hi again", "session_id": sid}),
        ("POST", f"/v1/sessions/{sid}/close", None),
    ]:
        response = await http.request(method, path, json=body, headers=session.auth)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["error"]["code"] == "session_erased"
    again = await http.delete(f"/v1/sessions/{sid}", headers=session.auth)
    assert again.status_code == 200 and again.json()["already"]
    assert again.json()["removed"] == receipt["removed"]


async def test_not_a_byte_of_what_was_said_stays_even_beside_other_sessions(
    harness: Harness, redis_url: str, key_prefix: str,
) -> None:
    """What a snapshot would write (DUMP) holds nothing of an erased session's words, also
    where its entries sat among another session's: a changes entry carries a small event
    whole, and XDEL only marks an entry deleted, its bytes stay beside the others'."""
    erased = await harness.client.create_session()
    kept = await harness.client.create_session()
    for session, words in ((erased, "herons nest in the reeds"), (kept, "otters swim at dawn"),
                           (erased, "herons fly at dusk")):
        async with harness.client.connect(session) as conn:
            await conn.send_text(words)
            [event async for event in conn.until_done()]
    assert b"herons" in await stored_bytes(redis_url, key_prefix)
    response = await harness.client.http.delete(f"/v1/sessions/{erased.session_id}",
                                                headers=erased.auth)
    assert response.status_code == 200, response.text
    stored = await stored_bytes(redis_url, key_prefix)
    assert b"herons" not in stored
    assert b"otters" in stored  # the other session's log is whole
    logged = await harness.services.log.read_all(kept.session_id)
    assert [e.data.text for e in logged if e.type == "input.text"] == [  # type: ignore[union-attr]
        "otters swim at dawn"]


async def test_a_live_turn_is_cut_its_socket_closed_and_nothing_comes_back(
    harness: Harness, redis_url: str, key_prefix: str,
) -> None:
    session = await harness.client.create_session()
    sid = session.session_id
    async with connect(f"{session.ws_url}?token={session.token}") as ws:
        await ws.send(json.dumps({"type": "input.text", "text": "A long story, please."}))
        async for frame in ws:  # the reply is under way
            if json.loads(frame)["type"] == "response.audio.chunk":
                break
        erased = await harness.client.http.delete(f"/v1/sessions/{sid}",
                                                  headers=session.auth)
        assert erased.status_code == 200 and erased.json()["removed"]["live_sockets"] == 1
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(10):
                async for _ in ws:
                    pass
        assert ws.close_code == 4404 and ws.close_reason == "session_erased"
    await asyncio.sleep(0.3)  # anything still running would have written by now
    left = await session_keys(redis_url, key_prefix, sid)
    assert kept_on_purpose(left), left


async def test_only_the_sessions_token_or_an_admin_key_erases_it(
    redis_url: str, key_prefix: str,
) -> None:
    api = ApiSettings(keys=(SecretStr("user-key"), SecretStr(ADMIN)),
                      admin_keys=(SecretStr(ADMIN),))
    async with call_api(redis_url, key_prefix, api=api) as harness:
        http = harness.client.http
        user = {"Authorization": "Bearer user-key"}
        made = [await http.post("/v1/sessions", json={}, headers=user) for _ in range(2)]
        mine, other = (m.json() for m in made)
        url = f"/v1/sessions/{mine['session_id']}"
        forged = await http.delete(url, headers={**user, "X-Voxline-Token": other["token"]})
        assert forged.status_code == 403
        assert (await http.delete(url, headers=user)).status_code == 401  # no token
        missing = await http.delete("/v1/sessions/sess_nope", headers={
            "Authorization": f"Bearer {ADMIN}"})
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "session_not_found"
        by_admin = await http.delete(url, headers={"Authorization": f"Bearer {ADMIN}"})
        assert by_admin.status_code == 200 and by_admin.json()["by"] == "admin key"


async def test_voxline_erase_does_it_from_the_command_line(
    harness: Harness, redis_url: str, key_prefix: str,
) -> None:
    session = await harness.client.create_session()
    await a_turn(harness, session)
    settings: Any = Settings(redis_url=redis_url, log=harness.services.settings.log)
    receipt = await erase_stored(session.session_id, settings)
    assert receipt.by == "voxline erase" and receipt.removed["events"] > 0
    response = await harness.client.http.get(f"/v1/sessions/{session.session_id}",
                                             headers=session.auth)
    assert response.json()["error"]["code"] == "session_erased"


async def test_every_read_and_the_erasure_are_audited_and_admins_read_the_audit(
    redis_url: str, key_prefix: str,
) -> None:
    api = ApiSettings(admin_keys=(SecretStr(ADMIN),))
    async with call_api(redis_url, key_prefix, api=api) as harness:
        http = harness.client.http
        session = await harness.client.create_session()
        await a_turn(harness, session)  # the socket: a read
        sid = session.session_id
        for path in (f"/v1/sessions/{sid}", f"/v1/sessions/{sid}/events?follow=false",
                     f"/v1/sessions/{sid}/messages"):
            assert (await http.get(path, headers=session.auth)).status_code == 200
        settings: Any = Settings(redis_url=redis_url, log=harness.services.settings.log)
        await erase_stored(sid, settings)
        forbidden = await http.get(f"/v1/sessions/{sid}/audit", headers=session.auth)
        assert forbidden.status_code == 403  # the session's own token reads no audit
        audit = await http.get(f"/v1/sessions/{sid}/audit",
                               headers={"Authorization": f"Bearer {ADMIN}"})
        assert audit.status_code == 200
        actions = [(e["action"], e["who"].split(" ")[0]) for e in audit.json()]
        env = {"VOXLINE_REDIS_URL": redis_url, "VOXLINE_LOG__KEY_PREFIX": key_prefix}
        printed = await asyncio.to_thread(CliRunner().invoke, app, ["audit", sid, "--json"],
                                          env=env)
        table = await asyncio.to_thread(CliRunner().invoke, app, ["audit", "--limit", "1"],
                                        env={**env, "COLUMNS": "300"})
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.output) == audit.json()  # the CLI reads what the API does
    assert table.exit_code == 0, table.output
    assert "voxline erase" in table.output and "(1 entry)" in table.output
    assert ("WS /v1/sessions/" + sid + "/ws", "session") in actions
    assert [a for a, _ in actions[-4:]] == [
        f"GET /v1/sessions/{sid}", f"GET /v1/sessions/{sid}/events",
        f"GET /v1/sessions/{sid}/messages", "voxline erase"]
    assert actions[-1][1].startswith("cli:")


async def test_a_session_records_the_api_key_it_was_made_with_as_a_digest(
    redis_url: str, key_prefix: str,
) -> None:
    api = ApiSettings(keys=(SecretStr("tenant-a"), SecretStr("tenant-b")),
                      key_retention_days=(7.0, None))
    async with call_api(redis_url, key_prefix, api=api) as harness:
        made = await harness.client.http.post("/v1/sessions", json={},
                                              headers={"Authorization": "Bearer tenant-a"})
        [created] = await harness.services.log.read_all(made.json()["session_id"])
    assert created.data.tenant == key_digest("tenant-a")  # type: ignore[union-attr]
    assert "tenant-a" not in created.model_dump_json()
    assert retention_by_key(api) == {key_digest("tenant-a"): 7.0}


async def test_a_keys_required_redaction_is_in_every_session_made_with_it(
    redis_url: str, key_prefix: str,
) -> None:
    api = ApiSettings(keys=(SecretStr("bank"), SecretStr("shop")),
                      key_redact=(("card", "iban"), None))
    async with call_api(redis_url, key_prefix, api=api) as harness:
        made = {key: await harness.client.http.post(
            "/v1/sessions", json={"settings": {"redact": ["email"]}},
            headers={"Authorization": f"Bearer {key}"}) for key in ("bank", "shop")}
        created = {key: (await harness.services.log.read_all(
            response.json()["session_id"]))[0].data for key, response in made.items()}
    assert created["bank"].settings.redact == ("email", "card", "iban")  # type: ignore[union-attr]
    assert created["bank"].redact_required == ("card", "iban")  # type: ignore[union-attr]
    assert created["shop"].settings.redact == ("email",)  # type: ignore[union-attr]
    assert created["shop"].redact_required == ()  # type: ignore[union-attr]


async def test_a_resumed_socket_is_closed_by_an_erasure_and_cannot_resume_again(
    harness: Harness,
) -> None:
    session = await harness.client.create_session()
    await a_turn(harness, session)
    events = await harness.services.log.read_all(session.session_id)
    url = f"{session.ws_url}?token={session.token}"
    async with connect(f"{url}&last_event_id={events[1].id}") as ws:  # resumed
        await ws.recv()  # the replay goes on from there
        erased = await harness.client.http.delete(f"/v1/sessions/{session.session_id}",
                                                  headers=session.auth)
        assert erased.json()["removed"]["live_sockets"] == 1
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(10):
                async for _ in ws:
                    pass
        assert ws.close_code == 4404
    async with connect(f"{url}&last_event_id={events[1].id}") as ws:
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(10):
                async for _ in ws:
                    pass
        assert (ws.close_code, ws.close_reason) == (4404, "session_erased")
