"""Capacity: how many concurrent voice sessions one machine holds at a latency bound.

Ramps concurrent sessions step by step (``--steps 1,2,4,8``); in each step every simulated
user holds voice conversations over the native WebSocket: a spoken question streamed in
real time (20 ms PCM16 frames, pauses around it, VAD ends it), the reply heard, a think
time, the next turn on the same socket, a fresh session every ``--turns-per-session``. A
step's users arrive spread over ``--stagger-s`` (5 s: about one turn of a user alone), as
independent users are at any moment; ``--stagger-s 0`` starts them in one instant (their
first questions then end together: a collision the step's p95 measures on its own).
Once a second it samples, per Serve deployment, CPU and RSS (its replica processes) and
the replica count (``serve.status()``, so autoscaling shows), and the events delivered to
the clients (each appended to the log first).

**Headline:** the largest step whose voice-to-voice p95 (end of speech → first audio
heard) stays within 2× the idle value (the first step, one session) with no turn
failed or refused, and no smaller step breaking that: "sessions held per machine".

**Where each core-second goes** (issue 23): at each step's start and end the runner reads
the cumulative CPU time (user + system) of every process it counts, grouped as the Serve
deployments (Gateway, Transcriber, …; on ``cpu`` the Gateway runs the stages: its threads
tell them apart), Serve's proxy and controller (``ServeProxy``, ``ServeController``),
``Redis``, the server's other processes (``ServerOther``), the machine and the runner
(:mod:`loadtests._capacity_probe`, :mod:`loadtests._cpu_time`). Each step's summary has
``cpu_s_total`` and ``cpu_s_per_turn`` per group (CPU-seconds over the step, and divided by
its completed turns: the app's background work included), ``machine_cpu_s_total``,
``machine_cpu_s_per_turn`` and ``runner_cpu_s_total``; exact whatever the sampling, and a
replica restarted mid-step counts once (its successor from its start).
``--idle-sessions N`` (with ``--idle-s``, ``--idle-baseline-s``, ``--bystander-s``) adds an
idle phase after the steps: N hands-free sessions (server VAD on, the defaults) each
sending 20 ms frames of silence in real time, measured against a window with none
connected (:mod:`loadtests._capacity_idle`): ``idle_sessions.cpu_percent_per_idle_session``
per group (CPU-seconds per second per session, in % of a core; ``cpu_per_idle_session`` as
a fraction), then a talking bystander among them (``idle_sessions.bystander``: its
voice-to-voice and ``ratio_p95_to_one_session``, the issue's goal ≤ 1.2).
``--idle-calls N`` then holds N idle WebRTC calls (aiortc callers in the runner; Opus
both ways, silence) against the same kind of baseline
(:mod:`loadtests._capacity_calls`): ``idle_calls.cpu_percent_per_idle_call`` per group,
and, less the idle session's, ``media_cpu_percent_per_call``: what the WebRTC media path
(Opus decode and encode, RTP, SRTP) costs per call.
The report's ``stage_profile`` sums it up per group: CPU-seconds per voice turn in the
one-session step, in the largest step held and in the largest step run, and CPU % per idle
session; the run ends by printing it as a table. Before the steps, ``--floor-s`` (15 s)
with nobody talking give the app's floor (``stage_profile.idle_floor``), and each step's
CPU-seconds a turn outside the models comes with and without it
(``non_model_cpu_s_per_turn``, issue 51's figure; ``…_beyond_floor``).

Writes ``reports/<out>.json`` and ``reports/<out>_steps.png`` / ``_timeline.png``. Each
step also records the machine's load average: a step taken while other work ran beside
the app says more about that work than about the app.

    .venv/bin/python -m loadtests.capacity                       # starts the app (CPU profile)
    .venv/bin/python -m loadtests.capacity --profile cpu-autoscale --steps 1,2,4,6
    .venv/bin/python -m loadtests.capacity --url http://10.0.0.5:8000 --steps 8,16,32,64
    .venv/bin/python -m loadtests.capacity --replay-recent 5     # recorded sessions as load
    .venv/bin/python -m loadtests.capacity --settings '{"turn_judge": "text"}'  # session settings
    .venv/bin/python -m loadtests.capacity --steps 1,2,4 --idle-sessions 200 --idle-s 60
    .venv/bin/python -m loadtests.capacity --smoke               # seconds, scripted engines

**Replay:** ``--replay SESSION_ID ...`` or ``--replay-recent K`` reads sessions from the log
(``VOXLINE_REDIS_URL``, ``VOXLINE_LOG__KEY_PREFIX``): their utterances (``input.audio``,
the audio VAD cut, at its own sample rate) and typed turns (``input.text``), in order.
Each simulated user then replays one recorded session, turn by turn, as its conversation.

Bounded: at most ``MAX_SESSIONS`` per step and ``MAX_IDLE_SESSIONS`` idle ones (opened 16 at
a time), ``--budget-s`` for the whole run (server start included); a turn gets
``TURN_TIMEOUT_S``. Without ``--url`` the app is started (Redis if
VOXLINE_REDIS_URL is unset, Ray, Serve on 127.0.0.1 and a free port) and stopped after.
``VOXLINE_REDIS_URL`` may be a Redis Cluster (``redis+cluster://host:port,.../``): the app
started here, the smoke run's app and the replay all use it.
``--smoke`` runs two short steps and a one-second idle phase of two sessions against the API
on scripted engines (``loadtests/_gateway.py``, a child process with the engines inside,
sampled as the one group ``Gateway``): the figures mean nothing, the runner's code runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from loadtests._capacity_calls import MAX_IDLE_CALLS, calls_phase
from loadtests._capacity_headline import bound_caution, headline
from loadtests._capacity_idle import MAX_IDLE_SESSIONS, idle_phase
from loadtests._capacity_plot import plot
from loadtests._capacity_probe import ReplicaProbe
from loadtests._capacity_profile import idle_floor, profile_section, profile_table, steps_lines
from loadtests._cpu_attribution import attribution_between
from loadtests._cpu_time import CpuSnapshot, cpu_between, machine_between, per_unit
from loadtests._report import (
    add_settings_flag,
    add_smoke_flag,
    mean_parts,
    percentiles_ms,
    reports_dir,
    smoke_reports,
    write_report,
)
from loadtests.bench_latency import QUESTIONS as LATENCY_QUESTIONS
from pipeline.workers import LatencyParts, TurnTimeline
from schemas import Event
from voxline.client import SessionSocket, VoxlineAPIError, VoxlineClient
from voxline.demo import stream_audio, with_pauses

#: the latency benchmark's first questions (short: the CPU profile's LLM answers them)
QUESTIONS = LATENCY_QUESTIONS[:4]
RATE = 24000
SAMPLING = {"temperature": 0.0, "max_tokens": 40, "seed": 1}
PAUSE_BEFORE_S, PAUSE_AFTER_S = 0.3, 2.5  # after: room for a turn judged unfinished
MAX_SESSIONS = 256
#: a simulated user's defaults: turns on one session before a fresh one, seconds between
#: turns (uniform; loadtests/log_footprint.py sizes the log at these too)
TURNS_PER_SESSION = 3
THINK_S = (1.0, 3.0)
#: a step's users start spread over this many seconds (about one turn of a user alone:
#: its question, the reply, a think time), as independent users would be at any moment.
#: All at once, the users' first questions (the same length) ended within one second of
#: each other: on 2026-11-26 those 7 turns of 8 sessions were the step's 7 slowest of 103
#: (1.8-2.9 s, the rest at most 1.3 s), so the step's p95 measured that one collision
STAGGER_S = 5.0
TURN_TIMEOUT_S = 120.0
REFUSED = {"overloaded", "engine_overloaded"}
#: the share of a step's turns whose parts the report also shows apart (its tail)
SLOWEST_SHARE = 0.1


@dataclass(frozen=True)
class Utterance:
    """One turn of a script: speech (PCM16 at ``rate``) or typed text."""

    audio: bytes | None = None
    text: str | None = None
    rate: int = RATE


@dataclass
class StepStats:
    sessions: int
    t_start: float = 0.0
    t_end: float = 0.0
    v2v: list[float] = field(default_factory=list)
    ttfa: list[float] = field(default_factory=list)
    completed: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    refusals: int = 0
    events: int = 0
    #: each completed turn's end of speech → first audio heard, in parts that add up to it
    #: (:func:`voice_parts`)
    parts: list[LatencyParts] = field(default_factory=list)
    #: cumulative CPU times at the step's start and end (None: not read, e.g. a unit test)
    cpu: tuple[CpuSnapshot, CpuSnapshot] | None = None

    def summary(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        inside = [s for s in samples if self.t_start <= s["t"] <= self.t_end]
        names = sorted({n for s in inside for n in (*s["replicas"], *s["cpu_percent"])})
        seconds = max(self.t_end - self.t_start, 1e-9)
        spent = cpu_between(*self.cpu) if self.cpu else {}
        machine, runner = machine_between(*self.cpu) if self.cpu else (None, None)
        return {
            "sessions": self.sessions,
            "t_start": round(self.t_start, 1),
            "t_end": round(self.t_end, 1),
            "completed_turns": self.completed,
            "failed_turns": sum(self.failed.values()),
            "failures_by_code": dict(self.failed),
            "refusals": self.refusals,
            "voice_to_voice_ms": percentiles_ms(self.v2v),
            "ttfa_ms": percentiles_ms(self.ttfa),
            # where the voice-to-voice time went, on average and in the slowest tenth of
            # the turns: which stage waits when sessions share the machine
            "voice_to_voice_parts": mean_parts(self.parts, slowest=SLOWEST_SHARE),
            "events_per_s": round(self.events / seconds, 1),
            "replicas_max": {n: max(s["replicas"].get(n, 0) for s in inside) for n in names},
            "cpu_percent_mean": {n: round(sum(s["cpu_percent"].get(n, 0) for s in inside)
                                          / len(inside), 1) for n in names} if inside else {},
            "rss_mb_max": {n: max(s["rss_mb"].get(n, 0) for s in inside) for n in names},
            # from the processes' cumulative CPU times at the step's start and end (exact,
            # whatever the sampling): per group, then the whole machine's and the runner's
            "cpu_s_total": spent,
            "cpu_s_per_turn": per_unit(spent, self.completed) if spent else None,
            "machine_cpu_s_total": machine,
            "machine_cpu_s_per_turn": round(machine / self.completed, 4)
            if machine is not None and self.completed else None,
            "runner_cpu_s_total": runner,
            # the machine's time the groups and the runner don't explain, part by part
            # (kernel, other processes, reaped children), and each group's threads by name
            "cpu_attribution": attribution_between(*self.cpu) if self.cpu else None,
            # a busy machine (other work beside the app) makes the step's latency unreliable
            "machine_load_avg_1m_max": max((s["machine"].get("load_avg_1m", 0) for s in inside),
                                           default=None),
        }


def voice_parts(parts: LatencyParts | None, v2v: float | None) -> LatencyParts | None:
    """A voice turn's parts from the end of its speech: the server's (from
    ``input.speech_stopped``) after ``endpoint``, the rest of the voice-to-voice time: the
    endpoint's decision (the silence waited, and a verdict that waits for its transcript)
    and the audio's way to the runner. Typed turns keep the server's parts."""
    if parts is None or v2v is None:
        return parts
    return LatencyParts({"endpoint": max(0.0, v2v - parts.total_ms), **parts.parts}, v2v,
                        parts.head_start_ms)


class Run:
    """The load: users running scripts, counting into the current step."""

    def __init__(self, client: VoxlineClient, scripts: list[list[Utterance]], seed: int,
                 turns_per_session: int, think_s: tuple[float, float],
                 session_settings: dict[str, Any] | None = None) -> None:
        self.client = client
        #: more settings of every session the users open (e.g. ``realtime_tts: False``)
        self.session_settings = session_settings or {}
        self.scripts = scripts
        self.rng = random.Random(seed)
        self.turns_per_session = turns_per_session
        self.think_s = think_s
        self.step: StepStats | None = None
        self.events_total = 0

    def count(self, step: StepStats, outcome: str, v2v: float | None, ttfa: float | None,
              parts: LatencyParts | None = None) -> None:
        if outcome == "completed":
            step.completed += 1
            if parts is not None:
                step.parts.append(parts)
            if v2v is not None:
                step.v2v.append(v2v)
            if ttfa is not None:
                step.ttfa.append(ttfa)
        elif outcome in REFUSED:
            step.refusals += 1
        else:
            step.failed[outcome] += 1

    async def user(self, step: StepStats, stop_at: float, seed: int,
                   stagger_s: float = 0.0) -> None:
        """One simulated user until ``stop_at``, its first turn after a draw of up to
        ``stagger_s`` (a step's users arrive spread out, not all in the same instant)."""
        rng = random.Random(seed)
        await asyncio.sleep(rng.uniform(0.0, stagger_s))
        while time.monotonic() < stop_at:
            script = rng.choice(self.scripts)
            try:
                session = await self.client.create_session(**{
                    "input_sample_rate": script[0].rate, "output_sample_rate": RATE,
                    "sampling": SAMPLING, **self.session_settings})
            except VoxlineAPIError as exc:
                self.count(step, exc.code, None, None)
                await asyncio.sleep(1.0)
                continue
            try:
                async with self.client.connect(session) as conn:
                    for utterance in script[: self.turns_per_session]:
                        if time.monotonic() >= stop_at:
                            break
                        outcome, v2v, ttfa, parts = await self.turn(conn, utterance, step)
                        self.count(step, outcome, v2v, ttfa, parts)
                        if outcome != "completed":
                            break  # a fresh session after a failure
                        await asyncio.sleep(rng.uniform(*self.think_s))
            except Exception as exc:  # the socket failed to open or dropped
                self.count(step, f"socket: {type(exc).__name__}", None, None)
                await asyncio.sleep(1.0)

    async def turn(self, conn: SessionSocket, utterance: Utterance, step: StepStats,
                   ) -> tuple[str, float | None, float | None, LatencyParts | None]:
        """(outcome, voice-to-voice ms, server TTFA ms, its parts) of one turn."""
        start = time.perf_counter()
        sender: asyncio.Task[None] | None = None
        if utterance.audio is not None:
            audio = with_pauses(utterance.audio, utterance.rate, PAUSE_BEFORE_S, PAUSE_AFTER_S)
            input_end = start + PAUSE_BEFORE_S + len(utterance.audio) / 2 / utterance.rate
            sender = asyncio.create_task(stream_audio(conn, audio, utterance.rate,
                                                      realtime=True))
        else:
            input_end = start
            await conn.send_text(utterance.text or "")
        origin_ts = first_ts = None
        heard: float | None = None
        outcome = "no response"
        seen: list[Event] = []
        try:
            async with asyncio.timeout(TURN_TIMEOUT_S):
                async for event in conn.until_done():
                    seen.append(event)
                    self.events_total += 1
                    step.events += 1
                    if event.type in ("input.speech_stopped", "input.text") and origin_ts is None:
                        origin_ts = event.ts
                    elif event.type == "response.audio.chunk" and first_ts is None:
                        first_ts, heard = event.ts, time.perf_counter()
                    elif event.type == "error":
                        data: Any = event.data
                        outcome = str(data.code)
                        if outcome in REFUSED:
                            break  # a refused utterance gets no response: counted as refused
                    elif event.type == "response.done":
                        status = str(getattr(event.data, "status", ""))
                        if outcome == "no response":
                            outcome = "completed" if status == "completed" else status
                    elif event.type == "response.cancelled":
                        outcome = "cancelled"
        except TimeoutError:
            outcome = "timeout" if outcome in ("no response", "completed") else outcome
        finally:
            if sender is not None:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await sender
        v2v = (heard - input_end) * 1000 if heard is not None and sender is not None else None
        ttfa = float(first_ts - origin_ts) if first_ts and origin_ts else None
        return outcome, v2v, ttfa, voice_parts(TurnTimeline.of(seen).parts(), v2v)


async def spoken_scripts(client: VoxlineClient) -> list[list[Utterance]]:
    """The questions spoken by the server's own voice: one script, rotated per user."""
    spoken = [Utterance(audio=await client.speech(q, response_format="pcm")) for q in QUESTIONS]
    return [spoken[i:] + spoken[:i] for i in range(len(spoken))]


async def recorded_scripts(ids: list[str], recent: int) -> list[list[Utterance]]:
    """Utterances and typed turns of sessions in the log, each session one script."""
    from pipeline.log import create_redis
    from schemas import Settings
    from voxline.inspect import read_session

    settings = Settings()
    if recent and settings.redis_url:
        redis = create_redis(settings.redis_url, settings.redis)
        try:
            pattern = f"{settings.log.key_prefix}:session:*"
            async for key in redis.scan_iter(match=pattern, count=500):
                ids.append(key.decode().rsplit(":", 1)[-1])
                if len(ids) >= recent * 20:
                    break
        finally:
            await redis.aclose()
    scripts: list[list[Utterance]] = []
    for session_id in ids:
        record = await read_session(session_id, settings)
        script: list[Utterance] = []
        for event in record.events:
            data: Any = event.data
            if event.type == "input.audio" and str(data.format) in ("pcm16", "AudioFormat.PCM16"):
                script.append(Utterance(audio=bytes(data.audio), rate=data.sample_rate))
            elif event.type == "input.text":
                script.append(Utterance(text=data.text))
        rates = {u.rate for u in script if u.audio is not None}
        if script and len(rates) <= 1:
            rate = rates.pop() if rates else RATE
            scripts.append([u if u.audio is not None else Utterance(text=u.text, rate=rate)
                            for u in script])
    # spoken sessions first: they load every stage (and give voice-to-voice)
    scripts.sort(key=lambda script: not any(u.audio is not None for u in script))
    return scripts[:recent] if recent else scripts


async def sample_loop(probe: ReplicaProbe, run: Run, samples: list[dict[str, Any]],
                      stop: asyncio.Event) -> None:
    last, last_t = 0, time.monotonic()
    while not stop.is_set():
        sample = await asyncio.to_thread(probe.sample)
        now = time.monotonic()
        rate = (run.events_total - last) / max(now - last_t, 1e-9)
        last, last_t = run.events_total, now
        samples.append({**sample.__dict__, "events_per_s": round(rate, 1)})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


async def measure(url: str, args: argparse.Namespace, probe: ReplicaProbe,
                  deadline: float) -> dict[str, Any]:
    steps = [int(s) for s in args.steps.split(",")]
    if any(s < 1 or s > MAX_SESSIONS for s in steps):
        raise SystemExit(f"steps must be 1..{MAX_SESSIONS}")
    async with VoxlineClient(url, timeout=TURN_TIMEOUT_S) as client:
        if args.replay or args.replay_recent:
            scripts = await recorded_scripts(list(args.replay), args.replay_recent)
            if not scripts:
                raise SystemExit("no recorded session with utterances or typed turns found")
            source = f"replay of {len(scripts)} recorded session(s)"
        else:
            scripts = await spoken_scripts(client)
            source = "spoken questions (server TTS)"
        run = Run(client, scripts, args.seed, args.turns_per_session,
                  tuple(float(x) for x in args.think_s.split(",")),  # type: ignore[arg-type]
                  args.settings)
        samples: list[dict[str, Any]] = []
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_loop(probe, run, samples, stop))
        warm = StepStats(0)
        await run.user(warm, time.monotonic() + 1, args.seed)  # one turn: caches, prompt
        floor = await idle_floor(probe, args.floor_s) if args.floor_s > 0 else None
        idle = None
        calls = None
        cut_short = False
        results: list[StepStats] = []
        for n, sessions in enumerate(steps):
            if deadline - time.monotonic() < args.step_s + 30:
                cut_short = True
                break
            begin = await asyncio.to_thread(probe.snapshot)
            step = StepStats(sessions, t_start=time.monotonic() - probe.start)
            stop_at = time.monotonic() + args.step_s
            await asyncio.gather(*(run.user(step, stop_at, args.seed * 1000 + n * 100 + i,
                                            args.stagger_s if sessions > 1 else 0.0)
                                   for i in range(sessions)))
            step.t_end = time.monotonic() - probe.start
            step.cpu = (begin, await asyncio.to_thread(probe.snapshot))
            results.append(step)
            print(f"  {sessions:3d} sessions: {step.completed} turns, "
                  f"v2v {percentiles_ms(step.v2v)}, failed {dict(step.failed)}, "
                  f"refused {step.refusals}", flush=True)
            await asyncio.sleep(args.settle_s)
        # After the steps, so that the one-session step (the bound's reference) never
        # follows the idle crowd: a Gateway behind on their frames works them off for
        # seconds after they leave.
        if args.idle_sessions:
            if deadline - time.monotonic() < (args.idle_baseline_s + args.idle_s
                                              + args.bystander_s + 90):
                cut_short = True
            else:
                idle = await idle_phase(
                    client, probe, args.idle_sessions, args.idle_s,
                    rate=scripts[0][0].rate, output_rate=RATE,
                    baseline_s=args.idle_baseline_s,
                    bystander=(lambda: bystander_among_idle(url, run, args.bystander_s,
                                                            args.seed))
                    if args.bystander_s > 0 else None,
                    frame_ms=args.idle_frame_ms)
                print(f"  idle: {idle['connected']} sessions sending silence, per session "
                      f"{idle['cpu_percent_per_idle_session']} % of a core; bystander "
                      f"v2v {(idle['bystander'] or {}).get('voice_to_voice_ms')}", flush=True)
        if args.idle_calls:
            if deadline - time.monotonic() < args.idle_baseline_s + args.idle_s + 90:
                cut_short = True
            else:
                calls = await calls_phase(url, probe, args.idle_calls, args.idle_s,
                                          baseline_s=args.idle_baseline_s, idle_sessions=idle)
                print(f"  calls: {calls['connected']} idle WebRTC calls, per call "
                      f"{calls['cpu_percent_per_idle_call']} % of a core; the media path "
                      f"{calls['media_cpu_percent_per_call']}", flush=True)
        await asyncio.sleep(args.settle_s)  # let autoscaling scale back in, recorded
        stop.set()
        await sampler
    summaries = [s.summary(samples) for s in results]
    if idle is not None and idle["bystander"] is not None:
        idle["bystander"]["ratio_p95_to_one_session"] = bystander_ratio(
            idle["bystander"], summaries)
    # typed turns only (a replay of text sessions): the bound on server TTFA instead
    measured = "voice_to_voice_ms" if any(s["voice_to_voice_ms"] for s in summaries) \
        else "ttfa_ms"
    idle_p95, held = headline(summaries, measured)
    label = "voice-to-voice" if measured == "voice_to_voice_ms" else "TTFA (typed turns only)"
    return {
        "title": f"Voxline capacity ({args.profile or 'external'} profile, {source})",
        "url_is_loopback": url.startswith(("http://127.0.0.1", "http://localhost")),
        "profile": args.profile, "source": source, "settings": args.settings,
        "step_s": args.step_s,
        "turns_per_session": args.turns_per_session, "think_s": args.think_s,
        "stagger_s": args.stagger_s,
        "seed": args.seed, "cut_short_by_budget": cut_short,
        "bound_on": label,
        "idle_voice_to_voice_p95_ms" if measured == "voice_to_voice_ms" else "idle_ttfa_p95_ms":
            idle_p95,
        "sessions_held": held,
        "headline": (f"{held} concurrent sessions held with {label} p95 ≤ 2× idle "
                     f"({idle_p95:.0f} ms)") if held and idle_p95 else "no step met the bound",
        "bound_caution": bound_caution(summaries, measured),
        "stage_profile": profile_section(summaries, held, idle, floor),
        "steps": summaries,
        "idle_sessions": idle,
        "idle_calls": calls,
        "samples": samples,
    }


