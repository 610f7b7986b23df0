"""A turn's latency, stage by stage, from the timestamps of its events.

The log is the single clock: every event carries the server's ``ts`` (ms), so the same
numbers come out for the demo, the latency benchmark and the metrics consumer. The
origin of a turn is the end of the user's speech (``input.speech_stopped``) or the typed
text (``input.text``); the stages are the gaps between the first event of each kind.

:meth:`TurnTimeline.parts` splits the time to first audio into :data:`PARTS` that add up
to it exactly (each from the previous mark the turn reached to the next); the stages
above overlap and do not. A preemptive reply was prepared before the turn ended: its
parts after the origin are small, and ``head_start_ms`` (``response.started``'s
``prepared_ms``) says how long before the end of speech its work began, a part of its
own outside the sum.

:func:`playback_stalls` says whether the reply's audio kept ahead of a listener: a
player that starts at the first chunk and plays on without a buffer waits wherever a
chunk is logged after what came before it has been played (a short first piece is heard
sooner, and must be followed in time).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from schemas import Event, ResponseAudioChunk, ResponseStarted

#: the parts of the time to first audio, each ending at the first event of its kind
PARTS: tuple[tuple[str, str], ...] = (
    ("stt", "transcript.final"),
    ("handoff", "response.started"),
    ("llm_first_token", "response.text.delta"),
    ("first_piece", "response.sentence"),
    ("tts_first_chunk", "response.audio.chunk"),
)


@dataclass(frozen=True)
class LatencyParts:
    """End of input → first audio in parts that sum to ``total_ms`` (ms each)."""

    parts: dict[str, float]
    total_ms: float
    #: a preemptive reply's preparation before the turn ended (0: none); not in the sum
    head_start_ms: float = 0.0

    def text(self) -> str:
        """``"first audio 812 ms = stt 180 + handoff 4 + …"`` (and the head start)."""
        sum_text = " + ".join(f"{name} {ms:.0f}" for name, ms in self.parts.items())
        ahead = f" (prepared {self.head_start_ms:.0f} ms ahead)" if self.head_start_ms else ""
        return f"first audio {self.total_ms:.0f} ms = {sum_text}{ahead}"

#: the events whose first occurrence marks a stage boundary, in pipeline order
_MARKS = (
    "input.speech_stopped",
    "input.text",
    "transcript.final",
    "response.started",
    "response.text.delta",
    "response.sentence",
    "response.audio.chunk",
    "response.done",
    "response.cancelled",
)


@dataclass(frozen=True)
class TurnTimeline:
    """First timestamp (ms) of each marking event of one turn."""

    turn_id: str | None
    first: dict[str, int]
    #: ``response.started``'s ``prepared_ms``: a preemptive reply's head start
    prepared_ms: int | None = field(default=None)
    #: ``response.started``'s ``waited_ms``: the turn's wait for a place
    waited_ms: int | None = field(default=None)

    @classmethod
    def of(cls, events: Iterable[Event], turn_id: str | None = None) -> TurnTimeline:
        """The timeline of ``turn_id`` (default: the first turn that has an origin)."""
        first: dict[str, int] = {}
        started: ResponseStarted | None = None
        for event in events:
            if event.type not in _MARKS or event.turn_id is None:
                continue
            if turn_id is None:
                if event.type not in ("input.speech_stopped", "input.text"):
                    continue
                turn_id = event.turn_id
            if event.turn_id == turn_id:
                first.setdefault(event.type, event.ts)
                if isinstance(event, ResponseStarted) and started is None:
                    started = event
        if started is None:
            return cls(turn_id, first)
        return cls(turn_id, first, started.data.prepared_ms, started.data.waited_ms)

    @property
    def origin(self) -> int | None:
        stopped = self.first.get("input.speech_stopped")
        return stopped if stopped is not None else self.first.get("input.text")

    def _gap(self, start: str | None, end: str) -> float | None:
        begin = self.origin if start is None else self.first.get(start)
        stop = self.first.get(end)
        return None if begin is None or stop is None else float(stop - begin)

    def stages(self) -> dict[str, float]:
        """Per-stage latency in ms; stages the turn did not reach are left out."""
        after_input = "transcript.final" if "transcript.final" in self.first else None
        gaps = {
            "stt": self._gap(None, "transcript.final"),
            "llm_first_token": self._gap(after_input, "response.text.delta"),
            "first_piece_cut": self._gap("response.text.delta", "response.sentence"),
            "tts_first_chunk": self._gap("response.sentence", "response.audio.chunk"),
            "time_to_first_audio": self._gap(None, "response.audio.chunk"),
            "response_done": self._gap(None, "response.done"),
        }
        return {name: ms for name, ms in gaps.items() if ms is not None}

    def parts(self) -> LatencyParts | None:
        """The time to first audio in :data:`PARTS` that add up to it (None: the turn has
        no origin or no audio). A part's mark not reached (no STT for typed text), or
        logged out of order, counts 0: its time is in the next part.

        A turn that waited for a place (``waited_ms``) did so before it was transcribed
        (or its prepared reply taken up): that wait is the part ``queued``, first, taken
        out of the part it fell in (``stt``; ``handoff`` for typed text)."""
        origin, audio = self.origin, self.first.get("response.audio.chunk")
        if origin is None or audio is None or audio < origin:
            return None
        parts: dict[str, float] = {}
        previous = origin
        for name, mark in PARTS:
            at = self.first.get(mark)
            if at is None:
                if name == "stt" and "input.speech_stopped" not in self.first:
                    continue  # typed text: no speech to transcribe
                at = previous
            at = min(max(at, previous), audio)
            parts[name] = float(at - previous)
            previous = at
        if self.waited_ms:
            first_part = next(iter(parts))
            queued = min(float(self.waited_ms), parts[first_part])
            parts = {"queued": queued, **parts}
            parts[first_part] -= queued
        return LatencyParts(parts, float(audio - origin), float(self.prepared_ms or 0))


def playback_stalls(events: Iterable[Event], turn_id: str | None = None) -> list[float]:
    """The waits (ms, each > 0) of a listener playing ``turn_id``'s reply audio as it is
    logged (default: the first turn with audio).

    Playback starts at the first chunk's ``ts`` and runs on without a buffer; chunk *k*
    is due when the audio before it has played (its predecessor's ``end_ms`` after the
    start, plus the waits so far), and a chunk logged later than that is a wait. Chunks
    without ``end_ms`` (logs older than it) give no figure: ``[]``.
    """
    start: int | None = None
    waited = 0.0
    stalls: list[float] = []
    played_ms = 0
    for event in events:
        if not isinstance(event, ResponseAudioChunk):
            continue
        if turn_id is None:
            turn_id = event.turn_id
        if event.turn_id != turn_id:
            continue
        end_ms = event.data.end_ms
        if end_ms is None:
            return []
        if start is None:
            start = event.ts
        elif (late := event.ts - (start + played_ms + waited)) > 0:
            stalls.append(float(late))
            waited += late
        played_ms = end_ms
    return stalls
