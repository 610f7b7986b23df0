"""Pairs of turns against the native socket: the same question to both, the native
side's warming turn first, who goes first by turns, failures counted, each pair's
difference kept."""

from __future__ import annotations

import pytest

from loadtests._paired_turns import paired_turns


async def test_pairs_ask_the_same_question_after_a_warming_turn_and_keep_differences() -> None:
    asked: list[tuple[str, bytes]] = []
    native_ms = iter([None, 100.0, None, 110.0, None, 120.0])  # warming, measured, ...
    other_ms = iter([None, 130.0, 105.0, None])  # its warm-up, then a turn that fails

    async def native(pcm: bytes) -> float | None:
        asked.append(("native", pcm))
        return next(native_ms)

    async def other(pcm: bytes) -> float | None:
        asked.append(("webrtc", pcm))
        return next(other_ms)

    found = await paired_turns(native, other, "webrtc", [b"a", b"b", b"c"], b"w",
                               lambda: False)
    assert asked == [("webrtc", b"w"),
                     ("native", b"a"), ("native", b"a"), ("webrtc", b"a"),
                     ("native", b"b"), ("webrtc", b"b"), ("native", b"b"),
                     ("native", b"c"), ("native", b"c"), ("webrtc", b"c")]
    assert found["turns"] == {"native": 3, "webrtc": 2}
    assert found["failed"] == {"native": 0, "webrtc": 1}
    assert found["paired"] == {"added_p50_ms": 12.5, "added_ms": [30.0, -5.0]}
    assert found["ratio_p50"] == pytest.approx(round(117.5 / 110.0, 3))


async def test_an_exhausted_budget_ends_the_pairs() -> None:
    async def turn(pcm: bytes) -> float | None:
        return 100.0

    found = await paired_turns(turn, turn, "phone", [b"a", b"b"], b"w", lambda: True)
    assert found["turns"] == {"native": 1, "phone": 1}
