"""The case table of the streaming sentence buffer (`pipeline.reply.sentences`), whose rows
live in ``tests/support/sentence_cases.py`` (the property tests draw on them too).

Every case is checked three ways: all at once, one character at a time and one word at a
time, so each row also pins chunking invariance for its text.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from pipeline.reply import SentenceBuffer, SentenceBufferConfig, split_stream, split_text
from pipeline.reply._markdown import speakable
from pipeline.reply.sentences import VOICE_FIRST_PIECE
from tests.support.sentence_cases import CASES, Case


def _pieces(text: str, config: SentenceBufferConfig, chunks: list[str]) -> list[str]:
    buffer = SentenceBuffer(config)
    pieces = [piece for chunk in chunks for piece in buffer.push(chunk)]
    return pieces + buffer.flush()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case_table(case: Case) -> None:
    config = case.config()
    assert split_text(case.text, config) == case.pieces
    assert _pieces(case.text, config, list(case.text)) == case.pieces
    assert _pieces(case.text, config, re.findall(r"\S+|\s+", case.text)) == case.pieces


def test_case_table_is_large_and_ids_unique() -> None:
    assert len(CASES) >= 80
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_pieces_join_to_speakable_text(case: Case) -> None:
    pieces = split_text(case.text, case.config())
    assert all(p and p == p.strip() for p in pieces)
    assert "".join("".join(pieces).split()) == "".join(speakable(case.text).split())


def test_pushes_return_pieces_as_soon_as_they_are_decided() -> None:
    buffer = SentenceBuffer()
    assert buffer.push("Sure thing, I can help you") == []
    assert buffer.push(" with that,") == []  # is the comma inside a number?
    assert buffer.push(" and") == ["Sure thing, I can help you with that,"]
    assert buffer.push(" here is how it works.") == []  # needs the next word
    assert buffer.push(" Then") == ["and here is how it works."]
    assert buffer.flush() == ["Then"]


def test_buffer_is_reusable_after_flush() -> None:
    buffer = SentenceBuffer()
    assert buffer.push("Hello there. How") == ["Hello there."]
    assert buffer.flush() == ["How"]
    assert buffer.push("Dr. Who is here, and he is fine. ") == []
    assert buffer.flush() == ["Dr. Who is here, and he is fine."]


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        SentenceBufferConfig(first_piece_min_words=0)
    with pytest.raises(ValueError):
        SentenceBufferConfig(max_piece_chars=0)


async def _deltas(items: list[str]) -> AsyncIterator[str]:
    for item in items:
        yield item


async def test_split_stream_yields_what_push_and_flush_return() -> None:
    text = "Sure thing, I can help you with that. Dr. Smith is in at 7:30. Bye."
    tokens = re.findall(r"\S+|\s+", text)
    pieces = [p async for p in split_stream(_deltas(tokens))]
    assert pieces == split_text(text)


async def test_split_stream_closes_its_source() -> None:
    closed = False

    async def source() -> AsyncIterator[str]:
        nonlocal closed
        try:
            yield "First sentence is here. "
            yield "Second sentence is here. "
            yield "Third."
        finally:
            closed = True

    stream = split_stream(source())
    assert await anext(stream) == "First sentence is here."
    await stream.aclose()  # type: ignore[attr-defined]
    assert closed


def test_the_likely_first_piece_follows_the_last_word_until_the_cut() -> None:
    buffer = SentenceBuffer(VOICE_FIRST_PIECE)
    assert buffer.push("The capital of") == []
    assert buffer.likely_first_piece() is None  # three words of four
    assert buffer.push(" Ott") == []
    assert buffer.likely_first_piece() == "The capital of Ott"
    assert buffer.push("awa") == []  # the word went on
    assert buffer.likely_first_piece() == "The capital of Ottawa"
    assert buffer.push(" is") == ["The capital of Ottawa"]
    assert buffer.likely_first_piece() is None  # the first piece is cut: no more guesses


def test_no_likely_first_piece_after_a_mark_in_a_number_or_inside_a_quote() -> None:
    buffer = SentenceBuffer(VOICE_FIRST_PIECE)
    assert buffer.push("Well, the capital of") == []
    assert buffer.likely_first_piece() == "Well, the capital of"
    assert buffer.push(",") == []
    assert buffer.likely_first_piece() is None
    number = SentenceBuffer(VOICE_FIRST_PIECE)
    assert number.push("A week is 3") == []
    assert number.likely_first_piece() is None  # "365" comes a digit at a time
    quoted = SentenceBuffer(VOICE_FIRST_PIECE)
    quoted.push('He said "the capital of')
    assert quoted.likely_first_piece() is None
