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
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from pipeline.audio import encode_audio
from schemas import (
    ApiSettings,
    EventLogSettings,
    ResponseCancelled,
    SessionClosed,
    SessionCreated,
    TelephonySettings,
)
from tests.support.api_harness import Harness, serve_api
from tests.support.audio_fixtures import tone
from tests.support.engines import EnergyVAD, RecordingLLM, ScriptedSTT, ScriptedTTS

pytestmark = pytest.mark.redis

TOKENS = [f"Word{i} " if i % 5 else f"Sentence {i}. " for i in range(1, 21)]
AUTH_TOKEN = "twilio-auth-token-for-tests"
FRAME = 160  # 20 ms of μ-law at 8 kHz: what Twilio sends


def _harness(redis_url: str, key_prefix: str, **settings: Any) -> Any:
    return serve_api(redis_url, EventLogSettings(key_prefix=key_prefix),
                     llm=RecordingLLM(TOKENS, delay=0.05), tts=ScriptedTTS(chunks_per_piece=2),
                     stt=ScriptedSTT("Hello there"), vad=EnergyVAD(), **settings)


@pytest.fixture
async def harness(redis_url: str, key_prefix: str) -> AsyncIterator[Harness]:
    async with _harness(redis_url, key_prefix) as harness:
        yield harness


def _mulaw(*parts: tuple[float, bool]) -> bytes:
    return encode_audio(b"".join(tone(s, loud, 8000) for s, loud in parts), 8000, "pcmu")


async def _webhook(harness: Harness, **headers: str) -> httpx.Response:
    form = {"CallSid": "CA123", "From": "+15550001", "To": "+15550002"}
    async with httpx.AsyncClient() as http:
        return await http.post(f"{harness.url}/v1/twilio/voice", data=form, headers=headers)


def _stream(twiml: str) -> tuple[str, dict[str, str]]:
    """The Stream's URL and parameters in TwiML, as Twilio reads them."""
    stream = ET.fromstring(twiml).find("./Connect/Stream")
    assert stream is not None
    params = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    return stream.get("url", ""), params


class Call:
    """Twilio's side of one call's media socket."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.received: list[dict[str, Any]] = []

    async def start(self, parameters: dict[str, str]) -> None:
        await self.ws.send(json.dumps({"event": "connected", "protocol": "Call",
                                       "version": "1.0.0"}))
        await self.ws.send(json.dumps({
            "event": "start", "sequenceNumber": "1", "streamSid": "MZ1",
            "start": {"streamSid": "MZ1", "callSid": "CA123", "accountSid": "AC1",
                      "tracks": ["inbound"], "customParameters": parameters,
                      "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000,
                                      "channels": 1}}}))

    async def speak(self, audio: bytes) -> None:
        """μ-law in 20 ms frames at the pace of real time."""
        for i in range(0, len(audio), FRAME):
            payload = base64.b64encode(audio[i:i + FRAME]).decode()
            await self.ws.send(json.dumps({"event": "media", "streamSid": "MZ1",
                                           "media": {"track": "inbound", "payload": payload}}))
            await asyncio.sleep(0.02)

    async def until(self, event: str, timeout_s: float = 20.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout_s):
            while True:
                frame = json.loads(await self.ws.recv())
                self.received.append(frame)
                if frame["event"] == "mark":  # played at once, as Twilio reports it
                    await self.ws.send(json.dumps({"event": "mark", "streamSid": "MZ1",
                                                   "mark": frame["mark"]}))
                if frame["event"] == event:
                    return frame


async def test_a_call_is_answered_and_a_barge_in_clears_twilio(harness: Harness) -> None:
    answer = await _webhook(harness)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/xml"
    url, parameters = _stream(answer.text)
    assert url == "ws" + harness.url.removeprefix("http") + "/v1/twilio/media"
    session_id = parameters["session_id"]
    async with connect(url) as ws:
        call = Call(ws)
        await call.start(parameters)
        await call.speak(_mulaw((0.6, True), (0.8, False)))
        first = await call.until("media")
        assert first["streamSid"] == "MZ1" and base64.b64decode(first["media"]["payload"])
        mark = await call.until("mark")
        assert all(f["event"] == "media" for f in call.received[:-1])
        turn_id = mark["mark"]["name"]
        # the next reply, talked over while it is still written and played
        await call.speak(_mulaw((0.6, True), (0.8, False)))
        await call.until("media")
        await call.speak(_mulaw((0.6, True)))
        clear = await call.until("clear")
        assert clear == {"event": "clear", "streamSid": "MZ1"}
        await ws.send(json.dumps({"event": "stop", "streamSid": "MZ1", "stop": {}}))
        with pytest.raises(ConnectionClosed):
            await call.until("never")
    events = await harness.services.log.read_all(session_id)
    assert isinstance(events[0], SessionCreated)
    settings = events[0].data.settings
    assert (settings.input_format, settings.output_format) == ("pcmu", "pcmu")
    assert settings.input_sample_rate == settings.output_sample_rate == 8000
    assert turn_id in {e.turn_id for e in events if e.type == "response.done"}
    assert any(isinstance(e, ResponseCancelled) and e.data.reason == "barge_in"
               for e in events)
    assert isinstance(events[-1], SessionClosed) and events[-1].data.reason == "hangup"
    assert not harness.services.live  # the call's session let go of its place


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
        url, parameters = _stream(signed.text)
        async with connect(url) as ws:  # the handshake carries no signature
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
        headers = {"X-Twilio-Signature": _signature(url, {})}
        async with connect(url, additional_headers=headers) as ws:
            call = Call(ws)
            await call.start(parameters)
            await call.speak(_mulaw((0.6, True), (0.8, False)))
            await call.until("mark")


async def test_with_api_keys_and_no_auth_token_calls_are_refused(
    redis_url: str, key_prefix: str
) -> None:
    async with _harness(redis_url, key_prefix,
                        api=ApiSettings(keys=(SecretStr("sk-k"),))) as harness:
        assert (await _webhook(harness)).status_code == 401
        url = "ws" + harness.url.removeprefix("http") + "/v1/twilio/media"
        async with connect(url) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await Call(ws).start({})
                await ws.recv()
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
    telephony = TelephonySettings(start_timeout_s=0.3)
    async with _harness(redis_url, key_prefix, telephony=telephony) as harness:
        url = "ws" + harness.url.removeprefix("http") + "/v1/twilio/media"
        async with connect(url) as ws:
            if opening is not None:
                await ws.send(json.dumps(opening))
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == code
        assert not harness.services.live


async def test_a_stream_of_its_own_twiml_gets_a_session(harness: Harness) -> None:
    """TwiML that streams straight to the socket (no webhook, no parameters)."""
    url = "ws" + harness.url.removeprefix("http") + "/v1/twilio/media"
    async with connect(url) as ws:
        call = Call(ws)
        await call.start({})
        await call.speak(_mulaw((0.6, True), (0.8, False)))
        await call.until("mark")
        assert len(harness.services.live) == 1
    for _ in range(100):  # the hang-up lets go of the session
        if not harness.services.live:
            break
        await asyncio.sleep(0.02)
    assert not harness.services.live
