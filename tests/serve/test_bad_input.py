"""Bad input through the real Serve app: every case is answered with an error event or
a 4xx carrying a code, the session stays usable, and other sessions never notice."""

from __future__ import annotations

import asyncio
import json
import struct

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from voxline.client import SessionInfo, SessionSocket, VoxlineClient
from voxline.demo import text_turn

pytestmark = [pytest.mark.serve, pytest.mark.models, pytest.mark.redis]

GREEDY = {"temperature": 0.0, "max_tokens": 30, "seed": 1}


async def _next_error(conn: SessionSocket) -> dict[str, object]:
    async for event in conn.events():
        if event.type == "error":
            return event.data.model_dump(mode="json")  # type: ignore[no-any-return]
    raise AssertionError("the socket closed without an error event")


async def test_bad_frames_get_error_events_and_the_session_goes_on(
        client: VoxlineClient) -> None:
    session = await client.create_session(sampling=GREEDY)
    bystander = asyncio.create_task(text_turn(client, "What is the capital of Spain?",
                                              sampling=GREEDY))
    async with client.connect(session) as conn:
        ws = conn.ws
        assert ws is not None
        cases: list[tuple[str | bytes, str]] = [
            ("{not json", "invalid_json"),
            (json.dumps({"type": "input.dance"}), "unknown_message_type"),
            (json.dumps({"type": "session.update", "settings": {"input_sample_rate": 12345}}),
             "unsupported_sample_rate"),
            (bytes(2 * 1024 * 1024), "message_too_large"),
            (b"\x01\x02\x03", "invalid_audio"),  # odd byte count: not PCM16
            (json.dumps({"type": "input_audio.append", "audio": "%%% not base64 %%%"}),
             "invalid_audio"),
            (json.dumps({"type": "input.text", "text": "x" * 5000}), "text_too_long"),
            ('{"type": "session.update", "settings": ' + "[" * 1000 + "]" * 1000 + "}",
             "json_too_deep"),  # was a RecursionError and a dropped socket (#11 row 4)
            (json.dumps({"type": "session.resume", "last_event_id": "99999999999999-0"}),
             "invalid_event_id"),  # an id from the future (row 9)
            (json.dumps({"type": "session.update", "settings": {"voice": "../../etc/passwd"}}),
             "invalid_settings"),  # row 10
            (json.dumps({"type": "session.update", "settings": {"language": "xx-YY"}}),
             "unsupported_language"),
        ]
        for frame, code in cases:
            await ws.send(frame)
            error = await _next_error(conn)
            assert error["code"] == code, frame[:40]
            assert error["recoverable"] is True
        await conn.send_text("What is the capital of France?")
        events = [e async for e in conn.until_done()]
        assert events[-1].type == "response.done"
        assert events[-1].data.status == "completed"  # type: ignore[union-attr]
    other = await bystander
    assert other.events[-1].type == "response.done"
    assert not [e for e in other.events if e.type == "error"]


async def test_unknown_session_and_wrong_tokens(client: VoxlineClient) -> None:
    session = await client.create_session()
    unknown = SessionInfo("sess_nobody", session.token,
                          session.ws_url.replace(session.session_id, "sess_nobody"), "", {})
    wrong = SessionInfo(session.session_id, "forged", session.ws_url, "", {})
    missing = SessionInfo(session.session_id, "", session.ws_url, "", {})
    for info, code, close in [(unknown, "session_not_found", 4404), (wrong, "forbidden", 4403),
                              (missing, "unauthorized", 4401)]:
        url = info.ws_url + (f"?token={info.token}" if info.token else "")
        async with connect(url) as ws:
            frame = json.loads(await ws.recv())
            assert frame["type"] == "error" and frame["data"]["code"] == code
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == close
    for path, headers, status, code in [
        ("/v1/sessions/sess_nobody", session.auth, 404, "session_not_found"),
        (f"/v1/sessions/{session.session_id}", {}, 401, "unauthorized"),
        (f"/v1/sessions/{session.session_id}", {"X-Voxline-Token": "forged"}, 403, "forbidden"),
        (f"/v1/sessions/{session.session_id}/events?follow=false", {"Authorization": "Bearer x"},
         403, "forbidden"),
    ]:
        response = await client.http.get(path, headers=headers)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), path
    # ... and the session itself is untouched by all that.
    ok = await client.http.get(f"/v1/sessions/{session.session_id}", headers=session.auth)
    assert ok.status_code == 200 and ok.json()["turns"] == 0


