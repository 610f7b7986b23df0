"""Live sessions over the real socket, each typing turns, timed from append to delivery.

The load of :mod:`loadtests.bench_log_scale`'s end-to-end phases: sessions spread over
Gateway replicas, each with its native WebSocket (``/v1/sessions/{id}/ws``) open and
tailing the log through its Gateway's shared reader. Turns are offered open-loop at a set
rate (turns per second, all sessions together): each due turn goes to the session idle
longest (one turn at a time per session: a second one would barge in), so with ``N``
sessions and ``N / 60`` turns a second each session types one turn a minute.

Every frame with an id is timed from its append (the millisecond of its stream id,
stamped just before the append is sent) to its arrival here. Frames are not parsed into
events: the id leads each frame (the envelope's first field) and the type is the first
``"type"`` key, which is all the load needs; a generator that parsed 5,000 sessions'
frames with pydantic would measure itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from loadtests._report import percentiles
from voxline.client import VoxlineClient

#: sessions created (and sockets opened) at once, per Gateway
OPEN_BATCH = 50
_TICK_S = 0.005
_ID_HEAD = '{"id":"'
_TYPE_KEY = '"type":"'
#: a turn is over (or never started) at these
_ENDS = frozenset({"response.done", "error"})


@dataclass(frozen=True)
class Window:
    """Frames appended in ``[start, end)`` (wall clock, seconds) count; turns are offered
    at ``turn_rate`` from ``load_from`` until ``end``."""

    load_from: float
    start: float
    end: float
    turn_rate: float


@dataclass
class _Counts:
    """What one window saw."""

    window: Window
    latencies: list[float] = field(default_factory=list)
    turns_sent: int = 0
    turns_done: int = 0
    turn_s: list[float] = field(default_factory=list)
    errors: int = 0
    error_sample: str | None = None
    behind: int = 0


class _Live:
    """One session's socket and its turn in flight."""

    def __init__(self, ws: Any, gateway: int) -> None:
        self.ws = ws
        self.gateway = gateway
        self.turn_started: float | None = None
        self.counted: _Counts | None = None


