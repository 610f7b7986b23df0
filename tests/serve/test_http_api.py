"""The HTTP side of the real Serve app: chat over SSE, audio endpoints, the log over
HTTP, health probes, the OpenAPI document."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from pipeline.audio import decode_audio
from voxline.client import SessionInfo, VoxlineAPIError, VoxlineClient
from voxline.demo import text_turn

pytestmark = [pytest.mark.serve, pytest.mark.models, pytest.mark.redis]

GREEDY = {"temperature": 0.0, "max_tokens": 40, "seed": 1}
QUESTION = "What is the capital of France?"


async def test_chat_stream_new_session_then_continue_the_thread(client: VoxlineClient) -> None:
    messages = [m async for m in client.chat_stream(QUESTION, sampling=GREEDY)]
    names = [name for name, _ in messages]
    assert names[0] == "session" and names[-1] == "done"
    assert set(names[1:-1]) == {"chunk"}
    thread, token = messages[0][1]["thread_id"], messages[0][1]["token"]
    assert all(data["thread_id"] == thread for _, data in messages)
    done = messages[-1][1]
    assert done["status"] == "completed"
    assert done["text"] == "".join(d["content"] for n, d in messages if n == "chunk")
    assert "paris" in done["text"].lower()

    # The user's message and the final reply are in the log.
    events = await _log(client, thread, token)
    assert [e["data"]["text"] for e in events if e["type"] == "input.text"] == [QUESTION]
    assert [e["data"]["text"] for e in events if e["type"] == "response.done"] == [done["text"]]

    # Continue the same thread, with the spoken reply this time.
    session = SessionInfo(thread, token, ws_url="", events_url="", settings={})
    more = [m async for m in client.chat_stream("And of Italy?", session=session, audio=True)]
    names = [name for name, _ in more]
    assert "session" not in names and names[-1] == "done"
    audio = [d for n, d in more if n == "audio"]
    assert audio and all(d["thread_id"] == thread for d in audio)
    assert sum(len(base64.b64decode(d["audio"])) for d in audio) > 10_000
    assert [d["chunk_index"] for d in audio] == list(range(len(audio)))


async def test_chat_stream_needs_the_token_of_its_thread(client: VoxlineClient) -> None:
    first = [m async for m in client.chat_stream(QUESTION, sampling=GREEDY)]
    thread = first[0][1]["thread_id"]
    stranger = SessionInfo(thread, "", ws_url="", events_url="", settings={})
    with pytest.raises(VoxlineAPIError) as missing:
        [m async for m in client.chat_stream("hi", session=stranger)]
    assert (missing.value.status, missing.value.code) == (401, "unauthorized")
    stranger = SessionInfo(thread, "forged", ws_url="", events_url="", settings={})
    with pytest.raises(VoxlineAPIError) as wrong:
        [m async for m in client.chat_stream("hi", session=stranger)]
    assert (wrong.value.status, wrong.value.code) == (403, "forbidden")


@pytest.mark.parametrize("fmt", ["wav", "mp3"])
async def test_transcription_of_an_uploaded_file(client: VoxlineClient, fmt: str) -> None:
    spoken = await client.speech("The quick brown fox jumps over the lazy dog.",
                                 response_format=fmt)
    result = await client.transcribe(spoken, filename=f"fox.{fmt}",
                                     response_format="verbose_json")
    assert isinstance(result, dict)
    assert "fox" in result["text"].lower() and "dog" in result["text"].lower()
    assert result["segments"] and result["duration"] > 1.0
    assert result["segments"][0]["start"] <= result["segments"][-1]["end"]
    text = await client.transcribe(spoken, filename=f"fox.{fmt}", response_format="text")
    assert isinstance(text, str) and "fox" in text.lower()


async def test_speech_in_every_format(client: VoxlineClient) -> None:
    text = "Hello there. This is Voxline speaking."
    pcm = await client.speech(text, response_format="pcm")
    seconds = len(pcm) / 2 / 24000
    assert 1.0 < seconds < 6.0
    wav = await client.speech(text, response_format="wav", voice="alloy")  # OpenAI's name
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE"
    opus = await client.speech(text, response_format="opus")
    assert opus[:4] == b"OggS"
    for encoded in (wav, opus):  # Piper's durations vary a little from call to call
        decoded = decode_audio(encoded, sample_rate=24000)
        assert len(decoded) / 2 / 24000 == pytest.approx(seconds, rel=0.2)
    faster = await client.speech(text, response_format="mp3", speed=1.5)
    assert len(decode_audio(faster, sample_rate=24000)) < 0.85 * len(pcm)


async def test_speech_rejects_bad_requests(client: VoxlineClient) -> None:
    for body, status, code in [
        ({"input": "hi", "response_format": "wma"}, 422, "invalid_message"),
        ({"input": ""}, 422, "invalid_message"),
        ({"input": "hi", "speed": 9}, 422, "invalid_message"),
        ({"input": "x" * 5000}, 413, "text_too_long"),
    ]:
        response = await client.http.post("/v1/audio/speech", json=body)
        assert response.status_code == status, body
        assert response.json()["error"]["code"] == code


async def test_audio_chunks_over_plain_http(client: VoxlineClient) -> None:
    result = await text_turn(client, QUESTION, sampling=GREEDY)
    session = result.session
    chunks = [e for e in result.events if e.type == "response.audio.chunk"]
    turn = chunks[0].turn_id
    for chunk in (chunks[0], chunks[-1]):
        n = chunk.data.chunk_index  # type: ignore[union-attr]
        path = f"/v1/sessions/{session.session_id}/turns/{turn}/audio/{n}"
        response = await client.http.get(path, headers=session.auth)
        assert response.status_code == 200
        assert response.content == chunk.data.audio  # type: ignore[union-attr]
        assert response.headers["content-type"].startswith("audio/L16")
    missing = await client.http.get(
        f"/v1/sessions/{session.session_id}/turns/{turn}/audio/9999", headers=session.auth)
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
    wrong = await client.http.get(
        f"/v1/sessions/{session.session_id}/turns/{turn}/audio/0",
        headers={"Authorization": "Bearer not-the-token"})
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (403, "forbidden")


async def test_event_stream_replays_from_an_id(client: VoxlineClient) -> None:
    result = await text_turn(client, QUESTION, sampling=GREEDY)
    session = result.session
    events = await _log(client, session.session_id, session.token)
    assert events[0]["type"] == "session.created"
    half = len(events) // 2
    middle = events[half]["id"]
    after = await _log(client, session.session_id, session.token, after=middle)
    assert [e["id"] for e in after] == [e["id"] for e in events[half + 1:]]
    # EventSource sends Last-Event-ID by itself when it reconnects.
    response = await client.http.get(
        f"/v1/sessions/{session.session_id}/events", params={"follow": "false"},
        headers={**session.auth, "Last-Event-ID": middle})
    ids = [line[4:] for line in response.text.splitlines() if line.startswith("id: ")]
    assert ids == [e["id"] for e in after]


async def test_health_and_readiness(client: VoxlineClient) -> None:
    assert (await client.http.get("/healthz")).json() == {"status": "ok"}
    ready = await client.http.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] is True and body["redis"] == "ok"
    # the default STT is the language router; the fixture names one model for all
    assert body["stt"]["engine"] == "language-router" and body["llm"]["engine"] == "llama-cpp"
    assert body["stt"]["default"] == "faster-whisper:whisper-tiny.en"


async def test_models_are_the_loaded_ones_and_each_resolves(client: VoxlineClient) -> None:
    """One entry per model the CPU profile loaded (the routers' routed models, never the
    router's name), each answering at /v1/models/{id}; TTS voice maps name voices."""
    listed = (await client.http.get("/v1/models")).json()["data"]
    ids = [model["id"] for model in listed]
    assert "language-router" not in ids and len(ids) == len(set(ids))
    # the fixture names one STT model for all; the TTS router: Piper for English, espeak-ng
    assert {"whisper-tiny.en", "gemma-3-270m-q4_k_m", "en_US-joe-medium", "espeak"} <= set(ids)
    for model_id in ids:
        assert (await client.http.get(f"/v1/models/{model_id}")).json()["id"] == model_id
    piper = next(m for m in listed if m["id"] == "en_US-joe-medium")
    assert piper["routed"] == ["en"] and set(piper["voice_map"].values()) == {"en_US-joe-medium"}


async def test_openapi_documents_the_api(client: VoxlineClient) -> None:
    spec = (await client.http.get("/openapi.json")).json()
    for path in ("/v1/sessions", "/v1/chat/stream", "/v1/sessions/{session_id}/events",
                 "/v1/audio/transcriptions", "/v1/audio/speech",
                 "/v1/sessions/{session_id}/turns/{turn_id}/audio/{n}", "/healthz", "/readyz"):
        assert path in spec["paths"], path


async def _log(client: VoxlineClient, session_id: str, token: str,
               after: str | None = None) -> list[dict[str, Any]]:
    params = {"follow": "false", "token": token}
    if after:
        params["after"] = after
    response = await client.http.get(f"/v1/sessions/{session_id}/events", params=params)
    assert response.status_code == 200, response.text
    return [json.loads(line[6:]) for line in response.text.splitlines()
            if line.startswith("data: ")]

