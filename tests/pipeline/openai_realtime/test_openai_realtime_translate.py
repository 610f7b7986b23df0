"""The OpenAI Realtime translation, both ways, without a socket: client events → native
messages (with OpenAI's error details), log events → server events (ids that resume
exactly, the GA and beta names, a turn's events in OpenAI's order)."""

from __future__ import annotations

import base64
import json

import pytest

from pipeline.openai_realtime import (
    ClientTranslator,
    ServerTranslator,
    error_frame,
    log_id_before,
    parse_resume_id,
    session_object,
)
from schemas import (
    AudioChunkData,
    AudioDoneData,
    ErrorCode,
    ErrorEvent,
    InputAudio,
    InputAudioAppend,
    InputAudioClear,
    InputAudioCommit,
    InputAudioData,
    InputAudioFormat,
    InputText,
    InputTextData,
    InputTextMessage,
    InvalidAudioError,
    ProtocolError,
    ResponseAudioChunk,
    ResponseAudioDone,
    ResponseCancel,
    ResponseCancelled,
    ResponseCancelledData,
    ResponseCreate,
    ResponseDone,
    ResponseDoneData,
    ResponseHeldData,
    ResponsePaused,
    ResponseResumed,
    ResponseStarted,
    ResponseStartedData,
    ResponseTextDelta,
    ResponseTruncate,
    ResponseTruncated,
    ResponseTruncatedData,
    SessionSettings,
    SessionUpdate,
    SessionUpdated,
    SessionUpdatedData,
    SpeechBoundaryData,
    SpeechStarted,
    SpeechStopped,
    SpeechStoppedData,
    TextDeltaData,
    TranscriptData,
    TranscriptFinal,
)
from tests.support.openai_sdk import realtime_server_events

CLIENT = ClientTranslator(voice_map={"alloy": "en_US-lessac-medium"}, max_message_bytes=4096,
                          max_text_chars=50, max_json_depth=8)
SID, TURN = "sess_1", "turn_a"


def _actions(event: dict[str, object]) -> tuple[object, ...]:
    return CLIENT.actions(CLIENT.parse(json.dumps(event))).messages


def _b64(pcm: bytes) -> str:
    return base64.b64encode(pcm).decode()


# ---- client events ------------------------------------------------------------------


def test_session_update_maps_onto_settings() -> None:
    [message] = _actions({"type": "session.update", "session": {
        "type": "realtime", "instructions": "Be terse.", "output_modalities": ["audio"],
        "audio": {
            "input": {"format": {"type": "audio/pcm", "rate": 24000},
                      "transcription": {"model": "whisper-1", "language": "de"},
                      "turn_detection": {"type": "server_vad", "silence_duration_ms": 700}},
            "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy",
                       "speed": 1.5}},
        "max_output_tokens": 99}})
    assert isinstance(message, SessionUpdate)
    assert message.settings == {
        "system_prompt": "Be terse.", "realtime_tts": True, "input_format": "pcm16",
        "input_sample_rate": 24000, "output_format": "pcm16", "output_sample_rate": 24000,
        "auto_response": True, "end_of_speech_ms": 700, "turn_detection": "silence",
        "language": "de", "voice": "en_US-lessac-medium", "speech_speed": 1.5,
        "sampling": {"max_tokens": 99}}
    # the patch is a valid native one
    SessionSettings().merged(message.settings)


def test_semantic_vad_is_smart_turn_detection() -> None:
    [message] = _actions({"type": "session.update", "session": {
        "type": "realtime", "audio": {"input": {"turn_detection": {"type": "semantic_vad"}}}}})
    assert isinstance(message, SessionUpdate)
    assert message.settings == {"auto_response": True, "turn_detection": "smart"}


def test_turn_detection_null_is_manual_and_absent_changes_nothing() -> None:
    [manual] = _actions({"type": "session.update",
                         "session": {"audio": {"input": {"turn_detection": None}}}})
    assert isinstance(manual, SessionUpdate) and manual.settings == {"auto_response": False}
    [beta] = _actions({"type": "session.update", "session": {"turn_detection": None,
                                                             "modalities": ["text"]}})
    assert isinstance(beta, SessionUpdate)
    assert beta.settings == {"auto_response": False, "realtime_tts": False}
    [nothing] = _actions({"type": "session.update", "session": {"audio": {"input": {}}}})
    assert isinstance(nothing, SessionUpdate) and nothing.settings == {}


