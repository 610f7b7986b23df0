"""Word error rate: how far a transcript's words are from what was said.

Case, punctuation and hyphens do not count ("go-come-out" is three words), only word
choice: a Levenshtein distance over words, summed over a corpus and divided by the
reference's words. Digits are not words here, so "10 minutes" for "ten minutes" counts as
one miss, the same for every engine compared. Used by ``voxline evaluate``, the STT
benchmarks and the tests.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["normalize", "reported_wer", "wer", "word_errors"]

_WORD = re.compile(r"[a-zäöüß']+")


def normalize(text: str) -> list[str]:
    """Lower case, punctuation and hyphens away, so only word choice counts."""
    return _WORD.findall(text.lower().replace("-", " "))


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edit distance in words, reference word count): Levenshtein over words."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, start=1):
        current = [i]
        for j, hyp_word in enumerate(hyp, start=1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_word != hyp_word))
            )
        previous = current
    return previous[-1], len(ref)


def wer(pairs: list[tuple[str, str]]) -> float:
    """Corpus word error rate over (reference, hypothesis) pairs."""
    errors = total = 0
    for reference, hypothesis in pairs:
        e, n = word_errors(reference, hypothesis)
        errors += e
        total += n
    return errors / max(total, 1)


def reported_wer(pairs: Sequence[tuple[str, str]]) -> float | None:
    """:func:`wer` as a report gives it: to four places, and None where the references
    hold no word (nothing to measure, not a perfect score)."""
    pairs = list(pairs)
    if not any(normalize(reference) for reference, _ in pairs):
        return None
    return round(wer(pairs), 4)
