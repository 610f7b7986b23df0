"""Retrieval in the pipeline: chunking, the BM25 index, collections in Redis, grounding.

Real ``bm25s`` and real Redis throughout; the re-ranker here is a stand-in that scores by
a rule the test states (the real all-MiniLM-L6-v2 runs in tests/gpu_engines/test_reranker.py,
in an environment with torch).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from pipeline.retrieval import (
    CONTEXT_HEADER,
    FOLD_EVERY,
    BM25Index,
    CollectionStore,
    Grounder,
    Passage,
    Reranker,
    Retriever,
    Segment,
    chunk_text,
    context_message,
    document_text,
    tokenize,
)
from schemas import (
    ErrorCode,
    EventLogSettings,
    InputTooLargeError,
    ProtocolError,
    RetrievalSettings,
    SearchToolConfig,
    SessionError,
    VoxlineError,
)
from tests.support.retrieval_docs import DOCUMENTS, QUESTIONS, make_pdf

pytestmark = pytest.mark.redis

SMALL = RetrievalSettings(chunk_chars=240, chunk_overlap=40)


@pytest.fixture
def redis_url(both_redis_urls: str) -> str:
    """Collections in a standalone Redis and on the cluster (one hash tag per collection)."""
    return both_redis_urls


# ---- chunking ---------------------------------------------------------------------------


def test_chunks_are_bounded_overlap_and_keep_every_word() -> None:
    text = " ".join(f"word{i}" for i in range(200))
    chunks = chunk_text(text, 100, 30)
    assert all(len(c) <= 100 for c in chunks)
    assert chunks[0].startswith("word0 ") and chunks[-1].endswith("word199")
    for before, after in itertools.pairwise(chunks):
        first = after.split()[0]
        assert first in before.split(), "each chunk starts inside the one before (overlap)"


def test_paragraphs_survive_and_long_words_are_cut() -> None:
    chunks = chunk_text("# Title\n\nFirst paragraph.\n\n\n" + "x" * 250, 100, 10)
    assert chunks[0].startswith("# Title\n\nFirst paragraph.")
    assert all(len(c) <= 100 for c in chunks)
    assert "".join(c.split("\n\n")[-1] for c in chunks[-3:]).count("x") >= 250


@settings(max_examples=80, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab c\n\t."), max_size=600),
       st.integers(10, 120), st.integers(0, 60))
def test_chunking_property(text: str, size: int, overlap: int) -> None:
    overlap = min(overlap, size - 1)
    chunks = chunk_text(text, size, overlap)
    assert all(0 < len(c) <= size for c in chunks)
    words = text.split()
    joined = " ".join(" ".join(c.split()) for c in chunks)
    for word in words:  # every word, or its hard-cut pieces, is in some chunk
        assert word[:size] in joined
    assert (not chunks) == (not words)


def test_document_formats() -> None:
    assert document_text(b"# hi", "markdown") == "# hi"
    with pytest.raises(ProtocolError) as bad:
        document_text(b"\xff\xfe", "text")
    assert bad.value.code is ErrorCode.INVALID_MESSAGE
    with pytest.raises(ProtocolError) as pdf:
        document_text(b"not a pdf", "pdf")
    assert (pdf.value.code, pdf.value.http_status) == (ErrorCode.UNSUPPORTED_FORMAT, 415)


def test_pdf_text_is_extracted() -> None:
    assert "Kestrel lighthouse" in document_text(make_pdf("Kestrel lighthouse"), "pdf")


# ---- the index ----------------------------------------------------------------------------


def test_bm25_finds_the_answer_and_round_trips_through_bytes() -> None:
    texts = ["The capital of France is Paris.", "Bananas are yellow.", "Paris has a tower."]
    index = BM25Index.build(texts)
    assert index.search("capitals of France", 3)[0].index == 0  # stemmed
    loaded = BM25Index.from_bytes(index.to_bytes())
    assert loaded.search("yellow banana", 3) == index.search("yellow banana", 3)
    assert index.search("the and of", 3) == []  # stop words only: nothing
    assert BM25Index.from_bytes(BM25Index.build([]).to_bytes()).search("x", 2) == []


WORDS = ["tower", "paris", "banana", "yellow", "keeper", "the", "steps"]
TEXTS = st.lists(st.sampled_from(WORDS), max_size=10).map(" ".join)


@settings(max_examples=60, deadline=None)
@given(st.lists(TEXTS, min_size=1, max_size=14),
       st.lists(st.integers(0, 14), max_size=4),
       st.sampled_from(["tower", "banana yellow", "keeper paris steps", "the"]))
def test_segments_score_like_one_index(texts: list[str], cuts: list[int], query: str) -> None:
    """BM25 over segments (the delta beside the main index, each merge) scores exactly as
    one index built over every chunk at once: statistics are the collection's."""
    bounds = sorted({0, len(texts), *(c for c in cuts if c < len(texts))})
    keys = [f"d{i}:0" for i in range(len(texts))]
    segments = [Segment.from_tokens(tokenize(texts[a:b]), keys[a:b])
                for a, b in itertools.pairwise(bounds)]
    whole = BM25Index.build(texts).search(query, 5)
    split = BM25Index(segments).search(query, 5)
    merged = BM25Index([Segment.from_bytes(segments[0].merged(*segments[1:]).to_bytes())])
    for hits in (split, merged.search(query, 5)):
        assert [(h.index, round(h.score, 5)) for h in hits] == [
            (h.index, round(h.score, 5)) for h in whole]
    dropped = BM25Index([merged.merged().without(lambda key: key == "d0:0")])
    assert dropped.size == len(texts) - 1
    assert [round(h.score, 5) for h in dropped.search(query, 5)] == [
        round(h.score, 5) for h in BM25Index.build(texts[1:]).search(query, 5)]