def test_openai_voice_names_without_a_mapping_are_the_default_voice() -> None:
    [message] = _actions({"type": "session.update", "session": {"voice": "nova"}})
    assert isinstance(message, SessionUpdate) and message.settings == {"voice": None}


def test_other_audio_formats_are_refused_with_the_param() -> None:
    with pytest.raises(InvalidAudioError) as caught:
        _actions({"type": "session.update", "event_id": "e1", "session": {
            "audio": {"input": {"format": {"type": "audio/opus"}}}}})
    assert caught.value.code is ErrorCode.UNSUPPORTED_FORMAT
    assert caught.value.details["param"] == "session.audio.input.format.type"
    assert caught.value.details["event_id"] == "e1"
    with pytest.raises(InvalidAudioError) as beta:
        _actions({"type": "session.update", "session": {"output_audio_format": "g729"}})
    assert beta.value.details["param"] == "session.output_audio_format"


@pytest.mark.parametrize(("session", "law"), [
    ({"audio": {"input": {"format": {"type": "audio/pcmu"}},
                "output": {"format": {"type": "audio/pcmu"}}}}, "pcmu"),
    ({"audio": {"input": {"format": {"type": "audio/pcma"}},
                "output": {"format": {"type": "audio/pcma"}}}}, "pcma"),
    ({"input_audio_format": "g711_ulaw", "output_audio_format": "g711_ulaw"}, "pcmu"),
    ({"input_audio_format": "g711_alaw", "output_audio_format": "g711_alaw"}, "pcma"),
])
def test_g711_formats_are_the_sessions_at_8_khz(session: dict[str, object], law: str) -> None:
    [message] = _actions({"type": "session.update", "session": session})
    assert isinstance(message, SessionUpdate)
    assert message.settings == {"input_format": law, "input_sample_rate": 8000,
                                "output_format": law, "output_sample_rate": 8000}
    described = session_object("s1", SessionSettings().merged(dict(message.settings)),
                                model="voxline")
    assert described["audio"]["input"]["format"] == {"type": f"audio/{law}"}
    assert described["audio"]["output"]["format"] == {"type": f"audio/{law}"}


def test_g711_audio_is_taken_whole_at_any_length() -> None:
    client = ClientTranslator(input_format=lambda: InputAudioFormat.PCMU)
    [append] = client.actions(client.parse(json.dumps(
        {"type": "input_audio_buffer.append", "audio": _b64(b"\xff\x7f\x00")}))).messages
    assert isinstance(append, InputAudioAppend) and append.audio == b"\xff\x7f\x00"
    with pytest.raises(InvalidAudioError):  # PCM16 (the default) takes whole samples only
        _actions({"type": "input_audio_buffer.append", "audio": _b64(b"\xff\x7f\x00")})


def test_audio_buffer_events() -> None:
    pcm = b"\x01\x00" * 80
    [append] = _actions({"type": "input_audio_buffer.append", "audio": _b64(pcm)})
    assert isinstance(append, InputAudioAppend) and append.audio == pcm
    assert [type(m) for m in _actions({"type": "input_audio_buffer.commit"})] == [
        InputAudioCommit]
    clear = CLIENT.actions(CLIENT.parse('{"type": "input_audio_buffer.clear"}'))
    assert [type(m) for m in clear.messages] == [InputAudioClear]
    assert clear.ack == {"type": "input_audio_buffer.cleared"}


@pytest.mark.parametrize("audio", ["not base64!", _b64(b"\x01\x02\x03"), ""])
def test_bad_audio_is_invalid_audio(audio: str) -> None:
    with pytest.raises(InvalidAudioError) as caught:
        _actions({"type": "input_audio_buffer.append", "event_id": "a1", "audio": audio})
    assert caught.value.details["param"] == "audio"
    assert caught.value.details["event_id"] == "a1"


