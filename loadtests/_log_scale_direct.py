"""The log alone, without HTTP: writer processes append, reader processes tail.

:mod:`loadtests.bench_log_scale` measures the log under the Gateways, where most CPU goes
to the turn and the sockets; this isolates what is left, the log. Writer processes append
text deltas through :class:`pipeline.log.EventLog` (one event per append, as the
Gateway's coalesced deltas go) to sessions of their own, open-loop at a set rate; reader
processes tail every session through one :class:`pipeline.log.LogFanout` each (the
Gateway's shared tail reader) and time each event from its append (the millisecond of its
stream id, stamped just before the append is sent) to the moment the tail yields it.

Each agent is a process of its own (one core each at most, as a Gateway replica, its
start-up heap frozen as a replica freezes its own: :func:`pipeline.aio.freeze_startup_heap`),
driven step by step through its stdin and stdout, a JSON line each way: the parent names
a window (wall-clock times, the same clock in every process) and a rate; writers append at
that rate until its end; readers count the events *appended* inside the window that
reached them, with their latencies, and answer once the window plus a grace has passed::

    python -m loadtests._log_scale_direct writer|reader REDIS_URL KEY_PREFIX S1,S2,... PARTITIONS
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import select
import subprocess
import sys
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtests._replica_loop import replica_loop
from loadtests._report import percentiles

#: a session has at most one append in flight (ids stay in order), so this bounds a
#: writer's appends in flight: below the cluster client's 100 connections per node, past
#: which redis-py's cluster client fails a command (MaxConnectionsError) instead of waiting
SESSIONS_PER_WRITER = 64
#: how long after a window a reader keeps counting events appended in it
GRACE_S = 1.0
_TICK_S = 0.002
_ANSWER_TIMEOUT_S = 60.0
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Window:
    """Events appended in ``[start, end)`` (wall clock, seconds) count; ``rate`` is what
    each writer offers from ``load_from`` until ``end`` (the warm-up included)."""

    load_from: float
    start: float
    end: float
    rate: float


def session_ids(writer: int, count: int) -> list[str]:
    return [f"w{writer}-s{i}" for i in range(count)]


# ---- in the child processes ------------------------------------------------------------


async def _agent(role: str, url: str, prefix: str, sessions: list[str],
                 partitions: int) -> None:
    """A writer or a reader: a window per line of stdin, an answer per line of stdout,
    until stdin closes."""
    from pipeline.aio import SERVING_YOUNG_THRESHOLD, freeze_startup_heap
    from pipeline.log import EventLog, LogFanout, create_redis
    from schemas import Settings

    redis = create_redis(url)
    # the product's VOXLINE_LOG__* settings (VOXLINE_LOG__LIVE_READ=changes: the blocking
    # read of the changes stream instead of pushes), with the run's keys
    settings = Settings().log.model_copy(update={"key_prefix": prefix, "partitions": partitions})
    log = EventLog(redis, settings)
    fanout = LogFanout(log)
    reader = _Reader(fanout, sessions) if role == "reader" else None
    loop = asyncio.get_running_loop()
    try:
        if reader is not None:
            await reader.start()
        else:  # the cluster client learns the slots before the first window
            await redis.ping()
        # as a Gateway replica does once it has started
        freeze_startup_heap(young_threshold=SERVING_YOUNG_THRESHOLD)
        print(json.dumps({"pid": os.getpid()}), flush=True)
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            window = Window(**json.loads(line))
            if reader is not None:
                answer = await reader.measure(window)
            else:
                answer = await _write(log, sessions, window)
            print(json.dumps(answer), flush=True)
    finally:
        if reader is not None:
            await reader.stop()
        await fanout.aclose()
        await redis.aclose()


async def _write(log: Any, sessions: list[str], window: Window) -> dict[str, Any]:
    """Append at ``window.rate`` until its end; how many, and what an append took."""
    from schemas import ResponseTextDelta, TextDeltaData

    idle = deque(sessions)
    tasks: set[asyncio.Task[None]] = set()
    append_ms: list[float] = []
    counts = {"appended": 0, "failed": 0, "behind": 0}

    async def one(session_id: str, number: int) -> None:
        event = ResponseTextDelta(session_id=session_id, turn_id="t",
                                  data=TextDeltaData(delta=f" word{number}"))
        started = time.perf_counter()
        try:
            await log.append(event)
            counts["appended"] += 1
            append_ms.append((time.perf_counter() - started) * 1000)
        except Exception:
            counts["failed"] += 1
        finally:
            idle.append(session_id)

    await asyncio.sleep(max(window.load_from - time.time(), 0))
    pipelines = log.appends.pipelines
    due = 0
    late_ms: list[float] = []  # how late each tick woke: the writer's loop held up
    while (now := time.time()) < window.end:
        target = int((now - window.load_from) * window.rate)
        while due < target:
            if not idle:  # every session has an append in flight: we cannot offer more
                counts["behind"] += target - due
                due = target
                break
            task = asyncio.create_task(one(idle.popleft(), due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            due += 1
        slept = time.perf_counter()
        await asyncio.sleep(_TICK_S)
        late_ms.append((time.perf_counter() - slept - _TICK_S) * 1000)
    if tasks:
        await asyncio.wait(tasks, timeout=10)
    return {**counts, "append_ms": percentiles(append_ms),
            "round_trips": log.appends.pipelines - pipelines,
            "loop_late_ms": percentiles(late_ms)}


class _Reader:
    """Tails every session through one LogFanout; counts what a window's appends did."""

    def __init__(self, fanout: Any, sessions: list[str]) -> None:
        self.fanout = fanout
        self.sessions = sessions
        self.tasks: list[asyncio.Task[None]] = []
        self.window: Window | None = None
        self.latencies: list[float] = []
        self.errors: list[str] = []

    async def start(self) -> None:
        self.tasks = [asyncio.create_task(self._tail(s)) for s in self.sessions]
        for _ in range(500):  # every tail joined the live read
            if self.fanout.subscribers >= len(self.sessions):
                return
            await asyncio.sleep(0.01)

    async def _tail(self, session_id: str) -> None:
        async for event in self.fanout.tail(session_id):
            now_ms = time.time() * 1000
            window = self.window
            if window is None:
                continue
            appended_ms = int((event.id or "0").split("-", 1)[0])
            if window.start * 1000 <= appended_ms < window.end * 1000:
                self.latencies.append(now_ms - appended_ms)

    async def measure(self, window: Window) -> dict[str, Any]:
        self.window, self.latencies = window, []
        await asyncio.sleep(max(window.start - time.time(), 0))
        reads, pushes = self.fanout.reads, self.fanout.pushes
        await asyncio.sleep(max(window.end - time.time(), 0))
        reads = self.fanout.reads - reads  # the live reads sent in the measured span
        pushes = self.fanout.pushes - pushes  # and the appends Redis pushed
        await asyncio.sleep(max(window.end + GRACE_S - time.time(), 0))
        self.window = None
        failed = [t for t in self.tasks if t.done()]
        errors = [repr(t.exception()) for t in failed if not t.cancelled() and t.exception()]
        return {"latencies": self.latencies, "tails_ended": len(failed), "reads": reads,
                "pushes": pushes, "error": errors[0] if errors else None}

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


