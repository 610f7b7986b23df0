"""The dialogue history handed to the LLM: bounded in tokens and turns, trimmed in blocks
so the prompt's prefix stays identical from turn to turn until a block is dropped."""

from __future__ import annotations

import itertools

import schemas as s
from pipeline.log import fold
from pipeline.log.history import turn_cost, window_start


def answered(session: str, n: int, *, chars: int = 40) -> list[s.EventBase]:
    events: list[s.EventBase] = [s.SessionCreated(
        session_id=session, data=s.SessionCreatedData(settings=s.SessionSettings()))]
    for i in range(n):
        turn = f"t{i}"
        events += [
            s.InputText(session_id=session, turn_id=turn,
                        data=s.InputTextData(text=f"q{i:03d}".ljust(chars, "?"))),
            s.ResponseStarted(session_id=session, turn_id=turn),
            s.ResponseDone(session_id=session, turn_id=turn,
                           data=s.ResponseDoneData(text=f"a{i:03d}".ljust(chars, "."))),
        ]
    return events


def prompts(window: s.HistorySettings, turns: int) -> list[list[s.ChatMessage]]:
    """The history each of ``turns`` consecutive turns would hand the LLM."""
    events = answered("p", turns)
    state = fold("p", events[:1])  # type: ignore[arg-type]
    seen = []
    for event in events[1:]:
        if event.type == "input.text":
            seen.append(state.history(window))
        state.apply(event)  # type: ignore[arg-type]
    return seen


def test_the_prefix_holds_between_trims_and_a_trim_drops_a_block() -> None:
    window = s.HistorySettings(max_tokens=400, max_turns=1000)
    seen = prompts(window, 60)
    trims = [i for i in range(1, len(seen)) if seen[i][: len(seen[i - 1])] != seen[i - 1]]
    assert trims, "the budget was never reached"
    for i in range(1, len(seen)):
        if i not in trims:  # the previous prompt, then the last exchange
            assert seen[i][: len(seen[i - 1])] == seen[i - 1]
            assert len(seen[i]) == len(seen[i - 1]) + 2
    # a trim drops many turns at once, so trims are far apart
    assert all(b - a >= 3 for a, b in itertools.pairwise(trims))
    cost = turn_cost("q000".ljust(40, "?"), "a000".ljust(40, "."), window)
    for history in seen:
        assert (len(history) - 1) // 2 * cost <= window.max_tokens
    # the system prompt always leads
    assert all(h[0].role == "system" for h in seen)


def test_a_turn_limit_trims_in_blocks_too() -> None:
    window = s.HistorySettings(max_tokens=100_000, max_turns=10)
    seen = prompts(window, 40)
    shown = [(len(h) - 1) // 2 for h in seen]
    assert max(shown) == 10
    assert shown[:12] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 5]


def test_costs_are_conservative_estimates() -> None:
    window = s.HistorySettings(chars_per_token=3.0)
    assert turn_cost("a" * 30, "", window) == 10 + 4
    assert turn_cost("a" * 30, "b" * 31, window) == 21 + 8


def test_the_window_restarts_where_it_stands() -> None:
    """Forgetting the turns before the window changes nothing: the rule restarted at the
    window's start agrees with the rule run from the first turn."""
    window = s.HistorySettings(max_tokens=50, max_turns=7)
    costs = [(7 * i) % 23 + 1 for i in range(200)]
    for n in range(len(costs)):
        start = window_start(costs[:n], window)
        for later in range(n, min(n + 20, len(costs))):
            assert window_start(costs[:later], window) >= start
            assert (window_start(costs[start:later], window) + start
                    == window_start(costs[:later], window))


def test_a_turn_over_the_whole_budget_is_not_shown() -> None:
    window = s.HistorySettings(max_tokens=10)
    assert window_start([100], window) == 1
    assert window_start([100, 3], window) == 1
    assert window_start([], window) == 0


def test_a_live_fold_that_forgets_shows_what_a_full_fold_shows() -> None:
    window = s.HistorySettings(max_tokens=300, max_turns=12)
    events = answered("f", 50)
    live = fold("f", events[:1])  # type: ignore[arg-type]
    for k, event in enumerate(events[1:], start=2):
        live.apply(event)  # type: ignore[arg-type]
        live.forget_turns(window)
        full = fold("f", events[:k])  # type: ignore[arg-type]
        assert live.history(window) == full.history(window)
    assert len(live.turns) <= 13
