"""The performance page's rows for the load benchmarks (:mod:`loadtests.figures`):
``capacity`` (sessions held, each step's latency and CPU outside the models, the app's
floor, idle sessions and calls) and ``bench_peers`` (Voxline beside Pipecat)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from loadtests._figures_engines import Row, get, num, spread


def peers_rows(figures: dict[str, Any]) -> Iterator[Row]:
    for name, side in (figures.get("frameworks") or {}).items():
        alone = side.get("alone") or {}
        cpu = alone.get("cpu_s_per_turn") or {}
        yield (f"{name}: voice-to-voice p50 / p95 alone, ms",
               spread(alone.get("voice_to_voice_ms")), "")
        yield (f"{name}: CPU-s per voice turn alone, all processes (models + the rest)",
               f"{num(cpu.get('all_processes'), digits=2)} ({num(cpu.get('models'), digits=2)}"
               f" + {num(cpu.get('rest'), digits=2)})",
               "the rest ≤ 0.25" if name == "voxline" else "")
        yield (f"{name}: sessions held at p95 ≤ 2× alone", num(side.get("sessions_held")), "")
        if steps := side.get("steps"):
            last = steps[-1]
            yield (f"{name}: at {last.get('sessions')} sessions, turns done / failed; "
                   "voice-to-voice p95, ms",
                   f"{num(last.get('completed_turns'))} / {num(last.get('failed_turns'))}; "
                   f"{num(get(last, 'voice_to_voice_ms', 'p95'))}", "")
    for name, goal in (get(figures, "comparison", "goals") or {}).items():
        yield (f"Voxline ÷ Pipecat: {name.replace('_', ' ')}",
               num(goal.get("measured"), digits=3), goal.get("goal", ""))


def capacity_rows(figures: dict[str, Any]) -> Iterator[Row]:
    yield ("voice sessions held at voice-to-voice p95 ≤ 2× one session",
           num(figures.get("sessions_held")), "≥ 8")
    profile = figures.get("stage_profile") or {}
    for step in figures.get("steps") or []:
        sessions = step.get("sessions")
        yield (f"at {sessions} session(s): voice-to-voice p50 / p95, ms; turns done / failed"
               " / refused",
               f"{spread(step.get('voice_to_voice_ms'))}; "
               f"{num(step.get('completed_turns'))} / {num(step.get('failed_turns'))} / "
               f"{num(step.get('refusals'))}", "p50 ≤ 500 alone" if sessions == 1 else "")
        yield (f"at {sessions} session(s): CPU-s per voice turn, all but the models "
               "(the whole machine)",
               f"{num(get(profile, 'non_model_cpu_s_per_turn', str(sessions)), digits=2)} "
               f"({num(step.get('machine_cpu_s_per_turn'), digits=2)})", "≤ 0.25")
    if floor := profile.get("idle_floor"):
        beyond = (profile.get("non_model_cpu_s_per_turn_beyond_floor") or {}).values()
        yield ("the app with nobody talking, outside the models: % of a core; then each "
               "step's CPU-s per voice turn beyond that floor",
               f"{num(floor.get('non_model_cpu_percent'), digits=2)}; "
               + " / ".join(num(v, digits=2) for v in beyond), "")
    idle = figures.get("idle_sessions") or {}
    if idle:
        yield ("the idle app, then one idle hands-free session sending silence: % of a core "
               "(the whole machine)",
               f"{num(get(idle, 'machine_cpu_percent', 'no_session'), digits=1)}, then "
               f"{num(get(idle, 'machine_cpu_percent', 'per_idle_session'), digits=2)} "
               "each", "")
    calls = figures.get("idle_calls") or {}
    if calls:
        yield ("one idle WebRTC call: % of a core at the Gateway; its media path's own "
               "(less an idle socket session's)",
               f"{num(get(calls, 'cpu_percent_per_idle_call', 'Gateway'), digits=2)}; "
               f"{num(get(calls, 'media_cpu_percent_per_call', 'Gateway'), digits=2)}", "")
