"""The capacity runner's idle phase: what connected hands-free sessions cost while nobody speaks.

A voice client between turns keeps its socket open and its microphone on: 20 ms PCM16 frames
in real time, turn detection on the server (the session defaults: VAD on every frame, a reply
when an utterance ends). ``sessions`` such clients send silence for ``seconds``; the CPU-seconds
each group of processes spends meanwhile, less what it spends with none connected (a baseline
window just before: health checks, metrics, the controller's loop), divided by the seconds and
the sessions, is one idle session's share: ``cpu_percent_per_idle_session`` (100 = one core).

Each session paces its own frames from its own start (offsets spread over a frame), so the
Gateway sees them spread as real clients send them, not in bursts; ``frames_per_s_per_session``
says whether the runner kept up (50 at 20 ms). A silent session should produce no event: any
the sessions received are counted by type (``input.speech_started`` means the VAD heard
speech in silence, and the figures are not an idle session's).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.exceptions import ConnectionClosed

from loadtests._capacity_probe import ReplicaProbe
from loadtests._cpu_time import CpuSnapshot, cpu_between, machine_between
from voxline.client import SessionSocket, VoxlineAPIError, VoxlineClient

FRAME_MS = 20
#: at most this many idle sessions (the runner's own CPU grows with them: ~50 sends/s each)
MAX_IDLE_SESSIONS = 512
#: sessions opened at once while connecting (a burst of hundreds would be a test of its own)
CONNECT_AT_ONCE = 16
CONNECT_TIMEOUT_S = 30.0


@dataclass
class IdleCounts:
    #: sessions to open; ``settled`` is set once each has connected or failed to
    expected: int = 0
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    tried: int = 0
    connected: int = 0
    frames: int = 0
    #: sessions whose socket failed after they connected
    dropped: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)

    def tried_one(self) -> None:
        self.tried += 1
        if self.tried >= self.expected:
            self.settled.set()


async def _send_silence(conn: SessionSocket, rate: int, stop: asyncio.Event,
                        counts: IdleCounts, offset_s: float, frame_ms: int) -> None:
    """Frames of silence (20 ms by default) on an absolute schedule (no drift) until
    ``stop``."""
    frame = bytes(2 * rate * frame_ms // 1000)
    start = time.perf_counter() + offset_s
    n = 0
    while not stop.is_set():
        delay = start + n * frame_ms / 1000 - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await conn.send_audio(frame)
        counts.frames += 1
        n += 1


async def _drain(conn: SessionSocket, counts: IdleCounts) -> None:
    async for event in conn.events():
        counts.events[event.type] += 1


def closed_how(exc: ConnectionClosed) -> str:
    """``ConnectionClosedError 1011 keepalive ping timeout (sent)``: the close frame the
    client received (or, when none came, the one it sent itself, a ping of its own
    unanswered), so a drop says which side gave up, and why."""
    frame, side = (exc.rcvd, "received") if exc.rcvd is not None else (exc.sent, "sent")
    if frame is None:
        return f"{type(exc).__name__} (no close frame)"
    return f"{type(exc).__name__} {frame.code} {frame.reason} ({side})".replace("  ", " ")


class Place:
    """One idle client's place in the crowd: ``gate`` (the connects in flight) held while
    it connects, the counts kept whatever happens. ``async with Place(...) as place:``
    connect, call :meth:`connected`, then hold the connection; an exception is counted
    (by its code, or its type) and does not stop the others."""

    def __init__(self, gate: asyncio.Semaphore, stop: asyncio.Event,
                 counts: IdleCounts) -> None:
        self.gate, self.stop, self.counts = gate, stop, counts
        self.held = self.live = False

    async def __aenter__(self) -> Place:
        await self.gate.acquire()
        self.held = True
        return self

    def connected(self) -> None:
        self.gate.release()
        self.held, self.live = False, True
        self.counts.connected += 1
        self.counts.tried_one()

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        _tb: object) -> bool:
        if self.held:
            self.gate.release()
        if not self.live:
            self.counts.tried_one()
        elif not self.stop.is_set():
            self.counts.dropped += 1
        if isinstance(exc, VoxlineAPIError):
            self.counts.failed[exc.code] += 1
        elif isinstance(exc, ConnectionClosed):  # a drop: who closed it, and why
            self.counts.failed[closed_how(exc)] += 1
        elif isinstance(exc, Exception):  # refused, a timeout: counted
            self.counts.failed[type(exc).__name__] += 1
        return isinstance(exc, Exception)


async def _hold(client: VoxlineClient, rate: int, output_rate: int, gate: asyncio.Semaphore,
                stop: asyncio.Event, counts: IdleCounts, offset_s: float,
                frame_ms: int = FRAME_MS) -> None:
    """One hands-free session: connect (``gate`` bounds the connects in flight), then send
    silence until ``stop``."""
    async with Place(gate, stop, counts) as place, contextlib.AsyncExitStack() as stack:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            session = await client.create_session(input_sample_rate=rate,
                                                  output_sample_rate=output_rate)
            conn = await stack.enter_async_context(client.connect(session, resume_for_s=0))
        place.connected()
        reader = asyncio.create_task(_drain(conn, counts))
        try:
            await _send_silence(conn, rate, stop, counts, offset_s, frame_ms)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader


def idle_figures(sessions: int, baseline: tuple[CpuSnapshot, CpuSnapshot],
                 window: tuple[CpuSnapshot, CpuSnapshot]) -> dict[str, Any]:
    """Per group: CPU % with none connected, with ``sessions`` idle ones, and per idle
    session (the difference, divided by the sessions; 100 = one core)."""
    base_s = max(baseline[1].t - baseline[0].t, 1e-9)
    idle_s = max(window[1].t - window[0].t, 1e-9)
    base = cpu_between(*baseline)
    busy = cpu_between(*window)
    groups = sorted(set(base) | set(busy))
    pct_base = {g: 100 * base.get(g, 0.0) / base_s for g in groups}
    pct_busy = {g: 100 * busy.get(g, 0.0) / idle_s for g in groups}
    machine_base, runner_base = machine_between(*baseline)
    machine_busy, runner_busy = machine_between(*window)
    per_session = None
    if sessions > 0:
        per_session = {g: (pct_busy[g] - pct_base[g]) / sessions for g in groups}
    return {
        "baseline_s": round(base_s, 1),
        "window_s": round(idle_s, 1),
        "cpu_percent_no_session": {g: round(v, 2) for g, v in pct_base.items()},
        "cpu_percent_with_sessions": {g: round(v, 2) for g, v in pct_busy.items()},
        # CPU-seconds per second per idle session, in % (100 = a core) and as a fraction
        "cpu_percent_per_idle_session": None if per_session is None else {
            g: round(v, 4) for g, v in per_session.items()},
        "cpu_per_idle_session": None if per_session is None else {
            g: round(v / 100, 6) for g, v in per_session.items()},
        "cpu_s_total": busy,
        "machine_cpu_percent": _split(machine_base / base_s, machine_busy / idle_s, sessions),
        "runner_cpu_percent": _split(runner_base / base_s, runner_busy / idle_s, sessions),
    }


def _split(base: float, busy: float, sessions: int) -> dict[str, float | None]:
    """CPU % of the whole machine (or the runner) without, with, and per idle session."""
    return {"no_session": round(100 * base, 1), "with_sessions": round(100 * busy, 1),
            "per_idle_session": round(100 * (busy - base) / sessions, 4) if sessions else None}


@dataclass
class Crowd:
    """What one crowd of idle clients measured: the CPU with none (``baseline``) and with
    them (``window``), how many were connected when the window opened and when it
    closed, what they sent and received meanwhile, and ``beside``'s result."""

    counts: IdleCounts
    baseline: tuple[CpuSnapshot, CpuSnapshot]
    window: tuple[CpuSnapshot, CpuSnapshot]
    connected: int
    connected_at_end: int
    frames_in_window: int
    events_in_window: Counter[str]
    beside: Any = None


