"""The capacity report's profile: where each core-second goes, per stage.

Per group of processes (a Serve deployment, Serve's proxy and controller, Redis, the rest of
the server), from the step summaries and the idle phase: CPU-seconds per voice turn with one
session (the stage's cost alone), in the largest step held and in the largest step run
(its cost under load, where batching would show: with only one session held, the held
step is the one-session step and says nothing of load), and the CPU % of a core one idle
connected session costs. The machine row is every core's busy time (the app, the runner,
anything else) and ``unattributed`` what the machine spent beyond the groups and the
runner: Ray daemons outside the server's process tree, the kernel, other work.

The app's floor (:func:`idle_floor`: a window before the steps, warm, nobody talking) is
what it spends whatever the sessions do: Ray's daemons, Serve's controller, every worker's
signal checks, timers. At one session that floor is shared by the few turns a step holds,
and on a slow machine it is most of the CPU outside the models (2026-12-01: ~5 % of a core,
~0.2 CPU-s of a turn every 4 s); ``non_model_cpu_s_per_turn_beyond_floor`` takes it out, so
that what the turns themselves add shows apart from what the machine charges for running
the app at all. Issue 51's goal reads the figure with the floor in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from loadtests._cpu_attribution import attribution_between, attribution_text
from loadtests._cpu_time import cpu_between

if TYPE_CHECKING:
    from loadtests._capacity_probe import ReplicaProbe
    from loadtests._cpu_time import CpuSnapshot

MACHINE, RUNNER, UNATTRIBUTED = "machine", "runner (load generator)", "unattributed"


def _per_turn(step: dict[str, Any] | None) -> dict[str, float | None]:
    """Per group CPU-seconds per turn of a step, with the machine, runner, unattributed."""
    if step is None or not step.get("cpu_s_per_turn"):
        return {}
    rows: dict[str, float | None] = dict(step["cpu_s_per_turn"])
    turns = step["completed_turns"]
    rows[MACHINE] = step.get("machine_cpu_s_per_turn")
    runner = step.get("runner_cpu_s_total")
    rows[RUNNER] = round(runner / turns, 4) if runner is not None and turns else None
    machine, total = step.get("machine_cpu_s_total"), step.get("cpu_s_total") or {}
    if machine is not None and runner is not None and turns:
        rows[UNATTRIBUTED] = round((machine - runner - sum(total.values())) / turns, 4)
    return rows


def _per_idle_session(idle: dict[str, Any] | None) -> dict[str, float | None]:
    if not idle or not idle.get("cpu_percent_per_idle_session"):
        return {}
    rows: dict[str, float | None] = dict(idle["cpu_percent_per_idle_session"])
    groups = sum(v for v in rows.values() if v is not None)
    machine = rows[MACHINE] = idle["machine_cpu_percent"]["per_idle_session"]
    runner = rows[RUNNER] = idle["runner_cpu_percent"]["per_idle_session"]
    if machine is not None and runner is not None:
        rows[UNATTRIBUTED] = round(machine - runner - groups, 4)
    return rows


#: the deployments that run a model (the rest is what Voxline adds around the models)
MODEL_GROUPS = frozenset({"Transcriber", "LanguageModel", "Synthesizer", "Reranker"})
#: model threads inside the other groups (``cpu_attribution``'s thread names, 15
#: characters at most): the text end-of-turn judge runs in the Gateway, and on the ``cpu``
#: profile the three stages do too, each on its engine's own threads (faster-whisper's,
#: CTranslate2's born on it, llama.cpp's, Piper's). The VAD's step runs on the Gateway's
#: loop for small batches and cannot be told from it, so it counts as the rest.
MODEL_THREADS = ("voxline-turn-te", "voxline-stt", "llama-cpp", "piper-tts")


def model_threads(threads: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Per group that is not a model deployment, the CPU-seconds of the model threads in it
    (``threads``: ``cpu_attribution``'s per group, per thread name); groups without any
    are left out."""
    inside = {group: sum(seconds for name, seconds in named.items()
                         if name.startswith(MODEL_THREADS))
              for group, named in threads.items() if group not in MODEL_GROUPS}
    return {group: seconds for group, seconds in inside.items() if seconds > 0}