async def bystander_among_idle(url: str, run: Run, seconds: float, seed: int) -> dict[str, Any]:
    """One talking user for ``seconds`` (the steps' script and think times) while the
    idle sessions send silence: its turns and voice-to-voice, measured in a process of its
    own (:mod:`loadtests._capacity_bystander`: not on the loop sending the crowd's frames)."""
    from loadtests._capacity_bystander import run_in_child

    return await run_in_child({
        "url": url, "scripts": run.scripts, "seed": seed, "seconds": seconds,
        "turns_per_session": run.turns_per_session, "think_s": run.think_s,
        "settings": run.session_settings})


def bystander_figures(seconds: float, step: StepStats) -> dict[str, Any]:
    """The report's ``idle_sessions.bystander``: one talking user's turns."""
    return {"seconds": seconds, "completed_turns": step.completed,
            "failed_turns": sum(step.failed.values()), "refusals": step.refusals,
            "voice_to_voice_ms": percentiles_ms(step.v2v), "ttfa_ms": percentiles_ms(step.ttfa)}


def bystander_ratio(bystander: dict[str, Any], steps: list[dict[str, Any]]) -> float | None:
    """The bystander's voice-to-voice p95 over the one-session step's (issue goal ≤ 1.2)."""
    one = next((s for s in steps if s["sessions"] == 1), None)
    mine, alone = bystander.get("voice_to_voice_ms"), one and one["voice_to_voice_ms"]
    if not mine or not alone or not alone["p95"]:
        return None
    return round(float(mine["p95"]) / float(alone["p95"]), 2)


