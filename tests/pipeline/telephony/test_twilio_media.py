"""Twilio Media Streams frames: parsing under the limits, and log events as outbound frames."""

from __future__ import annotations

import base64
import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.telephony import CallTranslator, Media, Start, media_audio, parse_message
from schemas import (
    AudioChunkData,
    AudioDoneData,
    ErrorCode,
    InvalidAudioError,
    ProtocolError,
    ResponseAudioChunk,
    ResponseAudioDone,
    ResponseCancelled,
    ResponseCancelledData,
    SpeechBoundaryData,
    SpeechStarted,
)

LIMITS = {"max_bytes": 64 << 10, "max_depth": 16}


def _parse(frame: object) -> object:
    return parse_message(json.dumps(frame), **LIMITS)


def test_twilio_frames_are_read_with_their_fields() -> None:
    start = _parse({"event": "start", "sequenceNumber": "1", "streamSid": "MZ1", "start": {
        "streamSid": "MZ1", "callSid": "CA1", "accountSid": "AC1", "tracks": ["inbound"],
        "customParameters": {"session_id": "s1", "token": "t"},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}},
        "somethingNew": True})
    assert isinstance(start, Start)
    assert start.start.custom_parameters == {"session_id": "s1", "token": "t"}
    assert start.start.media_format.sample_rate == 8000
    media = _parse({"event": "media", "streamSid": "MZ1", "media": {
        "track": "inbound", "chunk": "2", "timestamp": "20",
        "payload": base64.b64encode(b"\xff" * 160).decode()}})
    assert isinstance(media, Media) and media_audio(media) == b"\xff" * 160


@pytest.mark.parametrize(("frame", "code"), [
    ({"event": "ring"}, ErrorCode.UNKNOWN_MESSAGE_TYPE),
    ({"streamSid": "MZ1"}, ErrorCode.UNKNOWN_MESSAGE_TYPE),
    ({"event": "start", "start": {}}, ErrorCode.INVALID_MESSAGE),  # no streamSid
    ({"event": "media"}, ErrorCode.INVALID_MESSAGE),
    ({"event": "mark", "mark": {"name": "x" * 300}}, ErrorCode.INVALID_MESSAGE),
])
def test_bad_frames_get_codes(frame: object, code: ErrorCode) -> None:
    with pytest.raises(ProtocolError) as caught:
        _parse(frame)
    assert caught.value.code is code


def test_frames_over_the_limits_are_refused_before_parsing() -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_message("{" + " " * 100 + "}", max_bytes=64, max_depth=16)
    assert caught.value.code is ErrorCode.MESSAGE_TOO_LARGE


def test_a_payload_that_is_not_base64_is_invalid_audio() -> None:
    media = _parse({"event": "media", "media": {"payload": "not base64!"}})
    assert isinstance(media, Media)
    with pytest.raises(InvalidAudioError):
        media_audio(media)


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=12), inner, max_size=3), max_leaves=8)
_FIELDS = st.sampled_from(["start", "media", "mark", "dtmf", "stop", "streamSid",
                           "streamSid", "customParameters", "payload", "name"])


@given(event=st.sampled_from(["connected", "start", "media", "mark", "dtmf", "stop", "x"]),
       fields=st.dictionaries(_FIELDS, _JSON | st.dictionaries(_FIELDS, _JSON, max_size=3),
                              max_size=4))
def test_any_frame_parses_or_is_a_protocol_error(event: str, fields: dict[str, object]) -> None:
    """Whatever a peer sends is a message or a coded refusal, never another exception."""
    with contextlib.suppress(ProtocolError):
        parse_message(json.dumps({**fields, "event": event}), **LIMITS)


def _chunk(fmt: str = "pcmu", rate: int = 8000, audio: bytes = b"\xff\x7f",
           end_ms: int = 120) -> ResponseAudioChunk:
    return ResponseAudioChunk(session_id="s", turn_id="t1", data=AudioChunkData(
        format=fmt, sample_rate=rate, sentence_index=0, chunk_index=0, audio=audio,
        end_ms=end_ms))


def _done() -> ResponseAudioDone:
    return ResponseAudioDone(session_id="s", turn_id="t1",
                             data=AudioDoneData(sentence_count=1, chunk_count=1))


def _speech() -> SpeechStarted:
    return SpeechStarted(session_id="s", data=SpeechBoundaryData(audio_ms=0))


def test_a_reply_is_media_and_marks_and_the_last_echo_ends_playing() -> None:
    calls = CallTranslator("MZ1", lambda: "immediate")
    media, mark = calls.frames(_chunk())
    assert media == {"event": "media", "streamSid": "MZ1",
                     "media": {"payload": base64.b64encode(b"\xff\x7f").decode()}}
    assert mark == {"event": "mark", "streamSid": "MZ1", "mark": {"name": "t1@120"}}
    assert calls.frames(_done()) == [{"event": "mark", "streamSid": "MZ1",
                                      "mark": {"name": "t1"}}]
    calls.played("t1@120")
    assert calls.playing and calls.heard_ms == 120
    calls.played("t1")
    assert not calls.playing
    assert calls.frames(_speech()) == []  # nothing left to clear


def test_speech_over_a_reply_still_playing_clears_what_was_not_heard() -> None:
    cleared: list[tuple[str, int]] = []
    calls = CallTranslator("MZ1", lambda: "immediate",
                           on_clear=lambda turn, ms: cleared.append((turn, ms)))
    calls.frames(_chunk(end_ms=120))
    calls.frames(_chunk(end_ms=480))
    calls.frames(_done())
    calls.played("t1@120")  # the caller heard the first chunk, not the second
    assert calls.frames(_speech()) == [{"event": "clear", "streamSid": "MZ1"}]
    assert not calls.playing and calls.clears == 1 and cleared == [("t1", 120)]
    calls.played("t1@480")  # Twilio echoes the marks it cleared: heard stays
    assert calls.heard_ms == 120
    confirmed = CallTranslator("MZ1", lambda: "confirmed")
    confirmed.frames(_chunk())
    assert confirmed.frames(_speech()) == []  # the server decides: a cancel clears


@pytest.mark.parametrize(("reason", "frames"), [("barge_in", 1), ("client", 0)])
def test_a_barge_in_cancel_clears(reason: str, frames: int) -> None:
    calls = CallTranslator("MZ1", lambda: "confirmed")
    calls.frames(_chunk())
    cancelled = ResponseCancelled(session_id="s", turn_id="t1",
                                  data=ResponseCancelledData(reason=reason))
    assert len(calls.frames(cancelled)) == frames
    silent = CallTranslator("MZ1", lambda: "confirmed")  # no audio went out: no clear
    assert silent.frames(cancelled) == []


def test_audio_in_another_format_is_not_sent_to_the_phone() -> None:
    calls = CallTranslator("MZ1", lambda: "immediate")
    assert calls.frames(_chunk(fmt="pcm16", rate=24000, audio=b"\x00\x00")) == []
    assert calls.frames(_done()) == []  # nothing played: no mark
