"""``WS /v1/realtime`` on the API harness (scripted engines, real Redis): the OpenAI
Realtime protocol's turns, error shapes, limits, manual turns, resume, API keys, and
unknown WebSocket paths. The official SDK drives the real Serve app in
``tests/serve/test_openai_realtime.py``; here plain sockets send what the SDK would,
and what it would not."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from schemas import AdmissionSettings, ApiSettings, EventLogSettings, SessionCreated
from tests.support.api_harness import Harness, serve_api
from tests.support.engines import RecordingLLM, ScriptedLLM, ScriptedSTT, ScriptedTTS

pytestmark = pytest.mark.redis

TOKENS = [f"Word{i} " if i % 5 else f"Sentence {i}. " for i in range(1, 21)]
KEY = "sk-test-realtime-key"


@pytest.fixture
async def harness(redis_url: str, key_prefix: str) -> AsyncIterator[Harness]:
    async with serve_api(redis_url, EventLogSettings(key_prefix=key_prefix),
                         llm=RecordingLLM(TOKENS, delay=0.002),
                         tts=ScriptedTTS(chunks_per_piece=2), stt=ScriptedSTT("Hello there"),
                         api=ApiSettings(max_message_bytes=64 << 10)) as harness:
        yield harness


def _ws_url(harness: Harness, query: str = "") -> str:
    return "ws" + harness.url.removeprefix("http") + "/v1/realtime?model=voxline" + query


async def _recv(ws: ClientConnection) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await ws.recv())
    return frame


async def _until(ws: ClientConnection, kind: str) -> list[dict[str, Any]]:
    frames = []
    while True:
        frames.append(await _recv(ws))
        if frames[-1]["type"] == kind:
            return frames


async def _send(ws: ClientConnection, **event: Any) -> None:
    await ws.send(json.dumps(event))


async def _text_turn(ws: ClientConnection, text: str = "Hi") -> list[dict[str, Any]]:
    await _send(ws, type="conversation.item.create", item={
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})
    await _send(ws, type="response.create")
    return await _until(ws, "response.done")


async def test_a_text_turn_on_a_new_session(harness: Harness) -> None:
    async with connect(_ws_url(harness)) as ws:
        created = await _recv(ws)
        assert created["type"] == "session.created"
        session = created["session"]
        assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
        assert session["voxline"]["token"] and session["voxline"]["session_id"] == session["id"]
        frames = await _text_turn(ws)
    types = [f["type"] for f in frames]
    assert types[:5] == ["conversation.item.added", "conversation.item.done",
                         "response.created", "response.output_item.added",
                         "response.content_part.added"]
    assert "response.output_audio_transcript.delta" in types
    assert "response.output_audio.delta" in types
    assert types.index("response.output_audio.done") < types.index("response.done")
    done = frames[-1]["response"]
    assert done["status"] == "completed" and done["usage"]["total_tokens"] > 0
    transcript = "".join(f["delta"] for f in frames
                         if f["type"] == "response.output_audio_transcript.delta")
    assert transcript == "".join(TOKENS)
    # it is a Voxline session like any other: its log has the turn
    events = await harness.services.log.read_all(session["id"])
    assert [e.type for e in events][-1] == "response.done"
    # OpenAI's clients stop playing only at speech_started: speech over a reply cancels
    # it at once here (the native default pauses it first)
    assert isinstance(events[0], SessionCreated)
    assert events[0].data.settings.interruptions == "immediate"


async def test_truncate_keeps_what_was_heard_for_the_next_turn(harness: Harness) -> None:
    """The client interrupted playback: the reply item is truncated to what it played, and
    the model's next prompt holds only that text."""
    llm = harness.services.engines.llm
    async with connect(_ws_url(harness)) as ws:
        session_id = (await _recv(ws))["session"]["id"]
        frames = await _text_turn(ws)
        item_id = frames[-1]["response"]["output"][0]["id"]
        audio = b"".join(base64.b64decode(f["delta"]) for f in frames
                         if f["type"] == "response.output_audio.delta")
        played_ms = len(audio) // 2 * 1000 // 24000 // 2  # half of it
        await _send(ws, type="conversation.item.truncate", item_id=item_id, content_index=0,
                    audio_end_ms=played_ms)
        truncated = await _recv(ws)
        assert {k: truncated[k] for k in ("type", "item_id", "content_index", "audio_end_ms")} == {
            "type": "conversation.item.truncated", "item_id": item_id, "content_index": 0,
            "audio_end_ms": played_ms}
        await _send(ws, type="conversation.item.truncate", item_id=item_id, content_index=0,
                    audio_end_ms=10**6)
        error = await _recv(ws)
        assert (error["type"], error["error"]["code"], error["error"]["param"]) == (
            "error", "invalid_message", "audio_end_ms")
        await _text_turn(ws, "And then?")
    events = await harness.services.log.read_all(session_id)
    [heard] = [e.data.text_heard for e in events if e.type == "response.truncated"]
    full = "".join(TOKENS).strip()
    assert heard and full.startswith(heard) and len(heard) < len(full)
    assert llm.requests[-1].messages[2].content == heard  # system, user, the heard reply


