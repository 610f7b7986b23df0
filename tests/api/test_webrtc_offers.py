"""What a hostile or careless caller can do with a WebRTC offer, on the API harness
(scripted engines, real Redis, aiortc peers on loopback): an offer stuffed with
candidates or lines is refused while the Gateway's loop stays free, candidates outside
the allowed networks never reach ICE, bad lines are named in plain words, a session has
one call at a time, a client's offers are rate-limited, a caller that never starts ICE
is hung up early, a session's call is hung up only with its token, and a flood of client
events on the data channel is refused once per burst."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from loadtests._webrtc_call import WebRtcCaller, offer
from pipeline.webrtc import CALL_RATE
from schemas import WebRtcSettings
from tests.support.api_harness import Harness, call_api
from tests.support.liveness import LIVENESS, assert_live, pinging

pytestmark = pytest.mark.redis

CALLS = "/v1/realtime/calls"
PAGE = "voxline-events"
CALL_FORMATS = {"input_sample_rate": CALL_RATE, "output_sample_rate": CALL_RATE,
                "output_format": "pcm16"}
SDP = {"Content-Type": "application/sdp"}


@pytest.fixture
async def harness(redis_url: str, key_prefix: str) -> AsyncIterator[Harness]:
    async with call_api(redis_url, key_prefix) as harness:
        yield harness


async def local_offer(pc: RTCPeerConnection) -> str:
    await pc.setLocalDescription(await pc.createOffer())
    sdp: str = pc.localDescription.sdp
    return sdp


def with_lines(sdp: str, *lines: str) -> str:
    """``sdp`` with ``lines`` added to its first media section (after its ``a=mid``)."""
    out: list[str] = []
    added = False
    for line in sdp.splitlines():
        out.append(line)
        if not added and line.startswith("a=mid:"):
            out.extend(lines)
            added = True
    return "\r\n".join(out) + "\r\n"


def candidates(count: int, address: str = "127.0.0.{}") -> list[str]:
    return [f"a=candidate:{i} 1 udp 2130706431 {address.format(i % 250 + 1)} {20000 + i} "
            "typ host" for i in range(count)]


async def post(url: str, sdp: str, path: str = CALLS, *,
               http: httpx.AsyncClient | None = None, **headers: str) -> httpx.Response:
    """POST an offer (on ``http``: a client made once; making one costs 50-90 ms of the
    test's loop, which a liveness test would count as the server's)."""
    if http is None:
        async with httpx.AsyncClient(timeout=60) as own:
            return await post(url, sdp, path, http=own, **headers)
    return await http.post(f"{url}{path}", content=sdp, headers={**SDP, **headers})


def plain(answer: httpx.Response, status: int = 400, code: str = "invalid_message") -> str:
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == code
    message: str = error["message"]
    assert not any(word in message for word in ("Error(", "literal", "Traceback")), message
    return message


@LIVENESS
async def test_offers_stuffed_with_candidates_or_lines_leave_the_loop_free(
    redis_url: str, key_prefix: str
) -> None:
    # (before the bound, 4,000 candidates in one section held the loop for 2.4 s)
    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="sendrecv")
    pc.createDataChannel("oai-events")
    base = await local_offer(pc)
    await pc.close()
    stuffed = with_lines(base, *candidates(4000))  # 260 KB
    lines_of_candidates = with_lines(base, *candidates(900))  # 58 KB
    # the most lines allowed, aiortc's slowest (its a=ssrc look-ups), and a last line it
    # cannot read: the longest refusal, naming that line
    lines = len(base.splitlines())
    slow = with_lines(base, *(f"a=ssrc:{i} cname:x" for i in range(499 - lines)),
                      "a=rtpmap:abc opus/48000/2")
    async with call_api(redis_url, key_prefix,
                        webrtc=WebRtcSettings(offers_per_minute=1000)) as harness:
        async with httpx.AsyncClient(timeout=60) as http, \
                pinging(harness.url) as latencies:
            for _ in range(3):
                plain(await post(harness.url, stuffed, http=http), 413, "message_too_large")
                assert "lines" in plain(await post(harness.url, lines_of_candidates, http=http))
                message = plain(await post(harness.url, slow, http=http))
                assert "does not parse" in message and "a=rtpmap:abc" in message
        assert_live(latencies)
        assert not harness.services.connections.live and not harness.services.connections.calls


async def test_at_the_bound_a_call_is_answered_with_its_candidates(
    redis_url: str, key_prefix: str
) -> None:
    async with call_api(redis_url, key_prefix,
                        webrtc=WebRtcSettings(max_candidates=12)) as harness:
        caller = WebRtcCaller()
        try:
            sdp = await local_offer(caller.pc)
            present = sdp.count("a=candidate:")
            too_many = with_lines(sdp, *candidates(13 - present))
            message = plain(await post(harness.url, too_many))
            assert "more than 12 ICE candidates" in message
            assert "VOXLINE_WEBRTC__MAX_CANDIDATES" in message
            answer = await post(harness.url, with_lines(sdp, *candidates(12 - present)))
            assert answer.status_code == 201, answer.text
            await caller.pc.setRemoteDescription(RTCSessionDescription(answer.text, "answer"))
            await caller.until("session.created")
        finally:
            await caller.close()


def remote_addresses(harness: Harness) -> set[str]:
    """The candidate addresses the server's ICE holds, over every call it has."""
    found: set[str] = set()
    for call in harness.services.connections.calls.values():
        pc: Any = call.pc  # type: ignore[attr-defined]
        for transceiver in pc.getTransceivers():
            ice = transceiver.receiver.transport.transport
            found |= {c.ip for c in ice.getRemoteCandidates()}
    return found


