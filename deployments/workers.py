"""The background workers as Serve deployments: long-running consumers of the feed.

``Narrator`` runs auto-play narration and the WhisperX re-transcription (both write to
the log through the stage deployments); ``Metrics`` turns finished turns into
OpenTelemetry histograms and counters served on a Prometheus endpoint. Each replica is
one consumer of its consumer groups, so they scale like the other deployments: more
replicas share the feed, and a replica that dies has its pending entries claimed by the
others. Serve restarts a replica whose consumer loop ended (``check_health``).

On one machine (the CPU profiles) the Gateway runs both itself (:class:`FeedConsumers`):
a Ray worker process costs ~0.5 % of a core before it does anything (its core worker's
10 ms signal check), and these consumers are light.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from ray import serve

from deployments._replica import replica_name
from deployments.handles import RemoteSynthesizer, RemoteTranscriber
from pipeline.aio import freeze_startup_heap
from pipeline.engines import Synthesizer, Transcriber
from pipeline.log import EventLog, create_redis
from schemas import ConfigurationError, Settings

logger = logging.getLogger(__name__)


class FeedConsumers:
    """The feed's consumers of one process, tasks that must run for its whole life: a
    worker replica's, or (the CPU profiles) the Gateway's, on its own Redis client (their
    reads block a connection each)."""

    def __init__(self, settings: Settings) -> None:
        if not settings.redis_url:
            raise ConfigurationError("no Redis configured", setting="VOXLINE_REDIS_URL")
        self.redis = create_redis(settings.redis_url, settings.redis)
        self.log = EventLog(self.redis, settings.log)
        self.tasks: dict[str, asyncio.Task[None]] = {}
        #: how each task starts again (:meth:`revive`)
        self._starts: dict[str, Callable[[], asyncio.Task[None]]] = {}
        #: the Prometheus endpoint this replica serves, if any (``/readyz`` names it)
        self.endpoint: str | None = None

    def _run(self, name: str, start: Callable[[], asyncio.Task[None]]) -> None:
        self._starts[name] = start
        self.tasks[name] = start()

    def stopped(self) -> dict[str, BaseException | None]:
        """Each consumer whose task ended (none should: they outlast Redis's outages),
        with why."""
        return {name: None if task.cancelled() else task.exception()
                for name, task in self.tasks.items() if task.done()}

    def check_health(self) -> None:
        """Serve's health check of a worker replica: one whose consumer stopped is
        replaced, and its pending entries are claimed by the next."""
        for name, error in self.stopped().items():
            raise RuntimeError(f"the {name} consumer stopped: {error!r}")

    def revive(self) -> list[str]:
        """Start again each consumer that stopped, saying why it did: in the Gateway a
        failing health check would cost every live socket, a consumer's restart none."""
        stopped = self.stopped()
        for name, error in stopped.items():
            logger.error("the %s consumer stopped (%r): starting it again", name, error)
            self.tasks[name] = self._starts[name]()
        return sorted(stopped)

    async def status(self) -> dict[str, Any]:
        return {"ready": all(not t.done() for t in self.tasks.values()),
                "consumers": sorted(self.tasks), "prometheus": self.endpoint}

    def start_all(self, stt: Transcriber, tts: Synthesizer, settings: Settings) -> None:
        """Narrator's consumers and Metrics', in this process."""
        self.start_narration(stt, tts)
        self.start_metrics(settings)

    def start_narration(self, stt: Transcriber, tts: Synthesizer) -> None:
        """Auto-play narration and the re-transcription, one consumer each of their groups
        (``stt`` and ``tts``: the stages' adapters, remote or in this process)."""
        from pipeline.workers import NarrationWorker, RefineWorker

        name = replica_name("narrator")
        narrator = NarrationWorker(self.log, tts, consumer=name)
        refiner = RefineWorker(self.log, stt, consumer=name)
        self._run("autoplay", narrator.start)
        self._run("refine", refiner.start)

    def start_metrics(self, settings: Settings) -> None:
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
        self._run("metrics", lambda: asyncio.create_task(consumer.run(), name="metrics"))
        if self.endpoint is not None:  # the Gateways' own counts, served beside the turns'
            board = ReplicaBoard.for_interval(self.redis, settings.log.key_prefix,
                                              settings.api.metrics_report_s)
            replicas = ReplicaMetrics(self.log, ReplicaCollector().register(), board)
            self._run("replicas",
                      lambda: asyncio.create_task(replicas.run(), name="replica-metrics"))

    async def aclose(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        for task in self.tasks.values():
            with contextlib.suppress(BaseException):
                await task
        await self.redis.aclose()


class _ConsumerReplica(FeedConsumers):
    async def __del__(self) -> None:
        await self.aclose()


@serve.deployment(name="Narrator", ray_actor_options={"num_cpus": 0.1})
class NarratorReplica(_ConsumerReplica):
    async def __init__(self, stt: Any, tts: Any, settings: Settings) -> None:  # type: ignore[misc]
        super().__init__(settings)
        self.start_narration(RemoteTranscriber(stt), RemoteSynthesizer(tts))
        freeze_startup_heap()  # its loop streams narrations' audio: no walks of start-up


@serve.deployment(name="Metrics", ray_actor_options={"num_cpus": 0.1})
class MetricsReplica(_ConsumerReplica):
    async def __init__(self, settings: Settings) -> None:  # type: ignore[misc]
        super().__init__(settings)
        self.start_metrics(settings)
        freeze_startup_heap()
