"""Client messages: every malformed or oversized message is refused with a stable code."""

from __future__ import annotations

import base64
import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import (
    ErrorCode,
    InputAudioAppend,
    InputTextMessage,
    ProtocolError,
    ResponseCancel,
    SessionResume,
    SessionUpdate,
    parse_client_message,
)


def parse(obj: object, **limits: int) -> object:
    return parse_client_message(json.dumps(obj), **limits)


def test_valid_messages() -> None:
    audio = base64.b64encode(b"\x01\x00\x02\x00").decode()
    assert isinstance(parse({"type": "input_audio.append", "audio": audio}), InputAudioAppend)
    assert parse({"type": "input.text", "text": "hi"}) == InputTextMessage(text="hi")
    assert isinstance(parse({"type": "response.cancel"}), ResponseCancel)
    assert isinstance(parse({"type": "session.update", "settings": {"voice": "x"}}), SessionUpdate)
    assert isinstance(parse({"type": "session.resume", "last_event_id": "12-0"}), SessionResume)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{not json", ErrorCode.INVALID_JSON),
        (b"\xff\xfe", ErrorCode.INVALID_JSON),
        ("[1, 2]", ErrorCode.INVALID_MESSAGE),
        ('{"type": "input.txt", "text": "hi"}', ErrorCode.UNKNOWN_MESSAGE_TYPE),
        ('{"text": "hi"}', ErrorCode.UNKNOWN_MESSAGE_TYPE),
        ('{"type": "input.text"}', ErrorCode.INVALID_MESSAGE),
        ('{"type": "input.text", "text": ""}', ErrorCode.INVALID_MESSAGE),
        ('{"type": "input.text", "text": "hi", "extra": 1}', ErrorCode.INVALID_MESSAGE),
        ('{"type": "input_audio.append", "audio": "***"}', ErrorCode.INVALID_AUDIO),
        ('{"type": "input_audio.append", "audio": 5}', ErrorCode.INVALID_AUDIO),
        ('{"type": "session.resume", "last_event_id": "x"}', ErrorCode.INVALID_MESSAGE),
    ],
)
def test_bad_messages_get_codes(raw: str | bytes, code: ErrorCode) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_client_message(raw)
    assert info.value.code is code
    assert info.value.http_status // 100 == 4


def test_oversized_message_is_refused_before_parsing() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_client_message("{" * 2000, max_bytes=1000)
    assert info.value.code is ErrorCode.MESSAGE_TOO_LARGE
    assert info.value.details == {"limit": 1000, "size": 2000}


def test_text_over_the_limit() -> None:
    with pytest.raises(ProtocolError) as info:
        parse({"type": "input.text", "text": "a" * 11}, max_text_chars=10)
    assert info.value.code is ErrorCode.TEXT_TOO_LONG


@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_parser_never_raises_anything_but_protocol_errors(raw: str | bytes) -> None:
    try:
        parse_client_message(raw)
    except ProtocolError as exc:
        assert exc.code in set(ErrorCode)


@given(
    st.dictionaries(
        st.sampled_from(["type", "text", "audio", "settings", "last_event_id", "event_id"]),
        st.one_of(
            st.none(),
            st.integers(),
            st.text(max_size=20),
            st.sampled_from(
                ["input.text", "input_audio.append", "session.update", "response.cancel"]
            ),
        ),
    )
)
def test_parser_on_random_objects(obj: dict[str, object]) -> None:
    with contextlib.suppress(ProtocolError):  # anything else escaping fails the test
        parse(obj)
