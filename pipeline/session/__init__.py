"""One live session: client input in, events out, each appended to the log first.

:class:`LiveSession` is what a socket, the SSE chat and the demo drive: speech input
with endpointing (:class:`SpeechInput`), typed turns, one response at a time, barge-in and
cancel. Everything it knows it folds from the log, so any process can pick it up, and
every event it emits leaves through the log: readers tail it (:func:`follow_turn` for one
turn's events).
"""

from pipeline.session.follow import TURN_ENDS, ends_turn, follow_turn
from pipeline.session.live import LiveSession, SessionEngines
from pipeline.session.settings import merge_settings
from pipeline.session.speech_input import FRAME_QUEUE, SpeechInput, endpoint_config

__all__ = [
    "FRAME_QUEUE",
    "TURN_ENDS",
    "LiveSession",
    "SessionEngines",
    "SpeechInput",
    "endpoint_config",
    "ends_turn",
    "follow_turn",
    "merge_settings",
]
