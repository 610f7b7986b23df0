"""Hypothesis over Twilio's Media Streams socket, through the harness's real server.

Each example opens ``/v1/twilio/media`` and sends a generated run of frames, as a broken or
hostile peer might: Twilio's messages valid and not (``connected``, ``start`` with
formats and parameters right and wrong, ``media`` with payloads that are and are not
base64 μ-law, ``mark``, ``dtmf``, ``stop``), unknown events, any JSON, text that is not
JSON, and binary frames, in any order, before ``start`` and after it. Then:

* the socket is open, or was closed with a close code: ``1000`` (``stop``) or a 44xx
  refusal whose reason is the error's code, never dropped without one, never ``1011``;
* every frame the server sent is Twilio's (``media``, ``mark`` or ``clear``, JSON);
* once the client has gone, the server holds no session for it;
* the server logged no traceback.

Examples are bounded and derandomized, so CI runs the same inputs every time.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from schemas import ApiSettings, ErrorCode
from tests.fuzz._live_api import LiveApi, live_api

pytestmark = pytest.mark.redis

MAX_BYTES = 16 << 10
FUZZ = settings(max_examples=80, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
#: the close codes a refusal may carry: 4000 + a client error's HTTP status
REFUSALS = {4400, 4401, 4403, 4404, 4409, 4413, 4415}
OUTBOUND = {"media", "mark", "clear"}
#: how the runs ended (close code, or "open"), for the module's last test to check
outcomes: Counter[int | str] = Counter()

# ---- what a peer may send -----------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                               max_size=3),
    max_leaves=8)
mulaw = st.binary(min_size=0, max_size=480).map(lambda b: base64.b64encode(b).decode())
payloads = mulaw | st.text(max_size=40) | st.just("!!not base64!!")
formats = st.fixed_dictionaries({
    "encoding": st.sampled_from(["audio/x-mulaw", "audio/x-l16", "", "x"]),
    "sampleRate": st.sampled_from([8000, 16000, 0, -1]) | st.text(max_size=4),
    "channels": st.sampled_from([1, 2, 0]),
})
parameters = st.dictionaries(st.sampled_from(["session_id", "token", "x"]),
                             st.text(max_size=20), max_size=3)
start = st.builds(
    lambda sid, fmt, params, tracks: {"event": "start", "sequenceNumber": "1", "start": {
        "streamSid": sid, "callSid": "CA1", "tracks": tracks, "mediaFormat": fmt,
        "customParameters": params}},
    st.text(min_size=0, max_size=70), st.just({"encoding": "audio/x-mulaw",
                                               "sampleRate": 8000, "channels": 1}) | formats,
    st.just({}) | parameters, st.lists(st.sampled_from(["inbound", "outbound"]), max_size=5))
messages = st.one_of(
    st.just({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
    start,
    st.builds(lambda p, track: {"event": "media", "streamSid": "MZ1",
                                "media": {"track": track, "payload": p}},
              payloads, st.sampled_from(["inbound", "outbound", ""])),
    st.builds(lambda name: {"event": "mark", "streamSid": "MZ1", "mark": {"name": name}},
              st.text(max_size=300)),
    st.builds(lambda d: {"event": "dtmf", "streamSid": "MZ1", "dtmf": {"digit": d}},
              st.text(max_size=6)),
    st.just({"event": "stop", "streamSid": "MZ1"}),
    st.builds(lambda kind, fields: {**fields, "event": kind},
              st.sampled_from(["start", "media", "mark", "x", ""]) | json_values,
              st.dictionaries(st.text(max_size=10), json_values, max_size=3)),
)
#: a good opening (``connected``, then a ``start`` this server takes): most runs get past
#: it, so what follows reaches a live call
OPENING = [json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
           json.dumps({"event": "start", "sequenceNumber": "1", "start": {
               "streamSid": "MZ1", "callSid": "CA1", "tracks": ["inbound"],
               "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000,
                               "channels": 1}, "customParameters": {}}})]
anything = (messages.map(json.dumps) | json_values.map(json.dumps) | st.text(max_size=40)
            | st.binary(max_size=64))
frames = st.builds(lambda opened, rest: (OPENING if opened else []) + rest,
                   st.sampled_from([True, True, True, False]),
                   st.lists(anything, min_size=1, max_size=8))


# ---- the server ---------------------------------------------------------------------

class _Tracebacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


@pytest.fixture(scope="module")
def api(redis_url: str) -> Iterator[LiveApi]:
    limits = ApiSettings(max_message_bytes=MAX_BYTES)
    with live_api(redis_url, f"voxfuzz:{uuid.uuid4().hex[:12]}", api=limits) as live:
        yield live


@pytest.fixture(scope="module")
def tracebacks() -> Iterator[_Tracebacks]:
    handler = _Tracebacks()
    logging.getLogger().addHandler(handler)
    try:
        yield handler
    finally:
        logging.getLogger().removeHandler(handler)


@FUZZ
@given(sent=frames)
def test_any_run_of_frames_is_served_or_closed_with_a_code(
    api: LiveApi, tracebacks: _Tracebacks, sent: list[str | bytes]
) -> None:
    url = "ws" + api.url.removeprefix("http") + "/v1/twilio/media"
    closed: ConnectionClosed | None = None
    with connect(url, open_timeout=10, close_timeout=5) as ws:
        try:
            for frame in sent:
                ws.send(frame)
            deadline = time.monotonic() + 0.3  # what it answers meanwhile
            while (left := deadline - time.monotonic()) > 0:
                try:
                    answer = ws.recv(timeout=left)
                except TimeoutError:
                    break
                assert isinstance(answer, str), "Twilio's frames are text"
                assert json.loads(answer)["event"] in OUTBOUND
        except ConnectionClosed as exc:
            closed = exc
    outcomes[closed.rcvd.code if closed is not None and closed.rcvd else "open"] += 1
    if closed is not None:
        assert closed.rcvd is not None, "dropped without a close frame"
        code, reason = closed.rcvd.code, closed.rcvd.reason
        assert code == 1000 or code in REFUSALS, (code, reason)
        if code in REFUSALS:
            assert reason in {c.value for c in ErrorCode}, reason
    for _ in range(250):  # the client has gone: its session too
        if not api.services.connections.live:
            break
        time.sleep(0.02)
    assert not api.services.connections.live
    assert not tracebacks.records, [r.getMessage() for r in tracebacks.records[:3]]


def test_the_runs_reached_a_live_call_and_its_refusals() -> None:
    """The fuzzer did what it says: runs that stayed open (a live call), ended with
    ``stop``, and were refused (run after it, in the module's order)."""
    assert outcomes["open"] and outcomes[1000] and outcomes[4400], dict(outcomes)