class SocketLoad:
    """Sessions with open sockets on ``urls`` (one client each), and the turns they type."""

    def __init__(self, urls: list[str], *, speech: bool = False) -> None:
        self.urls = urls
        self.speech = speech
        self.clients = [VoxlineClient(url, timeout=120) for url in urls]
        self.sessions: list[_Live] = []
        self.idle: deque[_Live] = deque()
        self.readers: set[asyncio.Task[None]] = set()
        self.counts: _Counts | None = None
        #: sockets the server closed (or that failed) while the load ran, by close code
        self.closed = 0
        self.close_codes: Counter[str] = Counter()
        self.open_failures: list[str] = []
        #: turns sent and not ended; :attr:`_quiet` is set while there are none
        self.in_flight = 0
        self._quiet = asyncio.Event()
        self._quiet.set()

    async def open(self, count: int) -> float:
        """Create ``count`` more sessions round robin over the Gateways and open their
        sockets; returns the seconds it took. Failures are kept in :attr:`open_failures`."""
        from websockets.asyncio.client import connect

        started = time.perf_counter()
        per = [count // len(self.urls) + (i < count % len(self.urls))
               for i in range(len(self.urls))]

        async def one_gateway(index: int, wanted: int) -> None:
            client = self.clients[index]
            for done in range(0, wanted, OPEN_BATCH):
                batch = min(OPEN_BATCH, wanted - done)
                made = await asyncio.gather(*(client.create_session(
                    realtime_tts=self.speech) for _ in range(batch)), return_exceptions=True)
                infos = [m for m in made if not isinstance(m, BaseException)]
                self.open_failures += [repr(m) for m in made if isinstance(m, BaseException)]
                opened = await asyncio.gather(*(connect(
                    f"{info.ws_url}?token={info.token}", compression=None, max_size=None,
                    open_timeout=60, ping_interval=None) for info in infos),
                    return_exceptions=True)
                for ws in opened:
                    if isinstance(ws, BaseException):
                        self.open_failures.append(repr(ws))
                        continue
                    live = _Live(ws, index)
                    self.sessions.append(live)
                    self.idle.append(live)
                    task = asyncio.create_task(self._read(live))
                    self.readers.add(task)
                    task.add_done_callback(self.readers.discard)

        await asyncio.gather(*(one_gateway(i, n) for i, n in enumerate(per) if n))
        return time.perf_counter() - started

    async def _read(self, live: _Live) -> None:
        with contextlib.suppress(Exception):  # a socket that failed counts as closed
            async for frame in live.ws:
                now = time.time()
                if not isinstance(frame, str):
                    continue
                counts = self.counts
                if counts is not None and frame.startswith(_ID_HEAD):
                    appended_ms = int(frame[7:frame.index("-", 7)])
                    if counts.window.start * 1000 <= appended_ms < counts.window.end * 1000:
                        counts.latencies.append(now * 1000 - appended_ms)
                at = frame.find(_TYPE_KEY)
                kind = frame[at + 8:frame.find('"', at + 8)] if at >= 0 else ""
                if kind in _ENDS and live.turn_started is not None:
                    self._end_turn(live, now, kind, frame)
        self.closed += 1
        self.close_codes[str(live.ws.close_code)] += 1
        if live.turn_started is not None:
            self._end_turn(live, time.time(), "error", "the socket closed")

    def _end_turn(self, live: _Live, now: float, kind: str, frame: str) -> None:
        counted, started = live.counted, live.turn_started
        live.turn_started, live.counted = None, None
        self._turn_ended()
        if counted is not None and started is not None:
            if kind == "error":
                counted.errors += 1
                counted.error_sample = counted.error_sample or frame[:300]
            else:
                counted.turns_done += 1
                counted.turn_s.append(now - started)
        if live.ws.close_code is None:
            self.idle.append(live)

    async def measure(self, window: Window, grace_s: float) -> dict[str, Any]:
        """Offer turns at the window's rate until its end; then what it saw, once turns
        started in it had ``grace_s`` to finish."""
        counts = _Counts(window)
        self.counts = counts
        await asyncio.sleep(max(window.load_from - time.time(), 0))
        due = 0
        while (now := time.time()) < window.end:
            target = int((now - window.load_from) * window.turn_rate)
            while due < target:
                if not self.idle:  # every session is in a turn: we cannot offer more
                    counts.behind += target - due
                    due = target
                    break
                live = self.idle.popleft()
                due += 1
                live.turn_started = time.time()
                self.in_flight += 1
                self._quiet.clear()
                # turns of the warm-up are not counted, their frames may be
                live.counted = counts if live.turn_started >= window.start else None
                if live.counted is not None:
                    counts.turns_sent += 1
                try:
                    await live.ws.send('{"type":"input.text","text":"Tell me something."}')
                except Exception:  # closed: its reader counts it
                    live.turn_started, live.counted = None, None
                    self._turn_ended()
            await asyncio.sleep(_TICK_S)
        await self.settle(window.end + grace_s)
        self.counts = None
        span = window.end - window.start
        return {
            "sessions": len(self.sessions),
            "turn_rate_offered": round(window.turn_rate, 2),
            "turns_sent": counts.turns_sent,
            "turns_done": counts.turns_done,
            "turn_errors": counts.errors,
            "error_sample": counts.error_sample,
            "turns_behind": counts.behind,
            "turn_s": {k: round(v, 3) for k, v in percentiles(counts.turn_s).items()},
            "events_delivered": len(counts.latencies),
            "events_per_s": round(len(counts.latencies) / span, 1),
            "latencies": counts.latencies,
            "sockets_closed": self.closed,
            "close_codes": dict(self.close_codes),
        }

    def _turn_ended(self) -> None:
        self.in_flight -= 1
        if not self.in_flight:
            self._quiet.set()

    async def settle(self, until: float) -> None:
        """Wait (at most until ``until``) for the turns in flight to end."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._quiet.wait(), max(until - time.time(), 0))

    async def aclose(self) -> None:
        await self.settle(time.time() + 10)
        for start in range(0, len(self.sessions), 200):
            await asyncio.gather(*(s.ws.close() for s in self.sessions[start:start + 200]),
                                 return_exceptions=True)
        for task in list(self.readers):
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)
        for client in self.clients:
            with contextlib.suppress(Exception):
                await client.aclose()
