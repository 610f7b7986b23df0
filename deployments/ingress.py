"""The ingress deployment: the FastAPI API in front of the three model stages.

Stateless: everything about a session is in its log, so any replica serves any session
and replicas scale on ongoing requests. Each replica holds the live sockets it accepted,
runs VAD (cheap, onnxruntime) and the turn orchestration, and calls the stage
deployments through handles. It never imports torch.

Clients reach it through Serve's HTTP proxy, or (``settings.ingress == "direct"``, one
replica on one machine: :mod:`voxline.ingress`) on ``settings.host:settings.port``
itself, where the replica serves the same app on a uvicorn server of its own
(:class:`deployments.api.ApiServer`) in the loop that runs the sessions.

On the CPU profiles it also runs the feed's consumers (``consumers=True``:
:class:`deployments.workers.FeedConsumers`), where the GPU profile places Narrator and
Metrics replicas of their own; on the one-machine ``cpu`` profile also the three model
stages (``stages``, their bounds: :class:`deployments.local_stages.LocalStages`), where
the other profiles call their deployments.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from ray import serve

from deployments._replica import name_replica_threads, replica_name
from deployments.api import ApiServer, Services, create_api, start_services
from deployments.handles import (
    RemoteLanguageModel,
    RemoteReranker,
    RemoteSynthesizer,
    RemoteTranscriber,
)
from deployments.local_stages import LocalStages
from deployments.workers import FeedConsumers
from pipeline.aio import SERVING_YOUNG_THRESHOLD, freeze_startup_heap
from pipeline.engines import LanguageModel, Synthesizer, Transcriber
from pipeline.meters import GatewayMeters
from pipeline.reply import ReplyConfig
from pipeline.tracing import install_log_context
from schemas import AdmissionSettings, ConfigurationError, Settings

logger = logging.getLogger(__name__)


class GatewayConfig(BaseModel):
    """The Gateway deployment's ``user_config``: per-replica overrides, applied live."""

    model_config = ConfigDict(extra="forbid")

    admission: dict[str, Any] = Field(
        default_factory=dict,
        description="AdmissionSettings fields (max_turns, max_sessions ...) over the "
        "application's VOXLINE_ADMISSION__* and the profile's measured defaults",
    )

    @field_validator("admission")
    @classmethod
    def _known_limits(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - set(AdmissionSettings.model_fields))
        if unknown:  # a misspelt limit would otherwise be ignored in silence
            raise ValueError(f"unknown admission settings {unknown}; known: "
                             f"{sorted(AdmissionSettings.model_fields)}")
        return value


def configured_admission(
    base: AdmissionSettings, user_config: dict[str, Any]
) -> AdmissionSettings:
    """The limits of a Gateway replica: ``base`` (the application's) with the
    ``user_config``'s on top; an invalid one is a :class:`ConfigurationError`."""
    try:
        config = GatewayConfig.model_validate(user_config)
        return AdmissionSettings.model_validate({**base.model_dump(), **config.admission})
    except ValidationError as exc:
        raise ConfigurationError(f"invalid user_config for the Gateway: {exc}",
                                 setting="Gateway.user_config") from None


#: Every open WebSocket is one ongoing request for its whole life, so this bounds the
#: sockets a replica holds (behind Serve's proxy, and on its own server). An idle one costs
#: ~45 KiB and no Redis connection (one shared log reader per replica,
#: pipeline.log.LogFanout); work is bounded at turn start.
MAX_CONNECTIONS = 2048


@serve.deployment(name="Gateway", ray_actor_options={"num_cpus": 0.5},
                  max_ongoing_requests=MAX_CONNECTIONS)
