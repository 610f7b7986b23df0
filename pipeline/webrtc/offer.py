"""A caller's SDP offer, read and bounded before aiortc sees it.

aiortc parses whatever it is given and hands every ``a=candidate`` line to aioice, which
pairs each with what it holds by linear searches: N candidates cost N² steps on the
event loop (4,000 held a Gateway's loop for 2.4 s). Each candidate is also an address the
server then sends STUN checks to (a UDP probe for anyone who may post an offer), and an
mDNS name (``….local``) is a multicast look-up. Browsers send a handful. So
:func:`bound_offer` reads the offer in one linear pass first, with plain errors that name
the line:

* its size, lines, media sections (``m=``) and candidates are counted against
  :class:`OfferLimits` (``400 invalid_message`` past them, ``413`` past the size). The
  lines count too because aiortc's parser is itself quadratic in some of them (its
  ``a=ssrc`` look-ups: 2,600 lines in 64 KB took 53 ms to parse, and as long again to
  apply);
* every line is SDP's ``<letter>=<value>``, the first one ``v=0``, and a candidate line is
  RFC 8839's ``foundation component transport priority address port typ type …`` with
  numbers where numbers belong;
* a candidate whose address is outside the allowed networks is dropped, as is an mDNS
  name past the call's cap, and a host name that is neither an address nor mDNS: aioice
  never sees them. The caller's own checks still reach the server's candidates, and the
  answers go back where they came from (ICE learns that address from the check), so a
  peer whose candidates were dropped still connects when it can reach the server.

What comes out is the offer aiortc may parse: the same lines, less the dropped ones.
:func:`unparsable` is the error for an offer that passed and still fails aiortc's parser
(a value it reads as a number that is not one, say): it names the line
(:func:`first_bad_line`), never the parser's Python words.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from schemas import ErrorCode, InputTooLargeError, ProtocolError, WebRtcSettings

__all__ = ["Offer", "OfferLimits", "bound_offer", "first_bad_line", "unparsable"]

#: aioice's own test of an mDNS name (``aioice.mdns``): what it would resolve
_MDNS = re.compile(r"^[a-zA-Z0-9-]{1,63}\.local$")
_LINE = re.compile(r"^[a-z]=")
_TYPES = frozenset({"host", "srflx", "prflx", "relay"})
_TOKEN = re.compile(r"^[A-Za-z0-9+/.-]{1,64}$")  # transport, foundation: RFC 8839 tokens
_SHOWN = 80  # characters of a bad line an error quotes


@dataclass(frozen=True)
class OfferLimits:
    """What one offer may hold (``VOXLINE_WEBRTC__*``): see :class:`WebRtcSettings`."""

    max_bytes: int = 65536
    max_lines: int = 500
    max_media_sections: int = 4
    max_candidates: int = 32
    max_mdns_candidates: int = 4
    #: addresses checks may go to; ``public`` stands for every globally routable one
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    public: bool = True

    @classmethod
    def of(cls, settings: WebRtcSettings, *, loopback: bool) -> OfferLimits:
        """The limits a server with these settings applies; ``loopback``: it binds a
        loopback address (the default peer networks are then loopback's)."""
        networks, public = settings.peer_ranges(loopback=loopback)
        return cls(max_bytes=settings.max_offer_bytes, max_lines=settings.max_offer_lines,
                   max_media_sections=settings.max_media_sections,
                   max_candidates=settings.max_candidates,
                   max_mdns_candidates=settings.max_mdns_candidates,
                   networks=networks, public=public)


@dataclass(frozen=True)
class Offer:
    """An offer that passed :func:`bound_offer`: ``sdp`` for aiortc, and what was left
    out of it (a count per reason: ``network``, ``mdns``, ``hostname``)."""

    sdp: str
    media_sections: int
    candidates: int
    dropped: Counter[str] = field(default_factory=Counter)


def bound_offer(text: str, limits: OfferLimits) -> Offer:
    """``text`` checked and trimmed as the module docstring says; raises
    :class:`ProtocolError` (``invalid_message``, the line named) or
    :class:`InputTooLargeError`."""
    size = len(text.encode("utf-8", errors="replace"))
    if size > limits.max_bytes:
        raise InputTooLargeError(
            f"the offer of {size} bytes is over the limit of {limits.max_bytes} "
            "(VOXLINE_WEBRTC__MAX_OFFER_BYTES; a browser's is a few KB)",
            limit=limits.max_bytes, size=size)
    lines = text.splitlines()  # as aiortc splits it: the same lines are checked here
    if len(lines) > limits.max_lines:
        raise _over(f"{len(lines)} lines, more than {limits.max_lines}", "MAX_OFFER_LINES",
                    "a browser's has 40-250")
    kept: list[str] = []
    dropped: Counter[str] = Counter()
    sections = candidates = mdns = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if not kept:
            if line.strip() != "v=0":
                raise _bad(number, line, "an offer starts with 'v=0'")
        elif not _LINE.match(line):
            raise _bad(number, line, "an SDP line is a lowercase letter, '=' and a value")
        if line.startswith("m="):
            sections += 1
            if sections > limits.max_media_sections:
                raise _over(f"more than {limits.max_media_sections} media sections (m=)",
                            "MAX_MEDIA_SECTIONS", "a browser's has 2 or 3")
        elif line.startswith("a=candidate:"):
            candidates += 1
            if candidates > limits.max_candidates:
                raise _over(f"more than {limits.max_candidates} ICE candidates",
                            "MAX_CANDIDATES", "a browser sends a handful")
            address = _candidate_address(line, number)
            why = _why_dropped(address, limits, mdns)
            if why is not None:
                dropped[why] += 1
                continue
            mdns += address.endswith(".local")
        kept.append(line)
    if not kept:
        raise ProtocolError("the offer is empty", code=ErrorCode.INVALID_MESSAGE,
                            param="sdp")
    return Offer(sdp="\r\n".join(kept) + "\r\n", media_sections=sections,
                 candidates=candidates, dropped=dropped)


def first_bad_line(sdp: str, parses: Callable[[str], object]) -> tuple[int, str] | None:
    """The first line of ``sdp`` (its number and text) that makes ``parses`` raise, found
    by halving: the shortest failing prefix ends on it. None if the whole offer parses,
    or if no prefix fails alone (the fault is in how lines go together). For an error
    message only: about log2(lines) parses of a bounded offer."""
    lines = sdp.splitlines()

    def fails(count: int) -> bool:
        try:
            parses("\r\n".join(lines[:count]) + "\r\n")
        except Exception:
            return True
        return False

    if not lines or not fails(len(lines)):
        return None
    low, high = 0, len(lines)  # a prefix of `low` lines parses, of `high` fails
    if fails(low):
        return None
    while high - low > 1:
        middle = (low + high) // 2
        if fails(middle):
            high = middle
        else:
            low = middle
    return high, lines[high - 1]


def unparsable(sdp: str, parses: Callable[[str], object]) -> ProtocolError:
    """``invalid_message`` for an offer ``parses`` fails on, naming the line it fails on
    where one line does."""
    found = first_bad_line(sdp, parses)
    if found is None:
        return ProtocolError("the SDP offer does not parse: its lines do not go together",
                             code=ErrorCode.INVALID_MESSAGE, param="sdp")
    return _bad(*found, "a value is missing, or is not a number where one is due")


def _candidate_address(line: str, number: int) -> str:
    """The address of an ``a=candidate:`` line, the line checked as RFC 8839 has it."""
    bits = line[len("a=candidate:"):].split()
    if len(bits) < 8 or bits[6] != "typ":
        raise _bad(number, line, "a candidate is 'foundation component transport priority "
                   "address port typ type'")
    foundation, component, transport, priority, address, port, _, kind = bits[:8]
    if not _TOKEN.match(foundation) or not _TOKEN.match(transport):
        raise _bad(number, line, "the candidate's foundation or transport is not a token")
    _number(component, 1, 256, "component", number, line)
    _number(priority, 0, 2**32 - 1, "priority", number, line)
    _number(port, 0, 65535, "port", number, line)
    if kind not in _TYPES:
        raise _bad(number, line, f"the candidate type is one of {', '.join(sorted(_TYPES))}")
    extensions = bits[8:]
    for name, value in zip(extensions[::2], extensions[1::2], strict=False):
        if name == "rport":
            _number(value, 0, 65535, "rport", number, line)
    return address


def _why_dropped(address: str, limits: OfferLimits, mdns: int) -> str | None:
    """Why a candidate at ``address`` is left out (None: it is kept); ``mdns``: how many
    mDNS names this offer kept so far."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        if not _MDNS.match(address):
            return "hostname"
        return "mdns" if mdns >= limits.max_mdns_candidates else None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # judged as the IPv4 address it reaches
    if limits.public and ip.is_global and not ip.is_multicast:  # 224/4 counts as global
        return None
    return None if any(ip in net for net in limits.networks) else "network"


def _number(text: str, low: int, high: int, what: str, number: int, line: str) -> None:
    if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
        raise _bad(number, line, f"the candidate's {what} is a number from {low} to {high}")


def _bad(number: int, line: str, rule: str) -> ProtocolError:
    shown = line if len(line) <= _SHOWN else line[:_SHOWN] + "…"
    return ProtocolError(f"line {number} of the SDP offer does not parse ({rule}): {shown}",
                         code=ErrorCode.INVALID_MESSAGE, param="sdp", line=number)


def _over(what: str, setting: str, usual: str) -> ProtocolError:
    return ProtocolError(f"the offer has {what} (VOXLINE_WEBRTC__{setting}; {usual})",
                         code=ErrorCode.INVALID_MESSAGE, param="sdp")
