"""SDP offers for the WebRTC tests and fuzzers: a browser-like offer built line by line,
and a Hypothesis strategy of that offer mutated (lines dropped, copied, inserted,
truncated, words replaced, attributes aiortc reads given generated values)."""

from __future__ import annotations

from hypothesis import strategies as st

FINGERPRINT = ":".join(["AB"] * 32)


def candidate(address: str, port: int = 50000, kind: str = "host", n: int = 1) -> str:
    return f"a=candidate:{n} 1 udp 2122260223 {address} {port} typ {kind} generation 0"


def offer(*candidates: str, extra: tuple[str, ...] = ()) -> str:
    """A browser-like offer: audio (Opus) and the events channel, BUNDLEd, the candidates
    in the first section."""
    lines = [
        "v=0", "o=- 4611731400430051336 2 IN IP4 127.0.0.1", "s=-", "t=0 0",
        "a=group:BUNDLE 0 1", "a=msid-semantic: WMS",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 0", "c=IN IP4 0.0.0.0", "a=rtcp:9 IN IP4 0.0.0.0",
        *candidates,
        "a=ice-ufrag:Zx4Q", "a=ice-pwd:kq3pOaUGcvAmMFo5hmc2y8E1",
        "a=ice-options:trickle", f"a=fingerprint:sha-256 {FINGERPRINT}",
        "a=setup:actpass", "a=mid:0", "a=sendrecv", "a=rtcp-mux",
        "a=rtpmap:111 opus/48000/2", "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=rtpmap:0 PCMU/8000", "a=ssrc:1001 cname:caller", *extra,
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel", "c=IN IP4 0.0.0.0",
        "a=ice-ufrag:Zx4Q", "a=ice-pwd:kq3pOaUGcvAmMFo5hmc2y8E1",
        f"a=fingerprint:sha-256 {FINGERPRINT}", "a=setup:actpass", "a=mid:1",
        "a=sctp-port:5000", "a=max-message-size:262144",
    ]
    return "\r\n".join(lines) + "\r\n"


BASE = offer(candidate("127.0.0.1"), candidate("::1", 50001, n=2))
BASE_LINES = BASE.splitlines()
pieces = st.sampled_from(["0", "-1", "99999999999", "abc", "", " ", "typ", "host", "udp",
                          "127.0.0.1", "x.local", ":", "/", "=", "a=", "\x00", "é", "\u2028"])
#: attributes aiortc's parser reads values of: an inserted one gets generated values
ATTRIBUTES = ("rtpmap", "fmtp", "ssrc", "ssrc-group", "extmap", "rtcp-fb", "rtcp",
              "sctp-port", "max-message-size", "fingerprint", "setup", "group", "msid",
              "candidate", "mid", "ice-ufrag", "end-of-candidates")
mutations = st.lists(st.tuples(
    st.sampled_from(["drop", "copy", "replace_word", "insert", "attribute", "truncate"]),
    st.integers(0, len(BASE_LINES) - 1), pieces, st.integers(0, 40)), max_size=6)


Step = tuple[str, int, str, int]


def mutate(steps: list[Step]) -> str:
    """:data:`BASE` changed by each step in turn: a line dropped, copied, inserted (a
    generated piece, or an attribute aiortc reads with generated values), truncated, or
    one of its words replaced."""
    lines = list(BASE_LINES)
    for kind, index, piece, word in steps:
        index %= max(1, len(lines))
        if not lines:
            break
        if kind == "drop":
            del lines[index]
        elif kind == "copy":
            lines.insert(index, lines[index])
        elif kind == "insert":
            lines.insert(index, piece)
        elif kind == "attribute":
            name = ATTRIBUTES[word % len(ATTRIBUTES)]
            lines.insert(index, f"a={name}:{piece} {piece}/{piece}" if word % 2
                         else f"a={name}:{word} {piece}")
        elif kind == "truncate":
            lines[index] = lines[index][: word * 3]
        else:
            words = lines[index].split(" ")
            words[word % len(words)] = piece
            lines[index] = " ".join(words)
    return "\r\n".join(lines) + "\r\n"




#: offers as a caller might get them wrong: :data:`BASE` mutated
offers = mutations.map(mutate)
