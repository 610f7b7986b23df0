"""WebRTC calls: OpenAI's Realtime API over a peer connection (aiortc).

:mod:`~pipeline.webrtc.media` holds the audio both ways (the caller's Opus in, the
reply's track out, paced and bounded); :mod:`~pipeline.webrtc.offer` reads and bounds a
caller's SDP offer before aiortc parses it; :mod:`~pipeline.webrtc.call` runs one call on a
live session: the audio into the session and the reply's out on the track, with
:mod:`~pipeline.webrtc.channel`'s events channel (``oai-events`` for OpenAI's clients)
handed to the server to serve as it serves a socket. aiortc is imported with this
package: the rest of the pipeline never loads it.
"""

from pipeline.webrtc.call import EVENTS_CHANNEL, WebRtcCall
from pipeline.webrtc.channel import MAX_PENDING, ChannelClosedError, EventsChannel
from pipeline.webrtc.media import (
    CALL_RATE,
    InOrderBuffer,
    ReplyTrack,
    hold_packets,
    listen_in_order,
    microphone,
    on_first_check,
    use_host_addresses,
)
from pipeline.webrtc.offer import Offer, OfferLimits, bound_offer

__all__ = [
    "CALL_RATE",
    "EVENTS_CHANNEL",
    "MAX_PENDING",
    "ChannelClosedError",
    "EventsChannel",
    "InOrderBuffer",
    "Offer",
    "OfferLimits",
    "ReplyTrack",
    "WebRtcCall",
    "bound_offer",
    "hold_packets",
    "listen_in_order",
    "microphone",
    "on_first_check",
    "use_host_addresses",
]
