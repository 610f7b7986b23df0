"""A BM25 index of one collection's chunks, on ``bm25s``, and its serialised form.

``bm25s`` (MIT) scores with sparse matrices precomputed at indexing time, so a query is a
sum of a few rows: about a millisecond at 10k chunks. Text is tokenised with its own
scikit-learn-style tokenizer (lower case, words of two or more characters, English stop
words removed) and stemmed with the Snowball English stemmer of ``PyStemmer`` (a compiled
wheel, no download): "capitals" finds "capital". Nothing is fetched from a hub (``bm25s``
uses one only for its optional ``hf`` extra, which Voxline does not install).

An index is built once when a collection changes and stored in Redis as bytes
(:meth:`BM25Index.to_bytes`: numpy arrays in an ``.npz``, no pickle); replicas load it
instead of re-tokenising every chunk (loading 10k chunks takes milliseconds, building them
about a second: ``loadtests/bench_retrieval.py`` measures both).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = ["BM25Index", "tokenize"]

_FORMAT = 1


@lru_cache(maxsize=1)
def _stemmer() -> Callable[[list[str]], list[str]] | None:
    try:
        import Stemmer  # PyStemmer
    except ImportError:  # pragma: no cover - a core dependency; without it: no stemming
        return None
    stem: Callable[[list[str]], list[str]] = Stemmer.Stemmer("english").stemWords
    return stem


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    """The index's tokens of each text (queries and chunks go through the same)."""
    import bm25s

    tokens: list[list[str]] = bm25s.tokenize(
        list(texts), stopwords="en", stemmer=_stemmer(), return_ids=False,
        show_progress=False, allow_empty=True)
    return tokens


@dataclass(frozen=True, slots=True)
class Hit:
    index: int
    score: float


class BM25Index:
    """BM25 (Lucene's variant, k1 1.5, b 0.75) over a list of chunk texts."""

    def __init__(self, model: Any, size: int) -> None:
        self._model = model
        self.size = size

    @classmethod
    def build(cls, texts: Sequence[str]) -> BM25Index:
        import bm25s

        model = bm25s.BM25()
        tokens = tokenize(texts)
        if texts:
            model.index(tokens, show_progress=False)
        return cls(model, len(texts))

    def search(self, query: str, top_k: int) -> list[Hit]:
        """The best ``top_k`` chunks with a positive score, best first."""
        if self.size == 0 or top_k < 1:
            return []
        [tokens] = tokenize([query])
        ids = self._model.get_tokens_ids(tokens)
        if not ids:
            return []
        scores: np.ndarray = self._model.get_scores(ids)
        k = min(top_k, self.size)
        best = np.argpartition(-scores, k - 1)[:k]
        best = best[np.argsort(-scores[best], kind="stable")]
        return [Hit(int(i), float(scores[i])) for i in best if scores[i] > 0]

    def to_bytes(self) -> bytes:
        """The index as an ``.npz`` (arrays and a JSON header; loadable without pickle)."""
        model = self._model
        header = {"format": _FORMAT, "size": self.size, "k1": model.k1, "b": model.b,
                  "delta": model.delta, "method": model.method,
                  "idf_method": model.idf_method}
        arrays: dict[str, np.ndarray] = {
            "header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}
        if self.size:
            vocab = sorted(model.vocab_dict, key=model.vocab_dict.__getitem__)
            arrays.update(
                data=model.scores["data"], indices=model.scores["indices"],
                indptr=model.scores["indptr"],
                vocab=np.frombuffer(json.dumps(vocab).encode(), dtype=np.uint8))
        buffer = io.BytesIO()
        np.savez(buffer, allow_pickle=False, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> BM25Index:
        import bm25s

        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            header = json.loads(npz["header"].tobytes())
            if header.get("format") != _FORMAT:
                raise ValueError(f"unknown BM25 index format {header.get('format')!r}")
            model = bm25s.BM25(k1=header["k1"], b=header["b"], delta=header["delta"],
                               method=header["method"], idf_method=header["idf_method"])
            size = int(header["size"])
            if size:
                vocab = json.loads(npz["vocab"].tobytes())
                model.vocab_dict = {token: i for i, token in enumerate(vocab)}
                model.scores = {"data": npz["data"], "indices": npz["indices"],
                                "indptr": npz["indptr"], "num_docs": size}
                model.nonoccurrence_array = None
        return cls(model, size)
