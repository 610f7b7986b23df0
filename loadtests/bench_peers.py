"""Voxline beside Pipecat on the same machine, the same models and the same spoken questions.

Issue 51 asks what Voxline itself costs next to its nearest peer. Both frameworks run here,
one after the other, on the CPU profile's models: Silero VAD, faster-whisper tiny.en,
Gemma 3 270M through llama.cpp, Piper's en_US-joe-medium, the very files Voxline's
packaged-model catalogue prepares. Each runs with its own recommended transport and
defaults: Voxline as the other benchmarks start it (``voxline.server.running_server``, CPU
profile, every guarantee on: the log, resume, replay), its native session socket; Pipecat
1.14 (``scripts/setup-peers.sh``: a venv of its own) as its examples write a bot
(``loadtests/peers/pipecat_bot.py``: FastAPI WebSocket transport, protobuf serializer, one
pipeline per connection), its LLM behind llama-cpp-python's OpenAI-compatible server, as
Pipecat's docs do local models. Both get the same system prompt and sampling (a reply's
length is CPU) and the llama.cpp settings Voxline's engine runs with.

The questions are spoken once by Voxline's own TTS (16 kHz, both frameworks' default), and
one client (:mod:`loadtests._peers_client`) says them to both: 20 ms frames in real time,
silence around the question; only the wire differs, behind two thin adapters. The load
(:mod:`loadtests._peers_load`) is capacity's: steps of concurrent users (``--steps
1,2,4,8``), each holding conversations of three turns with think times, arrivals spread.

Reported per framework, per step:

* **voice-to-voice** p50/p95: end of the user's speech → the first reply audio with sound,
  on the client's clock; "alone" is the one-session step;
* **sessions held**: the largest step whose p95 stays within 2× the one-session p95 with no
  failed turn, and no smaller step breaking that (capacity's headline);
* **CPU-seconds per voice turn**, all the framework's processes (the runner, which plays
  both users, excluded), from each process's cumulative CPU time at the step's start and
  end (exact whatever the sampling), divided by the step's completed turns, split into
  *models* and *the rest*. On the CPU profile Voxline's Gateway runs the three stages in its
  own process, so the split is by thread as for Pipecat: the engines' model threads
  (faster-whisper's, llama.cpp's, Piper's, the text end-of-turn judge's: capacity's
  ``MODEL_THREADS``) are models, as are replicas of a model deployment where a profile
  places them; the rest of the Gateway (its loop: VAD, the sessions, the log; on one machine
  Narrator's and Metrics' consumers), Serve's controller, Redis and Ray's daemons are the
  rest. Pipecat runs STT, TTS, VAD and Smart Turn inside its bot's process: the LLM server's
  process and the bot's threads other than its event loop are models, the event-loop thread
  the rest. One bias, stated: Voxline's VAD runs on its loop and counts as the rest, where
  Pipecat's counts as models. The *all processes* figure has none.

Ratios (the issue's goals: Voxline's p50 ≤ 0.5× Pipecat's, its CPU per turn ≤ 0.5×, at
least twice the sessions held) are Voxline ÷ Pipecat. A contended machine (the report keeps
each step's load average) says more about the contention than about either framework.

    .venv/bin/python -m loadtests.bench_peers [--steps 1,2,4,8] [--step-s 45]
        [--frameworks voxline,pipecat] [--budget-s 1800] [--smoke]

Bounded: at most MAX_SESSIONS per step, each step ``--step-s``, the whole run (start-ups
included) within ``--budget-s``; a turn within the client's TURN_TIMEOUT_S. ``--smoke``
says one question through each side: Voxline's API on scripted engines (a child process),
Pipecat on its real models when its venv exists, else reported as not installed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

from loadtests._capacity_profile import MODEL_GROUPS as VOXLINE_MODEL_GROUPS
from loadtests._capacity_profile import MODELS_IN, cpu_between_models
from loadtests._peers_client import RATE, pipecat_line, voice_turn, voxline_line
from loadtests._peers_load import Pace, Side, run_step
from loadtests._peers_pipecat import MODEL_GROUPS as PIPECAT_MODEL_GROUPS
from loadtests._report import add_smoke_flag, smoke_reports, write_report
from loadtests.capacity import QUESTIONS, SAMPLING, bound_caution, headline

FRAMEWORKS = ("voxline", "pipecat")
OUTPUT_RATE = 24000  # Voxline's session asks for it; Pipecat's default output rate
MAX_SESSIONS = 16
GOALS = {"voice_to_voice_p50_ratio": 0.5, "cpu_s_per_turn_ratio": 0.5,
         "sessions_held_ratio": 2.0}


async def measure(side: Side, speech: list[bytes], steps: list[int], args: argparse.Namespace,
                  deadline: float) -> dict[str, Any]:
    """A warm-up turn (caches, the prompt prefix), then the steps within ``deadline``."""
    if not args.smoke:
        async with side.open_line() as line:
            warm = await voice_turn(line, speech[0], side.output_rate)
        print(f"  {side.name}: warm-up turn {warm.outcome}", flush=True)
    pace = Pace(1, (0.1, 0.2), 0.0) if args.smoke else Pace()
    summaries: list[dict[str, Any]] = []
    cut_short = False
    for n, sessions in enumerate(steps):
        if deadline - time.monotonic() < args.step_s + 60:
            cut_short = True
            break
        step = await run_step(side, speech, sessions, args.step_s, args.seed + n, pace)
        summaries.append(step.summary(side.model_groups))
        s = summaries[-1]
        print(f"  {side.name} {sessions:2d} sessions: {s['completed_turns']} turns, v2v "
              f"{s['voice_to_voice_ms']}, CPU-s/turn {s['cpu_s_per_turn']}, "
              f"failed {s['failed_by_outcome']}", flush=True)
        await asyncio.sleep(args.settle_s)
    idle_p95, held = headline(summaries)
    alone = next((s for s in summaries if s["sessions"] == 1), None)
    return {"status": "measured", "cut_short_by_budget": cut_short,
            "alone": None if alone is None else {
                "voice_to_voice_ms": alone["voice_to_voice_ms"],
                "cpu_s_per_turn": alone["cpu_s_per_turn"]},
            "one_session_p95_ms": idle_p95, "sessions_held": held,
            "bound_caution": bound_caution(summaries), "steps": summaries}


def ratio(mine: float | None, theirs: float | None) -> float | None:
    return round(mine / theirs, 3) if mine is not None and theirs else None


def compare(voxline: dict[str, Any], pipecat: dict[str, Any]) -> dict[str, Any]:
    """Voxline ÷ Pipecat for the issue's goals; None where either side has no figure."""
    def alone(side: dict[str, Any], *path: str) -> float | None:
        value: Any = side.get("alone")
        for key in path:
            value = (value or {}).get(key)
        return None if value is None else float(value)

    got = {
        "voice_to_voice_p50_ratio": ratio(alone(voxline, "voice_to_voice_ms", "p50"),
                                          alone(pipecat, "voice_to_voice_ms", "p50")),
        "cpu_s_per_turn_ratio": ratio(alone(voxline, "cpu_s_per_turn", "all_processes"),
                                      alone(pipecat, "cpu_s_per_turn", "all_processes")),
        "non_model_cpu_s_per_turn_ratio": ratio(alone(voxline, "cpu_s_per_turn", "rest"),
                                                alone(pipecat, "cpu_s_per_turn", "rest")),
        "sessions_held_ratio": ratio(voxline.get("sessions_held"),
                                     pipecat.get("sessions_held")),
    }
    goals = {name: {"goal": (f"≥ {goal}" if name == "sessions_held_ratio" else f"≤ {goal}"),
                    "measured": got[name], "pass": meets(name, got[name], goal)}
             for name, goal in GOALS.items()}
    return {**got, "goals": goals}


