"""``search_documents``: the session's collection searched when the model asks, under the
collection's access rule, the passages handed back as the call's output."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from pipeline.retrieval import CollectionStore, Grounder
from pipeline.tools import CallContext, SearchDocuments, ToolRunner
from schemas import (
    ErrorCode,
    EventLogSettings,
    RetrievalSettings,
    SessionSettings,
    ToolCall,
    ToolSettings,
)
from tests.support.retrieval_docs import DOCUMENTS

pytestmark = pytest.mark.redis


@pytest.fixture
async def store(redis: Redis, log_settings: EventLogSettings) -> AsyncIterator[CollectionStore]:
    store = CollectionStore(redis, RetrievalSettings(chunk_chars=240, chunk_overlap=40),
                            log_settings.key_prefix)
    yield store
    await store.aclose()


async def search(tool: SearchDocuments, settings: SessionSettings, query: str,
                 session_id: str = "sess_a") -> tuple[str, ErrorCode | None]:
    outcome = await ToolRunner(ToolSettings()).run(
        tool, ToolCall(id="call_1", name="search_documents",
                       arguments=json.dumps({"query": query})),
        CallContext(session_id, "turn", "call_1", settings))
    return outcome.output, outcome.code


async def test_the_model_gets_the_passages_of_the_sessions_collection(
    store: CollectionStore,
) -> None:
    info = await store.create("town facts")
    for title, text in DOCUMENTS.items():
        await store.add_document(info.collection_id, text, title=title)
    await store.grant(info.collection_id, "sess_a")
    tool = SearchDocuments(Grounder(store, store.settings))
    settings = SessionSettings(search={"collection": info.collection_id, "top_k": 2})  # type: ignore[arg-type]
    output, code = await search(tool, settings, "lighthouse steps to the gallery")
    assert code is None
    results = json.loads(output)["results"]
    assert len(results) == 2 and results[0]["title"] == "Harbor Lighthouse"
    assert "212 steps" in results[0]["text"]
    _, forbidden = await search(tool, settings, "steps", session_id="sess_b")
    assert forbidden is ErrorCode.FORBIDDEN  # not given to that session
    _, none = await search(tool, SessionSettings(), "steps")
    assert none is ErrorCode.COLLECTION_NOT_FOUND
