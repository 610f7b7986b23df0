"""The background workers as Serve deployments: long-running consumers of the feed.

``Narrator`` runs auto-play narration and the WhisperX re-transcription (both write to
the log through the stage deployments); ``Metrics`` turns finished turns into
OpenTelemetry histograms and counters served on a Prometheus endpoint. Each replica is
one consumer of its consumer groups, so they scale like the other deployments: more
replicas share the feed, and a replica that dies has its pending entries claimed by the
others. Serve restarts a replica whose consumer loop ended (``check_health``).
``Workers`` runs both in one replica, for the profiles of one machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from ray import serve

from deployments._replica import replica_name
from deployments.handles import RemoteSynthesizer, RemoteTranscriber
from pipeline.aio import freeze_startup_heap
from pipeline.log import EventLog, create_redis
from schemas import ConfigurationError, Settings

logger = logging.getLogger(__name__)


class _Consumers:
    """Tasks that must run for the replica's whole life."""

    def __init__(self, settings: Settings) -> None:
        if not settings.redis_url:
            raise ConfigurationError("no Redis configured", setting="VOXLINE_REDIS_URL")
        self.redis = create_redis(settings.redis_url, settings.redis)
        self.log = EventLog(self.redis, settings.log)
        self.tasks: dict[str, asyncio.Task[None]] = {}
        #: the Prometheus endpoint this replica serves, if any (``/readyz`` names it)
        self.endpoint: str | None = None

    def check_health(self) -> None:
        for name, task in self.tasks.items():
            if task.done():
                error = None if task.cancelled() else task.exception()
                raise RuntimeError(f"the {name} consumer stopped: {error!r}")

    async def status(self) -> dict[str, Any]:
        return {"ready": all(not t.done() for t in self.tasks.values()),
                "consumers": sorted(self.tasks), "prometheus": self.endpoint}

    def _start_narration(self, stt: Any, tts: Any) -> None:
        """Auto-play narration and the re-transcription, one consumer each of their groups."""
        from pipeline.workers import NarrationWorker, RefineWorker

        name = replica_name("narrator")
        narrator = NarrationWorker(self.log, RemoteSynthesizer(tts), consumer=name)
        refiner = RefineWorker(self.log, RemoteTranscriber(stt), consumer=name)
        self.tasks.update(autoplay=narrator.start(), refine=refiner.start())

    def _start_metrics(self, settings: Settings) -> None:
        """The turns' metrics, and the Gateways' own counts where a Prometheus endpoint
        serves them (:attr:`endpoint`)."""
        from pipeline.meters import ReplicaBoard, ReplicaCollector
        from pipeline.workers import (
            MetricsConsumer,
            ReplicaMetrics,
            TurnMetrics,
            otlp_metrics,
            prometheus_endpoint,
        )

        provider = None
        if settings.metrics_port is not None:
            try:
                provider = prometheus_endpoint(settings.host, settings.metrics_port)
                self.endpoint = f"http://{settings.host}:{settings.metrics_port}/metrics"
            except OSError as exc:  # the port is taken: count anyway, say so in /readyz
                logger.warning("no Prometheus endpoint on port %s: %s",
                               settings.metrics_port, exc)
        if provider is None:  # no endpoint: to an OTLP backend, if one is named
            provider = otlp_metrics()
        consumer = MetricsConsumer(self.log, TurnMetrics(provider),
                                   consumer=replica_name("metrics"))
        self.tasks["metrics"] = asyncio.create_task(consumer.run())
        if self.endpoint is not None:  # the Gateways' own counts, served beside the turns'
            board = ReplicaBoard.for_interval(self.redis, settings.log.key_prefix,
                                              settings.api.metrics_report_s)
            replicas = ReplicaMetrics(self.log, ReplicaCollector().register(), board)
            self.tasks["replicas"] = asyncio.create_task(replicas.run())

    async def __del__(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        for task in self.tasks.values():
            with contextlib.suppress(BaseException):
                await task
        await self.redis.aclose()


@serve.deployment(name="Narrator", ray_actor_options={"num_cpus": 0.1})
class NarratorReplica(_Consumers):
    async def __init__(self, stt: Any, tts: Any, settings: Settings) -> None:  # type: ignore[misc]
        super().__init__(settings)
        self._start_narration(stt, tts)
        freeze_startup_heap()  # its loop streams narrations' audio: no walks of start-up


@serve.deployment(name="Metrics", ray_actor_options={"num_cpus": 0.1})
class MetricsReplica(_Consumers):
    async def __init__(self, settings: Settings) -> None:  # type: ignore[misc]
        super().__init__(settings)
        self._start_metrics(settings)
        freeze_startup_heap()


@serve.deployment(name="Workers", ray_actor_options={"num_cpus": 0.1})
class WorkersReplica(_Consumers):
    """Narrator's and Metrics' consumers in one replica: on one machine a Ray worker
    process costs most of its idle CPU whatever it runs (its core worker's loops), and
    these two are light, so the CPU profiles place one process for both."""

    async def __init__(self, stt: Any, tts: Any, settings: Settings) -> None:  # type: ignore[misc]
        super().__init__(settings)
        self._start_narration(stt, tts)
        self._start_metrics(settings)
        freeze_startup_heap()