async def test_candidates_outside_the_peer_networks_never_reach_ice(
    redis_url: str, key_prefix: str
) -> None:
    # mDNS names are left out (none may be resolved: a test sends nothing off loopback),
    # and so are addresses outside the one network allowed
    webrtc = WebRtcSettings(peer_networks=("127.0.0.1/32",), max_mdns_candidates=0)
    async with call_api(redis_url, key_prefix, webrtc=webrtc) as harness:
        caller = WebRtcCaller()
        try:
            sdp = with_lines(
                await local_offer(caller.pc), *candidates(3, "127.0.0.{}9"),
                "a=candidate:m 1 udp 2130706431 0b7c6a2e-4f5e-4a4b-9c1d-2e3f4a5b6c7d.local "
                "40000 typ host",
                "a=candidate:n 1 udp 2130706431 stun.example.invalid 40001 typ host")
            answer = await post(harness.url, sdp)
            assert answer.status_code == 201, answer.text
            await caller.pc.setRemoteDescription(RTCSessionDescription(answer.text, "answer"))
            await caller.until("session.created")  # the caller still connects
            assert remote_addresses(harness) <= {"127.0.0.1"}
        finally:
            await caller.close()


@pytest.mark.parametrize(("sdp", "says"), [
    ("v=0\r\nthis is not SDP at all\r\n", "line 2 of the SDP offer"),
    ("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
     "a=candidate:1 1 udp 2130706431 127.0.0.1 notaport typ host\r\n", "port"),
    ("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
     "a=candidate:1 1 udp 2130706431 127.0.0.1\r\n", "foundation component"),
    ("v=0\r\nm=audio nine UDP/TLS/RTP/SAVPF 111\r\n", "line 2 of the SDP offer"),
])
async def test_bad_lines_are_a_plain_invalid_message(
    harness: Harness, sdp: str, says: str
) -> None:
    message = plain(await post(harness.url, sdp))
    assert says in message
    assert not harness.services.connections.live


async def test_a_session_has_one_call_and_its_hangup_needs_its_token(
    harness: Harness
) -> None:
    async with httpx.AsyncClient(base_url=harness.url, timeout=30) as http:
        made = (await http.post("/v1/sessions", json={"settings": CALL_FORMATS})).json()
    path = f"/v1/sessions/{made['session_id']}/calls"
    token = {"X-Voxline-Token": made["token"]}
    first, second = WebRtcCaller(channel=PAGE), WebRtcCaller(channel=PAGE)
    try:
        assert (await first.call(harness.url, path, **token)).status_code == 201
        await first.until("session.created")
        old = next(iter(harness.services.connections.calls.values()))
        assert (await second.call(harness.url, path, **token)).status_code == 201
        # the new offer replaced the old call: one call, the new one
        assert await old.wait() == "replaced"  # type: ignore[attr-defined]
        assert len(harness.services.connections.calls) == 1
        assert second.location is not None
        call_id = second.location.rsplit("/", 1)[1]
        # OpenAI's hang-up route holds no token of its own: a session's call needs the
        # session's there too
        async with httpx.AsyncClient(base_url=harness.url, timeout=30) as http:
            refused = await http.post(f"{CALLS}/{call_id}/hangup")
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "unauthorized"
            assert len(harness.services.connections.calls) == 1
            hung = await http.post(f"{CALLS}/{call_id}/hangup", headers=token)
            assert hung.status_code == 204
        assert not harness.services.connections.calls
    finally:
        await first.close()
        await second.close()


