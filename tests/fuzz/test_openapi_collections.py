"""Schemathesis over ``/v1/collections``, aimed at real collections.

:mod:`tests.fuzz.test_openapi` reaches these routes only as generated (an unknown
collection, no token), so everything behind the token went unfuzzed. Here each case is
aimed, as Hypothesis chooses: as generated, at a live collection with its token (its
document and the session it was given to filled in), or with another collection's token;
an upload in a valid case carries one of a real PDF, a PDF of 2,000 text operators, a PDF
with an array nested 3,000 deep, or text. The checks are those of the whole-API fuzzer:
never a 5xx, every answer as the spec declares.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from loadtests._hostile_docs import deep_array, operator_bomb
from schemas import RetrievalSettings
from tests.fuzz._live_api import LiveApi, live_api
from tests.fuzz._spec import CHECKS, give_upload, schema
from tests.support.retrieval_docs import make_pdf

pytestmark = pytest.mark.redis

collections = schema.include(path_regex=r"^/v1/collections")

WHO = ("generated", "owner", "stranger")
UPLOADS = (make_pdf("Kestrel Point light"), operator_bomb(pages=2, operators=2000),
           deep_array(), b"plain text notes")


@dataclass(frozen=True)
class Collections:
    api: LiveApi
    collection: str
    token: str
    stranger_token: str
    document: str
    session: str

    def fresh(self) -> tuple[str, str]:
        created = httpx.post(f"{self.api.url}/v1/collections", json={}, timeout=30)
        created.raise_for_status()
        body = created.json()
        return body["collection"]["collection_id"], body["token"]


def _collection(url: str) -> tuple[str, str]:
    created = httpx.post(f"{url}/v1/collections", json={"name": "fuzz"}, timeout=30)
    created.raise_for_status()
    body = created.json()
    return body["collection"]["collection_id"], body["token"]


@pytest.fixture(scope="module")
def live(redis_url: str) -> Iterator[Collections]:
    roomy = RetrievalSettings(max_collections_per_client=1000, document_timeout_s=5)
    with live_api(redis_url, f"voxfuzz:{uuid.uuid4().hex[:12]}", retrieval=roomy) as api:
        cid, token = _collection(api.url)
        _, stranger = _collection(api.url)
        doc = httpx.post(f"{api.url}/v1/collections/{cid}/documents", timeout=30,
                         json={"text": "The harbour light has 120 steps.", "title": "light"},
                         headers={"X-Voxline-Token": token})
        doc.raise_for_status()
        session_id, _ = api.create_session()
        yield Collections(api, cid, token, stranger, doc.json()["document_id"], session_id)


def aim(case: schemathesis.Case, who: str, upload: bytes, live: Collections) -> None:
    params = case.path_parameters
    if who == "generated" or not params or "collection_id" not in params:
        return
    collection, token = live.collection, live.token
    if who == "owner" and case.method == "DELETE" and set(params) == {"collection_id"}:
        collection, token = live.fresh()  # the live collection stays for the other routes
    params["collection_id"] = collection
    if "document_id" in params:
        params["document_id"] = live.document
    if "session_id" in params:
        params["session_id"] = live.session
    shown = token if who == "owner" else live.stranger_token
    case.headers = {**(case.headers or {}), "X-Voxline-Token": shown}
    give_upload(case, upload)


@collections.parametrize()
@collections.given(who=st.sampled_from(WHO), upload=st.sampled_from(UPLOADS))
@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
def test_collection_routes(case: schemathesis.Case, who: str, upload: bytes,
                           live: Collections) -> None:
    aim(case, who, upload, live)
    case.call_and_validate(base_url=live.api.url, checks=CHECKS, timeout=30)
