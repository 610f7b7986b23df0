"""Where the llama.cpp scheduler runs a prompt (``place``): a dialogue goes on in its own
sequence, and a new one never takes over another dialogue's cache while a sequence used
longer ago is free; the beginning every session shares is copied, not evaluated again."""

from __future__ import annotations

from pipeline.engines.llm._llama_cpp_requests import (
    MAX_LOST_TOKENS,
    MIN_COPY_TOKENS,
    Slot,
    place,
)

SHARED = list(range(100, 160))  # the system prompt and worked examples: 60 tokens


def _slot(seq_id: int, tokens: list[int], used: float, busy: bool = False) -> Slot:
    return Slot(seq_id, list(tokens), busy, used)


def test_a_dialogue_goes_on_in_its_own_sequence() -> None:
    mine = _slot(0, [*SHARED, 1, 2, 3, 4], used=1.0)
    other = _slot(1, [*SHARED, 9, 9], used=2.0)
    empty = _slot(2, [], used=0.0)
    placement = place([*SHARED, 1, 2, 3, 4, 5, 6], [mine, other, empty], [mine, other, empty])
    assert placement.slot is mine and placement.source is None
    assert placement.keep == len(SHARED) + 4


def test_a_new_dialogue_takes_an_empty_sequence_with_the_shared_part_copied() -> None:
    other = _slot(0, [*SHARED, *range(20)], used=5.0)
    empty = _slot(1, [], used=0.0)
    placement = place([*SHARED, 7, 7, 7], [other, empty], [other, empty])
    assert placement.slot is empty and placement.source is other
    assert placement.keep == len(SHARED)  # what the copy brings


def test_without_an_empty_one_the_sequence_used_longest_ago_is_given_up() -> None:
    recent = _slot(0, [*SHARED, *range(20)], used=5.0)
    oldest = _slot(1, [*SHARED, *range(30, 50)], used=1.0)
    middle = _slot(2, [*SHARED, *range(60, 80)], used=3.0)
    slots = [recent, oldest, middle]
    placement = place([*SHARED, 7, 7, 7], slots, slots)
    assert placement.slot is oldest
    assert placement.source is None  # it holds the shared part already


def test_when_the_best_match_is_the_oldest_it_is_taken_without_a_copy() -> None:
    oldest = _slot(0, [*SHARED, *range(20)], used=1.0)
    recent = _slot(1, list(range(500, 520)), used=5.0)
    placement = place([*SHARED, 7, 7, 7], [oldest, recent], [oldest, recent])
    assert placement.slot is oldest and placement.source is None


def test_a_busy_sequence_lends_its_cache_but_is_never_taken() -> None:
    busy = _slot(0, [*SHARED, *range(20)], used=5.0, busy=True)
    free = _slot(1, [], used=0.0)
    placement = place([*SHARED, 7, 7, 7], [free], [busy, free])
    assert placement.slot is free and placement.source is busy


def test_a_short_shared_part_is_evaluated_rather_than_copied() -> None:
    short = list(range(MIN_COPY_TOKENS - 1))
    other = _slot(0, [*short, *range(200, 230)], used=5.0)
    empty = _slot(1, [], used=0.0)
    placement = place([*short, 7, 7, 7], [other, empty], [other, empty])
    assert placement.slot is empty and placement.source is None
    assert placement.keep == 0


def test_a_few_lost_tokens_of_the_same_dialogue_do_not_move_it() -> None:
    """The end of the last reply, tokenized again: the same dialogue, kept in place."""
    mine = _slot(0, [*SHARED, *range(MAX_LOST_TOKENS)], used=5.0)
    empty = _slot(1, [], used=0.0)
    placement = place([*SHARED, 7, 7, 7], [mine, empty], [mine, empty])
    assert placement.slot is mine and placement.source is None
    more = _slot(0, [*SHARED, *range(MAX_LOST_TOKENS + 1)], used=5.0)
    assert place([*SHARED, 7, 7, 7], [more, empty], [more, empty]).slot is empty
