"""The retrievers: BM25 over a stored collection, and BM25 re-ranked by a model.

:class:`BM25Retriever` is the embedded default: the collection's index comes from the
store (this replica's cached copy while its version is current), the search runs off the
event loop and the chunk texts are read back for the hits only. :class:`TwoStageRetriever`
asks BM25 for ``candidates`` passages and orders them by the re-ranker's scores (a
sentence-embedding model: all-MiniLM-L6-v2, in its own deployment), keeping ``top_k``.
"""

from __future__ import annotations

import asyncio

from pipeline.retrieval.base import Passage, Reranker, Retriever
from pipeline.retrieval.store import CollectionStore

__all__ = ["BM25Retriever", "TwoStageRetriever"]


class BM25Retriever(Retriever):
    def __init__(self, store: CollectionStore) -> None:
        self.store = store

    async def search(self, collection: str, query: str, top_k: int) -> list[Passage]:
        loaded = await self.store.index(collection)
        if loaded.index.size < 64:  # small: searching costs less than a thread hop
            hits = loaded.index.search(query, top_k)
        else:
            hits = await asyncio.to_thread(loaded.index.search, query, top_k)
        rows = [loaded.rows[hit.index] for hit in hits]
        texts = await self.store.chunk_texts(collection, rows)
        documents = [row.rsplit(":", 1)[0] for row in rows]
        titles = await self.store.titles(collection, documents)
        return [
            Passage(collection=collection, document_id=document, chunk=int(row.rsplit(":", 1)[1]),
                    text=text, score=hit.score, title=titles.get(document, ""))
            for hit, row, document, text in zip(hits, rows, documents, texts, strict=True)
        ]


class TwoStageRetriever(Retriever):
    """BM25 candidates, re-ordered by a re-ranker's scores."""

    def __init__(self, first: Retriever, reranker: Reranker, candidates: int = 20) -> None:
        self.first = first
        self.reranker = reranker
        self.candidates = candidates

    async def search(self, collection: str, query: str, top_k: int) -> list[Passage]:
        found = await self.first.search(collection, query, max(top_k, self.candidates))
        if not found:
            return []
        scores = await self.reranker.score(query, [p.text for p in found])
        ranked = sorted(zip(scores, range(len(found)), found, strict=True),
                        key=lambda item: (-item[0], item[1]))
        return [passage.rescored(float(score)) for score, _, passage in ranked[:top_k]]