# ---- in the parent ---------------------------------------------------------------------


class LogAgents:
    """``writers`` writer and ``readers`` reader processes on one log; a context manager."""

    def __init__(self, url: str, *, writers: int, readers: int, partitions: int,
                 sessions_per_writer: int = SESSIONS_PER_WRITER) -> None:
        self.url = url
        self.partitions = partitions
        self.prefix = f"voxbench:{uuid.uuid4().hex[:8]}"
        self.writers = writers
        self.readers = readers
        self.sessions_per_writer = sessions_per_writer
        self.pids: dict[str, list[int]] = {"log writers": [], "log readers": []}
        self._procs: list[tuple[str, subprocess.Popen[str]]] = []

    def __enter__(self) -> LogAgents:
        every = [session_ids(w, self.sessions_per_writer) for w in range(self.writers)]
        flat = [s for sessions in every for s in sessions]
        plan = [("writer", sessions) for sessions in every]
        plan += [("reader", flat[r::self.readers]) for r in range(self.readers)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
        try:
            for role, sessions in plan:
                self._procs.append((role, subprocess.Popen(
                    [sys.executable, "-m", "loadtests._log_scale_direct", role, self.url,
                     self.prefix, ",".join(sessions), str(self.partitions)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
                    env=env)))
            for role, proc in self._procs:
                self.pids[f"log {role}s"].append(_answer(proc, _ANSWER_TIMEOUT_S)["pid"])
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def window(self, rate: float, step_s: float, warm_s: float) -> Window:
        """The next step's window: ``rate`` events/s in all, starting in 0.2 s."""
        load_from = time.time() + 0.2
        return Window(load_from, load_from + warm_s, load_from + step_s, rate / self.writers)

    def measure(self, window: Window) -> dict[str, list[dict[str, Any]]]:
        """One step (blocking): what each writer and reader answered."""
        line = json.dumps(dataclasses.asdict(window)) + "\n"
        for _, proc in self._procs:
            assert proc.stdin is not None
            proc.stdin.write(line)
            proc.stdin.flush()
        answers: dict[str, list[dict[str, Any]]] = {"writer": [], "reader": []}
        for role, proc in self._procs:
            timeout = window.end - time.time() + GRACE_S + _ANSWER_TIMEOUT_S
            answers[role].append(_answer(proc, timeout))
        return answers

    def __exit__(self, *exc: object) -> None:
        for _, proc in self._procs:
            with contextlib.suppress(OSError):
                assert proc.stdin is not None
                proc.stdin.close()
        for _, proc in self._procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        self._procs = []


def _answer(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    """The agent's next line, as JSON (an error if it sends none in time)."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], max(timeout, 0.0))
    line = proc.stdout.readline() if ready else ""
    if not line:
        raise RuntimeError(f"a log agent (pid {proc.pid}) did not answer")
    answer: dict[str, Any] = json.loads(line)
    return answer


def main() -> None:
    role, url, prefix, sessions, partitions = sys.argv[1:6]
    # on the loop of the Ray workers whose appends and tails these stand in for
    with asyncio.Runner(loop_factory=replica_loop()) as runner:
        runner.run(_agent(role, url, prefix, sessions.split(","), int(partitions)))


if __name__ == "__main__":
    main()
