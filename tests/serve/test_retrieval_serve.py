"""Grounded turns in the real Serve app: a collection, a session given it, the packaged LLM
answering with the passage in its prompt, citations before ``done``, the thread after; and
a PDF bomb refused by the Gateway's reader processes while its ``/healthz`` answers."""

from __future__ import annotations

import pytest

from loadtests._hostile_docs import operator_bomb
from tests.support.liveness import LIVENESS, assert_live, pinging
from tests.support.retrieval_docs import DOCUMENTS
from voxline.client import VoxlineClient

pytestmark = [pytest.mark.serve, pytest.mark.models, pytest.mark.redis]

GREEDY = {"temperature": 0.0, "max_tokens": 30, "seed": 1}


async def test_a_grounded_chat_turn_cites_its_document(client: VoxlineClient) -> None:
    http = client.http
    created = (await http.post("/v1/collections", json={"name": "serve"})).json()
    cid, auth = created["collection"]["collection_id"], {"X-Voxline-Token": created["token"]}
    title = "Harbor Lighthouse"
    doc = await http.post(f"/v1/collections/{cid}/documents", headers=auth,
                          json={"title": title, "text": DOCUMENTS[title]})
    assert doc.status_code == 201, doc.text
    session = await client.create_session(sampling=GREEDY)
    given = await http.put(f"/v1/collections/{cid}/sessions/{session.session_id}", headers=auth)
    assert given.status_code == 204
    messages = [m async for m in client.chat_stream(
        "How many steps do visitors climb to the gallery?", session=session,
        search={"collection": cid, "top_k": 2})]
    names = [name for name, _ in messages]
    assert names[-2:] == ["citations", "done"], names
    done = messages[-1][1]
    assert done["status"] == "completed" and done["text"]
    assert done["citations"][0]["document_id"] == doc.json()["document_id"]
    thread = (await http.get(f"/v1/sessions/{session.session_id}/messages",
                             headers=session.auth)).json()["messages"]
    assert [m["role"] for m in thread] == ["user", "assistant"]
    assert thread[1]["citations"] == done["citations"]
    await http.delete(f"/v1/collections/{cid}", headers=auth)


@LIVENESS
async def test_a_pdf_bomb_is_refused_while_healthz_answers(client: VoxlineClient) -> None:
    """20 pages sharing 20,000 text operators: read in a reader process, stopped at the
    character limit while pypdf extracts; the Gateway's loop answers every ping meanwhile."""
    http = client.http
    created = (await http.post("/v1/collections", json={"name": "bomb"})).json()
    cid, auth = created["collection"]["collection_id"], {"X-Voxline-Token": created["token"]}
    async with pinging(str(http.base_url).rstrip("/")) as pings:
        refused = await http.post(f"/v1/collections/{cid}/files", headers=auth,
                                  files={"file": ("bomb.pdf", operator_bomb(),
                                                  "application/pdf")})
    assert (refused.status_code, refused.json()["error"]["code"]) == (413, "document_too_large")
    assert_live(pings)
    await http.delete(f"/v1/collections/{cid}", headers=auth)
