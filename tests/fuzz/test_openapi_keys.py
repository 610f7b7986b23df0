"""Schemathesis over every endpoint with API keys on (``VOXLINE_API__KEYS``).

The same spec and checks as :mod:`tests.fuzz.test_openapi`, on a server that has keys:
a request showing a valid key is answered as the spec says (never a 5xx); one showing no
key or a wrong one is 401 ``unauthorized`` whatever else it carries, on every route but
the health probes, which stay open for the orchestrator. Fewer examples per operation
than the keyless run: what is fuzzed here is the door, not the rooms behind it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from schemas import ApiSettings
from tests.fuzz._live_api import LiveApi, live_api
from tests.fuzz._spec import CHECKS, schema

pytestmark = pytest.mark.redis

KEY = "sk-voxline-fuzz"
#: what a case shows in its Authorization header
SHOWS = ("key", "no key", "wrong key")
OPEN_PATHS = {"/healthz", "/readyz"}


@pytest.fixture(scope="module")
def keyed(redis_url: str) -> Iterator[LiveApi]:
    with live_api(redis_url, f"voxfuzz:{uuid.uuid4().hex[:12]}",
                  ApiSettings(keys=[KEY])) as live:  # type: ignore[list-item]
        yield live


@schema.parametrize()
@schema.given(shows=st.sampled_from(SHOWS))
@settings(max_examples=12, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
def test_every_endpoint_with_keys_on(case: schemathesis.Case, shows: str,
                                     keyed: LiveApi) -> None:
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    if shows != "no key":
        headers["Authorization"] = f"Bearer {KEY if shows == 'key' else 'sk-not-a-key'}"
    case.headers = headers
    response = case.call(base_url=keyed.url, timeout=30)
    if shows == "key" or case.path in OPEN_PATHS:
        case.validate_response(response, checks=CHECKS)
        return
    assert response.status_code == 401, (case.method, case.path, response.text[:200])
    assert response.json()["error"]["code"] == "unauthorized"
