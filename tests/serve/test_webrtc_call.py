"""A WebRTC call through the real Serve app, as OpenAI's browser clients make it: an
aiortc peer on loopback posts its offer to ``/v1/realtime/calls``, says the question
into its microphone track in real time, hears the answer on the call's track; the answer
is transcribed back and compared with the reply's text on the events channel."""

from __future__ import annotations

import httpx
import pytest

from loadtests._webrtc_call import WebRtcCaller
from pipeline.audio import encode_audio
from pipeline.webrtc import CALL_RATE
from tests.serve._app import App
from tests.support.audio_fixtures import normalize, wer
from voxline.client import VoxlineClient

pytestmark = [pytest.mark.serve, pytest.mark.models, pytest.mark.redis]

QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def question_then_silence(spoken_question: bytes) -> bytes:
    """The question (24 kHz), then two seconds of silence."""
    return spoken_question + bytes(2 * 24000 * 2)


async def test_a_webrtc_call_is_heard_and_answered(
    app: App, client: VoxlineClient, question_then_silence: bytes
) -> None:
    caller = WebRtcCaller(record=True)
    try:
        answer = await caller.call(app.url)
        assert answer.status_code == 201, answer.text
        await caller.until("session.created", 60)
        await caller.say(question_then_silence, 24000)
        heard = await caller.until("conversation.item.input_audio_transcription.completed",
                                   120)
        assert "capital" in heard["transcript"].lower()
        done = await caller.until("response.done", 120)
        reply = "".join(e["delta"] for e in caller.events
                        if e["type"] == "response.output_audio_transcript.delta")
        assert done["response"]["status"] == "completed" and normalize(reply)
        await caller.quiet()  # the reply plays in real time, after it was written
        async with httpx.AsyncClient() as http:
            assert (await http.post(f"{app.url}{caller.location}/hangup")).status_code == 204
    finally:
        await caller.close()
    assert caller.recording
    back = await client.transcribe(encode_audio(bytes(caller.recording), CALL_RATE, "wav"),
                                   response_format="text")
    assert isinstance(back, str)
    assert wer([(reply, back)]) <= 0.35, (reply, back)
