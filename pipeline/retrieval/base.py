"""The retrieval seams: a retriever finds passages, a re-ranker scores them again.

Both are abstract bases with an async core method, like the engines. Contracts:

* :meth:`Retriever.search` returns at most ``top_k`` passages of one collection, best first,
  each with a score that only orders the passages of that one call (BM25 scores are not
  comparable between queries or collections). An empty list means nothing matched. A
  missing collection raises :class:`schemas.VoxlineError` ``collection_not_found``; any
  other failure raises, and the caller (:class:`pipeline.retrieval.Grounder`) turns it into
  a warning and an empty context. Cancelling the call abandons the search.
* :meth:`Reranker.score` returns one relevance score per text, in the order given (higher
  is more relevant). It runs a model, so implementations load lazily (:meth:`load`) and
  run off the event loop; a remote one (a Serve deployment) is the same interface.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class Passage:
    """One chunk of one document, with the score a search gave it."""

    collection: str
    document_id: str
    chunk: int
    text: str
    score: float = 0.0
    title: str = ""

    def rescored(self, score: float) -> Passage:
        return replace(self, score=score)


class Retriever(abc.ABC):
    """Finds the passages of a collection that answer a query."""

    @abc.abstractmethod
    async def search(self, collection: str, query: str, top_k: int) -> list[Passage]:
        """At most ``top_k`` passages, best first (see the module docstring)."""


class Reranker(abc.ABC):
    """Scores (query, passage) pairs with a model; the second stage of ``two_stage``."""

    name: str = "reranker"

    async def load(self) -> None:  # noqa: B027 - optional hook
        """Load the model (once); a missing package raises ``model_missing``."""

    @abc.abstractmethod
    async def score(self, query: str, texts: Sequence[str]) -> list[float]:
        """One score per text, in order (higher: more relevant)."""

    async def describe(self) -> dict[str, Any]:
        return {"engine": self.name, "ready": True}

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Free the model."""
