"""What the three model stages share: an engine chosen by ``user_config``, loaded once.

A stage replica is a plain class around one :mod:`pipeline.engines` engine. Serve calls
:meth:`StageReplica.reconfigure` with the deployment's ``user_config`` right after the
constructor and again whenever an operator changes it, so the engine (and its model) is
chosen in configuration and swapped without restarting the replica. A replica is not
healthy until its model has loaded, so the application reports RUNNING only when every
model is in memory.

Each streaming call comes with its caller's session and turn (:meth:`StageReplica.call`):
the call's log records carry them, and where tracing is on (the ``OTEL_*`` variables),
the call is a span in the turn's trace, from this replica's process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

from pydantic import Field, ValidationError

from deployments._replica import name_replica_threads
from pipeline.aio import freeze_startup_heap
from pipeline.engines import Engine, create_engine, describe_stage
from pipeline.tracing import adopt, call_span, install_log_context, otlp_tracing
from schemas import ConfigurationError, EngineError, EngineSettings, get_settings

logger = logging.getLogger(__name__)


class StageConfig(EngineSettings):
    """A stage deployment's ``user_config``: the engine, its options, how streams travel.

    Fields other than these are engine options, as in ``VOXLINE_<STAGE>__*``.
    """

    stream_max_items: int = Field(default=16, ge=1, description="items per streamed batch")
    stream_max_wait_ms: float = Field(default=40.0, ge=0, description="a batch's time window")
    stream_eager_items: int = Field(
        default=8, ge=0, le=1024, description="items sent one by one before batching starts "
        "(a reply's first spoken piece waits on its first few tokens)")


class StageReplica:
    """Base of the stage deployments; subclasses name their ``stage`` and add a stream."""

    stage: ClassVar[str]

    def __init__(self) -> None:
        install_log_context()  # a call's records say its session and turn (adopt())
        self.config: StageConfig | None = None
        self._engine: Engine | None = None
        self._lock = asyncio.Lock()
        self._threads_named = False
        self._tracing = otlp_tracing(f"voxline-{self.stage}")  # None: tracing is off
        self._tracer = None if self._tracing is None else self._tracing.get_tracer("voxline")

    @contextlib.asynccontextmanager
    async def call(self, method: str, context: Mapping[str, str] | None) -> AsyncIterator[Any]:
        """One streaming call for a caller's turn: its session and turn taken up for the
        call's task, and (tracing on, a turn known) a span ``<stage>.<method>`` in the
        turn's trace, ended when the call ends however it ends; yields the span or None."""
        adopt(context)
        span = None if self._tracer is None else call_span(
            self._tracer, f"{self.stage}.{method}", context, **_where())
        try:
            yield span
        finally:
            if span is not None:
                span.end()

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Validate ``user_config``; build and load a new engine when the choice changed."""
        if not self._threads_named:  # the first call runs on the replica's loop
            name_replica_threads(self.stage)
            self._threads_named = True
        try:
            config = StageConfig.model_validate(user_config)
        except ValidationError as exc:
            raise ConfigurationError(
                f"invalid user_config for the {self.stage} deployment: {exc}",
                setting=f"{self.stage}.user_config",
            ) from None
        async with self._lock:
            old = self._engine
            same_engine = (
                self.config is not None
                and old is not None
                and (config.engine, config.engine_options())
                == (self.config.engine, self.config.engine_options())
            )
            if not same_engine:
                engine = create_engine(self.stage, config.engine, config.engine_options())
                try:
                    await engine.load()
                except BaseException:
                    await engine.close()
                    raise
                self._engine = engine
                self.config = config
                logger.info("%s engine %s loaded", self.stage, config.engine)
                if old is not None:
                    await old.close()
                freeze_startup_heap()  # the model's Python side lives as long as we do
            self.config = config

    async def engine(self) -> Engine:
        """The loaded engine; without a ``user_config``, the one named in ``VOXLINE_*``."""
        if self._engine is None:
            choice = getattr(get_settings(), self.stage)
            await self.reconfigure(choice.model_dump())
        if self._engine is None:  # pragma: no cover - reconfigure always sets it
            raise EngineError(f"the {self.stage} engine did not load", stage=self.stage)
        return self._engine

    async def describe(self) -> dict[str, Any]:
        """What this replica runs (for ``/readyz`` and the adapters)."""
        engine = await self.engine()
        return await describe_stage(engine, self.config.engine_options() if self.config else {})

    def check_health(self) -> None:
        """Serve's health probe: a replica whose engine reports not ready is restarted."""
        if self._engine is not None and not self._engine.ready:
            raise EngineError(f"the {self.stage} engine is not ready", stage=self.stage)

    def stream_window(self) -> dict[str, Any]:
        """How this stage's stream is batched: :func:`pipeline.engines.windowed`'s keywords."""
        return stream_window(self.config or StageConfig(engine=""))


def stream_window(config: StageConfig) -> dict[str, Any]:
    """A stage's stream window (its ``stream_*`` fields) as
    :func:`pipeline.engines.windowed`'s keywords."""
    return {"max_items": config.stream_max_items,
            "max_wait_s": config.stream_max_wait_ms / 1000,
            "eager_items": config.stream_eager_items}


def _where() -> dict[str, str]:
    """This replica and its node, for a span (empty outside a Serve replica: never starts
    Ray, as its runtime context would)."""
    import ray

    where: dict[str, str] = {}
    if not ray.is_initialized():
        return where
    with contextlib.suppress(Exception):
        from ray import serve

        where["voxline.replica"] = str(serve.get_replica_context().replica_id)
    with contextlib.suppress(Exception):
        where["voxline.node_id"] = ray.get_runtime_context().get_node_id()
    return where
