"""Voice turns in pairs, the native socket's and another way's (the OpenAI SDK, a phone
call, a WebRTC call), asking the same question one after the other: their p50s, the
ratio of those, and what each pair's other turn took beyond its native one.

Each pair follows the same question said once more, not measured: the LLM keeps a
dialogue's prompt cached, and whichever side asked a question second found all of it
there, 40-110 ms sooner to its first audio than the side that asked first (2026-12-01,
twelve pairs split by the log's times). Taking turns to go first only mixed the two kinds
of turn into each side's p50; asked once before, both sides find the same cache. The
pairs' differences leave the question's own length out.
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from loadtests._report import percentiles_ms

#: one turn: the spoken question (PCM16) → end of speech to first audio, ms (None: failed)
Turn = Callable[[bytes], Awaitable[float | None]]


async def paired_turns(native: Turn, other: Turn, name: str, questions: Sequence[bytes],
                       warm_up: bytes, exhausted: Callable[[], bool]) -> dict[str, Any]:
    """A pair of turns per question (native first, then the other first, by turns) after
    ``other``'s warm-up turn; stops early when ``exhausted()``. ``<name>_ms`` beside
    ``native_ms``, their p50 ratio, and ``paired``: each pair's other - native."""
    heard: dict[str, list[float]] = {"native": [], name: []}
    failed = {"native": 0, name: 0}
    added: list[float] = []
    turn = {"native": native, name: other}
    await other(warm_up)
    for i, pcm in enumerate(questions):
        await native(pcm)  # the question's prompt, cached for both
        pair: dict[str, float] = {}
        for kind in ("native", name) if i % 2 == 0 else (name, "native"):
            value = await turn[kind](pcm)
            if value is None:
                failed[kind] += 1
            else:
                heard[kind].append(value)
                pair[kind] = value
        if len(pair) == 2:
            added.append(pair[name] - pair["native"])
        if exhausted():
            break
    native_ms, other_ms = percentiles_ms(heard["native"]), percentiles_ms(heard[name])
    ratio = (round(other_ms["p50"] / native_ms["p50"], 3)
             if native_ms and other_ms and native_ms["p50"] > 0 else None)
    return {"turns": {k: len(v) for k, v in heard.items()}, "failed": failed,
            "native_ms": native_ms, f"{name}_ms": other_ms, "ratio_p50": ratio,
            "paired": {"added_p50_ms": round(statistics.median(added), 1) if added else None,
                       "added_ms": [round(a, 1) for a in added]}}
