"""Grounded conversations over the API: collections, search_tool_config on every way in,
citations before ``done``, warnings instead of failures, threads, access and restarts.

The API harness (real FastAPI app, real Redis, real BM25) with a scripted LLM that records
the prompt it was given, so a test sees which passages went in.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from pipeline.log import EventLog
from pipeline.retrieval import Passage, Reranker, Retriever
from schemas import (
    EventLogError,
    EventLogSettings,
    GenerationRequest,
    ResponseTextDelta,
    RetrievalSettings,
)
from tests.support.api_harness import Harness, serve_api
from tests.support.engines import ScriptedLLM, tokenize
from tests.support.retrieval_docs import DOCUMENTS, QUESTIONS
from voxline.client import SessionInfo

pytestmark = pytest.mark.redis

SMALL = RetrievalSettings(chunk_chars=240, chunk_overlap=40)
REPLY = "Here is what the documents say."


class PromptLLM(ScriptedLLM):
    """A scripted reply; remembers every prompt."""

    def __init__(self) -> None:
        super().__init__(tokenize(REPLY))
        self.prompts: list[GenerationRequest] = []

    async def generate(self, request: GenerationRequest) -> AsyncIterator[str]:
        self.prompts.append(request)
        async for token in super().generate(request):
            yield token


class SlowRetriever(Retriever):
    async def search(self, collection: str, query: str, top_k: int) -> list[Passage]:
        await asyncio.sleep(30)
        return []


class LengthReranker(Reranker):
    async def score(self, query: str, texts: Sequence[str]) -> list[float]:
        return [-float(len(t)) for t in texts]


@pytest.fixture
async def llm() -> PromptLLM:
    return PromptLLM()


@pytest.fixture
async def harness(redis_url: str, log_settings: EventLogSettings,
                  llm: PromptLLM) -> AsyncIterator[Harness]:
    async with serve_api(redis_url, log_settings, llm=llm, tts=None, retrieval=SMALL) as h:
        yield h


async def new_collection(h: Harness) -> tuple[str, str, dict[str, str]]:
    http = h.client.http
    created = (await http.post("/v1/collections", json={"name": "town facts"})).json()
    cid, token = created["collection"]["collection_id"], created["token"]
    ids = {}
    for title, text in DOCUMENTS.items():
        response = await http.post(f"/v1/collections/{cid}/documents",
                                   json={"text": text, "title": title, "format": "markdown"},
                                   headers={"X-Voxline-Token": token})
        assert response.status_code == 201, response.text
        ids[title] = response.json()["document_id"]
    return cid, token, ids


async def give(h: Harness, cid: str, token: str, session: SessionInfo) -> None:
    response = await h.client.http.put(f"/v1/collections/{cid}/sessions/{session.session_id}",
                                       headers={"X-Voxline-Token": token})
    assert response.status_code == 204, response.text


async def chat(h: Harness, message: str, session: SessionInfo,
               search: dict[str, Any] | None = None) -> list[tuple[str, dict[str, Any]]]:
    return [m async for m in h.client.chat_stream(message, session=session, search=search)]


async def test_each_question_cites_its_chunk_and_the_prompt_holds_it(
    harness: Harness, llm: PromptLLM
) -> None:
    cid, token, ids = await new_collection(harness)
    session = await harness.client.create_session()
    await give(harness, cid, token, session)
    for question, (title, phrase) in QUESTIONS.items():
        messages = await chat(harness, question, session, {"collection": cid, "top_k": 2})
        names = [name for name, _ in messages]
        assert names[-2:] == ["citations", "done"], names
        done = messages[-1][1]
        assert done["status"] == "completed" and done["text"] == REPLY
        best = done["citations"][0]
        assert best["document_id"] == ids[title] and best["title"] == title, question
        assert done["citations"] == messages[-2][1]["citations"]
        prompt = llm.prompts[-1].messages
        assert prompt[-1].content == question and prompt[-2].role == "system"
        assert phrase in prompt[-2].content, question


async def test_socket_and_session_setting_ground_turns_too(harness: Harness) -> None:
    cid, token, ids = await new_collection(harness)
    session = await harness.client.create_session(search={"collection": cid, "top_k": 1})
    await give(harness, cid, token, session)
    # the session's own setting, no per-message config
    messages = await chat(harness, "How much does a single tram ticket cost?", session)
    assert messages[-1][1]["citations"][0]["document_id"] == ids["Tram Network"]
    # the native socket's input.text with its own config
    async with harness.client.connect(session) as socket:
        await socket.send({"type": "input.text", "text": "How thick is the glacier ice?",
                           "search_tool_config": {"collection": cid, "top_k": 3}})
        events = [e async for e in socket.until_done()]
    types = [e.type for e in events]
    assert types.index("response.citations") == types.index("response.done") - 1
    citations = events[types.index("response.citations")].data.citations  # type: ignore[union-attr]
    assert 1 <= len(citations) <= 3 and citations[0].document_id == ids["Glacier Survey"]


async def test_chat_completions_take_search_tool_config(
    harness: Harness, llm: PromptLLM
) -> None:
    cid, token, ids = await new_collection(harness)
    body = {"messages": [{"role": "user", "content": "Who was the last resident keeper?"}],
            "search_tool_config": {"collection": cid, "top_k": 2}}
    http = harness.client.http
    refused = await http.post("/v1/chat/completions", json=body)
    assert refused.status_code == 401
    answer = await http.post("/v1/chat/completions", json=body,
                             headers={"X-Voxline-Token": token})
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["choices"][0]["message"]["content"] == REPLY
    assert result["citations"][0]["document_id"] == ids["Harbor Lighthouse"]
    assert "Ottilie" in llm.prompts[-1].messages[-2].content
    streamed = await http.post("/v1/chat/completions", json={**body, "stream": True},
                               headers={"X-Voxline-Token": token})
    assert '"citations":[{' in streamed.text and streamed.text.endswith("data: [DONE]\n\n")


async def test_another_sessions_token_cannot_read_a_collection(harness: Harness) -> None:
    cid, token, _ = await new_collection(harness)
    given = await harness.client.create_session()
    other = await harness.client.create_session()
    await give(harness, cid, token, given)
    http = harness.client.http
    url = f"/v1/collections/{cid}"

    async def status(params: dict[str, str], headers: dict[str, str]) -> int:
        return (await http.get(url, params=params, headers=headers)).status_code

    assert await status({}, {"X-Voxline-Token": token}) == 200
    assert await status({"session_id": given.session_id}, given.auth) == 200
    assert await status({"session_id": other.session_id}, other.auth) == 403
    assert await status({"session_id": given.session_id}, other.auth) == 403
    assert await status({}, other.auth) == 403  # a session token is not the collection's
    assert await status({}, {}) == 401
    docs = await http.get(f"{url}/documents", params={"session_id": other.session_id},
                          headers=other.auth)
    assert docs.status_code == 403
    # nor can its turns search it: a warning, no context, the turn completes
    messages = await chat(harness, "How many steps?", other, {"collection": cid})
    warning = dict(messages)["warning"]
    assert warning["code"] == "forbidden" and messages[-1][1]["citations"] == []
    assert messages[-1][1]["status"] == "completed"


async def test_collections_survive_a_gateway_restart(
    redis_url: str, log_settings: EventLogSettings
) -> None:
    async with serve_api(redis_url, log_settings, llm=PromptLLM(), tts=None,
                         retrieval=SMALL) as first:
        cid, token, ids = await new_collection(first)
    async with serve_api(redis_url, log_settings, llm=PromptLLM(), tts=None,
                         retrieval=SMALL) as second:
        detail = await second.client.http.get(f"/v1/collections/{cid}",
                                               headers={"X-Voxline-Token": token})
        assert detail.status_code == 200
        assert {d["document_id"] for d in detail.json()["documents"]} == set(ids.values())
        session = await second.client.create_session()
        await give(second, cid, token, session)
        messages = await chat(second, "When does cider pressing start?", session,
                              {"collection": cid})
        assert messages[-1][1]["citations"][0]["document_id"] == ids["Orchard Cooperative"]


async def test_a_slow_retriever_leaves_the_turn_to_complete_with_a_warning(
    redis_url: str, log_settings: EventLogSettings
) -> None:
    quick = RetrievalSettings(chunk_chars=240, chunk_overlap=40, timeout_s=0.05)
    async with serve_api(redis_url, log_settings, llm=PromptLLM(), tts=None,
                         retrieval=quick) as h:
        cid, token, _ = await new_collection(h)
        session = await h.client.create_session()
        await give(h, cid, token, session)
        assert h.services.grounder is not None
        h.services.grounder.bm25 = SlowRetriever()
        messages = await chat(h, "How many steps?", session, {"collection": cid})
    names = [name for name, _ in messages]
    assert "warning" in names and names.index("warning") < names.index("done")
    assert dict(messages)["warning"]["code"] == "retrieval_timeout"
    assert messages[-1][1]["status"] == "completed" and messages[-1][1]["citations"] == []


async def test_two_stage_with_and_without_a_reranker(
    redis_url: str, log_settings: EventLogSettings
) -> None:
    async with serve_api(redis_url, log_settings, llm=PromptLLM(), tts=None,
                         retrieval=SMALL) as h:
        cid, token, _ = await new_collection(h)
        session = await h.client.create_session()
        await give(h, cid, token, session)
        messages = await chat(h, "lighthouse steps", session,
                              {"collection": cid, "strategy": "two_stage"})
        assert dict(messages)["warning"]["code"] == "reranker_unavailable"
        assert dict(messages)["citations"]["strategy"] == "bm25"
    async with serve_api(redis_url, log_settings, llm=PromptLLM(), tts=None,
                         retrieval=SMALL, reranker=LengthReranker()) as h:
        checks = await h.services.catalogue.readiness()
        assert checks["reranker"] == {"engine": "reranker", "ready": True}
        session = await h.client.create_session()
        await give(h, cid, token, session)
        messages = await chat(h, "lighthouse keepers tower steps", session,
                              {"collection": cid, "strategy": "two_stage", "top_k": 3})
        assert "warning" not in dict(messages)
        cited = dict(messages)["citations"]
        assert cited["strategy"] == "two_stage"
        lengths = [len(c["snippet"]) for c in cited["citations"]]
        assert lengths == sorted(lengths)


async def test_a_failed_log_write_is_reported_and_the_stream_goes_on(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = await harness.client.create_session()
    log: EventLog = harness.services.log
    real = log.append_batch
    failed: list[int] = []

    async def flaky(events: Any, *args: Any, **kwargs: Any) -> Any:
        if not failed and any(isinstance(e, ResponseTextDelta) for e in events):
            failed.append(1)
            raise EventLogError("redis refused the write")
        return await real(events, *args, **kwargs)

    monkeypatch.setattr(log, "append_batch", flaky)
    messages = await chat(harness, "Hello there", session)
    assert failed and dict(messages)["warning"]["code"] == "log_write_failed"
    assert messages[-1][0] == "done" and messages[-1][1]["status"] == "completed"
    assert messages[-1][1]["text"] == REPLY  # the whole reply, though one delta is missing


async def test_the_thread_lists_messages_with_their_citations(harness: Harness) -> None:
    cid, token, ids = await new_collection(harness)
    session = await harness.client.create_session()
    await give(harness, cid, token, session)
    await chat(harness, "How often do trams run at rush hour?", session, {"collection": cid})
    await chat(harness, "Thanks!", session)
    response = await harness.client.http.get(
        f"/v1/sessions/{session.session_id}/messages", headers=session.auth)
    assert response.status_code == 200
    thread = response.json()["messages"]
    assert [m["role"] for m in thread] == ["user", "assistant", "user", "assistant"]
    assert thread[0]["content"] == "How often do trams run at rush hour?"
    assert thread[1]["content"] == REPLY and thread[1]["status"] == "completed"
    assert thread[1]["citations"][0]["document_id"] == ids["Tram Network"]
    assert thread[3]["citations"] == []
    other = await harness.client.create_session()
    refused = await harness.client.http.get(
        f"/v1/sessions/{session.session_id}/messages", headers=other.auth)
    assert refused.status_code == 403


async def test_documents_limits_files_and_deletion(
    redis_url: str, log_settings: EventLogSettings
) -> None:
    from tests.support.retrieval_docs import make_pdf

    tight = RetrievalSettings(max_document_chars=300, max_chunks_per_collection=4,
                              chunk_chars=100, chunk_overlap=10, max_collections=1)
    async with serve_api(redis_url, log_settings, llm=PromptLLM(), tts=None,
                         retrieval=tight) as h:
        http = h.client.http
        created = (await http.post("/v1/collections", json={})).json()
        cid, auth = created["collection"]["collection_id"], {"X-Voxline-Token": created["token"]}
        again = await http.post("/v1/collections", json={})
        assert (again.status_code, again.json()["error"]["code"]) == (
            409, "too_many_collections")
        large = await http.post(f"/v1/collections/{cid}/documents", json={"text": "x " * 200},
                                headers=auth)
        assert (large.status_code, large.json()["error"]["code"]) == (413, "document_too_large")
        pdf = await http.post(f"/v1/collections/{cid}/files", headers=auth,
                              files={"file": ("light.pdf", make_pdf("Kestrel Point light"),
                                              "application/pdf")})
        assert pdf.status_code == 201, pdf.text
        doc = pdf.json()
        assert doc["format"] == "pdf" and doc["title"] == "light.pdf"
        full = await http.post(f"/v1/collections/{cid}/documents", json={"text": "word " * 59},
                               headers=auth)
        assert (full.status_code, full.json()["error"]["code"]) == (413, "collection_full")
        chunks = await http.get(f"/v1/collections/{cid}/documents/{doc['document_id']}",
                                headers=auth)
        assert "Kestrel Point light" in chunks.json()["chunks"][0]
        missing = await http.get("/v1/collections/col_missing", headers=auth)
        assert (missing.status_code, missing.json()["error"]["code"]) == (
            404, "collection_not_found")
        assert (await http.delete(f"/v1/collections/{cid}/documents/{doc['document_id']}",
                                  headers=auth)).status_code == 204
        assert (await http.delete(f"/v1/collections/{cid}", headers=auth)).status_code == 204
        assert (await http.get(f"/v1/collections/{cid}", headers=auth)).status_code == 404


async def test_the_end_of_a_turn_is_retried_when_its_write_fails(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from schemas import ResponseDone

    session = await harness.client.create_session()
    log: EventLog = harness.services.log
    real = log.append_batch
    refused: list[int] = []

    async def flaky(events: Any, *args: Any, **kwargs: Any) -> Any:
        if len(refused) < 2 and any(isinstance(e, ResponseDone) for e in events):
            refused.append(1)
            raise EventLogError("redis refused the write")
        return await real(events, *args, **kwargs)

    monkeypatch.setattr(log, "append_batch", flaky)
    messages = await chat(harness, "Hello again", session)
    assert len(refused) == 2
    assert messages[-1][0] == "done" and messages[-1][1]["text"] == REPLY
