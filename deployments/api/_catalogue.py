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
from collections.abc import Awaitable, Callable
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
#: how long a readiness round waits for a stage's or worker's answer, and for Redis's
ASK_BOUND_S, REDIS_BOUND_S = 5.0, 2.0


class EngineCatalogue:
    """Descriptions and readiness of the engines (and the workers, the re-ranker)
    ``source`` gives: read at each call, so an engine swapped in is the one asked."""

    def __init__(self, redis: Redis, source: Callable[[], SessionEngines],
                 workers: dict[str, Callable[[], Awaitable[Any]]],
                 reranker: Callable[[], Reranker | None]) -> None:
        self.redis = redis
        self._engines = source
        self.workers = workers
        self._reranker = reranker
        #: each stage's latest ready description: (when, of which engine, what it said)
        self._descriptions: dict[str, tuple[float, Engine, dict[str, Any]]] = {}
        #: the describe() call in flight per stage, shared by everyone who asks meanwhile
        self._describing: dict[str, asyncio.Task[dict[str, Any]]] = {}
        #: the dependencies ready at the last readiness round, with what they answered
        self._ready: dict[str, Any] = {}

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
        """Each dependency's state, asked afresh and all at once (a round takes its slowest
        answer, not their sum); ready when Redis answers and every engine is loaded.

        A dependency that answered ready at the last round and now does not answer in time
        is busy, not gone: a loaded machine (CI's two cores, every stage working) delays a
        round trip past its bound now and then, and one late answer took the replica out of
        service for a round. So its last ready answer stands for one round, named under
        ``slow``; late twice running, or failing in any other way, it is not ready."""
        engines = self._engines()
        asks: dict[str, Awaitable[Any]] = {"redis": _pinged(self.redis)}
        for stage in STAGES:
            engine: Engine | None = getattr(engines, stage)
            if engine is not None:
                asks[stage] = engine.describe()
        for name, status in self.workers.items():
            asks[name] = status()
        reranker = self._reranker()
        if reranker is not None:  # retrieval's second stage, when placed
            asks["reranker"] = reranker.describe()
        answers = await asyncio.gather(*(
            _asked(ask, bound_s=REDIS_BOUND_S if name == "redis" else ASK_BOUND_S)
            for name, ask in asks.items()))
        checks: dict[str, Any] = {name: "absent" for name in ("redis", *STAGES)}
        slow: list[str] = []
        was_ready, self._ready = self._ready, {}
        for name, (answer, late) in zip(asks, answers, strict=True):
            if _is_ready(answer):
                self._ready[name] = answer
            elif late and name in was_ready:
                answer = was_ready[name]
                slow.append(name)
            checks[name] = answer
        checks["ready"] = all(_is_ready(checks[name]) for name in asks)
        if slow:
            checks["slow"] = slow
        return checks


async def _pinged(redis: Redis) -> str:
    await redis.ping()
    return "ok"


def _is_ready(answer: Any) -> bool:
    """Redis's "ok", or an engine's or worker's description that says it is ready."""
    if isinstance(answer, dict):
        return bool(answer.get("ready", False))
    return bool(answer == "ok")


async def _asked(answer: Awaitable[Any], *, bound_s: float) -> tuple[Any, bool]:
    """What a dependency answered within ``bound_s``, or why it did not; and whether it
    was only late."""
    try:
        return await asyncio.wait_for(answer, timeout=bound_s), False
    except TimeoutError:
        return f"unavailable: no answer within {bound_s:g} s", True
    except Exception as exc:
        return f"unavailable: {type(exc).__name__}: {exc}", False
