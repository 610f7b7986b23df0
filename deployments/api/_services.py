"""What every request handler of the API needs, built once per ingress replica.

:class:`Services` is put on ``app.state`` by :func:`deployments.api.create_api`; the
handlers reach it with the :func:`get_services` dependency. The ingress deployment
builds it with remote engines (``deployments.handles``); tests may build it with local
ones and serve the same API with plain uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from starlette.requests import HTTPConnection

from pipeline.engines import Engine
from pipeline.log import EventLog, LogFanout, SessionState
from pipeline.session import Admission, LiveSession, Permit, SessionEngines, SessionTokens
from pipeline.turn import TurnConfig
from pipeline.workers import METRICS_FEED_TYPES
from schemas import EngineError, ErrorCode, SessionSettings, Settings

logger = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    redis: Redis
    log: EventLog
    engines: SessionEngines
    tokens: SessionTokens
    turn_config: TurnConfig = field(default_factory=TurnConfig)
    #: live sockets and streams of this replica, closed on shutdown
    live: set[LiveSession] = field(default_factory=set)
    #: background worker deployments (handles with ``status()``), for readiness
    workers: dict[str, Any] = field(default_factory=dict)
    #: this replica's capacity (settings.admission): past it, work is refused, not queued
    admission: Admission = field(default_factory=Admission)
    _session_permits: dict[LiveSession, Permit] = field(default_factory=dict)
    #: the replica's one live reader of the log: every socket and SSE stream tails
    #: through it, so idle readers hold no Redis connection each
    tails: LogFanout = field(init=False)

    def __post_init__(self) -> None:
        self.tails = LogFanout(self.log)

    async def open_session(
        self,
        session_id: str,
        *,
        create: SessionSettings | None = None,
        state: SessionState | None = None,
        with_audio: bool = True,
        permit: Permit | None = None,
    ) -> LiveSession:
        """A live session on the shared engines (text-only replies without ``with_audio``).

        It takes a place among the replica's live sessions (``permit``, if the caller
        took it already), given back by :meth:`release`; past capacity
        :class:`schemas.OverloadedError` is raised before anything is read or written.
        """
        permit = permit or self.admission.acquire("sessions")
        engines = self.engines
        if not with_audio:
            engines = SessionEngines(llm=engines.llm, tts=None, stt=engines.stt, vad=engines.vad)
        try:
            session = await LiveSession.open(
                session_id, self.log, engines, create=create, state=state,
                turn_config=self.turn_config, history=self.settings.history,
                admission=self.admission,
            )
        except BaseException:
            permit.release()
            raise
        self.live.add(session)
        self._session_permits[session] = permit
        return session

    async def release(self, session: LiveSession, reason: str | None = None) -> None:
        self.live.discard(session)
        permit = self._session_permits.pop(session, None)
        try:
            await session.close(reason)
        finally:
            if permit is not None:
                permit.release()

    async def readiness(self) -> dict[str, Any]:
        """Each dependency's state; ready when Redis answers and every engine is loaded."""
        checks: dict[str, Any] = {}
        try:
            await asyncio.wait_for(self.redis.ping(), timeout=2)
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"unavailable: {type(exc).__name__}"
        for stage in ("vad", "stt", "llm", "tts"):
            engine: Engine | None = getattr(self.engines, stage)
            if engine is None:
                checks[stage] = "absent"
                continue
            try:
                checks[stage] = await asyncio.wait_for(engine.describe(), timeout=5)
            except Exception as exc:
                checks[stage] = f"unavailable: {type(exc).__name__}: {exc}"
        for name, handle in self.workers.items():
            try:
                checks[name] = await asyncio.wait_for(handle.status.remote(), timeout=5)
            except Exception as exc:
                checks[name] = f"unavailable: {type(exc).__name__}: {exc}"
        # live readers (sockets, SSE) of this replica, all on one Redis connection
        checks["log_tail"] = {"readers": self.tails.subscribers, "sessions": self.tails.streams}
        checks["ready"] = checks["redis"] == "ok" and all(
            isinstance(checks[s], dict) and checks[s].get("ready", False)
            for s in ("vad", "stt", "llm", "tts", *self.workers)
            if checks[s] != "absent"
        )
        return checks

    async def aclose(self) -> None:
        for session in list(self.live):
            with contextlib.suppress(Exception):
                await self.release(session)
        await self.tails.aclose()
        await self.redis.aclose()


def get_services(connection: HTTPConnection) -> Services:
    """FastAPI dependency (HTTP and WebSocket routes alike)."""
    services: Services | None = getattr(connection.app.state, "services", None)
    if services is None:
        raise EngineError("the server is starting", code=ErrorCode.ENGINE_OVERLOADED,
                          transient=True, http_status=503)
    return services


async def start_services(
    settings: Settings,
    *,
    llm: Engine,
    tts: Engine | None,
    stt: Engine | None,
    vad: Engine | None = None,
    turn_config: TurnConfig | None = None,
    workers: dict[str, Any] | None = None,
) -> Services:
    """Connect to Redis, load the session token key and (unless given) the local VAD."""
    from pipeline.engines import (
        LanguageModel,
        Synthesizer,
        Transcriber,
        VoiceActivityDetector,
        create_engine,
    )
    from pipeline.log import create_redis
    from schemas import ConfigurationError

    if not settings.redis_url:
        raise ConfigurationError("no Redis configured", setting="VOXLINE_REDIS_URL")
    if vad is None:
        vad = create_engine("vad", settings.vad.engine, settings.vad.engine_options())
        await vad.load()
    for engine in (tts, stt):
        if engine is not None:
            await engine.load()
    assert isinstance(llm, LanguageModel)
    assert tts is None or isinstance(tts, Synthesizer)
    assert stt is None or isinstance(stt, Transcriber)
    assert isinstance(vad, VoiceActivityDetector)
    redis = create_redis(settings.redis_url, settings.redis)
    try:
        tokens = await SessionTokens.from_settings(settings, redis)
    except BaseException:
        await redis.aclose()
        raise
    return Services(
        settings=settings,
        redis=redis,
        # errors and cancellations go to the feed too, so metrics count them at once
        log=EventLog(redis, settings.log, feed_types=METRICS_FEED_TYPES),
        engines=SessionEngines(llm=llm, tts=tts, stt=stt, vad=vad),
        tokens=tokens,
        turn_config=turn_config or TurnConfig(),
        workers=dict(workers or {}),
        admission=Admission(settings.admission),
    )