def test_user_items_text_and_audio() -> None:
    [text] = _actions({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]}})
    assert isinstance(text, InputTextMessage) and text.text == "Hi"
    assert text.respond is False  # OpenAI: only response.create starts a reply
    pcm = b"\x02\x00" * 10
    append, commit = _actions({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user",
        "content": [{"type": "input_audio", "audio": _b64(pcm)}]}})
    assert isinstance(append, InputAudioAppend) and append.audio == pcm
    assert isinstance(commit, InputAudioCommit)


@pytest.mark.parametrize(("item", "code"), [
    ({"type": "message", "role": "assistant", "content": [{"type": "text", "text": "x"}]},
     ErrorCode.INVALID_MESSAGE),
    ({"type": "function_call_output", "output": "{}"}, ErrorCode.INVALID_MESSAGE),
    ({"type": "message", "role": "user", "content": []}, ErrorCode.INVALID_MESSAGE),
    ({"type": "message", "role": "user", "content": [{"type": "input_text", "text": " "}]},
     ErrorCode.EMPTY_INPUT),
    ({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "x" * 51}]},
     ErrorCode.TEXT_TOO_LONG),
])
def test_items_this_server_does_not_take(item: dict[str, object], code: ErrorCode) -> None:
    with pytest.raises(ProtocolError) as caught:
        _actions({"type": "conversation.item.create", "event_id": "i1", "item": item})
    assert caught.value.code is code and caught.value.details["event_id"] == "i1"


def test_responses() -> None:
    assert [type(m) for m in _actions({"type": "response.create", "response": {}})] == [
        ResponseCreate]
    assert [type(m) for m in _actions({"type": "response.cancel"})] == [ResponseCancel]


def test_truncating_a_reply_item_is_the_position_played() -> None:
    truncate = {"type": "conversation.item.truncate", "item_id": f"item_{TURN}_out",
                "content_index": 0, "audio_end_ms": 1500}
    assert _actions(truncate) == (ResponseTruncate(turn_id=TURN, audio_end_ms=1500),)


@pytest.mark.parametrize(("fields", "code", "param"), [
    ({"item_id": f"item_{TURN}_in"}, ErrorCode.NOT_FOUND, "item_id"),  # the user's item
    ({"item_id": "msg_123"}, ErrorCode.NOT_FOUND, "item_id"),
    ({"content_index": 1}, ErrorCode.INVALID_MESSAGE, "content_index"),
    ({"audio_end_ms": -1}, ErrorCode.INVALID_MESSAGE, "audio_end_ms"),
    ({"audio_end_ms": None}, ErrorCode.INVALID_MESSAGE, "audio_end_ms"),
])
def test_what_cannot_be_truncated(fields: dict[str, object], code: ErrorCode, param: str) -> None:
    event = {"type": "conversation.item.truncate", "event_id": "c9", "item_id": f"item_{TURN}_out",
             "content_index": 0, "audio_end_ms": 10, **fields}
    with pytest.raises(ProtocolError) as caught:
        _actions(event)
    assert caught.value.code is code
    assert (caught.value.details["param"], caught.value.details["event_id"]) == (param, "c9")


@pytest.mark.parametrize(("raw", "code"), [
    ("{not json", ErrorCode.INVALID_JSON),
    ("[1, 2]", ErrorCode.INVALID_MESSAGE),
    ('{"type": "conversation.item.delete", "event_id": "t1"}',
     ErrorCode.UNKNOWN_MESSAGE_TYPE),
    ('{"type": "input_audio_buffer.append", "audio": 5}', ErrorCode.INVALID_MESSAGE),
    ("[" * 20 + "]" * 20, ErrorCode.JSON_TOO_DEEP),
    ('{"type": "response.create", "pad": "' + "x" * 5000 + '"}', ErrorCode.MESSAGE_TOO_LARGE),
])
def test_bad_frames(raw: str, code: ErrorCode) -> None:
    with pytest.raises(ProtocolError) as caught:
        CLIENT.parse(raw)
    assert caught.value.code is code


# ---- server events ------------------------------------------------------------------


