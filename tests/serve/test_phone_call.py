"""A phone call through the real Serve app, as Twilio makes it: the TwiML webhook, then
the Media Streams socket with a spoken question in G.711 μ-law at 8 kHz, 20 ms frames at
the pace of real time; the spoken answer comes back as μ-law, is transcribed back and
compared with the reply's text in the log; the hang-up ends the session."""

from __future__ import annotations

import asyncio
import base64
import json
import xml.etree.ElementTree as ET
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from pipeline.audio import decode_frames, encode_audio
from schemas import InputAudioFormat
from tests.serve._app import App
from tests.support.audio_fixtures import normalize, wer
from voxline.client import VoxlineClient

pytestmark = [pytest.mark.serve, pytest.mark.models, pytest.mark.redis]

QUESTION = "What is the capital of France?"
FRAME = 160  # 20 ms at 8 kHz, a byte a sample
SILENCE = b"\xff" * FRAME  # μ-law's zero


@pytest.fixture(scope="module")
def question_by_phone(app: App) -> bytes:
    """The question as a phone line carries it: the server's own voice, μ-law at 8 kHz."""
    response = httpx.post(f"{app.url}/v1/audio/speech",
                          json={"input": QUESTION, "response_format": "pcm"}, timeout=120)
    assert response.status_code == 200, response.text
    return encode_audio(response.content, 24000, "pcmu", output_rate=8000)


def _events(app: App, session_id: str, token: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{app.url}/v1/sessions/{session_id}/events",
                         params={"follow": "false", "token": token}, timeout=30)
    assert response.status_code == 200, response.text
    return [json.loads(line[5:]) for line in response.text.splitlines()
            if line.startswith("data:")]


async def test_a_phone_call_is_heard_and_answered(
    app: App, client: VoxlineClient, question_by_phone: bytes
) -> None:
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"{app.url}/v1/twilio/voice",
                                 data={"CallSid": "CA1", "From": "+15550001"})
    assert answer.status_code == 200, answer.text
    stream = ET.fromstring(answer.text).find("./Connect/Stream")
    assert stream is not None
    parameters = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    heard = bytearray()
    async with connect(stream.get("url", "")) as ws:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call"}))
        await ws.send(json.dumps({"event": "start", "streamSid": "MZ1", "start": {
            "streamSid": "MZ1", "callSid": "CA1", "customParameters": parameters}}))

        async def line() -> None:
            """The caller's line as Twilio streams it: the question, then silence, a
            frame every 20 ms for as long as the call lasts."""
            audio = question_by_phone + SILENCE * (120 * 50)
            for i in range(0, len(audio), FRAME):
                payload = base64.b64encode(audio[i:i + FRAME]).decode()
                await ws.send(json.dumps({"event": "media", "streamSid": "MZ1",
                                          "media": {"track": "inbound", "payload": payload}}))
                await asyncio.sleep(0.02)

        streaming = asyncio.create_task(line())
        try:
            async with asyncio.timeout(120):
                while True:
                    frame = json.loads(await ws.recv())
                    if frame["event"] == "media":
                        heard += base64.b64decode(frame["media"]["payload"])
                    elif frame["event"] == "mark":
                        break
        finally:  # what the session heard and did, also when no reply came
            streaming.cancel()
            events = _events(app, parameters["session_id"], parameters["token"])
            print([(e["type"], e["data"].get("text")) for e in events])
        await ws.send(json.dumps({"event": "stop", "streamSid": "MZ1"}))
    transcript = next(e["data"]["text"] for e in events if e["type"] == "transcript.final")
    assert "capital" in transcript.lower() and "france" in transcript.lower()
    reply = next(e["data"]["text"] for e in events if e["type"] == "response.done")
    pcm = decode_frames(bytes(heard), InputAudioFormat.PCMU, 8000)
    back = await client.transcribe(encode_audio(pcm, 8000, "wav"), response_format="text")
    assert isinstance(back, str)
    assert normalize(reply) and wer([(reply, back)]) <= 0.35, (reply, back)
    url = f"/v1/sessions/{parameters['session_id']}"
    for _ in range(150):  # the hang-up ends the session: its token is revoked
        status = (await client.http.get(url, params={"token": parameters["token"]})).status_code
        if status == 409:
            break
        await asyncio.sleep(0.2)
    assert status == 409
