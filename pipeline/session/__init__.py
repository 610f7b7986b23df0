"""Sessions: creating one, who may act on it, and its live side.

:class:`LiveSession` is what a socket, the SSE chat and the demo drive: speech input with
endpointing (:class:`SpeechInput`), typed turns, one response at a time, barge-in and
cancel. Everything it knows it folds from the log, so any process can pick a session up,
and every event it emits leaves through the log: readers tail it (:func:`follow_turn`
for one turn's events). Beside it: :func:`create_session`, :func:`authorize` with
:class:`SessionTokens`, :func:`merge_settings`, and the replica's capacity
(:class:`Admission`: sessions, turns, transcriptions and speech past it are refused; a
voice turn may wait for a place, briefly) and how often one client may start a costly
thing (:class:`RateLimiter`). Turn-taking itself (the speech input, what ends a turn, the
replay evaluation) is :mod:`pipeline.turntaking`'s; its names are exported here too.
"""

from pipeline.session.admission import Admission, Permit
from pipeline.session.authorization import (
    SessionTokens,
    authorize,
    check_cursor,
    closed_error,
    parse_event_id,
)
from pipeline.session.creation import Tenant, create_session, new_session_id
from pipeline.session.engines import SessionEngines
from pipeline.session.erasure import erase_session, known_or_erased
from pipeline.session.follow import TURN_ENDS, ends_turn, follow_turn
from pipeline.session.live import LiveSession
from pipeline.session.rate_limit import RateLimiter
from pipeline.session.retention import expire_sessions, sweep_forever
from pipeline.session.settings import EngineChoices, merge_settings
from pipeline.turntaking import (
    FRAME_QUEUE,
    LoggedInput,
    Replay,
    SpeechInput,
    TurnEnd,
    endpoint_config,
    judged_by,
    logged_input,
    quick_transcriber,
    replay_turn_ends,
    score_against_truth,
    sounds_unfinished,
    turn_detection,
    turn_measures,
)

__all__ = [
    "FRAME_QUEUE",
    "TURN_ENDS",
    "Admission",
    "EngineChoices",
    "LiveSession",
    "LoggedInput",
    "Permit",
    "RateLimiter",
    "Replay",
    "SessionEngines",
    "SessionTokens",
    "SpeechInput",
    "Tenant",
    "TurnEnd",
    "authorize",
    "check_cursor",
    "closed_error",
    "create_session",
    "endpoint_config",
    "ends_turn",
    "erase_session",
    "expire_sessions",
    "follow_turn",
    "judged_by",
    "known_or_erased",
    "logged_input",
    "merge_settings",
    "new_session_id",
    "parse_event_id",
    "quick_transcriber",
    "replay_turn_ends",
    "score_against_truth",
    "sounds_unfinished",
    "sweep_forever",
    "turn_detection",
    "turn_measures",
]