async def measure_crowd(
    probe: ReplicaProbe, size: int, *, seconds: float, baseline_s: float,
    hold: Callable[[asyncio.Semaphore, asyncio.Event, IdleCounts], Awaitable[None]],
    beside: Callable[[], Awaitable[Any]] | None = None,
) -> Crowd:
    """A baseline window with no client, then ``size`` clients (``hold(gate, stop, counts)``
    each: connect through ``gate``, count, hold until ``stop``) connected a few at a time,
    a second for the last ones to settle, and the measured window of ``seconds``;
    ``beside`` runs after it while they still hold (its work is not in the window)."""
    baseline = await probe.window(baseline_s)
    counts = IdleCounts(expected=size)
    stop = asyncio.Event()
    gate = asyncio.Semaphore(CONNECT_AT_ONCE)
    tasks = [asyncio.create_task(hold(gate, stop, counts)) for _ in range(size)]
    connect_deadline = time.monotonic() + CONNECT_TIMEOUT_S + size / CONNECT_AT_ONCE
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(counts.settled.wait(), connect_deadline - time.monotonic())
    await asyncio.sleep(1.0)  # the last ones' first frames, the Gateway's per-client setup
    connected, frames0, events0 = counts.connected, counts.frames, Counter(counts.events)
    window = await probe.window(seconds)
    frames, events = counts.frames - frames0, counts.events - events0
    result = await beside() if beside is not None else None
    connected_at_end = counts.connected - counts.dropped
    stop.set()
    _, late = await asyncio.wait(tasks, timeout=CONNECT_TIMEOUT_S)
    for task in late:  # still connecting after all this: not waited for further
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)
    return Crowd(counts, baseline, window, connected, connected_at_end, frames, events, result)


