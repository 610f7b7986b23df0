"""Redacting personal data from what a user says or types, before anything keeps it.

What is found, and how (each checked, so an ordinary number is not taken for one):

* ``email``: an address (local part, ``@``, a dotted domain);
* ``phone``: Google's libphonenumber (the ``phonenumbers`` package, offline metadata)
  finds numbers it can parse for the session's region, international ones anywhere;
* ``card``: 13–19 digits (spaces or dashes between groups) that pass the Luhn check;
* ``iban``: a country code, two check digits and up to 30 letters or digits that pass the
  ISO 13616 mod-97 check.

Speech comes as words: a transcript saying "four one one one one one ..." is read with
each run of spoken digits ("zero" to "nine", "oh", "double five") as the digits it says,
so a card or a phone number read aloud is found and its words replaced as typed ones are.
A match becomes ``[email]``, ``[phone]``, ``[card]`` or ``[iban]``.

Why not Presidio: its analyzer engine needs spaCy and a downloaded language model; its
recognizers for these four kinds are the same patterns and checksums, which need neither.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import phonenumbers

__all__ = ["ENTITIES", "Entity", "Redacted", "redact", "redacted_for", "region_of"]

Entity = Literal["email", "phone", "card", "iban"]
ENTITIES: tuple[Entity, ...] = ("email", "phone", "card", "iban")

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_DIGIT_WORDS = {"zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3",
                "four": "4", "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9"}
_WORD = re.compile(r"[A-Za-z]+|\d+|[^\sA-Za-z\d]")


@dataclass(frozen=True)
class Redacted:
    """The text with its matches replaced, and what was found (kinds, in order)."""

    text: str
    found: tuple[Entity, ...] = ()


def redact(text: str, kinds: Sequence[Entity], *, region: str = "US") -> Redacted:
    """``text`` with every match of ``kinds`` replaced (see the module docstring)."""
    if not kinds or not text:
        return Redacted(text)
    spoken, spans = _spoken_digits(text)
    found: list[tuple[int, int, Entity]] = []
    for kind in ENTITIES:
        if kind in kinds:
            found += [(start, end, kind) for start, end in _find(kind, spoken, region)]
    if not found:
        return Redacted(text)
    found = _without_overlaps(found)
    out, last = [], 0
    for start, end, kind in found:  # spans of the read text → spans of the original
        real_start, real_end = spans[start][0], spans[end - 1][1]
        out += [text[last:real_start], f"[{kind}]"]
        last = real_end
    out.append(text[last:])
    return Redacted("".join(out), tuple(kind for _, _, kind in found))


#: the region a language's phone numbers are read for when its tag names none
_REGIONS = {"en": "US", "de": "DE", "fr": "FR", "es": "ES", "it": "IT", "nl": "NL",
            "pt": "PT", "pl": "PL", "sv": "SE", "da": "DK", "nb": "NO", "fi": "FI"}


def region_of(language: str) -> str:
    """The region of a language tag (``de-AT`` → AT), for reading national phone numbers."""
    primary, _, region = language.partition("-")
    return region.upper() if region else _REGIONS.get(primary.lower(), "US")


def redacted_for(text: str, kinds: Sequence[Entity], language: str) -> str:
    """:func:`redact` as a session with these settings asks (its language's region)."""
    return redact(text, kinds, region=region_of(language)).text if kinds else text


def _find(kind: Entity, text: str, region: str) -> Iterable[tuple[int, int]]:
    if kind == "email":
        return ((m.start(), m.end()) for m in _EMAIL.finditer(text))
    if kind == "card":
        return ((m.start(), m.end()) for m in _CARD.finditer(text) if _luhn(m.group()))
    if kind == "iban":
        return ((m.start(), m.end()) for m in _IBAN.finditer(text) if _iban_ok(m.group()))
    return ((m.start, m.end) for m in phonenumbers.PhoneNumberMatcher(text, region))


def _luhn(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:
        return False
    total = 0
    for position, digit in enumerate(reversed(digits)):
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def _iban_ok(candidate: str) -> bool:
    compact = candidate.replace(" ", "")
    moved = compact[4:] + compact[:4]
    as_number = "".join(str(int(c, 36)) for c in moved)
    return len(compact) >= 15 and int(as_number) % 97 == 1


def _spoken_digits(text: str) -> tuple[str, list[tuple[int, int]]]:
    """The text with runs of spoken digits written as digits, and for each character of
    it the span of the original it stands for (to replace the words themselves)."""
    out: list[str] = []
    spans: list[tuple[int, int]] = []
    tokens = list(_WORD.finditer(text))
    i = 0
    position = 0
    while i < len(tokens):
        token = tokens[i]
        if position < token.start():  # the whitespace before it, kept
            for offset in range(position, token.start()):
                out.append(text[offset])
                spans.append((offset, offset + 1))
        digits, j = _digit_run(tokens, i)
        if len(digits) >= 4:  # "four one one one ..." : a number read aloud
            start, end = tokens[i].start(), tokens[j - 1].end()
            for digit in digits:
                out.append(digit)
                spans.append((start, end))
            i, position = j, end
            continue
        for offset in range(token.start(), token.end()):
            out.append(text[offset])
            spans.append((offset, offset + 1))
        i, position = i + 1, token.end()
    for offset in range(position, len(text)):
        out.append(text[offset])
        spans.append((offset, offset + 1))
    return "".join(out), spans


def _digit_run(tokens: list[re.Match[str]], i: int) -> tuple[str, int]:
    """The digits a run of spoken-digit words from ``tokens[i]`` says, and where it ends
    (commas and dashes inside a run are read through)."""
    digits = ""
    j = i
    while j < len(tokens):
        word = tokens[j].group().lower()
        if word in _DIGIT_WORDS and not (word in ("o", "oh") and not digits):
            digits += _DIGIT_WORDS[word]
        elif word in ("double", "triple") and j + 1 < len(tokens) and (
                tokens[j + 1].group().lower() in _DIGIT_WORDS):
            times = 2 if word == "double" else 3
            digits += _DIGIT_WORDS[tokens[j + 1].group().lower()] * times
            j += 1
        elif word.isdigit() and digits:
            digits += word
        elif word in (",", "-") and digits:
            pass
        else:
            break
        j += 1
    return digits, j


def _without_overlaps(found: list[tuple[int, int, Entity]]) -> list[tuple[int, int, Entity]]:
    """The longest match wins where two overlap (a card number is no phone number)."""
    kept: list[tuple[int, int, Entity]] = []
    for span in sorted(found, key=lambda s: (s[0], -(s[1] - s[0]))):
        if kept and span[0] < kept[-1][1]:
            continue
        kept.append(span)
    return kept
