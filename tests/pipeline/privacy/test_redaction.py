"""Redaction: each kind found typed and spoken (digits read aloud), checked so ordinary
numbers and sentences are left alone; property tests that redaction never fails and is
idempotent."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loadtests._turn_corpus import CORPUS
from loadtests.bench_answers import load_sheet
from pipeline.privacy import ENTITIES, redact, redacted_for, region_of

ALL = ENTITIES


@pytest.mark.parametrize(("text", "expected", "kind"), [
    ("Mail me at jane.doe@example.com please.", "Mail me at [email] please.", "email"),
    ("My card is 4111 1111 1111 1111, thanks.", "My card is [card], thanks.", "card"),
    ("card 5500-0000-0000-0004 ok", "card [card] ok", "card"),
    ("Call me on 415-555-0132 tomorrow.", "Call me on [phone] tomorrow.", "phone"),
    ("Ring +44 20 7946 0958 now.", "Ring [phone] now.", "phone"),
    ("IBAN DE89 3704 0044 0532 0130 00 please", "IBAN [iban] please", "iban"),
    ("Pay GB29NWBK60161331926819.", "Pay [iban].", "iban"),
])
def test_each_kind_typed(text: str, expected: str, kind: str) -> None:
    result = redact(text, ALL)
    assert result.text == expected and result.found == (kind,)


@pytest.mark.parametrize(("text", "expected"), [
    ("my card number is four one one one one one one one one one one one one one one one",
     "my card number is [card]"),
    ("call me on four one five, five five five, zero one three two please",
     "call me on [phone] please"),
    ("it's four one five double five five oh one three two", "it's [phone]"),
])
def test_numbers_read_aloud_are_found_in_transcripts(text: str, expected: str) -> None:
    assert redact(text, ALL).text == expected


@pytest.mark.parametrize("text", [
    "I have 3 cats and 12 dogs, born in 1999.",
    "The meeting is at 10:30 on 2024-05-01.",
    "It costs 2.40 euros, or 1,299 dollars for four.",
    "One two three four, let's go.",
    "Card 4111 1111 1111 1112 fails its check.",  # not Luhn-valid
    "Order number 1234567890123.",
    "Write to me at the office.",
])
def test_ordinary_numbers_are_left_alone(text: str) -> None:
    assert redact(text, ALL).text == text


def test_no_sentence_of_the_turn_corpus_or_the_answer_sheet_is_redacted() -> None:
    sentences = [line.text for line in CORPUS] + [item["q"] for item in load_sheet()]
    assert len(sentences) > 30
    changed = [s for s in sentences if redact(s, ALL).text != s]
    assert changed == []


def test_only_the_kinds_asked_for_and_the_languages_region() -> None:
    text = "jane@example.com, 030 1234567"
    assert redact(text, ("email",)).text == "[email], 030 1234567"
    assert redacted_for(text, ("phone",), "de-DE") == "jane@example.com, [phone]"
    assert region_of("de") == "DE" and region_of("en-GB") == "GB"
    assert redacted_for(text, (), "en") == text


@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_redaction_never_fails_and_is_idempotent(text: str) -> None:
    once = redact(text, ALL).text
    assert redact(once, ALL).text == once