async def idle_phase(client: VoxlineClient, probe: ReplicaProbe, sessions: int,
                     seconds: float, *, rate: int, output_rate: int,
                     baseline_s: float,
                     bystander: Callable[[], Awaitable[dict[str, Any]]] | None = None,
                     frame_ms: int = FRAME_MS) -> dict[str, Any]:
    """Connect ``sessions`` hands-free sessions sending silence; the section of the report.

    ``bystander``, when given, runs after the CPU window while the sessions still send
    (so its turns do not count in their CPU): what it returns is the section's
    ``bystander`` entry (a talking user's voice-to-voice among the idle crowd)."""
    if not 1 <= sessions <= MAX_IDLE_SESSIONS:
        raise SystemExit(f"--idle-sessions must be 1..{MAX_IDLE_SESSIONS}")
    t0 = time.monotonic() - probe.start
    offsets = random.Random(sessions)

    async def hold(gate: asyncio.Semaphore, stop: asyncio.Event, counts: IdleCounts) -> None:
        await _hold(client, rate, output_rate, gate, stop, counts,
                    offsets.uniform(0, frame_ms / 1000), frame_ms)

    crowd = await measure_crowd(probe, sessions, seconds=seconds, baseline_s=baseline_s,
                                hold=hold, beside=bystander)
    figures = idle_figures(crowd.connected, crowd.baseline, crowd.window)
    start, end = crowd.window
    window_s = max(end.t - start.t, 1e-9)
    return {
        "sessions": sessions,
        "connected": crowd.connected,
        "connected_at_end": crowd.connected_at_end,
        "failed_by_code": dict(crowd.counts.failed),
        "input_sample_rate": rate,
        "frame_ms": frame_ms,
        "t_start": round(t0, 1),
        "t_window_start": round(start.t, 1),
        "t_end": round(end.t, 1),
        "frames_per_s_per_session": round(
            crowd.frames_in_window / window_s / max(crowd.connected, 1), 1),
        "events_in_window": dict(crowd.events_in_window),
        "bystander": crowd.beside,
        **figures,
    }
