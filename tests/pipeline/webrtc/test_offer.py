"""Reading and bounding a caller's SDP offer (:mod:`pipeline.webrtc.offer`): the counts and
their limits, the line rules with plain errors, which candidates are left out (networks,
mDNS, host names), and a property over mutated offers: what passes the bound either
parses in aiortc or is refused with a plain ``invalid_message`` naming a line."""

from __future__ import annotations

import ipaddress

import pytest
from aiortc.sdp import SessionDescription
from hypothesis import HealthCheck, given, settings

from pipeline.webrtc import OfferLimits, bound_offer
from pipeline.webrtc.offer import first_bad_line, unparsable
from schemas import ErrorCode, InputTooLargeError, ProtocolError, WebRtcSettings
from tests.support.sdp import Step, candidate, mutate, mutations, offer

LOOPBACK = OfferLimits.of(WebRtcSettings(), loopback=True)
PUBLIC = OfferLimits.of(WebRtcSettings(), loopback=False)


def candidates_of(sdp: str) -> list[str]:
    return [line.split()[4] for line in sdp.splitlines() if line.startswith("a=candidate:")]


def test_a_browser_offer_passes_whole() -> None:
    text = offer(candidate("127.0.0.1"), candidate("::1", 50001))
    bounded = bound_offer(text, LOOPBACK)
    assert bounded.sdp == text
    assert (bounded.media_sections, bounded.candidates, bounded.dropped) == (2, 2, {})
    SessionDescription.parse(bounded.sdp)


def test_candidates_outside_the_networks_are_left_out() -> None:
    text = offer(candidate("127.0.0.1"), candidate("8.8.8.8", n=2), candidate("10.1.2.3", n=3),
                 candidate("::ffff:127.0.0.1", n=4), candidate("169.254.1.1", n=5),
                 candidate("224.0.0.251", n=6), candidate("fe80::1", n=7))
    # a loopback server checks loopback only; a public one globally routable ones only
    assert candidates_of(bound_offer(text, LOOPBACK).sdp) == ["127.0.0.1", "::ffff:127.0.0.1"]
    public = bound_offer(text, PUBLIC)
    assert candidates_of(public.sdp) == ["8.8.8.8"]
    assert public.dropped == {"network": 6}
    assert public.candidates == 7
    # a deployment that says so: its LAN too
    lan = OfferLimits.of(WebRtcSettings(peer_networks=("public", "10.0.0.0/8")),
                         loopback=False)
    assert candidates_of(bound_offer(text, lan).sdp) == ["8.8.8.8", "10.1.2.3"]


def test_mdns_names_are_capped_and_other_names_dropped() -> None:
    names = [candidate(f"{i:08x}-aaaa-bbbb-cccc-dddddddddddd.local", n=i) for i in range(6)]
    text = offer(*names, candidate("stun.evil.example", n=9))
    limits = OfferLimits.of(WebRtcSettings(max_mdns_candidates=2), loopback=False)
    bounded = bound_offer(text, limits)
    assert len(candidates_of(bounded.sdp)) == 2
    assert bounded.dropped == {"mdns": 4, "hostname": 1}
    off = OfferLimits.of(WebRtcSettings(max_mdns_candidates=0), loopback=False)
    assert candidates_of(bound_offer(text, off).sdp) == []


@pytest.mark.parametrize(("text", "limit"), [
    (offer(*(candidate("127.0.0.1", 40000 + i, n=i) for i in range(33))), "MAX_CANDIDATES"),
    (offer() + "m=audio 9 UDP/TLS/RTP/SAVPF 0\r\n" * 3, "MAX_MEDIA_SECTIONS"),
    (offer(extra=tuple(f"a=ssrc:{i} cname:x" for i in range(500))), "MAX_OFFER_LINES"),
])
def test_counts_past_their_limits_are_refused_before_anything_is_parsed(
    text: str, limit: str
) -> None:
    with pytest.raises(ProtocolError) as refused:
        bound_offer(text, LOOPBACK)
    assert refused.value.code is ErrorCode.INVALID_MESSAGE
    assert f"VOXLINE_WEBRTC__{limit}" in refused.value.message