def meets(name: str, measured: float | None, goal: float) -> bool | None:
    if measured is None:
        return None
    return measured >= goal if name == "sessions_held_ratio" else measured <= goal


def spoken_by_piper() -> list[bytes] | None:
    """The questions spoken here by the packaged Piper voice (smoke mode: the scripted
    server's speech is no speech to Pipecat's models); None if Piper is not installed."""
    try:
        from piper import PiperVoice

        from pipeline.audio.pcm import resample_pcm16
        from pipeline.engines.weights import prepare

        voice = PiperVoice.load(str(prepare("piper-en_US-joe-medium")))
    except Exception:
        return None
    return [resample_pcm16(b"".join(c.audio_int16_bytes for c in voice.synthesize(q)),
                           voice.config.sample_rate, RATE) for q in QUESTIONS]


async def voxline_side(url: str, probe: Any, args: argparse.Namespace, deadline: float,
                       speech: list[bytes] | None) -> tuple[dict[str, Any], list[bytes]]:
    """Voxline measured at ``url``; the questions its TTS spoke (unless given)."""
    from pipeline.audio.pcm import resample_pcm16
    from voxline.client import VoxlineClient

    async with VoxlineClient(url, timeout=120) as client:
        if speech is None:
            speech = [resample_pcm16(await client.speech(q, response_format="pcm"),
                                     OUTPUT_RATE, RATE) for q in QUESTIONS]
        side = Side("voxline", lambda: voxline_line(
            client, output_sample_rate=OUTPUT_RATE, speech_mode="streaming",
            sampling=SAMPLING), OUTPUT_RATE, probe.snapshot, cpu_between_models,
            VOXLINE_MODEL_GROUPS | {MODELS_IN.format(group="Gateway")})
        figures = await measure(side, speech, args.steps, args, deadline)
    figures["transport"] = "native session WebSocket (JSON events, PCM16)"
    return figures, speech