def _turn_events(mode: str = "streaming") -> list:
    ids = iter(f"100-{i}" for i in range(100))
    common = {"session_id": SID, "turn_id": TURN}
    return [
        SpeechStopped(id=next(ids), **common, data=SpeechStoppedData(audio_ms=900)),
        InputAudio(id=next(ids), **common, data=InputAudioData(
            sample_rate=16000, duration_ms=900, audio=b"\x00\x00" * 8)),
        TranscriptFinal(id=next(ids), **common, data=TranscriptData(text="Hello there")),
        ResponseStarted(id=next(ids), **common, data=ResponseStartedData(mode=mode)),
        ResponseTextDelta(id=next(ids), **common, data=TextDeltaData(delta="Hi ")),
        ResponseAudioChunk(id=next(ids), **common, data=AudioChunkData(
            sample_rate=24000, audio=b"\x01\x00" * 4, sentence_index=0, chunk_index=0)),
        ResponseTextDelta(id=next(ids), **common, data=TextDeltaData(delta="you.")),
        ResponseAudioDone(id=next(ids), **common, data=AudioDoneData(
            sentence_count=1, chunk_count=1)),
        ResponseDone(id=next(ids), **common, data=ResponseDoneData(text="Hi you.")),
    ]


def _all(translator: ServerTranslator, events: list) -> list[dict]:
    return [frame for event in events for frame in translator.frames(event)]


def test_a_voice_turn_in_openai_order() -> None:
    frames = _all(ServerTranslator(model="m"), _turn_events())
    assert [f["type"] for f in frames] == [
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed", "conversation.item.added",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed", "conversation.item.done",
        "response.created", "response.output_item.added", "response.content_part.added",
        "response.output_audio_transcript.delta", "response.output_audio.delta",
        "response.output_audio_transcript.delta", "response.output_audio.done",
        "response.output_audio_transcript.done", "response.content_part.done",
        "response.output_item.done", "response.done",
    ]
    by_type = {f["type"]: f for f in frames}
    assert by_type["conversation.item.input_audio_transcription.completed"]["transcript"] == (
        "Hello there")
    assert base64.b64decode(by_type["response.output_audio.delta"]["delta"]) == b"\x01\x00" * 4
    done = by_type["response.done"]["response"]
    assert done["status"] == "completed" and done["id"] == f"resp_{TURN}"
    assert done["output"][0]["content"][0] == {"type": "output_audio", "transcript": "Hi you."}
    assert done["usage"]["output_tokens"] > 0 and done["usage"]["input_tokens"] > 0
    # every id names its log event and its place among that event's translations
    assert [f["event_id"] for f in frames[:3]] == ["100-0.0", "100-1.0", "100-1.1"]
    assert len({f["event_id"] for f in frames}) == len(frames)


def test_a_text_reply_uses_output_text_events_and_beta_names() -> None:
    events = [e for e in _turn_events("text") if "audio" not in e.type]
    frames = _all(ServerTranslator(model="m", beta=True), events)
    types = [f["type"] for f in frames]
    assert "response.text.delta" in types and "response.text.done" in types
    assert not any("audio" in t for t in types if t.startswith("response."))


def test_resume_inside_one_log_event_skips_what_was_seen() -> None:
    events = _turn_events()
    whole = _all(ServerTranslator(model="m"), events)
    for cut in range(len(whole)):
        log_id, index = parse_resume_id(whole[cut]["event_id"]) or ("", None)
        assert index is not None
        resumed = ServerTranslator(model="m")
        resumed.skip_through(log_id, index)
        start = next(i for i, e in enumerate(events) if e.id == log_id)
        rest = _all(resumed, events[start:])
        assert [f["event_id"] for f in rest] == [f["event_id"] for f in whole[cut + 1:]]
        assert [f["type"] for f in rest] == [f["type"] for f in whole[cut + 1:]]


def test_a_reply_resumed_mid_way_asks_the_session_if_it_is_spoken() -> None:
    delta = _turn_events()[4]
    assert ServerTranslator(model="m", spoken=lambda: False).frames(delta)[0]["type"] == (
        "response.output_text.delta")


