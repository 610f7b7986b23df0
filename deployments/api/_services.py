"""What every request handler of the API needs, built once per ingress replica.

:class:`Services` is put on ``app.state`` by :func:`deployments.api.create_api`; the
handlers reach it with the :func:`get_services` dependency (a route parameter typed
``ServicesDep``, from ``_deps``; a socket handler calls it). The ingress deployment
builds it with remote engines (``deployments.handles``); tests may build it with local
ones and serve the same API with plain uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from redis.asyncio import Redis
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket, WebSocketState

from deployments.api._auth import retention_by_key
from deployments.api._readiness import ReadinessMonitor
from pipeline.engines import Engine
from pipeline.log import CallLeases, EventLog, LogFanout, SessionState
from pipeline.meters import GatewayMeters, ReplicaBoard, ReplicaReport
from pipeline.retrieval import CollectionStore, Grounder, Reranker
from pipeline.session import (
    Admission,
    LiveSession,
    Permit,
    RateLimiter,
    SessionEngines,
    SessionTokens,
    Tenant,
    sweep_forever,
)
from pipeline.tools import SearchDocuments, Toolbox
from pipeline.tracing import DeliverySpans
from pipeline.turn import TurnConfig
from pipeline.workers import METRICS_FEED_TYPES
from schemas import EngineError, ErrorCode, SessionSettings, Settings

logger = logging.getLogger(__name__)

#: the close code that tells a socket's client to reconnect (elsewhere) and resume: the
#: server is restarting (RFC 6455's registry: 1012 "Service Restart")
RESUME_ELSEWHERE = 1012

#: how long a stage's description is reused (a stage's engine can be swapped by its
#: user_config without a restart, so it is asked again after a while)
DESCRIBE_TTL_S = 30.0


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
    #: open WebSockets of this replica, closed with RESUME_ELSEWHERE by :meth:`drain`
    sockets: dict[WebSocket, str] = field(default_factory=dict)  # → its session
    #: WebRTC calls of this replica by id, hung up by :meth:`drain` (a call's media
    #: cannot move to another replica)
    calls: dict[str, Call] = field(default_factory=dict)
    #: background worker deployments (handles with ``status()``), for readiness
    workers: dict[str, Any] = field(default_factory=dict)
    #: this replica's capacity (settings.admission): past it, work is refused, not queued
    admission: Admission = field(default_factory=Admission)
    #: retrieval: document collections in Redis, and the search of a turn
    collections: CollectionStore | None = None
    grounder: Grounder | None = None
    #: the server tools the operator allows (settings.tools) and their bounded runner
    toolbox: Toolbox = field(default_factory=Toolbox)
    #: live turns' spans go here (OTLP, when OTEL_EXPORTER_OTLP_* says where); None: off
    tracing: Any = None
    #: what this replica counts about itself, published for the metrics endpoint
    meters: GatewayMeters = field(default_factory=lambda: GatewayMeters(_local_name()))
    _session_permits: dict[LiveSession, Permit] = field(default_factory=dict)
    #: each stage's latest ready description: (when, of which engine, what it said)
    _descriptions: dict[str, tuple[float, Engine, dict[str, Any]]] = field(default_factory=dict)
    #: the describe() call in flight per stage, shared by everyone who asks meanwhile
    _describing: dict[str, asyncio.Task[dict[str, Any]]] = field(default_factory=dict)
    #: the replica's one live reader of the log: every socket and SSE stream tails
    #: through it, so idle readers hold no Redis connection each
    tails: LogFanout = field(init=False)
    #: /readyz answers from this, refreshed in the background (never behind turns)
    readiness_monitor: ReadinessMonitor = field(init=False)
    #: WebRTC offers each client may make a minute (settings.webrtc.offers_per_minute)
    offers: RateLimiter = field(init=False)
    _background: dict[str, asyncio.Task[None]] = field(default_factory=dict)  # report, retention

    def __post_init__(self) -> None:
        self.log.on_append = self.meters.append_timed
        self.tails = LogFanout(self.log, on_deliver=self.meters.delivered)
        self.readiness_monitor = ReadinessMonitor(
            self.readiness, refresh_s=self.settings.api.readiness_refresh_s)
        self.offers = RateLimiter(self.settings.webrtc.offers_per_minute, "call offers")

    async def open_session(
        self, session_id: str, *, create: SessionSettings | None = None,
        state: SessionState | None = None, with_audio: bool = True,
        permit: Permit | None = None, tenant: Tenant | None = None,
    ) -> LiveSession:
        """A live session on the shared engines (text-only replies without ``with_audio``;
        ``tenant``: the API key a new one is made with).

        It takes a place among the replica's live sessions (``permit``, if the caller
        took it already), given back by :meth:`release`; past capacity
        :class:`schemas.OverloadedError` is raised before anything is read or written.
        """
        permit = permit or self.admission.acquire("sessions")
        engines = self.engines
        if not with_audio:
            engines = replace(engines, tts=None)
        try:
            session = await LiveSession.open(
                session_id, self.log, engines, create=create, state=state, tenant=tenant,
                turn_config=self.turn_config, history=self.settings.history,
                admission=self.admission, grounder=self.grounder, toolbox=self.toolbox,
                max_buffer_s=self.settings.api.max_buffer_seconds,
                tracer=None if self.tracing is None else self.tracing.get_tracer("voxline"),
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

    async def describe(self, stage: str) -> dict[str, Any] | None:
        """What ``stage``'s engine says of itself (``None``: the stage is absent).

        A remote engine's ``describe()`` is a round trip to its replica, and requests
        that check a voice or name the model would make one each: a ready answer is
        reused for ``DESCRIBE_TTL_S``, and callers that come while it is being asked share
        that one call (300 sessions created at once must not queue 300 calls at a stage
        that refuses past a bounded queue). :meth:`readiness` always asks afresh.
        """
        engine: Engine | None = getattr(self.engines, stage)
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
        engine is loaded. ``/readyz`` answers from :attr:`readiness_monitor`, which calls
        this in the background."""
        checks: dict[str, Any] = {}
        try:
            await asyncio.wait_for(self.redis.ping(), timeout=2)
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"unavailable: {type(exc).__name__}"
        for stage in ("vad", "turn", "turn_text", "stt", "llm", "tts"):
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
        reranker = self.grounder.reranker if self.grounder is not None else None
        if reranker is not None:  # retrieval's second stage, when placed
            try:
                checks["reranker"] = await asyncio.wait_for(reranker.describe(), timeout=5)
            except Exception as exc:
                checks["reranker"] = f"unavailable: {type(exc).__name__}: {exc}"
        checks["ready"] = checks["redis"] == "ok" and all(
            isinstance(checks[s], dict) and checks[s].get("ready", False)
            for s in ("vad", "turn", "turn_text", "stt", "llm", "tts", *self.workers,
                      *(("reranker",) if reranker is not None else ()))
            if checks[s] != "absent"
        )
        return checks

    def load(self) -> dict[str, Any]:
        """What this replica holds now (cheap, answered live beside the readiness):
        admission per kind, and the live readers of the log (sockets, SSE), all on one
        Redis connection."""
        return {"admission": self.admission.snapshot(),
                "log_tail": {"readers": self.tails.subscribers, "sessions": self.tails.streams}}

    def deliveries(self, reader: str) -> DeliverySpans | None:
        """Spans of a ``reader``'s deliveries (tracing on); None: nothing is traced."""
        if self.tracing is None:
            return None
        return DeliverySpans(self.tracing.get_tracer("voxline"), reader)

    def report(self) -> ReplicaReport:
        """This replica's counts now (:class:`pipeline.meters.GatewayMeters`)."""
        return self.meters.report(self.admission.snapshot(), draining=self.admission.draining,
                                  readers=self.tails.subscribers, sessions=self.tails.streams)

    def start_reporting(self) -> None:
        """Publish :meth:`report` every ``api.metrics_report_s`` (the Metrics deployment
        serves it) and sweep sessions past ``log.retention_days``, until :meth:`aclose`."""
        log, every = self.settings.log, self.settings.api.metrics_report_s
        if "report" not in self._background:
            board = ReplicaBoard.for_interval(self.redis, log.key_prefix, every)
            self._background["report"] = asyncio.create_task(
                board.publish_every(self.report, every), name="replica-report")
        tenants = retention_by_key(self.settings.api)
        if (log.retention_days or tenants) and "retention" not in self._background:
            self._background["retention"] = asyncio.create_task(sweep_forever(
                self.log, log.retention_days, log.retention_sweep_s, tenants=tenants,
                collections=self.collections), name="retention")

    async def drain(self, grace_s: float, *, poll_s: float = 0.1) -> dict[str, int]:
        """The server is stopping: refuse new work (``server_draining``), give the turns
        running now ``grace_s`` to finish, then close every socket with
        :data:`RESUME_ELSEWHERE` so its client resumes on another replica (or this server
        once restarted) from its last event id. Returns what it found (for the log)."""
        self.admission.drain()
        deadline = time.monotonic() + grace_s
        # every turn holds an admission place (socket, chat stream, chat completion)
        for _ in range(math.ceil(grace_s / poll_s)):
            if not self.admission.in_use("turns") or time.monotonic() >= deadline:
                break
            await asyncio.sleep(poll_s)
        cut = self.admission.in_use("turns")
        sockets, calls = list(self.sockets), list(self.calls.values())
        await asyncio.gather(*(close_to_resume(ws) for ws in sockets),
                             *(call.hangup("server_draining") for call in calls))
        logger.info("drained: %d sockets closed, %d calls hung up, %d turns cut after %.0f s",
                    len(sockets), len(calls), cut, grace_s)
        return {"sockets": len(sockets), "calls": len(calls), "turns_cut": cut}

    async def aclose(self) -> None:
        await self.readiness_monitor.aclose()
        for task in self._background.values():  # its report is withdrawn
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for call in list(self.calls.values()):  # each releases its session
            with contextlib.suppress(Exception):
                await call.hangup("shutdown")
        for session in list(self.live):
            with contextlib.suppress(Exception):
                await self.release(session)
        await self.tails.aclose()
        await self.toolbox.aclose()  # MCP servers' connections (a stdio server's process)
        if self.collections is not None:
            await self.collections.aclose()  # its document reader processes
        if self.tracing is not None:  # the batched spans go out (a blocking flush)
            await asyncio.to_thread(self.tracing.shutdown)
        await self.redis.aclose()