async def test_a_clients_offers_past_its_rate_are_refused_with_retry_after(
    redis_url: str, key_prefix: str
) -> None:
    async with call_api(redis_url, key_prefix,
                        webrtc=WebRtcSettings(offers_per_minute=2)) as harness:
        callers = [WebRtcCaller() for _ in range(3)]
        try:
            for caller in callers[:2]:
                assert (await caller.call(harness.url)).status_code == 201
            refused = await callers[2].call(harness.url)
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "rate_limited"
            assert int(refused.headers["retry-after"]) >= 1
            assert len(harness.services.connections.calls) == 2  # the refused offer left nothing
        finally:
            for caller in callers:
                await caller.close()


async def test_a_caller_that_never_starts_ice_is_hung_up_before_the_ice_timeout(
    redis_url: str, key_prefix: str
) -> None:
    webrtc = WebRtcSettings(ice_start_timeout_s=0.5, ice_timeout_s=120)
    async with call_api(redis_url, key_prefix, webrtc=webrtc) as harness:
        absent, present = RTCPeerConnection(), WebRtcCaller()
        absent.addTransceiver("audio", direction="sendrecv")
        absent.createDataChannel("oai-events")
        try:
            assert (await offer(harness.url, absent)).status_code == 201  # and nothing after
            ghost = next(iter(harness.services.connections.calls.values()))
            await absent.close()
            assert await asyncio.wait_for(ghost.wait(), 60) == "ice_not_started"  # type: ignore[attr-defined]
            # a caller that connects is not hung up by the start timeout
            assert (await present.call(harness.url)).status_code == 201
            await present.until("session.created")
            await asyncio.sleep(1.0)  # twice the start timeout
            assert len(harness.services.connections.calls) == 1
            present.ask("Hi")
            await present.until("response.done")
        finally:
            await absent.close()
            await present.close()


async def test_a_flood_of_client_events_is_refused_once_per_burst(harness: Harness) -> None:
    caller = WebRtcCaller()
    try:
        assert (await caller.call(harness.url)).status_code == 201
        session_id = (await caller.until("session.created"))["session"]["id"]
        for i in range(2000):
            caller.channel.send(json.dumps({"type": "session.update",
                                            "session": {"instructions": f"Be brief {i}."}}))
        events: list[Any] = []
        settled = 0
        for _ in range(600):  # until the log stops growing for half a second (or 60 s)
            await asyncio.sleep(0.1)
            latest = await harness.services.log.read_all(session_id)
            settled = settled + 1 if len(latest) == len(events) else 0
            events = latest
            if settled >= 5:
                break
        applied = sum(e.type == "session.updated" for e in events)
        refusals = [e for e in events if e.type == "error"]
        assert applied >= 64 and refusals
        assert all(e.data.code == "overloaded" for e in refusals)
        # each refusal needs the queue drained since the last: at most one per 64 applied
        # (before: one per dropped event, 1,927 of 2,000)
        assert len(refusals) <= applied // 64 + 1, (len(refusals), applied)
    finally:
        await caller.close()


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True),
    ("0.0.0.0", False), ("10.1.2.3", False), ("voxline.example", False)])
def test_a_server_on_any_loopback_address_offers_loopback_candidates(
        host: str, loopback: bool) -> None:
    """What the server binds decides its ICE addresses and the peers it accepts: any
    loopback address counts (127/8 and ``*.localhost`` too, as the origin guard reads
    them), not only the three usual names."""
    from types import SimpleNamespace

    from deployments.api._calls import _binds_loopback
    from schemas import Settings

    assert _binds_loopback(SimpleNamespace(settings=Settings(host=host))) is loopback  # type: ignore[arg-type]
