"""Issue #11 through the API on scripted engines: every input bounded where it enters,
client errors answered as client errors, one status for a closed session on every path,
tokens revoked when their session closes. (Rows that need the real engines, uploads and
speech, are in ``tests/serve/test_bad_input.py``.)"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from schemas import EventLogSettings, parse_event
from tests.support.api_harness import Harness, serve_api
from tests.support.engines import ScriptedLLM, ScriptedTTS
from voxline.client import FINAL_TYPES, SessionInfo

pytestmark = pytest.mark.redis

TOKENS = ["Hello ", "there. ", "How ", "are ", "you ", "today?"]


@pytest.fixture
async def harness(redis_url: str, key_prefix: str) -> AsyncIterator[Harness]:
    async with serve_api(redis_url, EventLogSettings(key_prefix=key_prefix),
                         llm=ScriptedLLM(TOKENS), tts=ScriptedTTS()) as harness:
        yield harness


def _error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    return error


async def _frames(url: str) -> tuple[list[dict[str, Any]], int | None]:
    """Every frame a socket sends until it closes, and the close code."""
    frames: list[dict[str, Any]] = []
    async with connect(url) as ws:
        try:
            async for frame in ws:
                frames.append(json.loads(frame))
        except ConnectionClosed:
            pass
        return frames, ws.close_code


async def _until_error(ws: Any) -> dict[str, Any]:
    async for frame in ws:
        event = json.loads(frame)
        if event["type"] == "error":
            data: dict[str, Any] = event["data"]
            return data
    raise AssertionError("the socket closed without an error event")


async def _turn(harness: Harness, session: SessionInfo) -> list[str]:
    """One typed turn over the socket: the event types until the reply ends."""
    async with connect(f"{session.ws_url}?token={session.token}") as ws:
        await ws.send(json.dumps({"type": "input.text", "text": "Hi"}))
        types = []
        async for frame in ws:
            event = parse_event(json.loads(frame))
            types.append(event.type)
            if event.type in FINAL_TYPES:
                return types
    raise AssertionError("no reply")


# -- row 4: JSON nested 1000 deep ----------------------------------------------------------


async def test_a_deeply_nested_frame_is_an_error_event_and_the_socket_goes_on(
        harness: Harness) -> None:
    session = await harness.client.create_session()
    async with connect(f"{session.ws_url}?token={session.token}") as ws:
        deep = '{"type": "session.update", "settings": ' + "[" * 1000 + "]" * 1000 + "}"
        await ws.send(deep)
        error = await _until_error(ws)
        assert error["code"] == "json_too_deep" and error["recoverable"] is True
        await ws.send("[" * 5000)  # malformed as well as deep: never a RecursionError
        assert (await _until_error(ws))["code"] in ("json_too_deep", "invalid_json")
        await ws.send(json.dumps({"type": "input.text", "text": "still there?"}))
        async for frame in ws:
            if json.loads(frame)["type"] in FINAL_TYPES:
                break


async def test_a_deeply_nested_http_body_is_a_json_error(harness: Harness) -> None:
    deep = '{"settings": {"voice": ' + "[" * 100_000 + "]" * 100_000 + "}}"
    for path in ("/v1/sessions", "/v1/chat/stream"):
        response = await harness.client.http.post(
            path, content=deep, headers={"content-type": "application/json"})
        assert response.status_code == 400  # FastAPI's parser: a client error, with a body
        assert _error(response)["code"] == "invalid_message"


# -- row 3: a 10 MB chat message -----------------------------------------------------------


async def test_a_chat_message_over_the_text_limit_is_refused_before_the_log(
        harness: Harness) -> None:
    limit = harness.services.settings.api.max_text_chars
    session = await harness.client.create_session()
    before = await harness.services.log.read_all(session.session_id)
    response = await harness.client.http.post(
        "/v1/chat/stream", headers=session.auth,
        json={"message": "x" * (limit + 1), "session_id": session.session_id})
    assert response.status_code == 413
    assert _error(response)["code"] == "text_too_long"
    assert await harness.services.log.read_all(session.session_id) == before
    assert (await _turn(harness, session))[-1] == "response.done"  # not poisoned


# -- rows 8 and 9: event ids ---------------------------------------------------------------


@pytest.mark.parametrize("cursor", ["99999999999999999999-0", "1-99999999999999999999", "x-1",
                                    "12", "9999999999999-0"])
async def test_a_bad_or_future_event_id_is_invalid_event_id_on_http(
        harness: Harness, cursor: str) -> None:
    session = await harness.client.create_session()
    for params, headers in [({"after": cursor}, {}), ({}, {"Last-Event-ID": cursor})]:
        response = await harness.client.http.get(
            f"/v1/sessions/{session.session_id}/events",
            params={**params, "follow": "false"}, headers={**session.auth, **headers})
        assert response.status_code == 400, response.text
        error = _error(response)
        assert error["code"] == "invalid_event_id" and error["transient"] is False
        assert "Retry-After" not in response.headers
        for internal in ("ERR", "Redis", "Lua", "Traceback", "script"):
            assert internal not in error["message"]


async def test_an_id_in_the_future_is_refused_on_the_socket(harness: Harness) -> None:
    session = await harness.client.create_session()
    last = (await harness.services.log.read_all(session.session_id))[-1].id
    assert last is not None
    future = f"{int(last.split('-')[0]) + 60_000}-0"
    # as a query parameter: the socket cannot start as asked, one error frame and 4400
    frames, code = await _frames(f"{session.ws_url}?token={session.token}"
                                 f"&last_event_id={future}")
    assert [f["data"]["code"] for f in frames] == ["invalid_event_id"] and code == 4400
    # as session.resume: an error event, then the socket goes on from where it opened
    async with connect(f"{session.ws_url}?token={session.token}") as ws:
        await ws.send(json.dumps({"type": "session.resume", "last_event_id": future}))
        assert (await _until_error(ws))["code"] == "invalid_event_id"
        await ws.send(json.dumps({"type": "input.text", "text": "Hi"}))
        types = []
        async for frame in ws:
            types.append(json.loads(frame)["type"])
            if types[-1] in FINAL_TYPES:
                break
        assert "input.text" in types and types[-1] == "response.done"  # its own turn shows


async def test_resuming_from_the_last_id_is_still_fine(harness: Harness) -> None:
    session = await harness.client.create_session()
    last = (await harness.services.log.read_all(session.session_id))[-1].id
    response = await harness.client.http.get(
        f"/v1/sessions/{session.session_id}/events",
        params={"after": last, "follow": "false"}, headers=session.auth)
    assert response.status_code == 200


# -- rows 11 and 12: a closed session, everywhere ------------------------------------------


async def test_a_closed_session_is_409_everywhere_and_its_token_is_revoked(
        harness: Harness) -> None:
    http = harness.client.http
    session = await harness.client.create_session()
    types = await _turn(harness, session)
    assert types[-1] == "response.done"
    events = await harness.services.log.read_all(session.session_id)
    turn_id = next(e.turn_id for e in events if e.type == "response.audio.chunk")
    sid = session.session_id
    close = f"/v1/sessions/{sid}/close"
    assert (await http.post(close, headers=session.auth)).status_code == 204
    assert (await http.post(close, headers=session.auth)).status_code == 204
    for method, path, body in [
        ("GET", f"/v1/sessions/{sid}", None),
        ("GET", f"/v1/sessions/{sid}/events?follow=false", None),
        ("GET", f"/v1/sessions/{sid}/events", None),
        ("GET", f"/v1/sessions/{sid}/turns/{turn_id}/audio/0", None),
        ("POST", "/v1/chat/stream", {"message": "Hi again", "session_id": sid}),
    ]:
        response = await http.request(method, path, json=body, headers=session.auth)
        assert response.status_code == 409, (path, response.text)
        assert _error(response)["code"] == "session_closed"
    frames, code = await _frames(f"{session.ws_url}?token={session.token}")
    assert [f["data"]["code"] for f in frames] == ["session_closed"] and code == 4409
    # a wrong token still learns nothing about the session
    response = await http.get(f"/v1/sessions/{sid}", headers={"X-Voxline-Token": "forged"})
    assert response.status_code == 403


# -- the handler of last resort ------------------------------------------------------------


async def test_a_route_raising_a_plain_exception_gets_the_json_error_body(
        harness: Harness) -> None:
    from deployments.api import create_api

    app = create_api(harness.services)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals: redis://user:pass@host")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        response = await client.get("/boom")
    assert response.status_code == 500
    error = _error(response)
    assert error["code"] == "internal_error"
    assert "secret" not in error["message"] and "RuntimeError" not in error["message"]


# -- row 10: settings the engines cannot honour --------------------------------------------


class _VoicedTTS(ScriptedTTS):
    """A scripted synthesizer that declares its voices and languages, as real ones do."""

    voices = ("anna", "bert")

    def language_tags(self) -> tuple[str, ...]:
        return ("en", "de")


@pytest.fixture
async def voiced(redis_url: str, key_prefix: str) -> AsyncIterator[Harness]:
    async with serve_api(redis_url, EventLogSettings(key_prefix=key_prefix),
                         llm=ScriptedLLM(TOKENS), tts=_VoicedTTS()) as harness:
        yield harness


@pytest.mark.parametrize(("settings", "code"), [
    ({"voice": "../../etc/passwd"}, "invalid_settings"),
    ({"voice": "carla"}, "unknown_voice"),
    ({"language": "xx-YY"}, "unsupported_language"),
    ({"sampling": {"stop": ["User:"] * 10_000}}, "invalid_settings"),
])
async def test_settings_are_checked_when_a_session_is_made(
        voiced: Harness, settings: dict[str, Any], code: str) -> None:
    for path, body in [("/v1/sessions", {"settings": settings}),
                       ("/v1/chat/stream", {"message": "Hi", "settings": settings})]:
        response = await voiced.client.http.post(path, json=body)
        assert response.status_code == 400, response.text
        assert _error(response)["code"] == code


async def test_settings_are_checked_on_update_and_the_session_goes_on(voiced: Harness) -> None:
    session = await voiced.client.create_session(voice="Anna", language="de-DE")
    async with connect(f"{session.ws_url}?token={session.token}") as ws:
        for patch, code in [({"voice": "carla"}, "unknown_voice"),
                            ({"language": "xx-YY"}, "unsupported_language")]:
            await ws.send(json.dumps({"type": "session.update", "settings": patch}))
            error = await _until_error(ws)
            assert error["code"] == code and error["recoverable"] is True
        await ws.send(json.dumps({"type": "session.update", "settings": {"voice": "bert"}}))
        async for frame in ws:
            event = json.loads(frame)
            assert event["type"] != "error", event
            if event["type"] == "session.updated":
                break
    state = (await voiced.client.http.get(f"/v1/sessions/{session.session_id}",
                                          headers=session.auth)).json()
    assert state["settings"]["voice"] == "bert" and state["settings"]["language"] == "de-DE"


async def test_speech_checks_voice_and_language_like_a_session(voiced: Harness) -> None:
    http = voiced.client.http
    for body, code in [({"voice": "carla"}, "unknown_voice"),
                       ({"language": "fr"}, "unsupported_language"),
                       ({"voice": "../x"}, "invalid_settings")]:
        response = await http.post("/v1/audio/speech", json={"input": "Hallo.", **body})
        assert (response.status_code, _error(response)["code"]) == (400, code)
    ok = await http.post("/v1/audio/speech",
                         json={"input": "Hallo.", "voice": "bert", "language": "de",
                               "response_format": "pcm"})
    assert ok.status_code == 200 and ok.content