# ---- collections in Redis -----------------------------------------------------------------


@pytest.fixture
async def store(redis: Redis, log_settings: EventLogSettings) -> AsyncIterator[CollectionStore]:
    store = CollectionStore(redis, SMALL, log_settings.key_prefix)
    yield store
    await store.aclose()


async def fill(store: CollectionStore) -> tuple[str, dict[str, str]]:
    info = await store.create("town facts")
    ids = {}
    for title, text in DOCUMENTS.items():
        doc = await store.add_document(info.collection_id, text, title=title)
        ids[title] = doc.document_id
    return info.collection_id, ids


async def test_the_right_chunk_is_found_for_each_question(store: CollectionStore) -> None:
    collection, ids = await fill(store)
    grounder = Grounder(store, SMALL)
    await store.grant(collection, "sess_a")
    for question, (title, phrase) in QUESTIONS.items():
        grounding = await grounder.ground(
            "sess_a", SearchToolConfig(collection=collection, top_k=3), question)
        assert not grounding.warnings
        best = grounding.passages[0]
        assert (best.document_id, best.title) == (ids[title], title), question
        assert phrase in best.text, question
        cited = grounding.citations().citations[0]
        assert (cited.document_id, cited.chunk) == (best.document_id, best.chunk)


async def test_collection_bookkeeping_and_index_cache(store: CollectionStore) -> None:
    collection, ids = await fill(store)
    info = await store.get(collection)
    assert (info.documents, info.version) == (len(DOCUMENTS), len(DOCUMENTS))
    assert info.chunks == sum(d.chunks for d in await store.documents(collection))
    first = await store.index(collection)
    assert (await store.index(collection)) is first  # same version: this replica's copy
    other = CollectionStore(store.redis, SMALL, store.prefix)  # another replica
    assert (await other.index(collection)).rows == first.rows
    await store.delete_document(collection, ids["Tram Network"])
    assert (await store.index(collection)).version == first.version + 1
    found = await Grounder(store, SMALL).bm25.search(collection, "tram ticket", 3)
    assert all(p.document_id != ids["Tram Network"] for p in found)
    await store.delete(collection)
    with pytest.raises(SessionError) as gone:
        await store.get(collection)
    assert gone.value.code is ErrorCode.COLLECTION_NOT_FOUND


async def test_a_replica_follows_adds_folds_and_merges_incrementally(
    redis: Redis, key_prefix: str
) -> None:
    """Another replica searching after every add sees every document at once, fetching
    only what changed (a pending segment, then a folded delta, then a merged main), and
    ends with what a fresh replica loads in one go."""
    settings = RetrievalSettings(index_delta_chunks=40, chunk_chars=240, chunk_overlap=40)
    writer = CollectionStore(redis, settings, key_prefix)
    replica = CollectionStore(redis, settings, key_prefix)
    try:
        collection = (await writer.create()).collection_id
        tiers = set()
        for n in range(2 * FOLD_EVERY + 20):
            await writer.add_document(collection, f"Parcel {n} went to dock zq{n:04d}x.")
            loaded = await replica.index(collection)
            assert loaded.index.size == len(loaded.rows) == n + 1
            assert len(loaded.pending) <= FOLD_EVERY
            [hit, *_] = loaded.index.search(f"zq{n:04d}x", 1)
            newest = (await writer.documents(collection))[-1].document_id
            assert loaded.rows[hit.index] == f"{newest}:0"
            tiers.add((loaded.main_version, loaded.delta_version))
        assert len(tiers) == 3  # none yet; folded into the delta; merged into the main
        fresh = await CollectionStore(redis, settings, key_prefix).index(collection)
        assert fresh.rows == loaded.rows
        query = "parcel dock zq0003x"
        assert fresh.index.search(query, 5) == loaded.index.search(query, 5)
    finally:
        await writer.aclose()


async def test_limits_refuse_with_their_codes(redis: Redis, key_prefix: str) -> None:
    tight = RetrievalSettings(max_collections=1, max_document_chars=500,
                              max_chunks_per_collection=3, chunk_chars=100, chunk_overlap=10)
    store = CollectionStore(redis, tight, key_prefix)
    try:
        await refuse_at_limits(store)
    finally:
        await store.aclose()


