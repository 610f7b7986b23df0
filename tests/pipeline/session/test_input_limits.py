"""Input bounds where input enters (issue #11): the JSON depth scan before parsing, the
decoder's limits on an upload's rate and length, event ids a client may resume from."""

from __future__ import annotations

import base64
import json
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.audio import codec, decode_audio, encode_audio
from pipeline.session import EngineChoices, merge_settings, parse_event_id
from schemas import (
    MAX_JSON_DEPTH,
    ApiSettings,
    InputTooLargeError,
    InvalidAudioError,
    ProtocolError,
    SessionSettings,
    check_json_depth,
    parse_client_message,
)

# -- JSON depth ----------------------------------------------------------------------------


def _nested(depth: int, opener: str = "[", closer: str = "]") -> str:
    return opener * depth + closer * depth


@pytest.mark.parametrize("limit", [4, 32])
def test_the_depth_limit_is_exact(limit: int) -> None:
    check_json_depth(_nested(limit), limit)
    check_json_depth("[" + ",".join([_nested(limit - 1)] * 50) + "]", limit)
    with pytest.raises(ProtocolError) as info:
        check_json_depth(_nested(limit + 1), limit)
    assert info.value.code == "json_too_deep"
    mixed = '{"a": [{"b": [' * (limit // 4 + 1) + "1" + "]}]}" * (limit // 4 + 1)
    assert mixed.count("{") * 2 > limit
    with pytest.raises(ProtocolError):
        check_json_depth(mixed, limit)


def test_brackets_inside_strings_do_not_count() -> None:
    text = json.dumps({"type": "input.text", "text": "[[{" * 2000 + '"\\'})
    check_json_depth(text)
    assert parse_client_message(text, max_text_chars=10_000).type == "input.text"


def test_malformed_json_is_left_to_the_parser() -> None:
    for raw in ["[" * 5000, "]" * 5000, "[}" * 100, '{"type": "x"' + "}" * 100]:
        check_json_depth(raw) if raw.count("[") < 40 else None
        with pytest.raises(ProtocolError) as info:
            parse_client_message(raw)
        assert info.value.code in ("invalid_json", "json_too_deep", "invalid_message")


def test_a_1000_deep_frame_is_refused_before_it_is_parsed() -> None:
    frame = '{"type": "session.update", "settings": {"a": ' + _nested(1000) + "}}"
    assert len(frame) < 2100
    with pytest.raises(ProtocolError) as info:
        parse_client_message(frame)
    assert info.value.code == "json_too_deep"
    session_update = {"type": "session.update", "settings": {"sampling": {"stop": ["x"]}}}
    assert parse_client_message(json.dumps(session_update)).type == "session.update"


def test_a_large_audio_frame_passes_the_scan() -> None:
    audio = base64.b64encode(bytes(600_000)).decode()
    frame = json.dumps({"type": "input_audio.append", "audio": audio})
    assert parse_client_message(frame, max_bytes=1 << 21).type == "input_audio.append"


@settings(max_examples=200, deadline=None)
@given(value=st.recursive(
    st.none() | st.integers() | st.text(alphabet='[]{}"\\ab'),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                 max_size=3),
    max_leaves=30,
))
def test_the_scan_agrees_with_the_real_depth(value: object) -> None:
    def depth(v: object) -> int:
        if isinstance(v, list):
            return 1 + max(map(depth, v), default=0)
        if isinstance(v, dict):
            return 1 + max(map(depth, v.values()), default=0)
        return 0

    text = json.dumps(value)
    for limit in (1, 2, 3, 5):
        if depth(value) > limit:
            with pytest.raises(ProtocolError):
                check_json_depth(text, limit)
        else:
            check_json_depth(text, limit)


def test_the_api_default_matches_the_parser_default() -> None:
    assert ApiSettings().max_json_depth == MAX_JSON_DEPTH


# -- uploads -------------------------------------------------------------------------------


def _wav(rate: int, data: bytes) -> bytes:
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(data), b"WAVE", b"fmt ", 16,
                         1, 1, rate, rate * 2, 2, 16, b"data", len(data))
    return header + data


def test_a_tiny_wav_at_1_hz_is_refused_from_its_header() -> None:
    upload = _wav(1, bytes(7000))  # 3500 samples: an hour at 16 kHz once decoded
    with pytest.raises(InvalidAudioError) as info:
        decode_audio(upload, source_rates=(8000, 192000))
    assert info.value.code == "unsupported_sample_rate"
    with pytest.raises(InputTooLargeError) as too_long:
        decode_audio(upload, max_seconds=300)
    assert too_long.value.code == "audio_too_long" and too_long.value.http_status == 413


