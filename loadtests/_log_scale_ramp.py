"""A ramp of load steps, as :mod:`loadtests.bench_log_scale` runs each phase: a step's
figures and verdict, the next load up by a factor until a step fails twice, and what was
sustained (the best step that held, the one that did not, the CPU at both)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from loadtests._process_cpu import CpuMeter, CpuWindow


@dataclass(frozen=True)
class Step:
    """One step of a ramp: its figures (as reported) and whether it held the bound."""

    figures: dict[str, Any]
    passed: bool
    why: list[str]


async def ramp(first: float, factor: float, max_steps: int, deadline: float,
               measure: Callable[[float], Awaitable[Step]]) -> dict[str, Any]:
    """Steps from ``first`` up by ``factor`` until one fails (the limit), ``max_steps``
    or the deadline; the best passing step is what was sustained."""
    steps: list[Step] = []
    load = first
    stopped = f"{max_steps} loads, all held"
    for _ in range(max_steps):
        if time.monotonic() > deadline:
            stopped = "the time budget ran out"
            break
        step = await confirmed(measure, load, steps)
        if not step.passed:
            stopped = "a step failed twice: " + "; ".join(step.why)
            break
        load *= factor
    return {**outcome(steps), "stopped": stopped}


async def confirmed(measure: Callable[[float], Awaitable[Step]], load: float,
                    steps: list[Step], prefix: str = "") -> Step:
    """One step at ``load``; a step that fails is measured once more and the second
    answer stands: one window can fail on a neighbour's burst or a collector's pause, and
    a limit should be the load's, not the moment's. Both are kept in ``steps``."""
    for attempt in (1, 2):
        step = await measure(load)
        steps.append(step)
        print(f"    {prefix}{_line(step)}", flush=True)
        if step.passed:
            break
        step.figures["attempt"] = attempt
    return step


def outcome(steps: list[Step]) -> dict[str, Any]:
    """What a ramp sustained (its best passing step), where it stopped, and why."""
    best = max((s for s in steps if s.passed), key=lambda s: s.figures["events_per_s"],
               default=None)
    failed = steps[-1] if steps and not steps[-1].passed else None
    return {
        "sustained_events_per_s": best.figures["events_per_s"] if best else 0.0,
        "p99_ms_at_sustained": best.figures["latency_ms"]["p99"] if best else None,
        "projected_events_per_s_busiest_primary_full": projected(steps),
        "limit": None if failed is None else {
            "at": failed.figures["offered"], "why": failed.why,
            "cpu": failed.figures["cpu"]},
        "cpu_at_sustained": best.figures["cpu"] if best else None,
        "others_max_pct_of_one_core": max(
            (s.figures["cpu"]["other_processes_pct_of_one_core"] for s in steps), default=0.0),
        "steps": [{**s.figures, "passed": s.passed, "why": s.why} for s in steps],
    }


def projected(steps: list[Step]) -> float | None:
    """The events/s at which the busiest Redis primary would use its whole core: a line
    fitted through the steps' (events/s, its CPU) and extended to 100 % (a projection,
    not a measure; one step: through the origin). What the log itself could take were
    its clients not short of cores, which on a small machine they are first."""
    points = [(float(s.figures["events_per_s"]),
               float(s.figures["cpu"]["hottest_process_pct"].get("redis primaries") or 0))
              for s in steps if s.figures["events_per_s"] > 0]
    points = [(x, y) for x, y in points if y > 0]
    if not points:
        return None
    xs = [x for x, _ in points]
    if len(points) >= 2 and max(xs) > 1.2 * min(xs):
        mean_x = sum(xs) / len(xs)
        mean_y = sum(y for _, y in points) / len(points)
        slope = (sum((x - mean_x) * (y - mean_y) for x, y in points)
                 / sum((x - mean_x) ** 2 for x in xs))
        if slope > 0:
            return float(round((100 - (mean_y - slope * mean_x)) / slope))
    x, y = max(points)
    return float(round(x * 100 / y))


def _line(step: Step) -> str:
    f = step.figures
    cpu = f["cpu"]
    groups = ", ".join(f"{k} {v:.0f}%" for k, v in cpu["cpu_pct_of_one_core"].items())
    verdict = "held" if step.passed else "FAILED (" + "; ".join(step.why) + ")"
    trips = "".join(f", {label} {f[key]}" for key, label in (
        ("appends_per_round_trip", "appends/trip"), ("live_reads_per_event", "reads/event"),
        ("live_pushes_per_event", "pushes/event"))
        if f.get(key) is not None)
    return (f"offered {f['offered']}: {f['events_per_s']:.0f} events/s, p99 "
            f"{f['latency_ms']['p99']:.1f} ms, p50 {f['latency_ms']['p50']:.1f} ms{trips}; "
            f"CPU {groups}, machine {cpu['machine_pct_of_all_cores']:.0f}% -> {verdict}")


async def cpu_over(meter: CpuMeter, start: float, end: float) -> CpuWindow:
    """The meter over ``[start, end]`` (wall clock)."""
    await asyncio.sleep(max(start - time.time(), 0))
    meter.start()
    await asyncio.sleep(max(end - time.time(), 0))
    return meter.stop()


def rounded(values: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 2) for k, v in values.items()}