async def test_errors_in_openai_shape_and_the_session_goes_on(harness: Harness) -> None:
    async with connect(_ws_url(harness)) as ws:
        await _recv(ws)
        bad = [
            ("{oops", "invalid_json", None),
            (json.dumps({"type": "conversation.item.delete", "event_id": "c1"}),
             "unknown_message_type", "c1"),
            (json.dumps({"type": "input_audio_buffer.append", "event_id": "c2",
                         "audio": "%%%"}), "invalid_audio", "c2"),
            (json.dumps({"type": "response.create", "event_id": "c3"}), "empty_input", "c3"),
            (json.dumps({"type": "session.update", "event_id": "c4",
                         "session": {"audio": {"input": {"format": {
                             "type": "audio/pcm", "rate": 12345}}}}}),
             "unsupported_sample_rate", "c4"),
            (json.dumps({"type": "response.create", "pad": "x" * (70 << 10)}),
             "message_too_large", None),
        ]
        for raw, code, event_id in bad:
            await ws.send(raw)
            error = await _recv(ws)
            assert error["type"] == "error", error
            assert error["error"]["code"] == code
            assert error["error"]["event_id"] == event_id
            assert error["error"]["type"] == "invalid_request_error"
            assert set(error["error"]) == {"type", "code", "message", "param", "event_id"}
        frames = await _text_turn(ws)
        assert frames[-1]["response"]["status"] == "completed"


async def test_manual_turns_wait_for_response_create(harness: Harness) -> None:
    async with connect(_ws_url(harness)) as ws:
        await _recv(ws)
        await _send(ws, type="session.update", session={
            "type": "realtime", "audio": {"input": {"turn_detection": None}}})
        updated = await _recv(ws)
        assert updated["type"] == "session.updated"
        assert updated["session"]["audio"]["input"]["turn_detection"] is None
        silence = base64.b64encode(bytes(24000)).decode()  # half a second at 24 kHz
        await _send(ws, type="input_audio_buffer.append", audio=silence)
        await _send(ws, type="input_audio_buffer.commit")
        frames = await _until(ws, "conversation.item.done")
        types = [f["type"] for f in frames]
        assert types.index("input_audio_buffer.committed") + 1 == types.index(
            "conversation.item.added")
        assert types.index("conversation.item.input_audio_transcription.completed") + 1 == (
            types.index("conversation.item.done"))  # whole once transcribed
        assert frames[-2]["transcript"] == "Hello there"
        assert frames[-1]["item"]["content"][0]["transcript"] == "Hello there"
        # nothing replies: the next frame is the answer to a ping-like bad event
        await ws.send("{}")
        assert (await _recv(ws))["type"] == "error"
        await _send(ws, type="response.create")
        frames = await _until(ws, "response.done")
        assert frames[0]["type"] == "response.created"
        assert frames[-1]["response"]["status"] == "completed"


async def test_cancel_mid_response(redis_url: str, key_prefix: str) -> None:
    async with (
        serve_api(redis_url, EventLogSettings(key_prefix=key_prefix),
                  llm=ScriptedLLM(TOKENS * 5, delay=0.05), tts=ScriptedTTS()) as harness,
        connect(_ws_url(harness)) as ws,
    ):
        await _recv(ws)
        await _send(ws, type="conversation.item.create", item={
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "Talk"}]})
        await _send(ws, type="response.create")
        await _until(ws, "response.output_audio_transcript.delta")
        await _send(ws, type="response.cancel")
        frames = await _until(ws, "response.done")
    assert frames[-1]["response"]["status"] == "cancelled"
    assert frames[-2]["type"] == "response.output_item.done"


