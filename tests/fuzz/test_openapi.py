"""Schemathesis over every endpoint of the OpenAPI spec, against the harness's real server.

Every operation is called with generated requests, valid and invalid (schemathesis's
positive and negative modes): no answer may be a 5xx, every answer must have a status,
a content type, headers and a body the spec declares, and a request the spec forbids
must be refused (4xx). Session routes are reached four ways, chosen by Hypothesis with
the rest of the case: as generated (an unknown session, no token), on a live session with
its token, on a closed one with its token, and on a live one with another session's
token; uploads get a real WAV. Examples are bounded per operation and derandomized, so a
run is reproducible. Inputs that hit a known finding in code being fixed elsewhere are
kept out with ``assume`` and pinned by ``xfail(strict=True)`` tests at the end.
"""

from __future__ import annotations

import io
import json
import re
import wave
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, assume, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from deployments.api import create_api
from tests.fuzz.conftest import LiveApi

pytestmark = pytest.mark.redis

# The spec as the app declares it (no server needed to build it).
schema = schemathesis.openapi.from_dict(create_api().openapi())

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance, negative_data_rejection]


#: whose session a case calls: as generated, a live one or a closed one with its token,
#: or a live one with another session's token
WHO = ("generated", "owner", "closed", "stranger")


@dataclass(frozen=True)
class Session:
    session_id: str
    token: str
    turn_id: str


@dataclass(frozen=True)
class Sessions:
    """Sessions for the session routes, each with a spoken turn; ``closed`` was ended."""

    live: Session
    closed: Session
    #: the id of the closed session's last event (``session.closed``)
    closed_end: str
    api: LiveApi

    def fresh(self) -> Session:
        session_id, token = self.api.create_session()
        return Session(session_id, token, "no-turn")


def _spoken_turn(api: LiveApi) -> Session:
    with httpx.stream("POST", f"{api.url}/v1/chat/stream", timeout=30,
                      json={"message": "Hello there.", "audio": True}) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    first, last = json.loads(lines[0][6:]), json.loads(lines[-1][6:])
    return Session(first["thread_id"], first["token"], last["turn_id"])


@pytest.fixture(scope="module")
def sessions(api: LiveApi) -> Sessions:
    live, closed = _spoken_turn(api), _spoken_turn(api)
    httpx.delete(f"{api.url}/v1/sessions/{closed.session_id}", timeout=30,
                 headers={"Authorization": f"Bearer {closed.token}"}).raise_for_status()
    end = api.run(api.services.log.read_all(closed.session_id))[-1].id
    assert end is not None
    return Sessions(live, closed, end, api)