async def _on_scripted_app(args: argparse.Namespace, deadline: float) -> dict[str, Any]:
    """Smoke mode: :func:`measure` against the API on scripted engines in a child process."""
    from loadtests._gateway import child_gateway
    from voxline.redis_server import redis_url_or_server

    with redis_url_or_server(os.environ.get("VOXLINE_REDIS_URL")) as redis_url, \
            child_gateway(redis_url) as (url, pid):
        # the scripted engines run inside the Gateway's process: it is the only group
        probe = ReplicaProbe(root_pid=pid, named={"Gateway": pid})
        return await measure(url, args, probe, deadline)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running server (default: start one here)")
    parser.add_argument("--server-pid", type=int, help="with --url: the server's process, "
                        "whose descendants are its replicas (default: any on this machine)")
    parser.add_argument("--profile", default="cpu", help="cpu, cpu-autoscale (app started here)")
    parser.add_argument("--stt-model", default="whisper-tiny.en")
    parser.add_argument("--steps", default="1,2,4,8")
    parser.add_argument("--step-s", type=float, default=60.0)
    parser.add_argument("--settle-s", type=float, default=5.0)
    parser.add_argument("--stagger-s", type=float, default=STAGGER_S,
                        help="each user of a step starts after a uniform draw of up to this "
                        "(0: all at once, the runner before 2026-11-26)")
    parser.add_argument("--turns-per-session", type=int, default=TURNS_PER_SESSION)
    parser.add_argument("--think-s", default=",".join(f"{s:g}" for s in THINK_S),
                        help="min,max seconds between turns")
    parser.add_argument("--floor-s", type=float, default=15.0, help="seconds with nobody "
                        "talking before the steps: the app's floor (0: none)")
    parser.add_argument("--idle-sessions", type=int, default=0, metavar="N",
                        help="before the steps, N hands-free sessions sending silence in "
                        f"real time (1..{MAX_IDLE_SESSIONS}; 0: no idle phase)")
    parser.add_argument("--idle-s", type=float, default=60.0,
                        help="seconds the idle sessions are measured")
    parser.add_argument("--idle-baseline-s", type=float, default=15.0,
                        help="seconds measured with no session before them (subtracted)")
    parser.add_argument("--idle-frame-ms", type=int, default=20, choices=(10, 20, 40, 60, 100),
                        help="audio per message of an idle session (real clients: 20)")
    parser.add_argument("--idle-calls", type=int, default=0, metavar="N",
                        help="after the idle sessions, N idle WebRTC calls measured the same "
                        f"way (1..{MAX_IDLE_CALLS}; 0: none)")
    parser.add_argument("--bystander-s", type=float, default=40.0,
                        help="then a talking user among the idle sessions this long (0: none)")
    parser.add_argument("--replay", nargs="*", default=[], metavar="SESSION_ID")
    parser.add_argument("--replay-recent", type=int, default=0, metavar="K")
    parser.add_argument("--seed", type=int, default=1)
    add_settings_flag(parser, "every simulated user's sessions")
    parser.add_argument("--budget-s", type=float, default=1200.0)
    parser.add_argument("--out", default="capacity")
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:
        smoke_reports()
        args.url, args.profile, args.replay, args.replay_recent = None, None, [], 0
        args.steps, args.step_s, args.settle_s, args.stagger_s = "1,2", 2.0, 0.1, 0.2
        # a guard, not a measure (under the smoke test's 240 s): the suite runs every smoke
        # at once, and 120 s left too little for the calls phase on a busy machine
        args.turns_per_session, args.think_s, args.budget_s = 2, "0.1,0.2", 200.0
        args.idle_sessions, args.idle_s, args.idle_baseline_s, args.floor_s = 2, 1.0, 0.5, 0.5
        args.idle_calls = 1
        args.bystander_s = 1.0
    if not 0 <= args.idle_sessions <= MAX_IDLE_SESSIONS:
        raise SystemExit(f"--idle-sessions must be 0..{MAX_IDLE_SESSIONS}")
    if not 0 <= args.idle_calls <= MAX_IDLE_CALLS:
        raise SystemExit(f"--idle-calls must be 0..{MAX_IDLE_CALLS}")
    deadline = time.monotonic() + args.budget_s

    if args.smoke:
        report = asyncio.run(_on_scripted_app(args, deadline))
    elif args.url:
        args.profile = None
        probe = ReplicaProbe(root_pid=args.server_pid)
        report = asyncio.run(measure(args.url, args, probe, deadline))
    else:
        from loadtests._gateway import local_app
        from schemas import Settings
        from schemas._settings import SttEngineSettings

        # --stt-model over the environment's STT settings (VOXLINE_STT__TURN_WINDOW_S, ...)
        stt = SttEngineSettings(**{**Settings().stt.model_dump(), "model": args.stt_model})
        with local_app(profile=args.profile, stt=stt) as server:
            probe = ReplicaProbe(root_pid=os.getpid(), use_serve_status=True)
            report = asyncio.run(measure(server.url, args, probe, deadline))
    path = write_report(args.out, report)
    pngs = plot(report, reports_dir() / args.out)
    print(f"\n{report['headline']}")
    if report.get("bound_caution"):
        print(report["bound_caution"])
    print("\n".join(steps_lines(report["steps"])))
    print(f"\n{profile_table(report['stage_profile'])}")
    print(f"report: {path}; plots: {', '.join(str(p) for p in pngs)}")
    if args.smoke and not all(step["completed_turns"] for step in report["steps"]):
        raise SystemExit("smoke: a step completed no turn")


if __name__ == "__main__":
    main()