def test_cancelled_and_errors() -> None:
    translator = ServerTranslator(model="m")
    translator.frames(ResponseStarted(id="5-0", session_id=SID, turn_id=TURN))
    frames = translator.frames(ResponseCancelled(
        id="5-1", session_id=SID, turn_id=TURN, data=ResponseCancelledData(text_sent="Hi")))
    assert frames[-1]["type"] == "response.done"
    assert frames[-1]["response"]["status"] == "cancelled"
    error = ProtocolError("bad", code=ErrorCode.INVALID_AUDIO, param="audio", event_id="c1")
    [frame] = translator.frames(ErrorEvent(id="5-2", session_id=SID, data=error.to_payload()))
    assert frame == {"type": "error", "event_id": "5-2.0", "error": {
        "type": "invalid_request_error", "code": "invalid_audio", "message": "bad",
        "param": "audio", "event_id": "c1"}}
    server = error_frame(ProtocolError("x", code=ErrorCode.LLM_FAILED).to_payload(), "e")
    assert server["error"]["type"] == "server_error"


def test_a_truncation_is_conversation_item_truncated() -> None:
    data = ResponseTruncatedData(audio_end_ms=700, audio_ms=2000, text_heard="Paris")
    [frame] = ServerTranslator(model="m").frames(
        ResponseTruncated(id="8-0", session_id=SID, turn_id=TURN, data=data))
    assert frame == {"type": "conversation.item.truncated", "event_id": "8-0.0",
                     "item_id": f"item_{TURN}_out", "content_index": 0, "audio_end_ms": 700}


def test_speech_over_a_paused_reply_is_told_only_when_it_interrupts() -> None:
    """OpenAI's clients stop playback at speech_started: over a paused reply it is sent
    only once the speech proved an interruption (a backchannel is not told at all)."""
    translator = ServerTranslator(model="m")

    def held(kind: type, ms: int, **fields: object) -> list[dict]:
        return translator.frames(kind(id=f"9-{ms}", session_id=SID, turn_id=TURN,
                                      data=ResponseHeldData(audio_ms=ms, **fields)))

    def speech(kind: type, data_kind: type, ms: int, turn: str | None = None) -> list[dict]:
        return translator.frames(kind(id=f"9-{ms + 1}", session_id=SID, turn_id=turn,
                                      data=data_kind(audio_ms=ms)))

    assert held(ResponsePaused, 100) == []
    assert speech(SpeechStarted, SpeechBoundaryData, 100) == []
    assert speech(SpeechStopped, SpeechStoppedData, 400) == []  # no turn: a backchannel
    assert held(ResponseResumed, 400, transcript="mm-hm") == []
    assert held(ResponsePaused, 900) == []
    assert speech(SpeechStarted, SpeechBoundaryData, 900) == []
    frames = speech(SpeechStopped, SpeechStoppedData, 1900, turn="t2")
    assert [(f["type"], f.get("audio_start_ms"), f.get("audio_end_ms")) for f in frames] == [
        ("input_audio_buffer.speech_started", 900, None),
        ("input_audio_buffer.speech_stopped", None, 1900)]
    [started] = speech(SpeechStarted, SpeechBoundaryData, 3000)  # nothing held: told at once
    assert started["audio_start_ms"] == 3000


def test_an_interruption_known_before_the_speech_ends_is_told_at_the_cancel() -> None:
    """The paused reply cancelled at the speech's first pause (words that are no
    backchannel): speech_started goes with the cancellation, not at speech_stopped."""
    translator = ServerTranslator(model="m")
    translator.frames(ResponseStarted(id="9-0", session_id=SID, turn_id=TURN))
    translator.frames(ResponsePaused(id="9-1", session_id=SID, turn_id=TURN,
                                     data=ResponseHeldData(audio_ms=500)))
    assert translator.frames(SpeechStarted(id="9-2", session_id=SID,
                                           data=SpeechBoundaryData(audio_ms=500))) == []
    frames = translator.frames(ResponseCancelled(
        id="9-3", session_id=SID, turn_id=TURN, data=ResponseCancelledData(reason="barge_in")))
    assert frames[0] == {"type": "input_audio_buffer.speech_started", "event_id": "9-3.0",
                         "audio_start_ms": 500, "item_id": ""}
    assert frames[-1]["type"] == "response.done"
    assert frames[-1]["response"]["status_details"]["reason"] == "turn_detected"
    stopped = translator.frames(SpeechStopped(id="9-4", session_id=SID, turn_id="t2",
                                              data=SpeechStoppedData(audio_ms=1500)))
    assert [f["type"] for f in stopped] == ["input_audio_buffer.speech_stopped"]


