"""The settings of calls: phone calls through Twilio and WebRTC calls (a section each of
:class:`~schemas.Settings`)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
#: the settings' word for every globally routable address
PUBLIC_NETWORKS = "public"


class TelephonySettings(BaseModel):
    """Phone calls through Twilio: the TwiML webhook (``POST /v1/twilio/voice``) and the
    Media Streams socket (``/v1/twilio/media``) it connects a call to."""

    model_config = ConfigDict(frozen=True)

    twilio_auth_token: SecretStr | None = Field(
        default=None,
        description="the Twilio account's auth token: X-Twilio-Signature is checked on "
        "the webhook and on the media socket's handshake (set VOXLINE_API__PUBLIC_URL to "
        "the URL Twilio calls); unset: unchecked, and with API keys on calls are refused",
    )
    session: dict[str, Any] = Field(
        default_factory=dict,
        description="session settings of every call (system_prompt, voice, language, "
        "interruptions ...); the audio formats are the call's own (G.711 μ-law, 8 kHz)",
    )
    start_timeout_s: float = Field(
        default=10.0, gt=0, le=120,
        description="a media socket that has not sent 'start' by then is closed",
    )


class WebRtcSettings(BaseModel):
    """WebRTC calls (``POST /v1/realtime/calls``, OpenAI's flow, and a session's
    ``/calls``): what an offer may hold, ICE, the reply's audio buffer, and how often a
    client may call."""

    model_config = ConfigDict(frozen=True)

    host_addresses: tuple[str, ...] | None = Field(
        default=None,
        description="addresses the server offers as ICE host candidates; unset: 127.0.0.1 "
        "when the server binds loopback, else every interface but loopback",
    )
    ice_timeout_s: float = Field(
        default=30.0, gt=0, le=300,
        description="a call whose connection is not up by then is hung up",
    )
    ice_start_timeout_s: float = Field(
        default=10.0, gt=0, le=300,
        description="a call whose caller has sent no ICE check by then is hung up "
        "(a caller that never connects holds its place this long, not ice_timeout_s)",
    )
    max_offer_bytes: int = Field(
        default=65536, ge=1024, le=1 << 20,
        description="one SDP offer (a browser's is 3-10 KB); past it 413",
    )
    max_offer_lines: int = Field(
        default=500, ge=20, le=20_000,
        description="lines of one SDP offer (a browser's has 40-250); past it 400 "
        "invalid_message",
    )
    max_media_sections: int = Field(
        default=4, ge=1, le=64,
        description="media sections (m=) of one offer; past it 400 invalid_message",
    )
    max_candidates: int = Field(
        default=32, ge=1, le=1000,
        description="ICE candidates of one offer, all sections together (a browser sends "
        "a handful); past it 400 invalid_message",
    )
    max_mdns_candidates: int = Field(
        default=4, ge=0, le=64,
        description="mDNS (.local) candidates one call resolves, each a multicast query; "
        "more are dropped",
    )
    peer_networks: tuple[str, ...] | None = Field(
        default=None,
        description="where the server may send ICE checks (JSON list of CIDR ranges, and "
        "\"public\" for every globally routable address); an offer's candidates elsewhere "
        "are dropped; unset: loopback when the server binds loopback, else [\"public\"] "
        "(private ranges only where listed)",
    )
    offers_per_minute: int = Field(
        default=30, ge=1, le=100_000,
        description="offers one client (its API key, else its address) may make to a "
        "replica per minute, both call routes together; past it 429 rate_limited with "
        "Retry-After",
    )
    max_pending_events: int = Field(
        default=64, ge=1, le=10_000,
        description="client events received on a call's data channel and not yet "
        "applied; past it each is dropped, the caller told once per burst (overloaded): "
        "a data channel cannot be paused as a socket's reader can",
    )
    max_buffer_s: float = Field(
        default=30.0, ge=1, le=600,
        description="reply audio held ahead of playback; the log is read no faster",
    )
    jitter_packets: int = Field(
        default=2, ge=0, le=15,
        description="20 ms packets of the caller's audio a gap (a packet lost or late) is "
        "waited for before it is skipped; audio in order is heard as it comes (aiortc's "
        "player holds 4 packets, 80 ms, always)",
    )
    reply_lead_frames: int = Field(
        default=2, ge=0, le=10,
        description="20 ms frames a reply sends at once when it starts, ahead of real "
        "time: a caller's player holds a few packets before it plays (a browser's tens of "
        "ms, aiortc's 2-4), and these fill it at once, so the reply is heard that much "
        "sooner; 0: every frame at its real-time tick",
    )

    @field_validator("peer_networks")
    @classmethod
    def _networks(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        parse_networks(value or ())  # ValueError: one is neither
        return value

    def peer_ranges(self, *, loopback: bool) -> tuple[tuple[Network, ...], bool]:
        """:attr:`peer_networks` parsed (its CIDR ranges, and whether ``public`` is
        among them), the default where unset: loopback for a server that binds
        loopback (its peers are on this machine), else public addresses only."""
        chosen = self.peer_networks
        if chosen is None:
            chosen = ("127.0.0.0/8", "::1/128") if loopback else (PUBLIC_NETWORKS,)
        return parse_networks(chosen)


def parse_networks(values: Iterable[str]) -> tuple[tuple[Network, ...], bool]:
    """CIDR ranges, and whether the word ``public`` is among them; ``ValueError``
    names a value that is neither."""
    networks: list[Network] = []
    public = False
    for value in values:
        if value.strip().lower() == PUBLIC_NETWORKS:
            public = True
            continue
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is neither a network (CIDR) nor "
                             f"'{PUBLIC_NETWORKS}'") from None
    return tuple(networks), public