class Call(Protocol):
    """A call held by this replica (:class:`pipeline.webrtc.WebRtcCall`)."""

    session: LiveSession

    @property
    def channel(self) -> str: ...

    async def hangup(self, reason: str = "hangup") -> None: ...


async def close_to_resume(ws: WebSocket) -> None:
    """Close a socket with :data:`RESUME_ELSEWHERE` (a client that left is no error)."""
    with contextlib.suppress(Exception):
        if ws.application_state is WebSocketState.CONNECTED:
            await ws.close(code=RESUME_ELSEWHERE, reason="server_draining")


def _local_name() -> str:
    """A Gateway's name outside Serve (tests, the plain API server)."""
    return f"gateway-{uuid.uuid4().hex[:8]}"


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
    turn: Engine | None = None,
    turn_text: Engine | None = None,
    turn_config: TurnConfig | None = None,
    workers: dict[str, Any] | None = None,
    reranker: Reranker | None = None,
    meters: GatewayMeters | None = None,
) -> Services:
    """Connect to Redis, load the session token key and (unless given) the local VAD and
    end-of-turn models (none with ``VOXLINE_TURN__ENGINE=none``, no text one with
    ``VOXLINE_TURN_TEXT__ENGINE=none``)."""
    from pipeline.engines import (
        LanguageModel,
        Synthesizer,
        TextTurnDetector,
        Transcriber,
        TurnDetector,
        VoiceActivityDetector,
        create_engine,
    )
    from pipeline.log import create_redis
    from pipeline.tracing import otlp_tracing
    from schemas import ConfigurationError

    if not settings.redis_url:
        raise ConfigurationError("no Redis configured", setting="VOXLINE_REDIS_URL")
    if vad is None:
        vad = create_engine("vad", settings.vad.engine, settings.vad.engine_options())
        await vad.load()
    if turn is None and settings.turn.engine != "none":
        turn = create_engine("turn", settings.turn.engine, settings.turn.engine_options())
        await turn.load()
    if turn_text is None and settings.turn_text.engine != "none":
        turn_text = create_engine("turn_text", settings.turn_text.engine,
                                  settings.turn_text.engine_options())
        await turn_text.load()
    for engine in (tts, stt):
        if engine is not None:
            await engine.load()
    assert isinstance(llm, LanguageModel)
    assert tts is None or isinstance(tts, Synthesizer)
    assert stt is None or isinstance(stt, Transcriber)
    assert isinstance(vad, VoiceActivityDetector)
    assert turn is None or isinstance(turn, TurnDetector)
    assert turn_text is None or isinstance(turn_text, TextTurnDetector)
    redis = create_redis(settings.redis_url, settings.redis)
    try:
        tokens = await SessionTokens.from_settings(settings, redis)
    except BaseException:
        await redis.aclose()
        raise
    collections = CollectionStore(redis, settings.retrieval, settings.log.key_prefix)
    grounder = Grounder(collections, settings.retrieval, reranker=reranker,
                        history=settings.history)
    log = EventLog(redis, settings.log, feed_types=METRICS_FEED_TYPES)
    leases = CallLeases(redis, log.keys, settings.tools.lease_s)
    services = Services(
        collections=collections,
        grounder=grounder,
        toolbox=Toolbox(settings.tools, [SearchDocuments(grounder)], leases),
        settings=settings,
        redis=redis,
        # errors and cancellations go to the feed too, so metrics count them at once
        log=log,
        engines=SessionEngines(llm=llm, tts=tts, stt=stt, vad=vad, turn=turn,
                               turn_text=turn_text),
        tokens=tokens,
        turn_config=turn_config or TurnConfig(),
        workers=dict(workers or {}),
        admission=Admission(settings.admission),
        tracing=otlp_tracing("voxline-gateway"),
        meters=meters or GatewayMeters(_local_name()),
    )
    services.start_reporting()
    await services.toolbox.start()  # MCP servers listed (bounded; retried if unreachable)
    return services