def test_text_items_and_settings_updates() -> None:
    translator = ServerTranslator(model="gpt-realtime")
    typed = InputText(id="7-0", session_id=SID, turn_id=TURN, data=InputTextData(text="Hi"))
    added, done = translator.frames(typed)
    assert (added["type"], done["type"]) == ("conversation.item.added", "conversation.item.done")
    assert added["item"] == done["item"]
    assert done["item"]["content"] == [{"type": "input_text", "text": "Hi"}]
    [beta] = ServerTranslator(model="m", beta=True).frames(typed)
    assert beta["type"] == "conversation.item.created" and beta["item"] == done["item"]
    settings = SessionSettings(auto_response=False, voice="x")
    [updated] = translator.frames(SessionUpdated(
        id="7-1", session_id=SID, data=SessionUpdatedData(settings=settings)))
    session = updated["session"]
    assert session["audio"]["input"]["turn_detection"] is None
    assert session["audio"]["output"]["voice"] == "x" and session["model"] == "gpt-realtime"


def test_user_items_follow_the_item_before_them() -> None:
    """Clients (the Agents SDK) order their history by ``previous_item_id``."""
    translator = ServerTranslator(model="m")
    first = translator.frames(InputText(id="7-0", session_id=SID, turn_id="t1",
                                        data=InputTextData(text="Hi")))
    translator.frames(ResponseStarted(id="7-1", session_id=SID, turn_id="t1"))
    second = translator.frames(InputText(id="7-2", session_id=SID, turn_id="t2",
                                         data=InputTextData(text="And?")))
    assert {f["previous_item_id"] for f in first} == {None}
    assert {f["previous_item_id"] for f in second} == {"item_t1_out"}


def test_resume_ids() -> None:
    assert parse_resume_id("17-3.2") == ("17-3", 2)
    assert parse_resume_id("17-3") == ("17-3", None)
    assert parse_resume_id("local_abc") is None and parse_resume_id("17-3.x") is None
    assert log_id_before("17-3") == "17-2"
    assert log_id_before("17-0") == f"16-{2**64 - 1}"


# ---- conformance: every frame validates against the official SDK's own models ----------


@pytest.mark.parametrize("mode", ["streaming", "text"])
def test_every_frame_is_a_valid_sdk_event(mode: str) -> None:
    classes = realtime_server_events()
    translator = ServerTranslator(model="voxline")
    settings = SessionSettings(auto_response=False, input_sample_rate=24000)  # OpenAI's rate
    frames = [
        *translator.frames(SessionUpdated(id="1-0", session_id=SID,
                                          data=SessionUpdatedData(settings=settings))),
        *_all(translator, _turn_events(mode)),
        *translator.frames(InputText(id="9-0", session_id=SID, turn_id="t2",
                                     data=InputTextData(text="Hi"))),
        *translator.frames(ResponseStarted(id="9-1", session_id=SID, turn_id="t2")),
        *translator.frames(ResponseCancelled(id="9-2", session_id=SID, turn_id="t2")),
        *translator.frames(ResponseTruncated(id="9-4", session_id=SID, turn_id="t2",
                                             data=ResponseTruncatedData(
                                                 audio_end_ms=0, audio_ms=0, text_heard=""))),
        *translator.frames(ErrorEvent(id="9-3", session_id=SID,
                                      data=ProtocolError("bad").to_payload())),
        {"type": "input_audio_buffer.cleared", "event_id": "local_1"},
    ]
    for frame in frames:
        assert frame["type"] in classes, frame["type"]
        classes[frame["type"]].model_validate(frame)