def _outside_model_groups(spent: Mapping[str, float]) -> float:
    """The CPU-seconds (or seconds a turn) of the groups that are not a model deployment."""
    return sum(v for group, v in spent.items() if group not in MODEL_GROUPS)


def _model_thread_s(attributed: Mapping[str, Any] | None) -> float:
    """CPU-seconds of the model threads inside those groups (``cpu_attribution``)."""
    return sum(model_threads((attributed or {}).get("threads") or {}).values())


def non_model_per_turn(step: dict[str, Any]) -> float | None:
    """CPU-seconds per voice turn of everything but the models (issue 51's measure): the
    groups that are not a model deployment, less the model threads inside them; the
    runner, the unattributed and the machine's other work are not counted."""
    per_turn = step.get("cpu_s_per_turn")
    turns = step.get("completed_turns") or 0
    if not per_turn or not turns:
        return None
    threads = _model_thread_s(step.get("cpu_attribution"))
    return round(_outside_model_groups(per_turn) - threads / turns, 4)


async def idle_floor(probe: ReplicaProbe, seconds: float) -> dict[str, Any]:
    """The app's floor: ``seconds`` with nobody talking (the module docstring), per group
    and outside the models, in % of a core."""
    return floor_section(*await probe.window(seconds))


def floor_section(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, Any]:
    """:func:`idle_floor`'s figures from its two snapshots."""
    seconds = max(after.t - before.t, 1e-9)
    spent = cpu_between(before, after)
    rest = _outside_model_groups(spent) - _model_thread_s(attribution_between(before, after))
    return {"seconds": round(seconds, 1),
            "cpu_percent": {group: round(100 * v / seconds, 3) for group, v in spent.items()},
            "non_model_cpu_percent": round(100 * max(0.0, rest) / seconds, 3)}


def beyond_floor(step: dict[str, Any], floor: dict[str, Any] | None) -> float | None:
    """A step's CPU-seconds per turn outside the models less what the floor's rate spent
    over the step (None without a floor, or turns)."""
    value, turns = non_model_per_turn(step), step.get("completed_turns") or 0
    if value is None or floor is None or not turns:
        return None
    seconds = step["t_end"] - step["t_start"]
    return round(value - floor["non_model_cpu_percent"] / 100 * seconds / turns, 4)


#: where :func:`cpu_between_models` puts a group's model threads
MODELS_IN = "{group} models"


def cpu_between_models(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, float]:
    """CPU-seconds per group between two snapshots (:func:`loadtests._cpu_time.cpu_between`)
    with each group's model threads apart, as a group ``<group> models`` of their own (the
    CPU profile's Gateway runs the stages: bench_peers' split of models and the rest)."""
    spent = cpu_between(before, after)
    found = attribution_between(before, after) or {}
    for group, seconds in model_threads(found.get("threads") or {}).items():
        spent[group] = round(max(0.0, spent.get(group, 0.0) - seconds), 3)
        spent[MODELS_IN.format(group=group)] = round(seconds, 3)
    return spent


