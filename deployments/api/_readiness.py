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


class ReadinessMonitor:
    """The latest readiness of one replica, refreshed by one background task."""

    def __init__(
        self,
        probe: Callable[[], Awaitable[dict[str, Any]]],
        *,
        refresh_s: float,
        stale_s: float | None = None,
    ) -> None:
        self._probe = probe
        self.refresh_s = refresh_s
        #: a probe bounds each dependency's answer (5 s), so two rounds and the
        #: probe's own bound is the longest a healthy loop goes without an answer
        self.stale_s = stale_s if stale_s is not None else 2 * refresh_s + 10
        self._latest: tuple[float, dict[str, Any]] | None = None
        self._first = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="readiness")

    async def _run(self) -> None:
        while True:
            try:
                checks = await self._probe()
            except Exception as exc:  # the loop outlives any one failed round
                logger.warning("readiness probe failed: %s", exc)
                checks = {"ready": False, "probe": f"failed: {type(exc).__name__}: {exc}"}
            self._latest = (time.monotonic(), checks)
            self._first.set()
            await asyncio.sleep(
                self.refresh_s if checks.get("ready") else min(self.refresh_s,
                                                               NOT_READY_REFRESH_S))

    async def current(self) -> dict[str, Any]:
        """The latest answer with ``checked_ms_ago``; waits only for the very first one."""
        self.start()
        await self._first.wait()
        assert self._latest is not None
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
