"""What every request handler of the API needs, built once per ingress replica.

:class:`Services` is put on ``app.state`` by :func:`deployments.api.create_api`; the
handlers reach it with the :func:`get_services` dependency (a route parameter typed
``ServicesDep``, from ``_deps``; a socket handler calls it). The ingress deployment
builds it with remote engines (``deployments.handles``); tests may build it with local
ones and serve the same API with plain uvicorn.

It is the wiring: the settings, Redis, the log and the engines a session runs on, built
once (:func:`start_services`), and what it made of them. What it holds open for clients
is :class:`deployments.api._connections.Connections` (``services.connections``: live
sessions, sockets, calls, drain); what the engines say of themselves and whether the
replica is ready is :class:`deployments.api._catalogue.EngineCatalogue`
(``services.catalogue``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from redis.asyncio import Redis
from starlette.requests import HTTPConnection

from deployments.api._auth import retention_by_key
from deployments.api._catalogue import EngineCatalogue
from deployments.api._connections import Connections
from deployments.api._readiness import ReadinessMonitor
from pipeline.engines import Engine
from pipeline.log import CallLeases, EventLog, LogFanout, SessionState
from pipeline.meters import GatewayMeters, ReplicaBoard, ReplicaReport
from pipeline.reply import ReplyConfig
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
    turn_config: ReplyConfig = field(default_factory=ReplyConfig)
    #: how to ask each background worker its status (``/readyz``): a worker replica's
    #: handle's ``status.remote``, or the Gateway's own consumers' ``status``
    workers: dict[str, Callable[[], Awaitable[Any]]] = field(default_factory=dict)
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
    #: live sessions, sockets and calls of this replica (under ``admission``)
    connections: Connections = field(init=False)
    #: what the engines say of themselves, and readiness
    catalogue: EngineCatalogue = field(init=False)
    #: the replica's one live reader of the log: every socket and SSE stream tails
    #: through it, so idle readers hold no Redis connection each
    tails: LogFanout = field(init=False)
    #: /readyz answers from this, refreshed in the background (never behind turns)
    readiness_monitor: ReadinessMonitor = field(init=False)
    #: WebRTC offers each client may make a minute (settings.webrtc.offers_per_minute)
    offers: RateLimiter = field(init=False)
    _background: dict[str, asyncio.Task[None]] = field(default_factory=dict)  # report, retention

    def __post_init__(self) -> None:
        self.connections = Connections(self.admission)
        self.catalogue = EngineCatalogue(
            self.redis, lambda: self.engines, self.workers,
            lambda: None if self.grounder is None else self.grounder.reranker)
        self.log.on_append = self.meters.append_timed
        self.tails = LogFanout(self.log, on_deliver=self.meters.delivered)
        self.readiness_monitor = ReadinessMonitor(
            self.catalogue.readiness, refresh_s=self.settings.api.readiness_refresh_s)
        self.offers = RateLimiter(self.settings.webrtc.offers_per_minute, "call offers")

    async def open_session(
        self, session_id: str, *, create: SessionSettings | None = None,
        state: SessionState | None = None, with_audio: bool = True,
        permit: Permit | None = None, tenant: Tenant | None = None,
    ) -> LiveSession:
        """A live session on the shared engines (text-only replies without ``with_audio``;
        ``tenant``: the API key a new one is made with).

        It takes a place among the replica's live sessions (``permit``, if the caller
        took it already), given back by ``connections.release``; past capacity
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
        self.connections.hold(session, permit)
        return session

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

    async def aclose(self) -> None:
        await self.readiness_monitor.aclose()
        for task in self._background.values():  # its report is withdrawn
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.connections.aclose()
        await self.tails.aclose()
        await self.toolbox.aclose()  # MCP servers' connections (a stdio server's process)
        if self.collections is not None:
            await self.collections.aclose()  # its document reader processes
        if self.tracing is not None:  # the batched spans go out (a blocking flush)
            await asyncio.to_thread(self.tracing.shutdown)
        await self.redis.aclose()


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
    turn_config: ReplyConfig | None = None,
    workers: dict[str, Callable[[], Awaitable[Any]]] | None = None,
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
        turn_config=turn_config or ReplyConfig(),
        workers=dict(workers or {}),
        admission=Admission(settings.admission),
        tracing=otlp_tracing("voxline-gateway"),
        meters=meters or GatewayMeters(_local_name()),
    )
    services.start_reporting()
    await services.toolbox.start()  # MCP servers listed (bounded; retried if unreachable)
    return services