def _wav(seconds: float = 0.5, rate: int = 16000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (np.sin(2 * np.pi * 220 * t) * 8000).astype("<i2").tobytes()
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return out.getvalue()


WAV = _wav()


def aim(case: schemathesis.Case, who: str, sessions: Sessions) -> None:
    """Point a case at a session (and its turn) with a token; give uploads real audio."""
    if who == "generated":
        return
    positive = case.meta is not None and case.meta.generation.mode is GenerationMode.POSITIVE
    if positive and isinstance(case.body, dict) and "file" in case.body:
        case.body["file"] = WAV  # an upload the decoder takes, the rest as generated
    session = {"owner": sessions.live, "closed": sessions.closed,
               "stranger": sessions.live}[who]
    if who == "owner" and case.method == "DELETE":
        session = sessions.fresh()  # the live session stays live for the other routes
    token = sessions.closed.token if who == "stranger" else session.token
    if case.path_parameters and "session_id" in case.path_parameters:
        case.path_parameters["session_id"] = session.session_id
        if "turn_id" in case.path_parameters:
            case.path_parameters["turn_id"] = session.turn_id
    elif isinstance(case.body, dict) and isinstance(case.body.get("session_id"), str):
        # (a session_id of the wrong type is the negative case's point: left as it is)
        case.body["session_id"] = session.session_id
    else:
        return
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
    follow = (case.query or {}).get("follow", True)
    if case.path.endswith("/events") and session is sessions.live and follow in (True, "true"):
        # following a live session's log never ends (by design): replay it instead
        case.query = {**(case.query or {}), "follow": "false"}


def cursors(case: schemathesis.Case) -> list[object]:
    headers = {name.lower(): value for name, value in (case.headers or {}).items()}
    return [(case.query or {}).get("after"), headers.get("last-event-id")]


def follows_from(case: schemathesis.Case, end: str) -> bool:
    """Following the events from ``end`` or later: on a closed session, a known finding."""
    follow = (case.query or {}).get("follow", True) in (True, "true")
    return case.path.endswith("/events") and follow and any(
        isinstance(c, str) and re.fullmatch(r"\d+-\d+", c) and _id(c) >= _id(end)
        for c in cursors(case))


def _id(event_id: str) -> tuple[int, int]:
    ms, seq = event_id.split("-")
    return int(ms), int(seq)


#: what pydantic's lax mode reads as a boolean besides true and false
_LAX_BOOLEANS = (0, 1, "0", "1", "true", "false", "yes", "no", "on", "off", "t", "f", "y", "n")


def lax_boolean(case: schemathesis.Case) -> bool:
    """A boolean body field sent as a number or a word: a known finding."""
    value = case.body.get("audio") if isinstance(case.body, dict) else None
    return not isinstance(value, bool) and isinstance(value, int | float | str) and (
        str(value).lower() if isinstance(value, str) else value) in _LAX_BOOLEANS


def beyond_redis(case: schemathesis.Case) -> bool:
    """An event id whose parts Redis cannot hold (over 2**64 - 1): a known finding."""
    return any(isinstance(c, str) and re.fullmatch(r"\d+-\d+", c)
               and max(int(p) for p in c.split("-")) >= 1 << 64 for c in cursors(case))


@schema.parametrize()
@schema.given(who=st.sampled_from(WHO))
@settings(max_examples=50, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
def test_every_endpoint(case: schemathesis.Case, who: str, api: LiveApi,
                        sessions: Sessions) -> None:
    aim(case, who, sessions)
    assume(not beyond_redis(case))  # test_an_event_id_beyond_redis_is_a_client_error
    assume(not lax_boolean(case))  # test_a_number_for_a_boolean_is_refused
    # test_following_a_closed_session_from_its_end_ends
    assume(not (who == "closed" and follows_from(case, sessions.closed_end)))
    case.call_and_validate(base_url=api.url, checks=CHECKS, timeout=30)


@pytest.mark.xfail(strict=True, reason="issue 11: an event id beyond Redis's 64-bit parts "
                   "is a 503 event_log_unavailable, not a 400 invalid_event_id")
def test_an_event_id_beyond_redis_is_a_client_error(api: LiveApi, sessions: Sessions) -> None:
    live = sessions.live
    response = httpx.get(
        f"{api.url}/v1/sessions/{live.session_id}/events", timeout=30,
        params={"follow": "false", "after": f"{1 << 64}-0"},
        headers={"Authorization": f"Bearer {live.token}"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_event_id"


@pytest.mark.xfail(strict=True, reason="issue 11: following a closed session's events from "
                   "its end (or any later id) never ends: keep-alives only, no session.closed")
def test_following_a_closed_session_from_its_end_ends(api: LiveApi, sessions: Sessions) -> None:
    closed = sessions.closed
    # the stream must end by itself; the read timeout only bounds a hang (keep-alives are
    # 15 s apart, so a hung stream times out before its first one)
    with httpx.stream("GET", f"{api.url}/v1/sessions/{closed.session_id}/events",
                      params={"after": sessions.closed_end},
                      headers={"Authorization": f"Bearer {closed.token}"},
                      timeout=httpx.Timeout(30, read=5)) as response:
        assert response.status_code == 200
        response.read()


@pytest.mark.xfail(strict=True, reason="issue 11: request bodies are validated in pydantic's "
                   "lax mode: a number (0.0) or a word (\"yes\") for the boolean `audio` of "
                   "/v1/chat/stream is accepted where the spec says boolean")
@pytest.mark.parametrize("audio", [0.0, 1, "yes"])
def test_a_number_for_a_boolean_is_refused(api: LiveApi, audio: object) -> None:
    response = httpx.post(f"{api.url}/v1/chat/stream", timeout=30,
                          json={"message": "Hello.", "audio": audio})
    assert response.status_code == 422, response.text[:200]