async def test_resume_by_event_id_has_no_gap_and_no_repeat(harness: Harness) -> None:
    async with connect(_ws_url(harness)) as ws:
        session = (await _recv(ws))["session"]
        whole = await _text_turn(ws)
    extension = session["voxline"]
    base = _ws_url(harness, f"&session_id={extension['session_id']}&token={extension['token']}")
    for cut in (0, 1, 2, len(whole) // 2, len(whole) - 2):
        async with connect(f"{base}&last_event_id={whole[cut]['event_id']}") as ws:
            rest = [await _recv(ws) for _ in range(len(whole) - cut - 1)]
        assert rest == whole[cut + 1:]


async def test_attach_with_a_wrong_token_or_bad_cursor_is_refused(harness: Harness) -> None:
    session = await harness.client.create_session()
    for query, code, close in [
        (f"&session_id={session.session_id}&token=nope", "forbidden", 4403),
        (f"&session_id={session.session_id}&token={session.token}&last_event_id=x",
         "invalid_event_id", 4400),
        ("&session_id=sess_unknown&token=x", "session_not_found", 4404),
    ]:
        async with connect(_ws_url(harness, query)) as ws:
            frame = await _recv(ws)
            assert frame["type"] == "error" and frame["error"]["code"] == code
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == close


async def test_attach_to_a_native_session_greets_with_its_settings(harness: Harness) -> None:
    session = await harness.client.create_session()
    url = _ws_url(harness, f"&session_id={session.session_id}&token={session.token}")
    async with connect(url) as ws:
        created = await _recv(ws)
        assert created["session"]["id"] == session.session_id
        assert created["session"]["audio"]["input"]["format"]["rate"] == 16000
        assert "token" not in created["session"]["voxline"] or not (
            created["session"]["voxline"]["token"])


async def test_api_keys_apply(redis_url: str, key_prefix: str) -> None:
    api = ApiSettings(keys=(KEY,))  # type: ignore[arg-type]
    async with serve_api(redis_url, EventLogSettings(key_prefix=key_prefix),
                         llm=ScriptedLLM(["Hi."]), tts=None, api=api) as harness:
        async with connect(_ws_url(harness)) as ws:
            frame = await _recv(ws)
            assert frame["error"]["code"] == "unauthorized"
        headers = {"Authorization": f"Bearer {KEY}"}
        async with connect(_ws_url(harness), additional_headers=headers) as ws:
            created = await _recv(ws)
            assert created["type"] == "session.created"
            frames = await _text_turn(ws)
            # no synthesizer: a text reply
            assert "response.output_text.delta" in [f["type"] for f in frames]


async def test_beta_names_on_request(harness: Harness) -> None:
    async with connect(_ws_url(harness), additional_headers={"OpenAI-Beta": "realtime=v1"}) as ws:
        await _recv(ws)
        types = [f["type"] for f in await _text_turn(ws)]
    assert "response.audio.delta" in types and "response.audio_transcript.delta" in types
    assert "response.output_audio.delta" not in types


async def test_unknown_websocket_paths_close_with_a_reason(harness: Harness) -> None:
    url = "ws" + harness.url.removeprefix("http") + "/v1/nowhere"
    async with connect(url) as ws:
        frame = await _recv(ws)
        assert frame["type"] == "error" and frame["error"]["code"] == "not_found"
        assert frame["data"]["code"] == "not_found"
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4404, "not_found")


async def test_native_manual_turns_share_the_session_machinery(harness: Harness) -> None:
    """The native protocol has the same manual turns: ``auto_response`` off (or
    ``input.text`` with ``respond: false``) logs the turn, ``response.create`` replies."""
    session = await harness.client.create_session(auto_response=False)
    url = f"{session.ws_url}?token={session.token}"
    async with connect(url) as ws:
        assert (await _recv(ws))["type"] == "session.created"
        await _send(ws, type="input.text", text="Hi")
        assert (await _recv(ws))["type"] == "input.text"
        await _send(ws, type="input_audio.clear")  # nothing buffered: nothing to say
        await _send(ws, type="response.create")
        frames = await _until(ws, "response.done")
        assert frames[0]["type"] == "response.started"
        # a second response.create has no user turn left to answer
        await _send(ws, type="response.create")
        error = await _recv(ws)
        assert error["type"] == "error" and error["data"]["code"] == "empty_input"
        await _send(ws, type="session.update", settings={"auto_response": True})
        assert (await _recv(ws))["type"] == "session.updated"
        await _send(ws, type="input.text", text="Hello", respond=False)
        assert (await _recv(ws))["type"] == "input.text"
        await _send(ws, type="input.text", text="Again")
        frames = await _until(ws, "response.done")
        assert [f["type"] for f in frames][:2] == ["input.text", "response.started"]


async def test_admission_applies_to_new_realtime_sessions(
    redis_url: str, key_prefix: str
) -> None:
    async with serve_api(redis_url, EventLogSettings(key_prefix=key_prefix),
                         llm=ScriptedLLM(["Hi."]), tts=None,
                         admission=AdmissionSettings(max_sessions=1)) as harness:
        async with connect(_ws_url(harness)) as first:
            assert (await _recv(first))["type"] == "session.created"
            async with connect(_ws_url(harness)) as second:
                frame = await _recv(second)
                assert frame["error"]["code"] == "overloaded"
                assert frame["error"]["type"] == "server_error"
                with pytest.raises(ConnectionClosed) as closed:
                    await second.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 4503
        # nothing was created for the refused socket: one session in the log
        keys = [k async for k in harness.services.redis.scan_iter(f"{key_prefix}*session:*")]
        assert len(keys) == 1
