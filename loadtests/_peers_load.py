"""The load bench_peers puts on either framework: simulated users in steps, as capacity's.

A :class:`Side` is a framework as the load sees it: how to open a conversation (a
:class:`~loadtests._peers_client.Line`), the rate its reply audio comes at, and how to read
what its processes spent (``snapshot`` then ``between``: CPU-seconds per group) and which
groups hold the models. :func:`run_step` holds ``sessions`` users for ``step_s``: each
user's first turn after a draw of up to ``stagger_s``, then conversations of
``turns_per_session`` turns with a think time between turns, a fresh conversation after
that or after a failed turn; the step's CPU is read at its start and end. Every user stops
at the step's end (a turn already begun finishes, within the client's turn timeout, and a
conversation opened has its first turn: opening one may take seconds).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import psutil

from loadtests._cpu_attribution import machine_busy_s
from loadtests._peers_client import Line, voice_turn
from loadtests._process_cpu import process_cpu_s
from loadtests._report import percentiles_ms


@dataclass
class Side:
    """One framework under load (see the module docstring)."""

    name: str
    open_line: Callable[[], AbstractAsyncContextManager[Line]]
    output_rate: int
    snapshot: Callable[[], Any]
    between: Callable[[Any, Any], dict[str, float]]
    model_groups: frozenset[str]


@dataclass(frozen=True)
class Pace:
    """How the simulated users behave."""

    turns_per_session: int = 3
    think_s: tuple[float, float] = (1.0, 3.0)
    stagger_s: float = 5.0


@dataclass
class Step:
    sessions: int
    v2v: list[float] = field(default_factory=list)
    reply_s: list[float] = field(default_factory=list)
    completed: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    cpu: dict[str, float] = field(default_factory=dict)
    machine_cpu_s: float = 0.0
    runner_cpu_s: float = 0.0
    seconds: float = 0.0
    load_avg: tuple[float, float] = (0.0, 0.0)

    def summary(self, model_groups: frozenset[str]) -> dict[str, Any]:
        turns = self.completed
        models = sum(v for g, v in self.cpu.items() if g in model_groups)
        rest = sum(v for g, v in self.cpu.items() if g not in model_groups)

        def per_turn(value: float) -> float | None:
            return round(value / turns, 4) if turns else None

        return {
            "sessions": self.sessions,
            "seconds": round(self.seconds, 1),
            "completed_turns": turns,
            "failed_turns": sum(self.failed.values()),
            "failed_by_outcome": dict(self.failed),
            "refusals": self.failed["overloaded"] + self.failed["engine_overloaded"],
            "voice_to_voice_ms": percentiles_ms(self.v2v),
            "reply_audio_s_mean": round(sum(self.reply_s) / len(self.reply_s), 2)
            if self.reply_s else None,
            "cpu_s_per_turn": {
                "models": per_turn(models), "rest": per_turn(rest),
                "all_processes": per_turn(models + rest)},
            "cpu_s_per_turn_by_group": {g: per_turn(v) for g, v in sorted(self.cpu.items())},
            "cpu_s_total": {g: round(v, 3) for g, v in sorted(self.cpu.items())},
            "machine_cpu_s_per_turn": per_turn(self.machine_cpu_s),
            "runner_cpu_s_total": round(self.runner_cpu_s, 3),
            "machine_load_avg_1m": [round(x, 2) for x in self.load_avg],
        }


async def user(side: Side, speech: list[bytes], step: Step, stop_at: float,
               rng: random.Random, pace: Pace, stagger_s: float) -> None:
    """One simulated user until ``stop_at`` (see the module docstring)."""
    await asyncio.sleep(rng.uniform(0.0, stagger_s))
    first = rng.randrange(len(speech))
    while time.monotonic() < stop_at:
        try:
            async with side.open_line() as line:
                for k in range(pace.turns_per_session):
                    if k and time.monotonic() >= stop_at:
                        break  # a conversation opened has its first turn, however late
                    turn = await voice_turn(line, speech[(first + k) % len(speech)],
                                            side.output_rate)
                    if turn.outcome != "completed" or turn.voice_to_voice_ms is None:
                        step.failed[turn.outcome] += 1
                        break
                    step.completed += 1
                    step.v2v.append(turn.voice_to_voice_ms)
                    step.reply_s.append(turn.reply_audio_s)
                    await asyncio.sleep(rng.uniform(*pace.think_s))
        except Exception as exc:  # the line failed to open or dropped
            step.failed[f"socket: {type(exc).__name__}"] += 1
            await asyncio.sleep(1.0)
        first += pace.turns_per_session


async def run_step(side: Side, speech: list[bytes], sessions: int, step_s: float,
                   seed: int, pace: Pace) -> Step:
    """``sessions`` users for ``step_s``, the step's CPU read around them."""
    step = Step(sessions)
    runner = psutil.Process()
    begin = await asyncio.to_thread(side.snapshot)
    machine, runner_s = machine_busy_s(), process_cpu_s(runner)
    load = psutil.getloadavg()[0]
    start = time.monotonic()
    stop_at = start + step_s
    stagger = pace.stagger_s if sessions > 1 else 0.0
    await asyncio.gather(*(user(side, speech, step, stop_at, random.Random(seed * 1000 + i),
                                pace, stagger) for i in range(sessions)))
    step.seconds = time.monotonic() - start
    step.cpu = side.between(begin, await asyncio.to_thread(side.snapshot))
    step.machine_cpu_s = machine_busy_s() - machine
    step.runner_cpu_s = process_cpu_s(runner) - runner_s
    step.load_avg = (load, psutil.getloadavg()[0])
    return step


