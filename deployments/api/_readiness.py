"""``/readyz`` answered from state kept current off the request path.

Load balancers and Kubernetes ask every few seconds, and operators ask when things are
slow: exactly when the stages are busiest. Asking every stage afresh per probe puts the
probe in the stages' queues behind the turns (a ``/readyz`` took over 5 s under load, and
a probe that times out takes a healthy replica out of service). So one background task
per replica refreshes the answer every ``refresh_s`` (faster while not ready, so start-up
is seen at once), and a probe answers from the latest one with its age. A refresh that
stalls past ``stale_s`` makes the answer not ready: a replica that cannot even ask its
stages should not get traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

logger = logging.getLogger(__name__)

#: while not ready, refresh at least this often (start-up is watched by wait_ready)
NOT_READY_REFRESH_S = 0.5
#: the longest one round of checks may take before it counts as not ready
ROUND_S = 30.0
#: the longest a probe waits for the replica's very first answer
FIRST_ANSWER_S = 5.0


class ReadinessMonitor:
    """The latest readiness of one replica, refreshed by one background task."""

    def __init__(
        self,
        probe: Callable[[], Awaitable[dict[str, Any]]],
        *,
        refresh_s: float,
        round_s: float = ROUND_S,
        stale_s: float | None = None,
    ) -> None:
        self._probe = probe
        self.refresh_s = refresh_s
        #: one round's bound, above the probe's own (it asks every dependency at once,
        #: each within 5 s): a call that does not end when cancelled cannot hold the loop
        self.round_s = round_s
        #: two rounds and a round's bound is the longest a healthy loop goes without an
        #: answer
        self.stale_s = stale_s if stale_s is not None else 2 * refresh_s + round_s
        self._latest: tuple[float, dict[str, Any]] | None = None
        self._first = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the background check, or start it again if it ended: a check loop that
        died would leave every probe at "the first check is still running" for good."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="readiness")

    async def _run(self) -> None:
        while True:
            # A round is awaited with asyncio.wait, never wait_for: a dependency whose call
            # does not end when cancelled (a handle to a replica still starting) would hold
            # wait_for, and with it every probe, for good. Past its bound the round is
            # cancelled and left; the next one asks afresh.
            probe = asyncio.ensure_future(self._probe())
            done, _ = await asyncio.wait({probe}, timeout=self.round_s)
            if probe not in done:
                probe.cancel()
                checks: dict[str, Any] = {
                    "ready": False, "probe": f"no answer within {self.round_s:.0f} s"}
            elif probe.cancelled():  # a call inside it ended cancelled (a stage's handle)
                checks = {"ready": False, "probe": "the check was cancelled"}
            elif (exc := probe.exception()) is not None:  # the loop outlives a failed round
                logger.warning("readiness probe failed: %s", exc)
                checks = {"ready": False, "probe": f"failed: {type(exc).__name__}: {exc}"}
            else:
                checks = probe.result()
            self._latest = (time.monotonic(), checks)
            self._first.set()
            await asyncio.sleep(
                self.refresh_s if checks.get("ready") else min(self.refresh_s,
                                                               NOT_READY_REFRESH_S))

    async def current(self) -> dict[str, Any]:
        """The latest answer with ``checked_ms_ago``; waits (briefly) only for the very
        first one."""
        self.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first.wait(), FIRST_ANSWER_S)
        if self._latest is None:  # the first round is still asking
            return {"ready": False, "probe": "the first check is still running",
                    "checked_ms_ago": None}
        at, checks = self._latest
        age_s = time.monotonic() - at
        answer = {**checks, "checked_ms_ago": round(age_s * 1000)}
        if age_s > self.stale_s:
            answer["ready"] = False
            answer["stale"] = f"no readiness answer for {age_s:.0f} s"
        return answer

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
