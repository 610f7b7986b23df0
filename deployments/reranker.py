"""The re-ranker of ``two_stage`` retrieval as a Serve deployment.

all-MiniLM-L6-v2 needs torch, which the Gateway never imports: the model runs here, in a
replica of its own (its own ``runtime_env`` in the GPU profile, on CUDA; the current
environment with the ``reranker`` extra on one machine). The Gateway calls :meth:`score`
through :class:`deployments.handles.RemoteReranker`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ray import serve

from pipeline.retrieval import MiniLMReranker
from schemas import ConfigurationError, EngineError, ErrorCode


class RerankerConfig(BaseModel):
    """The deployment's ``user_config``."""

    model_config = ConfigDict(extra="forbid")

    device: str = Field(default="cpu", description="torch device: cpu, cuda, cuda:0")
    batch_size: int = Field(default=32, ge=1, le=1024)


@serve.deployment(name="Reranker", ray_actor_options={"num_cpus": 1})
class RerankerReplica:
    def __init__(self) -> None:
        self.config = RerankerConfig()
        self.model = MiniLMReranker(self.config.device, self.config.batch_size)

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        try:
            config = RerankerConfig.model_validate(user_config or {})
        except ValidationError as exc:
            raise ConfigurationError(f"invalid user_config for the Reranker: {exc}",
                                     setting="Reranker.user_config") from None
        if config != self.config or not (await self.model.describe())["ready"]:
            model = MiniLMReranker(config.device, config.batch_size)
            await model.load()
            old, self.model, self.config = self.model, model, config
            await old.close()

    async def score(self, query: str, texts: list[str]) -> list[float]:
        return await self.model.score(query, texts)

    async def describe(self) -> dict[str, Any]:
        return {"stage": "retrieval", **await self.model.describe()}

    async def check_health(self) -> None:
        if not (await self.model.describe())["ready"]:
            raise EngineError("the re-ranker is not loaded", code=ErrorCode.RERANKER_UNAVAILABLE,
                              stage="retrieval")
