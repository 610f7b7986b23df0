"""The replica's engines as the API sees them: what each stage says of itself, and
whether the replica is ready.

A remote engine's ``describe()`` is a round trip to its replica, and requests that check
a voice or name the model would make one each: a ready answer is reused for
:data:`DESCRIBE_TTL_S`, and callers that come while it is being asked share that one
call (300 sessions created at once must not queue 300 calls at a stage that refuses past
a bounded queue). :meth:`EngineCatalogue.readiness` always asks afresh; ``/readyz``
answers from a :class:`deployments.api._readiness.ReadinessMonitor` that calls it in the
background.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from pipeline.engines import Engine
from pipeline.retrieval import Reranker
from pipeline.session import SessionEngines

#: how long a stage's description is reused (a stage's engine can be swapped by its
#: user_config without a restart, so it is asked again after a while)
DESCRIBE_TTL_S = 30.0
#: the stages, in the order readiness lists them
STAGES = ("vad", "turn", "turn_text", "stt", "llm", "tts")


class EngineCatalogue:
    """Descriptions and readiness of the engines (and the workers, the re-ranker)
    ``source`` gives: read at each call, so an engine swapped in is the one asked."""

    def __init__(self, redis: Redis, source: Callable[[], SessionEngines],
                 workers: dict[str, Any], reranker: Callable[[], Reranker | None]) -> None:
        self.redis = redis
        self._engines = source
        self.workers = workers
        self._reranker = reranker
        #: each stage's latest ready description: (when, of which engine, what it said)
        self._descriptions: dict[str, tuple[float, Engine, dict[str, Any]]] = {}
        #: the describe() call in flight per stage, shared by everyone who asks meanwhile
        self._describing: dict[str, asyncio.Task[dict[str, Any]]] = {}

    async def describe(self, stage: str) -> dict[str, Any] | None:
        """What ``stage``'s engine says of itself (``None``: the stage is absent)."""
        engine: Engine | None = getattr(self._engines(), stage)
        if engine is None:
            return None
        cached = self._descriptions.get(stage)
        if cached is not None and cached[1] is engine and (
                time.monotonic() - cached[0] < DESCRIBE_TTL_S):
            return cached[2]
        task = self._describing.get(stage)
        if task is None:
            task = self._describing[stage] = asyncio.create_task(
                self._describe(stage, engine), name=f"describe-{stage}")
            task.add_done_callback(lambda _: self._describing.pop(stage, None))
        return await asyncio.shield(task)  # one caller leaving does not end it for all

    async def _describe(self, stage: str, engine: Engine) -> dict[str, Any]:
        info = await engine.describe()
        if info.get("ready", False):
            self._descriptions[stage] = (time.monotonic(), engine, info)
        return info

    async def readiness(self) -> dict[str, Any]:
        """Each dependency's state, asked afresh; ready when Redis answers and every
        engine is loaded."""
        checks: dict[str, Any] = {}
        try:
            await asyncio.wait_for(self.redis.ping(), timeout=2)
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"unavailable: {type(exc).__name__}"
        engines = self._engines()
        for stage in STAGES:
            engine: Engine | None = getattr(engines, stage)
            if engine is None:
                checks[stage] = "absent"
                continue
            checks[stage] = await _asked(engine.describe())
        for name, handle in self.workers.items():
            checks[name] = await _asked(handle.status.remote())
        reranker = self._reranker()
        if reranker is not None:  # retrieval's second stage, when placed
            checks["reranker"] = await _asked(reranker.describe())
        checks["ready"] = checks["redis"] == "ok" and all(
            isinstance(checks[s], dict) and checks[s].get("ready", False)
            for s in (*STAGES, *self.workers, *(("reranker",) if reranker is not None else ()))
            if checks[s] != "absent"
        )
        return checks


async def _asked(answer: Any) -> Any:
    """What a dependency answered within 5 s, or why it did not."""
    try:
        return await asyncio.wait_for(answer, timeout=5)
    except Exception as exc:
        return f"unavailable: {type(exc).__name__}: {exc}"