def profile_section(steps: list[dict[str, Any]], held: int | None,
                    idle: dict[str, Any] | None,
                    floor: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report's ``profile``: per stage, CPU-seconds per voice turn (one session; the
    largest step held; the largest step run) and CPU % per idle session; the app's floor
    and each step's figure outside the models with and without it; null where a figure
    was not measured."""
    one = next((s for s in steps if s["sessions"] == 1), None)
    at_held = next((s for s in steps if held is not None and s["sessions"] == held), None)
    largest = max(steps, key=lambda s: s["sessions"], default=None)
    per_one, per_held, per_idle = _per_turn(one), _per_turn(at_held), _per_idle_session(idle)
    per_largest = _per_turn(largest)
    fixed = (MACHINE, RUNNER, UNATTRIBUTED)
    named = {*per_one, *per_held, *per_largest, *per_idle}
    rows = [*sorted(named - set(fixed)), *(name for name in fixed if name in named)]
    return {
        "held_step_sessions": held if at_held is not None else None,
        "largest_step_sessions": largest["sessions"] if largest is not None else None,
        "idle_sessions": (idle or {}).get("connected"),
        "non_model_cpu_s_per_turn": {str(step["sessions"]): non_model_per_turn(step)
                                     for step in steps},
        "idle_floor": floor,
        "non_model_cpu_s_per_turn_beyond_floor": {str(step["sessions"]): beyond_floor(step, floor)
                                                  for step in steps},
        "stages": {name: {"cpu_s_per_turn_one_session": per_one.get(name),
                          "cpu_s_per_turn_held_step": per_held.get(name),
                          "cpu_s_per_turn_largest_step": per_largest.get(name),
                          "cpu_percent_per_idle_session": per_idle.get(name)}
                   for name in rows},
    }


def profile_table(profile: dict[str, Any]) -> str:
    """The profile as a small text table (printed at the end of a run)."""
    held, largest = profile["held_step_sessions"], profile["largest_step_sessions"]
    idle = profile["idle_sessions"]
    held_label = f"@{held} (held)" if held else "held: none"
    largest_label = f"@{largest} (largest)" if largest else "largest"
    idle_label = f"% core/idle @{idle}" if idle else "% core/idle"
    head = (f"{'stage':<24}{'CPU s/turn @1':>14}{held_label:>16}{largest_label:>16}"
            f"{idle_label:>22}")
    lines = ["CPU profile (CPU-seconds per voice turn; % of a core per idle session)", head]

    def cell(value: float | None, width: int, digits: int) -> str:
        return f"{'—' if value is None else f'{value:.{digits}f}':>{width}}"

    for name, row in profile["stages"].items():
        lines.append(f"{name:<24}{cell(row['cpu_s_per_turn_one_session'], 14, 3)}"
                     f"{cell(row['cpu_s_per_turn_held_step'], 16, 3)}"
                     f"{cell(row['cpu_s_per_turn_largest_step'], 16, 3)}"
                     f"{cell(row['cpu_percent_per_idle_session'], 22, 3)}")
    if not profile["stages"]:
        lines.append("(no process sampled: nothing to profile)")
    if floor := profile.get("idle_floor"):
        beyond = profile.get("non_model_cpu_s_per_turn_beyond_floor") or {}
        lines.append(f"the app with nobody talking ({floor['seconds']:g} s before the steps): "
                     f"{sum(floor['cpu_percent'].values()):.2f} % of a core, "
                     f"{floor['non_model_cpu_percent']:.2f} outside the models; outside the "
                     "models a turn, with that floor / beyond it: " + ", ".join(
                         f"@{n} {with_floor} / {beyond.get(n)}" for n, with_floor
                         in profile["non_model_cpu_s_per_turn"].items()))
    return "\n".join(lines)


def parts_text(parts: dict[str, Any]) -> str:
    """``"812 ms = stt 180 + handoff 4 + …"`` of a step's mean voice-to-voice parts."""
    return f"{parts['total_mean_ms']:.0f} ms = " + " + ".join(
        f"{name} {ms:.0f}" for name, ms in parts["parts_mean_ms"].items())


def steps_lines(steps: list[dict[str, Any]]) -> list[str]:
    """Each step's figures as printed at the end of a run: latency, outcomes, replicas, the
    mean parts of its voice-to-voice time, and its CPU beyond the counted groups."""
    lines = []
    for step in steps:
        v2v, ttfa = step["voice_to_voice_ms"] or {}, step["ttfa_ms"] or {}
        lines.append(f"  {step['sessions']:3d} sessions  v2v p50/p95 {v2v.get('p50')}/"
                     f"{v2v.get('p95')} ms  ttfa p95 {ttfa.get('p95')} ms  "
                     f"done {step['completed_turns']}  failed {step['failed_turns']}  "
                     f"refused {step['refusals']}  replicas {step['replicas_max']}  "
                     f"load avg ≤ {step['machine_load_avg_1m_max']}")
        if parts := step["voice_to_voice_parts"]:
            lines.append(f"       voice to voice, mean: {parts_text(parts)}; slowest "
                         f"{parts['slowest']['share']:.0%}: {parts_text(parts['slowest'])}")
        lines += [f"       {line}" for line in
                  attribution_text(step.get("cpu_attribution"), step["completed_turns"])]
    return lines