def run_voxline(args: argparse.Namespace, deadline: float,
                speech: list[bytes] | None) -> tuple[dict[str, Any], list[bytes]]:
    from loadtests._capacity_probe import ReplicaProbe

    if args.smoke:
        from loadtests._gateway import child_gateway
        from voxline.redis_server import redis_url_or_server

        with redis_url_or_server(os.environ.get("VOXLINE_REDIS_URL")) as redis_url, \
                child_gateway(redis_url) as (url, pid):
            probe = ReplicaProbe(root_pid=pid, named={"Gateway": pid})
            figures, speech = asyncio.run(voxline_side(url, probe, args, deadline, speech))
        figures["engines"] = "scripted (smoke mode: the figures mean nothing)"
        return figures, speech
    from loadtests._gateway import local_app

    with local_app(ready_timeout_s=max(60.0, deadline - time.monotonic())) as server:
        probe = ReplicaProbe(root_pid=os.getpid())
        figures, speech = asyncio.run(voxline_side(server.url, probe, args, deadline, speech))
    figures["engines"] = "CPU profile (the log, resume and replay on: the defaults)"
    return figures, speech


def run_pipecat(args: argparse.Namespace, deadline: float,
                speech: list[bytes]) -> dict[str, Any]:
    from loadtests._peers_pipecat import PipecatMeter, missing, running_pipecat
    from schemas import SessionSettings

    why = missing()
    if why is not None:
        return {"status": why}

    def between(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {g: round(max(0.0, after[g] - before.get(g, 0.0)), 3) for g in after}

    with running_pipecat(SessionSettings().system_prompt, SAMPLING,
                         timeout_s=max(30.0, min(180.0, deadline - time.monotonic()))) as pc:
        meter = PipecatMeter(pc)
        side = Side("pipecat", lambda: pipecat_line(pc.url), OUTPUT_RATE, meter.read, between,
                    PIPECAT_MODEL_GROUPS)
        figures = asyncio.run(measure(side, speech, args.steps, args, deadline))
    figures["transport"] = "FastAPIWebsocketTransport + ProtobufFrameSerializer (PCM16)"
    figures["settings"] = pc.settings
    return figures


def print_figures(report: dict[str, Any]) -> None:
    for name in FRAMEWORKS:
        side = report["frameworks"].get(name) or {}
        if side.get("status") != "measured":
            print(f"{name}: {side.get('status', 'not run')}")
            continue
        print(f"{name}: sessions held {side['sessions_held']} (p95 ≤ 2× "
              f"{side['one_session_p95_ms']} ms)")
        if side.get("bound_caution"):
            print(f"  {side['bound_caution']}")
        for s in side["steps"]:
            v2v, cpu = s["voice_to_voice_ms"] or {}, s["cpu_s_per_turn"]
            print(f"  {s['sessions']:2d} sessions  v2v p50/p95 {v2v.get('p50')}/"
                  f"{v2v.get('p95')} ms  CPU-s/turn models {cpu['models']} rest "
                  f"{cpu['rest']} all {cpu['all_processes']}  turns {s['completed_turns']} "
                  f"failed {s['failed_turns']}  load avg {s['machine_load_avg_1m']}")
    for name, goal in report["comparison"]["goals"].items():
        print(f"Voxline ÷ Pipecat {name}: {goal['measured']} (goal {goal['goal']}: "
              f"{ {True: 'met', False: 'not met', None: 'not measured'}[goal['pass']]})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="1,2,4,8")
    parser.add_argument("--step-s", type=float, default=45.0)
    parser.add_argument("--settle-s", type=float, default=5.0)
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--budget-s", type=float, default=1800.0)
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:
        smoke_reports()
        args.steps, args.step_s, args.settle_s, args.budget_s = "1", 1.0, 0.0, 200.0
    args.steps = [int(s) for s in args.steps.split(",")]
    if any(not 1 <= s <= MAX_SESSIONS for s in args.steps):
        parser.error(f"steps must be 1..{MAX_SESSIONS}")
    chosen = [f for f in args.frameworks.split(",") if f]
    if not chosen or any(f not in FRAMEWORKS for f in chosen):
        parser.error(f"--frameworks: some of {', '.join(FRAMEWORKS)}")
    deadline = time.monotonic() + args.budget_s
    load_start = os.getloadavg()
    speech = spoken_by_piper() if args.smoke else None
    frameworks: dict[str, Any] = {}
    if "voxline" in chosen:
        # Pipecat's share of the budget is kept for it: its steps, its start-up
        later = (len(args.steps) * (args.step_s + args.settle_s) + 180
                 if "pipecat" in chosen and not args.smoke else 0.0)
        frameworks["voxline"], speech = run_voxline(args, deadline - later, speech)
    if "pipecat" in chosen:
        if speech is None:  # Voxline not run: its TTS did not speak the questions
            speech = spoken_by_piper()
        frameworks["pipecat"] = (run_pipecat(args, deadline, speech) if speech is not None
                                 else {"status": "no speech: Piper is not installed here"})
    report = {
        "title": "Voxline beside Pipecat (same machine, models and spoken questions)",
        "questions": list(QUESTIONS), "sampling": SAMPLING, "steps": args.steps,
        "step_s": args.step_s, "smoke": args.smoke,
        "frameworks": frameworks,
        "comparison": compare(frameworks.get("voxline") or {}, frameworks.get("pipecat") or {}),
        "machine_load": {"cpus": os.cpu_count(), "loadavg_1m_start": load_start[0],
                         "loadavg_1m_end": os.getloadavg()[0]},
    }
    print_figures(report)
    print(f"report: {write_report('bench_peers', report)}")
    idle = [name for name, side in frameworks.items() if side.get("status") == "measured"
            and not any(s["completed_turns"] for s in side["steps"])]
    if args.smoke and idle:
        raise SystemExit(f"smoke: no turn completed by {', '.join(idle)}")


if __name__ == "__main__":
    main()