def test_an_offer_past_its_size_is_too_large() -> None:
    with pytest.raises(InputTooLargeError) as refused:
        bound_offer(offer(extra=("a=x:" + "y" * 70_000,)), LOOPBACK)
    assert refused.value.http_status == 413
    assert "VOXLINE_WEBRTC__MAX_OFFER_BYTES" in refused.value.message


@pytest.mark.parametrize(("text", "line", "says"), [
    ("hello\r\n", 1, "starts with 'v=0'"),
    ("v=0\r\ngarbage after the version\r\n", 2, "a lowercase letter, '='"),
    ("v=0\r\nX=upper\r\n", 2, "a lowercase letter, '='"),
    (offer("a=candidate:1 1 udp 2122260223 127.0.0.1 notaport typ host"), 10,
     "port is a number from 0 to 65535"),
    (offer("a=candidate:1 1 udp 2122260223 127.0.0.1 70000 typ host"), 10, "port"),
    (offer("a=candidate:1 x udp 1 127.0.0.1 5000 typ host"), 10, "component"),
    (offer("a=candidate:1 1 udp -5 127.0.0.1 5000 typ host"), 10, "priority"),
    (offer("a=candidate:1 1 udp 1 127.0.0.1 5000 typ bogus"), 10, "candidate type"),
    (offer("a=candidate:1 1 udp 1 127.0.0.1 5000"), 10, "foundation component"),
    (offer("a=candidate:1 1 udp 1 127.0.0.1 5000 typ srflx raddr 1.2.3.4 rport x"), 10,
     "rport"),
    (offer("a=candidate:f$o 1 udp 1 127.0.0.1 5000 typ host"), 10, "token"),
])
def test_bad_lines_are_named_in_plain_words(text: str, line: int, says: str) -> None:
    with pytest.raises(ProtocolError) as refused:
        bound_offer(text, LOOPBACK)
    error = refused.value
    assert error.code is ErrorCode.INVALID_MESSAGE and error.http_status == 400
    assert f"line {line} of the SDP offer" in error.message and says in error.message
    assert error.details["line"] == line
    assert not any(word in error.message for word in ("Error", "literal", "Traceback"))


def test_a_line_aiortc_cannot_read_is_named_without_its_words() -> None:
    text = offer(candidate("127.0.0.1"), extra=("a=rtpmap:abc opus/48000/2",))
    bounded = bound_offer(text, LOOPBACK)  # not a line the bound reads
    with pytest.raises(ValueError):
        SessionDescription.parse(bounded.sdp)
    number = bounded.sdp.splitlines().index("a=rtpmap:abc opus/48000/2") + 1
    assert first_bad_line(bounded.sdp, SessionDescription.parse) == (
        number, "a=rtpmap:abc opus/48000/2")
    error = unparsable(bounded.sdp, SessionDescription.parse)
    assert f"line {number} of the SDP offer does not parse" in error.message
    assert "literal" not in error.message
    assert first_bad_line(text, lambda sdp: None) is None  # nothing fails: nothing named


def test_the_networks_setting_is_checked() -> None:
    chosen = WebRtcSettings(peer_networks=("public", "10.0.0.0/8"))
    assert chosen.peer_ranges(loopback=False) == ((ipaddress.ip_network("10.0.0.0/8"),), True)
    with pytest.raises(ValueError, match="neither a network"):
        WebRtcSettings(peer_networks=("10.0.0.0/33",))
    with pytest.raises(ValueError):
        WebRtcSettings(peer_networks=("not-a-network",))


# ---- the property: nothing but a plain ProtocolError, or an offer aiortc reads ------------


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(steps=mutations)
def test_mutated_offers_are_parsed_or_refused_in_plain_words(steps: list[Step]) -> None:
    text = mutate(steps)
    try:
        bounded = bound_offer(text, LOOPBACK)
    except ProtocolError as exc:
        assert exc.code is ErrorCode.INVALID_MESSAGE
        assert "Error" not in exc.message and "literal" not in exc.message
        return
    try:
        SessionDescription.parse(bounded.sdp)
    except Exception:
        error = unparsable(bounded.sdp, SessionDescription.parse)
        assert error.code is ErrorCode.INVALID_MESSAGE
        assert "Error" not in error.message and "literal" not in error.message
