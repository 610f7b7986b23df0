"""Schemathesis over every endpoint of the OpenAPI spec, against the harness's real server.

Every operation is called with generated requests, valid and invalid (schemathesis's
positive and negative modes): no answer may be a 5xx, every answer must have a status,
a content type, headers and a body the spec declares, and a request the spec forbids
must be refused (4xx). Session routes are reached four ways, chosen by Hypothesis with
the rest of the case: as generated (an unknown session, no token), on a live session with
its token, on a closed one with its token, and on a live one with another session's
token; uploads get a real WAV. Examples are bounded per operation and derandomized, so a
run is reproducible. What the fuzzer found is pinned by the tests at the end (event ids
beyond Redis, closed sessions, strict booleans).
"""

from __future__ import annotations

import io
import json
import wave
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.fuzz._live_api import LiveApi
from tests.fuzz._spec import CHECKS, give_upload, schema

pytestmark = pytest.mark.redis


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
    httpx.post(f"{api.url}/v1/sessions/{closed.session_id}/close", timeout=30,
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
    give_upload(case, WAV)  # an upload the decoder takes, the rest as generated
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


@schema.parametrize()
@schema.given(who=st.sampled_from(WHO))
@settings(max_examples=50, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
def test_every_endpoint(case: schemathesis.Case, who: str, api: LiveApi,
                        sessions: Sessions) -> None:
    aim(case, who, sessions)
    case.call_and_validate(base_url=api.url, checks=CHECKS, timeout=30)


def test_an_event_id_beyond_redis_is_a_client_error(api: LiveApi, sessions: Sessions) -> None:
    live = sessions.live
    response = httpx.get(
        f"{api.url}/v1/sessions/{live.session_id}/events", timeout=30,
        params={"follow": "false", "after": f"{1 << 64}-0"},
        headers={"Authorization": f"Bearer {live.token}"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_event_id"


def test_a_closed_sessions_events_are_refused(api: LiveApi, sessions: Sessions) -> None:
    """Closing a session revokes its token: following its events is 409, not a stream."""
    closed = sessions.closed
    response = httpx.get(f"{api.url}/v1/sessions/{closed.session_id}/events", timeout=30,
                         params={"after": sessions.closed_end},
                         headers={"Authorization": f"Bearer {closed.token}"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "session_closed"


@pytest.mark.parametrize("audio", [0.0, 1, "yes"])
def test_a_number_for_a_boolean_is_refused(api: LiveApi, audio: object) -> None:
    response = httpx.post(f"{api.url}/v1/chat/stream", timeout=30,
                          json={"message": "Hello.", "audio": audio})
    assert response.status_code == 422, response.text[:200]