async def refuse_at_limits(store: CollectionStore) -> None:
    collection = (await store.create()).collection_id
    with pytest.raises(VoxlineError) as many:
        await store.create()
    assert (many.value.code, many.value.http_status) == (ErrorCode.TOO_MANY_COLLECTIONS, 409)
    with pytest.raises(InputTooLargeError) as large:
        await store.add_document(collection, "x " * 300)
    assert large.value.code is ErrorCode.DOCUMENT_TOO_LARGE
    await store.add_document(collection, "word " * 40)  # two chunks
    with pytest.raises(InputTooLargeError) as full:
        await store.add_document(collection, "word " * 40)
    assert full.value.code is ErrorCode.COLLECTION_FULL
    assert (await store.get(collection)).documents == 1  # nothing half-written


# ---- grounding: failure never fails the turn ----------------------------------------------


class SlowRetriever(Retriever):
    async def search(self, collection: str, query: str, top_k: int) -> list[Passage]:
        await asyncio.sleep(30)
        return []


class BrokenRetriever(Retriever):
    async def search(self, collection: str, query: str, top_k: int) -> list[Passage]:
        raise ConnectionError("the index went away")


class LengthReranker(Reranker):
    """Prefers shorter passages: an order BM25 would not give."""

    async def score(self, query: str, texts: Sequence[str]) -> list[float]:
        return [-float(len(t)) for t in texts]


async def test_slow_or_broken_search_gives_no_context_and_a_warning(
    store: CollectionStore,
) -> None:
    collection, _ = await fill(store)
    await store.grant(collection, "sess_a")
    config = SearchToolConfig(collection=collection)
    quick = RetrievalSettings(timeout_s=0.05)
    slow = await Grounder(store, quick, bm25=SlowRetriever()).ground("sess_a", config, "q")
    assert slow.passages == () and [w.code for w in slow.warnings] == [
        ErrorCode.RETRIEVAL_TIMEOUT]
    broken = await Grounder(store, SMALL, bm25=BrokenRetriever()).ground("sess_a", config, "q")
    assert broken.passages == () and broken.warnings[0].code is ErrorCode.RETRIEVAL_FAILED
    assert broken.warnings[0].details["exception"] == "ConnectionError"


async def test_a_session_not_given_the_collection_gets_nothing(store: CollectionStore) -> None:
    collection, _ = await fill(store)
    grounding = await Grounder(store, SMALL).ground(
        "sess_other", SearchToolConfig(collection=collection), "lighthouse steps")
    assert grounding.passages == () and grounding.warnings[0].code is ErrorCode.FORBIDDEN
    missing = await Grounder(store, SMALL).ground(
        "sess_other", SearchToolConfig(collection="col_nope"), "lighthouse")
    assert missing.warnings[0].code is ErrorCode.COLLECTION_NOT_FOUND


async def test_two_stage_reorders_bm25s_candidates(store: CollectionStore) -> None:
    collection, _ = await fill(store)
    await store.grant(collection, "sess_a")
    query = "lighthouse keepers tower steps"
    bm25 = await Grounder(store, SMALL).ground(
        "sess_a", SearchToolConfig(collection=collection, top_k=3), query)
    two = await Grounder(store, SMALL, reranker=LengthReranker()).ground(
        "sess_a", SearchToolConfig(collection=collection, top_k=3, strategy="two_stage"), query)
    assert two.strategy == "two_stage" and not two.warnings
    lengths = [len(p.text) for p in two.passages]
    assert lengths == sorted(lengths)
    assert [p.chunk for p in two.passages] != [p.chunk for p in bm25.passages]


async def test_two_stage_without_a_reranker_says_what_to_install(
    store: CollectionStore,
) -> None:
    collection, _ = await fill(store)
    await store.grant(collection, "sess_a")
    grounding = await Grounder(store, SMALL).ground(
        "sess_a", SearchToolConfig(collection=collection, strategy="two_stage"), "tram ticket")
    assert grounding.strategy == "bm25" and grounding.passages
    [warning] = grounding.warnings
    assert warning.code is ErrorCode.RERANKER_UNAVAILABLE
    assert "voxline[reranker]" in warning.message
    assert "VOXLINE_RETRIEVAL__RERANKER=minilm" in warning.message


async def test_passages_fit_the_prompt_budget(store: CollectionStore) -> None:
    collection, _ = await fill(store)
    await store.grant(collection, "sess_a")
    tight = RetrievalSettings(context_tokens=120)
    grounding = await Grounder(store, tight).ground(
        "sess_a", SearchToolConfig(collection=collection, top_k=10), "lighthouse tower keeper")
    assert 1 <= len(grounding.passages) < 10
    message = context_message(grounding.passages)
    assert message is not None and message.role == "system"
    assert message.content.startswith(CONTEXT_HEADER) and "[1]" in message.content