async def test_bad_http_bodies(client: VoxlineClient) -> None:
    created = await client.http.post("/v1/sessions", json={"settings": {"language": "klingon"}})
    assert (created.status_code, created.json()["error"]["code"]) == (400, "invalid_settings")
    rate = await client.http.post("/v1/sessions", json={"settings": {"output_sample_rate": 7}})
    assert (rate.status_code, rate.json()["error"]["code"]) == (415, "unsupported_sample_rate")
    junk = await client.http.post("/v1/sessions", content=b"{oops",
                                  headers={"content-type": "application/json"})
    assert (junk.status_code, junk.json()["error"]["code"]) == (422, "invalid_message")
    not_audio = await client.http.post("/v1/audio/transcriptions",
                                       files={"file": ("notes.txt", b"hello, not audio" * 50)})
    assert not_audio.status_code == 415
    assert not_audio.json()["error"]["code"] == "unsupported_format"
    empty = await client.http.post("/v1/audio/transcriptions", files={"file": ("a.wav", b"")})
    assert empty.json()["error"]["code"] == "empty_input"
    fmt = await client.http.post("/v1/audio/transcriptions", data={"response_format": "docx"},
                                 files={"file": ("a.wav", b"RIFF")})
    assert (fmt.status_code, fmt.json()["error"]["code"]) == (422, "invalid_message")


def _wav(rate: int, data: bytes) -> bytes:
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(data), b"WAVE", b"fmt ", 16,
                         1, 1, rate, rate * 2, 2, 16, b"data", len(data))
    return header + data


async def test_uploads_are_bounded_before_they_are_decoded(client: VoxlineClient) -> None:
    """Issue #11 row 1: 7 KB of WAV at 1 Hz decoded to an hour of audio (+0.77 GB)."""
    cases = [
        (_wav(1, bytes(7000)), {}, 415, "unsupported_sample_rate"),
        (_wav(16000, bytes(16000 * 2 * 301)), {}, 413, "audio_too_long"),  # over 300 s
        (_wav(16000, bytes(16000 * 2)), {"language": "de"}, 400,  # whisper tiny.en
         "unsupported_language"),  # was a 502 (row 8)
    ]
    for upload, form, status, code in cases:
        response = await client.http.post("/v1/audio/transcriptions", data=form,
                                          files={"file": ("a.wav", upload)})
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["code"] == code and error["transient"] is False
        assert "Retry-After" not in response.headers
    ok = await client.http.post("/v1/audio/transcriptions",
                                files={"file": ("a.wav", _wav(16000, bytes(16000 * 2)))})
    assert ok.status_code == 200 and "text" in ok.json()


async def test_speech_of_one_long_word_is_spoken_not_a_500(client: VoxlineClient) -> None:
    """Row 5: 4000 x "a" (under the 4096 limit) made a piece over the synthesizer's 2000
    characters and a plain-text 500; pieces are now cut hard at the piece limit."""
    body = {"input": "a" * 4000, "response_format": "pcm"}
    async with client.http.stream("POST", "/v1/audio/speech", json=body) as response:
        assert response.status_code == 200
        first = await anext(response.aiter_bytes())
        assert len(first) > 0
    over = await client.http.post("/v1/audio/speech", json={"input": "a" * 5000})
    assert (over.status_code, over.json()["error"]["code"]) == (413, "text_too_long")


async def test_session_settings_are_checked_against_the_real_engines(
        client: VoxlineClient) -> None:
    """Row 10: the Gateway asks the Synthesizer replica what it has (voices, languages)."""
    for settings, code in [({"voice": "carla"}, "unknown_voice"),
                           ({"language": "xx-YY"}, "unsupported_language"),
                           ({"voice": "../../etc/passwd"}, "invalid_settings"),
                           ({"sampling": {"stop": ["x"] * 10_000}}, "invalid_settings")]:
        response = await client.http.post("/v1/sessions", json={"settings": settings})
        assert (response.status_code, response.json()["error"]["code"]) == (400, code)
    session = await client.create_session(language="de", voice="de")  # espeak has German
    assert session.settings["language"] == "de"