@serve.ingress()
class Gateway:
    async def __init__(  # type: ignore[misc]  # Serve awaits an async constructor
        self,
        stt: Any,
        llm: Any,
        tts: Any,
        settings: Settings,
        turn: dict[str, Any] | None = None,
        workers: dict[str, Any] | None = None,
        reranker: Any = None,
        consumers: bool = False,
        stages: dict[str, dict[str, int]] | None = None,
    ) -> None:
        install_log_context()  # a session's records say its session, turn and trace
        name_replica_threads("gateway")
        for chatty in ("aioice", "aiortc"):  # every ICE check at INFO: a call's noise
            logging.getLogger(chatty).setLevel(logging.WARNING)
        meters = GatewayMeters(replica_name("gateway"))
        #: the model stages this replica runs itself (``stages``: their bounds), else None
        self.stages: LocalStages | None = None
        #: the feed's consumers this replica runs itself (``consumers``), else None
        self.consumers: FeedConsumers | None = None
        asks = {name: handle.status.remote for name, handle in (workers or {}).items()}
        if consumers:  # started once the replica serves (below)
            self.consumers = FeedConsumers(settings)
            asks = dict.fromkeys(("narrator", "metrics"), self.consumers.status)
        try:
            engines: tuple[Transcriber, LanguageModel, Synthesizer]
            if stages is not None:
                self.stages = await LocalStages.load(settings, stages, meters.stages)
                engines = (self.stages.stt, self.stages.llm, self.stages.tts)
            else:
                engines = (RemoteTranscriber(stt, meters.stages),
                           RemoteLanguageModel(llm, meters.stages),
                           RemoteSynthesizer(tts, meters.stages))
            await self._start(engines, settings, turn, asks, reranker, meters)
        except BaseException:
            if self.consumers is not None:
                await self.consumers.aclose()
            if self.stages is not None:
                await self.stages.aclose()
            raise
        if self.consumers is not None:
            self.consumers.start_all(engines[0], engines[2], settings)
        # the loop serves every socket: no walks of start-up objects, and a reply's objects
        # die young (pipeline/aio/_heap.py)
        freeze_startup_heap(young_threshold=SERVING_YOUNG_THRESHOLD)

    async def _start(self, engines: tuple[Transcriber, LanguageModel, Synthesizer],
                     settings: Settings,
                     turn: dict[str, Any] | None, asks: dict[str, Any], reranker: Any,
                     meters: GatewayMeters) -> None:
        """The services and the API, on the replica's own port with ``direct`` ingress."""
        self.services: Services = await start_services(
            settings,
            stt=engines[0],
            llm=engines[1],
            tts=engines[2],
            turn_config=ReplyConfig(**(turn or {})),
            workers=asks,
            reranker=None if reranker is None else RemoteReranker(reranker),
            meters=meters,
        )
        self._app = create_api(self.services)
        self._server: ApiServer | None = None
        if settings.ingress == "direct":
            # a predecessor (a replica Serve replaces) may hold the port a moment longer
            self._server = ApiServer(self._app, settings.host, settings.port,
                                     bind_wait_s=30.0, limit_concurrency=MAX_CONNECTIONS)
            try:
                await self._server.start()
            except OSError as exc:
                await self.services.aclose()
                raise ConfigurationError(
                    f"the Gateway cannot listen on {settings.host}:{settings.port}: {exc}",
                    setting="VOXLINE_PORT") from None

    def check_health(self) -> None:
        """Serve's health check: a Gateway whose own server stopped serving its port is
        unhealthy (Serve replaces it), whatever its actor still answers. A feed consumer
        of its own that stopped starts again instead: replacing the replica would close
        every live socket."""
        if self.consumers is not None:
            self.consumers.revive()
        if self.stages is not None:
            self.stages.check_health()
        if self._server is not None and not self._server.serving:
            raise RuntimeError(f"the Gateway's server on {self._server.host}:"
                               f"{self._server.port} stopped")

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Validate ``user_config`` and apply its admission limits to this replica; work
        already admitted keeps its place."""
        admission = configured_admission(self.services.settings.admission, user_config)
        self.services.admission.resize(admission)
        logger.info("Gateway admission limits: %s", admission.model_dump())

    def __serve_build_asgi_app__(self) -> FastAPI:
        return self._app

    async def drain(self, grace_s: float | None = None) -> dict[str, int]:
        """Stop taking work, let running turns finish (``grace_s``, default
        ``VOXLINE_API__SHUTDOWN_GRACE_S``), close every socket with 1012 so its client
        resumes elsewhere. ``voxline serve`` calls it (through a handle) on SIGTERM/SIGINT,
        before it stops Serve: Serve's own stop only waits for requests to end, and a
        socket never ends by itself."""
        grace = self.services.settings.api.shutdown_grace_s if grace_s is None else grace_s
        return await self.services.connections.drain(grace)

    async def __del__(self) -> None:
        if self._server is not None:  # the port first: a successor may want it
            await self._server.stop(timeout_s=self.services.settings.api.shutdown_grace_s)
        if self.consumers is not None:
            await self.consumers.aclose()
        await self.services.aclose()
        if self.stages is not None:
            await self.stages.aclose()
