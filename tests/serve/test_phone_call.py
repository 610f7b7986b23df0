"""A phone call through the real Serve app, as Twilio makes it: the TwiML webhook, then
the Media Streams socket with a spoken question in G.711 μ-law at 8 kHz, a 20 ms frame
every 20 ms for as long as the call lasts (``loadtests/_twilio_call.py``); the spoken
answer comes back as μ-law, is transcribed back and compared with the reply's text in the
log; the hang-up ends the session."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from loadtests._twilio_call import PhoneLine, dial, mulaw
from pipeline.audio import decode_frames, encode_audio
from schemas import InputAudioFormat
from tests.serve._app import App
from tests.support.audio_fixtures import normalize, wer
from voxline.client import VoxlineClient

pytestmark = [pytest.mark.serve, pytest.mark.models, pytest.mark.redis]

QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def question_by_phone(spoken_question: bytes) -> bytes:
    """The question as a phone line carries it: μ-law at 8 kHz."""
    return mulaw(spoken_question, 24000)


def _events(app: App, session_id: str, token: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{app.url}/v1/sessions/{session_id}/events",
                         params={"follow": "false", "token": token}, timeout=30)
    assert response.status_code == 200, response.text
    return [json.loads(line[5:]) for line in response.text.splitlines()
            if line.startswith("data:")]


async def test_a_phone_call_is_heard_and_answered(
    app: App, client: VoxlineClient, question_by_phone: bytes
) -> None:
    call = await dial(app.url)
    session_id, token = call.parameters["session_id"], call.parameters["token"]
    async with PhoneLine.open(call.url, call.parameters) as line:
        await line.say(question_by_phone)
        try:
            await line.until_played(timeout_s=120)
        finally:  # what the session heard and did, also when no reply came
            events = _events(app, session_id, token)
            print([(e["type"], e["data"].get("text")) for e in events])
    transcript = next(e["data"]["text"] for e in events if e["type"] == "transcript.final")
    assert "capital" in transcript.lower() and "france" in transcript.lower()
    reply = next(e["data"]["text"] for e in events if e["type"] == "response.done")
    pcm = decode_frames(line.audio(), InputAudioFormat.PCMU, 8000)
    back = await client.transcribe(encode_audio(pcm, 8000, "wav"), response_format="text")
    assert isinstance(back, str)
    assert normalize(reply) and wer([(reply, back)]) <= 0.35, (reply, back)
    url = f"/v1/sessions/{session_id}"
    for _ in range(150):  # the hang-up ends the session: its token is revoked
        status = (await client.http.get(url, params={"token": token})).status_code
        if status == 409:
            break
        await asyncio.sleep(0.2)
    assert status == 409