def test_a_declared_duration_over_the_limit_is_refused_before_decoding() -> None:
    upload = _wav(16000, bytes(16000 * 2 * 20))
    with pytest.raises(InputTooLargeError, match=r"20\.0 s"):
        decode_audio(upload, max_seconds=10)
    assert len(decode_audio(upload, max_seconds=30)) == 16000 * 2 * 20


def test_the_length_is_bounded_while_decoding_when_the_header_says_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream that declares no duration (or a wrong one) is stopped by what is decoded."""
    upload = encode_audio(bytes(16000 * 2 * 12), 16000, "mp3")
    monkeypatch.setattr(codec, "_check_header", lambda *args: None)
    with pytest.raises(InputTooLargeError) as info:
        decode_audio(upload, max_seconds=5)
    assert info.value.code == "audio_too_long"


def test_ordinary_uploads_pass_the_limits() -> None:
    tone = (np.sin(np.arange(16000 * 2) / 8) * 8000).astype("<i2").tobytes()
    for rate in (8000, 16000, 48000):
        encoded = encode_audio(tone, 16000, "wav", output_rate=rate)
        pcm = decode_audio(encoded, max_seconds=5, source_rates=(8000, 192000))
        assert abs(len(pcm) - len(tone)) < 200


# -- event ids -----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["", "1", "a-b", "-1-0", "1-2-3", "18446744073709551616-0",
                                 "0-18446744073709551616", " 1-0"])
def test_malformed_event_ids_are_invalid_event_id(bad: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_event_id(bad)
    assert info.value.code == "invalid_event_id" and info.value.http_status == 400


def test_event_ids_redis_can_hold_are_fine() -> None:
    assert str(parse_event_id("18446744073709551615-18446744073709551615")).startswith("1844")
    assert str(parse_event_id("1700000000000-3")) == "1700000000000-3"


# -- session settings ----------------------------------------------------------------------

CHOICES = EngineChoices(voices=frozenset({"en_us-joe-medium", "de"}),
                        languages=("en", "de", "en-us", "pt-br"))


@pytest.mark.parametrize(("patch", "code"), [
    ({"voice": "../../etc/passwd"}, "invalid_settings"),
    ({"voice": "nobody"}, "unknown_voice"),
    ({"language": "xx-YY"}, "unsupported_language"),
    ({"language": "pt"}, "unsupported_language"),
    ({"sampling": {"stop": ["x"] * 10_000}}, "invalid_settings"),
    ({"sampling": {"stop": ["x" * 1000]}}, "invalid_settings"),
    ({"sampling": {"stop": [""]}}, "invalid_settings"),
    ({"system_prompt": "x" * 100_000}, "invalid_settings"),
])
def test_settings_the_engines_cannot_honour_are_refused_at_creation(
        patch: dict[str, object], code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        merge_settings(SessionSettings(), patch, CHOICES)
    assert info.value.code == code and info.value.http_status == 400


@pytest.mark.parametrize("patch", [
    {"voice": "en_US-joe-medium"}, {"voice": "DE"}, {"voice": None}, {"language": "en-GB"},
    {"language": "pt-BR"}, {"sampling": {"stop": ["User:"] * 16}},
])
def test_settings_the_engines_have_are_taken(patch: dict[str, object]) -> None:
    merge_settings(SessionSettings(), patch, CHOICES)


def test_only_what_the_client_sets_is_checked_against_the_engines() -> None:
    """A session made before the engines changed keeps working for unrelated updates."""
    settings = SessionSettings(voice="gone", language="xx")
    assert merge_settings(settings, {"speech_speed": 1.5}, CHOICES).voice == "gone"


def test_choices_from_a_description() -> None:
    none = EngineChoices.from_description({"engine": "x", "ready": True})
    assert none.voices is None and none.languages == ()
    merge_settings(SessionSettings(), {"voice": "any", "language": "xx"}, none)
    default_only = EngineChoices.from_description({"voices": [], "languages": ["en_US"]})
    with pytest.raises(ProtocolError, match="only the default"):
        merge_settings(SessionSettings(), {"voice": "anna"}, default_only)
    assert default_only.speaks("en-us") and not default_only.speaks("en")
