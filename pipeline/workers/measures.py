"""What one turn measured, from the timestamps of its events (pure, no I/O).

:func:`turn_metrics` turns one turn's events into a :class:`TurnMeasure` (stage
latencies in ms, status, mode); :func:`scan_session` does it for every turn in a run of a
session's events and says which turns are finished. :mod:`pipeline.workers.metrics` records
them.

Stages (ms; computed from the server's ``ts`` of each event, so from one clock). The origin
of a turn is ``input.speech_stopped`` (voice: the moment VAD declared the end of speech) or
``input.text`` (typed). Each stage is the gap between the *first* event of its kind in the
turn, counting only events up to the turn's ``response.done`` / ``response.cancelled``
(narration appended later is not the turn's latency):

``vad_tail``
    End of speech → ``input.speech_stopped``: the silence VAD waits for plus its lag.
    The log has no wall-clock time of the end of speech, only its position in the input
    audio (``speech_stopped.data.audio_ms``), so it is *estimated* with the preceding
    ``input.speech_started`` as the anchor between audio time and wall time, assuming the
    audio arrives in real time (a microphone)::

        vad_tail = (stopped.ts - started.ts) - (stopped.audio_ms - started.audio_ms)
                   + min_speech_ms

    (``speech_started`` is emitted once speech lasted ``min_speech_ms``, see
    :class:`pipeline.audio.endpointing.EndpointConfig`). Left out when there is no
    ``speech_started`` for the utterance (push-to-talk without detected speech) or the
    estimate is negative (audio streamed faster than real time: no estimate possible).
``stt``
    origin → ``transcript.final`` (voice turns).
``llm_first_token``
    ``transcript.final`` (text turns: ``input.text``) → first ``response.text.delta``.
``first_piece_cut``
    first ``response.text.delta`` → first ``response.sentence``.
``tts_first_chunk``
    first ``response.sentence`` → first ``response.audio.chunk``.
``time_to_first_audio``
    origin → first ``response.audio.chunk`` (TTFA; for voice turns
    ``stt + llm_first_token + first_piece_cut + tts_first_chunk``).
``voice_to_voice``
    end of speech → first audio sent: ``vad_tail + time_to_first_audio``; voice turns
    with a ``vad_tail`` only. The network and the client's playout are not in the log.
``response_done``
    origin → ``response.done``.

Turn status: ``completed`` / ``failed`` (``response.done.data.status``), ``cancelled``
(``response.cancelled``, with its reason), ``failed`` also for a turn whose input failed
before any response (an ``error`` and no ``response.started``), ``no_response`` for an
empty transcript (nothing to answer), ``abandoned`` for a turn that got no ending event
before the next turn or the end of the session (a replica died mid-response), and
``open`` while none of that has happened yet (never recorded).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pipeline.workers.timeline import TurnTimeline
from schemas import (
    ErrorEvent,
    Event,
    ResponseCancelled,
    ResponseDone,
    ResponseStarted,
    SpeculationDiscarded,
    SpeechStarted,
    SpeechStopped,
    TranscriptFinal,
)

__all__ = [
    "DEFAULT_MIN_SPEECH_MS",
    "STAGES",
    "SessionScan",
    "TurnMeasure",
    "scan_session",
    "turn_metrics",
    "vad_tail_ms",
]

#: Stage names: the ``stage`` attribute of the stage histogram, in pipeline order.
STAGES: tuple[str, ...] = (
    "vad_tail",
    "stt",
    "llm_first_token",
    "first_piece_cut",
    "tts_first_chunk",
    "time_to_first_audio",
    "voice_to_voice",
    "response_done",
)

#: ``min_speech_ms`` of :class:`pipeline.audio.endpointing.EndpointConfig`'s default.
DEFAULT_MIN_SPEECH_MS = 250

TurnSource = Literal["audio", "text"]
TurnOutcome = Literal["completed", "failed", "cancelled", "no_response", "abandoned", "open"]

_ORIGINS = frozenset({"input.speech_stopped", "input.audio", "input.text"})


# ---- measuring --------------------------------------------------------------------------


@dataclass(frozen=True)
class TurnMeasure:
    """What the metrics know about one turn."""

    session_id: str
    turn_id: str
    source: TurnSource
    #: ``response.started``'s mode (streaming, sequential, text) or ``none`` (no response)
    mode: str
    status: TurnOutcome
    stages: dict[str, float] = field(default_factory=dict)
    #: end of input → first audio in parts that add up to it
    #: (:meth:`pipeline.workers.timeline.TurnTimeline.parts`), and a preemptive reply's
    #: head start (``preemptive_head_start``, beside the sum); empty without audio
    parts: dict[str, float] = field(default_factory=dict)
    cancel_reason: str | None = None
    #: error codes the turn's ``error`` events carried, in order
    errors: tuple[str, ...] = ()

    @property
    def finished(self) -> bool:
        return self.status != "open"


def vad_tail_ms(
    events: Sequence[Event], turn_id: str, *, min_speech_ms: int = DEFAULT_MIN_SPEECH_MS
) -> float | None:
    """The estimated VAD tail of a voice turn (see the module docstring), or ``None``.

    ``events`` is the session's log (at least from the utterance's ``speech_started`` on).
    """
    started: SpeechStarted | None = None
    for event in events:
        if isinstance(event, SpeechStarted):
            started = event
        elif isinstance(event, SpeechStopped):
            if event.turn_id == turn_id:
                return _tail(started, event, min_speech_ms)
            started = None  # that start belonged to another utterance
    return None


def _tail(
    started: SpeechStarted | None, stopped: SpeechStopped, min_speech_ms: int
) -> float | None:
    if started is None or started.data.audio_ms > stopped.data.audio_ms:
        return None  # no detected onset, or the input stream was restarted in between
    wall = stopped.ts - started.ts
    audio = stopped.data.audio_ms - started.data.audio_ms
    tail = float(wall - audio + min_speech_ms)
    return tail if tail >= 0 else None


def turn_metrics(
    events: Iterable[Event],
    turn_id: str,
    *,
    min_speech_ms: int = DEFAULT_MIN_SPEECH_MS,
    closed: bool = False,
) -> TurnMeasure:
    """Measure one turn from the session's events (a pure function of them).

    ``closed`` (or a later turn's input in ``events``) ends a turn that has no ending
    event of its own (``abandoned``); otherwise such a turn is ``open``.
    """
    events = list(events)
    scan = scan_session(events, min_speech_ms=min_speech_ms, closed=closed)
    for turn in scan.turns:
        if turn.turn_id == turn_id:
            return turn
    raise KeyError(f"no input of turn {turn_id!r} in these events")


@dataclass(frozen=True)
class SessionScan:
    """Every turn whose input is in a run of a session's events, measured."""

    session_id: str | None
    turns: tuple[TurnMeasure, ...]
    errors: tuple[ErrorEvent, ...]
    created: bool
    closed: bool
    #: the id after which a later scan must start to still see every event of every turn
    #: not finished here; ``None``: before the first event scanned (do not move)
    resume_after: str | None
    #: replies prepared during a pause and dropped unsent (preemptive turns): wasted work
    discarded: tuple[SpeculationDiscarded, ...] = ()


@dataclass
class _Turn:
    turn_id: str
    start: int  # index of its first event (its speech_started when it has one)
    origin: int
    source: TurnSource = "text"
    events: list[Event] = field(default_factory=list)
    ended: bool = False  # response.done / response.cancelled seen


def scan_session(
    events: Sequence[Event],
    *,
    min_speech_ms: int = DEFAULT_MIN_SPEECH_MS,
    closed: bool = False,
) -> SessionScan:
    """Measure every turn whose input (``input.text`` / ``input.speech_stopped`` /
    ``input.audio``) is in ``events`` and say which are finished.

    ``events`` is a contiguous run of one session's log in order; events of turns whose
    input came before the run (narration appended to an older turn) are ignored. A
    turn is finished by its ``response.done`` or ``response.cancelled``, by failing or
    getting an empty transcript before any response, by the next turn's input (the
    session cancels a running response before it appends new input), or by
    ``session.closed`` (in ``events``, or ``closed=True``).
    """
    turns: dict[str, _Turn] = {}
    order: list[_Turn] = []
    errors: list[ErrorEvent] = []
    discarded: list[SpeculationDiscarded] = []
    pending_start: int | None = None  # index of the speech_started of the coming utterance
    created = False
    for index, event in enumerate(events):
        closed = closed or event.type == "session.closed"
        created = created or event.type == "session.created"
        if isinstance(event, ErrorEvent):
            errors.append(event)
        if isinstance(event, SpeculationDiscarded):
            discarded.append(event)
        if isinstance(event, SpeechStarted):
            pending_start = index
            continue
        turn_id = event.turn_id
        if turn_id is None:
            continue
        turn = turns.get(turn_id)
        if turn is None:
            if event.type not in _ORIGINS:
                continue  # a turn whose input came before this run
            start = index
            if isinstance(event, SpeechStopped) and pending_start is not None:
                start = pending_start
            turn = turns[turn_id] = _Turn(turn_id, start, index)
            order.append(turn)
        if isinstance(event, SpeechStopped):
            pending_start = None
        if turn.ended:
            continue  # narration and other late events are not the turn's latency
        if event.type in ("input.speech_stopped", "input.audio"):
            turn.source = "audio"
        turn.events.append(event)
        turn.ended = isinstance(event, ResponseDone | ResponseCancelled)

    measures: list[TurnMeasure] = []
    for n, turn in enumerate(order):
        superseded = closed or n + 1 < len(order)
        window = list(events[turn.start : turn.origin]) + turn.events
        measures.append(_measure(turn, window, superseded, min_speech_ms))

    session_id = events[0].session_id if events else None
    needed: int | None = None
    if measures and not measures[-1].finished:
        needed = order[-1].start
    elif pending_start is not None and not closed:
        needed = pending_start  # an utterance in progress: keep its speech_started
    if needed is None:
        resume_after = events[-1].id if events else None
    else:
        resume_after = events[needed - 1].id if needed > 0 else None
    return SessionScan(session_id, tuple(measures), tuple(errors), created, closed, resume_after,
                       tuple(discarded))


def _measure(turn: _Turn, window: list[Event], superseded: bool, min_speech_ms: int) -> TurnMeasure:
    mode = "none"
    started = empty_transcript = False
    status: TurnOutcome = "open"
    cancel_reason: str | None = None
    codes: list[str] = []
    for event in turn.events:
        match event:
            case ResponseStarted():
                started, mode = True, event.data.mode
            case TranscriptFinal():
                empty_transcript = not event.data.text.strip()
            case ErrorEvent():
                codes.append(event.data.code.value)
            case ResponseDone():
                status = "completed" if event.data.status == "completed" else "failed"
            case ResponseCancelled():
                status, cancel_reason = "cancelled", event.data.reason
            case _:
                pass
    if status == "open":
        if not started and codes:
            status = "failed"  # the input failed (STT): no response follows
        elif not started and empty_transcript:
            status = "no_response"
        elif superseded:
            status = "failed" if codes else "abandoned"
    timeline = TurnTimeline.of(turn.events, turn.turn_id)
    stages = timeline.stages()
    split = timeline.parts()
    parts = {} if split is None else dict(split.parts)
    if split is not None and split.head_start_ms:
        parts["preemptive_head_start"] = split.head_start_ms
    if turn.source == "audio":
        tail = vad_tail_ms(window, turn.turn_id, min_speech_ms=min_speech_ms)
        if tail is not None:
            stages["vad_tail"] = tail
            if "time_to_first_audio" in stages:
                stages["voice_to_voice"] = tail + stages["time_to_first_audio"]
    ordered = {name: stages[name] for name in STAGES if name in stages}
    return TurnMeasure(
        session_id=turn.events[0].session_id,
        turn_id=turn.turn_id,
        source=turn.source,
        mode=mode,
        status=status,
        stages=ordered,
        parts=parts,
        cancel_reason=cancel_reason,
        errors=tuple(codes),
    )


