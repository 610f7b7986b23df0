"""Word error rate: only word choice counts (case, punctuation, hyphens do not), summed
over a corpus; a report's figure is rounded, and None where nothing could be measured."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from voxline.word_errors import normalize, reported_wer, wer, word_errors


def test_only_word_choice_counts() -> None:
    assert normalize("Go-come-out, NOW!") == ["go", "come", "out", "now"]
    assert word_errors("the capital of France", "The capital, of France.") == (0, 4)
    assert word_errors("the capital of France", "a capital France is") == (3, 4)


def test_a_corpus_rate_sums_errors_over_reference_words() -> None:
    pairs = [("one two three", "one too three"), ("four", "")]
    assert wer(pairs) == 2 / 4
    assert reported_wer(pairs) == 0.5
    assert reported_wer([("a b c", "a b")]) == 0.3333


def test_no_reference_word_is_no_figure_not_a_perfect_score() -> None:
    assert reported_wer([]) is None
    assert reported_wer([("...", "something said")]) is None
    assert wer([("...", "something said")]) == 2.0  # the plain rate: insertions over one


words = st.lists(st.sampled_from(["the", "a", "cat", "sat", "mat"]), max_size=8).map(" ".join)


@given(st.lists(st.tuples(words, words), max_size=5))
def test_the_reported_rate_is_the_rate_recomputed(pairs: list[tuple[str, str]]) -> None:
    total = sum(len(normalize(reference)) for reference, _ in pairs)
    errors = sum(word_errors(reference, said)[0] for reference, said in pairs)
    assert reported_wer(pairs) == (round(errors / total, 4) if total else None)
