"""Phone calls: the telephony providers' media protocols, read and written.

:mod:`~pipeline.telephony.twilio_media` speaks Twilio Media Streams (G.711 μ-law at
8 kHz in JSON frames). The session takes a call's audio as it comes (its ``input_format``
is ``pcmu``) and speaks in the same format; nothing here knows about sockets.
"""

from pipeline.telephony.twilio_media import (
    CALL_AUDIO,
    CallTranslator,
    Connected,
    Dtmf,
    Mark,
    Media,
    Start,
    Stop,
    TwilioMessage,
    media_audio,
    parse_message,
)

__all__ = [
    "CALL_AUDIO",
    "CallTranslator",
    "Connected",
    "Dtmf",
    "Mark",
    "Media",
    "Start",
    "Stop",
    "TwilioMessage",
    "media_audio",
    "parse_message",
]
