"""Phone calls as Twilio makes them, on the API harness (scripted engines, real Redis):
the TwiML webhook, then a Media Streams socket that speaks G.711 μ-law at 8 kHz in 20 ms
frames in real time, as Twilio does; replies come back as ``media`` and ``mark``, a
barge-in as ``clear``; signatures, API keys, timeouts and hang-ups."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from loadtests._twilio_call import STREAM_SID, PhoneLine, dial, mulaw
from schemas import (
    AdmissionSettings,
    ApiSettings,
    ResponseCancelled,
    ResponseTruncated,
    SessionClosed,
    SessionCreated,
    TelephonySettings,
)
from tests.support.api_harness import Harness, call_api, until_closed
from tests.support.audio_fixtures import tone

pytestmark = pytest.mark.redis

AUTH_TOKEN = "twilio-auth-token-for-tests"


def _harness(redis_url: str, key_prefix: str, **settings: Any) -> Any:
    return call_api(redis_url, key_prefix, delay=0.05, **settings)


@pytest.fixture
async def harness(redis_url: str, key_prefix: str) -> AsyncIterator[Harness]:
    async with _harness(redis_url, key_prefix) as harness:
        yield harness


def _mulaw(*parts: tuple[float, bool]) -> bytes:
    return mulaw(b"".join(tone(s, loud, 8000) for s, loud in parts), 8000)


async def _webhook(harness: Harness, **headers: str) -> httpx.Response:
    form = {"CallSid": "CA123", "From": "+15550001", "To": "+15550002"}
    async with httpx.AsyncClient() as http:
        return await http.post(f"{harness.url}/v1/twilio/voice", data=form, headers=headers)


async def test_a_call_is_answered_and_a_barge_in_clears_twilio(harness: Harness) -> None:
    answer = await _webhook(harness)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/xml"
    call = await dial(harness.url)
    assert call.url == "ws" + harness.url.removeprefix("http") + "/v1/twilio/media"
    session_id = call.parameters["session_id"]
    async with PhoneLine.open(call.url, call.parameters) as line:
        await line.say(_mulaw((0.6, True), (0.8, False)))
        first = await line.until("media")
        assert first["streamSid"] == STREAM_SID and base64.b64decode(first["media"]["payload"])
        turn_id = await line.until_played()
        assert {f["event"] for _, f in line.received} == {"media", "mark"}
        chunk_marks = [f["mark"]["name"] for _, f in line.received
                       if f["event"] == "mark"][:-1]
        assert chunk_marks and all(m.startswith(f"{turn_id}@") for m in chunk_marks)
        # the next reply, talked over while it is still written and played
        await line.say(_mulaw((0.6, True)))
        await line.until("media")
        await line.say(_mulaw((0.6, True)))
        clear = await line.until("clear")
        assert clear == {"event": "clear", "streamSid": STREAM_SID}
    events = await until_closed(harness, session_id)
    assert isinstance(events[0], SessionCreated)
    settings = events[0].data.settings
    assert (settings.input_format, settings.output_format) == ("pcmu", "pcmu")
    assert settings.input_sample_rate == settings.output_sample_rate == 8000
    assert turn_id in {e.turn_id for e in events if e.type == "response.done"}
    [cut] = [e for e in events if isinstance(e, ResponseCancelled)]
    assert cut.data.reason == "barge_in"
    # what the caller heard of it, from the marks echoed before the clear
    [heard] = [e for e in events if isinstance(e, ResponseTruncated)]
    assert heard.turn_id == cut.turn_id and heard.data.audio_end_ms <= heard.data.audio_ms
    assert isinstance(events[-1], SessionClosed) and events[-1].data.reason == "hangup"
    assert not harness.services.connections.live  # the call's session let go of its place


def _signature(url: str, params: dict[str, str]) -> str:
    """Twilio's documented signature: HMAC-SHA1 of the URL and the sorted fields."""
    payload = url + "".join(k + params[k] for k in sorted(params))
    mac = hmac.new(AUTH_TOKEN.encode(), payload.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


async def test_signatures_are_checked_with_the_auth_token(
    redis_url: str, key_prefix: str
) -> None:
    telephony = TelephonySettings(twilio_auth_token=SecretStr(AUTH_TOKEN))
    async with _harness(redis_url, key_prefix, telephony=telephony,
                        api=ApiSettings(keys=(SecretStr("sk-other"),))) as harness:
        refused = await _webhook(harness)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthorized"
        forged = await _webhook(harness, **{"X-Twilio-Signature": "bm9wZQ=="})
        assert forged.status_code == 401
        form = {"CallSid": "CA123", "From": "+15550001", "To": "+15550002"}
        signed = await _webhook(harness, **{"X-Twilio-Signature": _signature(
            f"{harness.url}/v1/twilio/voice", form)})
        assert signed.status_code == 200  # no API key: the signature stands for it
        url = "ws" + harness.url.removeprefix("http") + "/v1/twilio/media"
        assert f'url="{url}"' in signed.text
        async with connect(url) as ws:  # the handshake carries no signature
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
        call = await dial(harness.url, form=form, headers={
            "X-Twilio-Signature": _signature(f"{harness.url}/v1/twilio/voice", form)})
        headers = {"X-Twilio-Signature": _signature(url, {})}
        async with PhoneLine.open(url, call.parameters, headers=headers) as line:
            await line.say(_mulaw((0.6, True), (0.8, False)))
            await line.until_played()


async def test_with_api_keys_and_no_auth_token_calls_are_refused(
    redis_url: str, key_prefix: str
) -> None:
    async with _harness(redis_url, key_prefix,
                        api=ApiSettings(keys=(SecretStr("sk-k"),))) as harness:
        assert (await _webhook(harness)).status_code == 401
        url = "ws" + harness.url.removeprefix("http") + "/v1/twilio/media"
        with pytest.raises(ConnectionClosed) as closed:
            async with PhoneLine.open(url, {}) as line:
                await line.until("media")
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


@pytest.mark.parametrize(("opening", "code"), [
    (None, 4400),  # says nothing: closed after start_timeout_s
    ({"event": "media", "media": {"payload": ""}}, 4400),  # media before start
    ({"event": "hello"}, 4400),  # not a Media Streams event
    ({"event": "start", "start": {"streamSid": "MZ1",
                                  "customParameters": {"session_id": "s-x", "token": "t"}}},
     4404),  # a session that does not exist
    ({"event": "start", "start": {"streamSid": "MZ1", "mediaFormat": {
        "encoding": "audio/x-l16", "sampleRate": 16000, "channels": 1}}}, 4415),  # not μ-law
])
async def test_a_stream_that_cannot_start_is_closed_with_a_code(
    redis_url: str, key_prefix: str, opening: dict[str, Any] | None, code: int
) -> None:
    # a stream that says nothing is closed soon; the others long before their timeout, so
    # that their close is their opening's, not a loaded machine's slow send (a start sent
    # past 0.3 s was closed 4400 for its silence, not 4415 for its format)
    telephony = TelephonySettings(start_timeout_s=0.3 if opening is None else 30.0)
    async with _harness(redis_url, key_prefix, telephony=telephony) as harness:
        url = "ws" + harness.url.removeprefix("http") + "/v1/twilio/media"
        async with connect(url) as ws:
            if opening is not None:
                await ws.send(json.dumps(opening))
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == code
        assert not harness.services.connections.live


async def test_a_stream_of_its_own_twiml_gets_a_session(harness: Harness) -> None:
    """TwiML that streams straight to the socket (no webhook, no parameters)."""
    url = "ws" + harness.url.removeprefix("http") + "/v1/twilio/media"
    async with PhoneLine.open(url, {}) as line:
        await line.say(_mulaw((0.6, True), (0.8, False)))
        await line.until_played()
        assert len(harness.services.connections.live) == 1
    for _ in range(100):  # the hang-up lets go of the session
        if not harness.services.connections.live:
            break
        await asyncio.sleep(0.02)
    assert not harness.services.connections.live


async def test_calls_past_capacity_are_refused_with_retry_after(
    redis_url: str, key_prefix: str
) -> None:
    async with _harness(redis_url, key_prefix,
                        admission=AdmissionSettings(max_sessions=1)) as harness:
        call = await dial(harness.url)
        async with PhoneLine.open(call.url, call.parameters) as line:
            await line.say(_mulaw((0.6, True), (0.8, False)))
            await line.until_played()
            busy = await _webhook(harness)  # the line is taken: Twilio hears 503
            assert busy.status_code == 503 and int(busy.headers["retry-after"]) >= 1


async def test_a_binary_frame_before_start_is_closed_4400(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    url = "ws" + harness.url.removeprefix("http") + "/v1/twilio/media"
    async with connect(url) as ws:
        await ws.send(b"\x00\x01binary")
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4400, "invalid_message")
    assert not [r for r in caplog.records if r.exc_info]  # no traceback (was KeyError)
    assert not harness.services.connections.live


async def test_a_caller_that_leaves_before_start_ends_quietly(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    url = "ws" + harness.url.removeprefix("http") + "/v1/twilio/media"
    for opening in (None, {"event": "connected", "protocol": "Call", "version": "1.0.0"}):
        async with connect(url) as ws:
            if opening is not None:
                await ws.send(json.dumps(opening))
        await asyncio.sleep(0.2)  # the server reads the close
    assert not [r for r in caplog.records if r.exc_info]  # (was WebSocketDisconnect)
    assert not harness.services.connections.live
    assert harness.services.admission.in_use("sessions") == 0


async def test_the_stream_url_comes_from_the_public_url_never_a_requests_host(
    redis_url: str, key_prefix: str
) -> None:
    # an address passes the Host check (no rebinding without a name), but with no public
    # URL the webhook will not write the session's token into a URL it names
    async with _harness(redis_url, key_prefix) as harness:
        refused = await _webhook(harness, Host="203.0.113.7")
        assert refused.status_code == 421
        assert refused.json()["error"]["code"] == "host_not_allowed"
        assert "VOXLINE_API__PUBLIC_URL" in refused.json()["error"]["message"]
        assert (await _webhook(harness, Host="attacker.example")).status_code == 421
        port = harness.url.rsplit(":", 1)[1]
        served = await _webhook(harness, Host=f"localhost:{port}")  # a loopback host is
        assert served.status_code == 200
        assert f'url="ws://localhost:{port}/v1/twilio/media"' in served.text
    api = ApiSettings(public_url="https://voice.example")
    async with _harness(redis_url, key_prefix, api=api) as harness:
        answered = await _webhook(harness, Host="203.0.113.7")
        assert answered.status_code == 200
        assert 'url="wss://voice.example/v1/twilio/media"' in answered.text
        assert "203.0.113.7" not in answered.text


async def test_frames_after_stop_are_dropped_quietly(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by the socket fuzzer: a second ``stop`` closed the socket again, and
    Starlette raised (a traceback per extra frame)."""
    url = "ws" + harness.url.removeprefix("http") + "/v1/twilio/media"
    async with PhoneLine.open(url, {}) as line:
        stop = json.dumps({"event": "stop", "streamSid": STREAM_SID})
        for _ in range(3):
            await line.ws.send(stop)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(line.ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    await asyncio.sleep(0.2)
    assert not [r for r in caplog.records if r.exc_info]


async def test_a_phone_sessions_function_tools_are_refused_for_there_is_no_client(
    redis_url: str, key_prefix: str
) -> None:
    function = {"type": "function", "name": "transfer", "parameters": {"type": "object"}}
    telephony = TelephonySettings(session={"tools": [function]})
    async with _harness(redis_url, key_prefix, telephony=telephony) as harness:
        answer = await _webhook(harness)
    assert answer.status_code == 500
    assert answer.json()["error"]["code"] == "configuration_error"
    assert "function tools (transfer)" in answer.json()["error"]["message"]
