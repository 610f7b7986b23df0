"""The capacity runner's headline: how many sessions a run held, and when that bound is an
outlier's.

A step holds when its p95 (voice-to-voice, or TTFA for typed turns only) is within twice
the one-session step's p95, with no turn failed or refused; the steps are read in order
and the first that does not hold ends the count.
"""

from __future__ import annotations

from typing import Any


def headline(steps: list[dict[str, Any]], measure: str = "voice_to_voice_ms",
             ) -> tuple[float | None, int | None]:
    """(idle p95, sessions held) of ``measure``: see the module docstring."""
    if not steps or not steps[0][measure]:
        return None, None
    idle = steps[0][measure]["p95"]
    held = None
    for step in steps:
        v2v = step[measure]
        if (v2v is None or v2v["p95"] > 2 * idle or step["failed_turns"] or step["refusals"]):
            break
        held = step["sessions"]
    return idle, held


#: a one-session step whose p95 is past this many times its p50 holds an outlier turn (a
#: misheard question that waited ``turn_incomplete_ms``): twice that p95 is a loose bound
LOOSE_BOUND_RATIO = 2.0


def bound_caution(steps: list[dict[str, Any]], measure: str = "voice_to_voice_ms",
                  ) -> str | None:
    """What to say beside "held" when the one-session step's p95 is an outlier's (a few
    turns a step make its p95 its slowest turn), else None."""
    if not steps or not steps[0][measure]:
        return None
    alone = steps[0][measure]
    if alone["p95"] <= LOOSE_BOUND_RATIO * alone["p50"]:
        return None
    return (f"caution: the one-session p95 ({alone['p95']:.0f} ms) is over "
            f"{LOOSE_BOUND_RATIO:g}× its p50 ({alone['p50']:.0f} ms): an outlier turn sets "
            "the bound, so read the sessions held beside each step's p95")
