"""A turn's trace from its log events alone: spans from the timestamps every event has.

Live tracing can only show turns served while it was on; the log has every turn, and
every event carries the server's clock (``ts``, ms). :func:`turn_traces` rebuilds, for
each turn of a session, the spans a live trace would have, so any logged session can be
drawn (``voxline trace``) or sent to a tracing backend (:mod:`pipeline.tracing.otlp`).

The spans, all children of the turn's root:

* ``turn`` (the root): from the turn's origin (the end of speech, ``input.speech_stopped``,
  or the typed text, ``input.text``) to its last reply audio (else its end: ``response.done``
  or ``response.cancelled``, else its last event); a narration after the reply's end
  is not the turn's;
* ``vad.endpoint``: the silence the VAD waited before it ended the utterance (the tail
  estimated as the metrics do, :func:`pipeline.workers.measures.vad_tail_ms`), ending at
  the origin;
* ``stt``: end of speech → the final transcript (``stt.refine`` → the refined one);
* ``llm``: ``response.started`` → the reply's end, with a ``first_token`` event and the
  count of text deltas;
* ``tts.sentence`` per sentence: the sentence cut → its last audio chunk, with its index
  and chunk count;
* ``tool.call`` per tool call: its start → its end (output, failure or cancellation),
  with the tool's name, where it ran and how it ended; a turn that goes on after a
  client's outputs ends at its last response;
* ``speculation``: a preemptive reply's preparation during the pause, from its start
  (``response.started``'s ``prepared_ms`` before it) to its adoption when the turn ended
  (it begins before the root: its head start). A discarded one belongs to no turn (the
  ``speculation.discarded`` event and the metrics count it);
* the turn's cancellation, pauses, resumptions, truncation and errors are events on the
  root.

Ids are derived from the session and turn ids (the same turn always has the same trace
id), so a trace exported twice is the same trace.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pipeline.tracing.log_context import derived_id, root_span_id
from pipeline.tracing.log_context import trace_id as turn_trace_id
from schemas import (
    Event,
    ToolCallCancelled,
    ToolCallFailed,
    ToolCallOutput,
    ToolCallStarted,
)

__all__ = ["Span", "TurnTrace", "turn_trace", "turn_traces"]

Attribute = str | int | float | bool

#: events of a turn shown on its root span, with the attribute each carries (if any)
_ROOT_EVENTS = {
    "response.cancelled": "reason",
    "response.paused": None,
    "response.resumed": None,
    "response.truncated": "audio_end_ms",
    "error": "code",
}


#: the events that end a tool call, and what each says of it
_CALL_ENDS = {"tool.call.output": "output", "tool.call.failed": "failed",
              "tool.call.cancelled": "cancelled"}


@dataclass(frozen=True)
class Span:
    """One span: times in ms since the epoch (the log's clock)."""

    name: str
    span_id: str
    parent_id: str | None
    start_ms: int
    end_ms: int
    attributes: dict[str, Attribute] = field(default_factory=dict)
    #: (name, ms, attributes) of what happened during the span
    events: tuple[tuple[str, int, dict[str, Attribute]], ...] = ()

    @property
    def duration_ms(self) -> int:
        return self.end_ms - self.start_ms


@dataclass(frozen=True)
class TurnTrace:
    """One turn's spans, the root first."""

    trace_id: str
    session_id: str
    turn_id: str
    spans: tuple[Span, ...]

    @property
    def root(self) -> Span:
        return self.spans[0]

    def span(self, name: str) -> Span | None:
        return next((s for s in self.spans if s.name == name), None)


def turn_traces(session_id: str, events: Sequence[Event],
                vad_tails: dict[str, float] | None = None) -> list[TurnTrace]:
    """Every turn of the session that has an origin, in order. ``vad_tails`` (ms per
    turn) adds each voice turn's ``vad.endpoint`` span."""
    by_turn: dict[str, list[Event]] = {}  # each turn's events, read once
    origins: dict[str, None] = {}  # the turns with an origin, in its order
    for event in events:
        if event.turn_id:
            by_turn.setdefault(event.turn_id, []).append(event)
            if event.type in ("input.speech_stopped", "input.text"):
                origins.setdefault(event.turn_id)
    tails = vad_tails or {}
    return [trace for turn_id in origins
            if (trace := turn_trace(session_id, turn_id, by_turn[turn_id],
                                    tails.get(turn_id)))]


def turn_trace(session_id: str, turn_id: str, events: Iterable[Event],
               vad_tail_ms: float | None = None) -> TurnTrace | None:
    """The trace of one turn (None: the turn has no origin in ``events``)."""
    mine = [e for e in events if e.turn_id == turn_id]
    first: dict[str, int] = {}
    for event in mine:
        first.setdefault(event.type, event.ts)
    origin = first.get("input.speech_stopped", first.get("input.text"))
    if origin is None:
        return None
    trace_id = turn_trace_id(session_id, turn_id)
    root_id = root_span_id(trace_id)
    end_event = next((e for e in reversed(mine)  # the last response (tools: a turn goes on)
                      if e.type in ("response.done", "response.cancelled")), None)
    reply_end = end_event.ts if end_event is not None else max(e.ts for e in mine)
    # the reply's audio (a narration of a text reply comes after its end: not the turn's)
    audio = [e for e in mine
             if e.type == "response.audio.chunk" and origin <= e.ts <= reply_end]
    root_end = audio[-1].ts if audio else reply_end
    spans: list[Span] = []

    def child(name: str, start: int | None, end: int | None, key: str = "",
              **attributes: Attribute) -> None:
        if start is not None and end is not None:
            spans.append(Span(name, derived_id(trace_id, name, key, size=16), root_id,
                              start, max(start, end), attributes))

    if vad_tail_ms is not None and "input.speech_stopped" in first:
        child("vad.endpoint", origin - round(vad_tail_ms), origin)
    final = first.get("transcript.final")
    child("stt", origin if "input.speech_stopped" in first else None, final)
    child("stt.refine", final, first.get("transcript.refined"))
    deltas = [e for e in mine if e.type == "response.text.delta"]
    if "response.started" in first:
        start = first["response.started"]
        llm = Span("llm", derived_id(trace_id, "llm", size=16), root_id, start,
                   max(start, reply_end), {"voxline.text_deltas": len(deltas)},
                   (("first_token", deltas[0].ts, {}),) if deltas else ())
        spans.append(llm)
    for sentence in (e for e in mine if e.type == "response.sentence"):
        index = sentence.data.index
        chunks = [e for e in audio if e.data.sentence_index == index]
        if chunks:
            child("tts.sentence", sentence.ts, chunks[-1].ts, str(index),
                  **{"voxline.sentence_index": index, "voxline.chunks": len(chunks)})
    ended = {e.data.call_id: e for e in mine
             if isinstance(e, ToolCallOutput | ToolCallFailed | ToolCallCancelled)}
    for call in (e for e in mine if isinstance(e, ToolCallStarted)):
        end = ended.get(call.data.call_id)
        child("tool.call", call.ts, end.ts if end is not None else reply_end, call.data.call_id,
              **{"voxline.tool": call.data.name, "voxline.call_id": call.data.call_id,
                 "voxline.runs_on": call.data.runs_on,
                 "voxline.tool_status": _CALL_ENDS.get(end.type, "open") if end else "open"})
    started = next((e for e in mine if e.type == "response.started"), None)
    if started is not None and started.data.prepared_ms:  # a preemptive reply, adopted
        child("speculation", started.ts - started.data.prepared_ms, started.ts,
              **{"voxline.speculation": "adopted"})
    attributes: dict[str, Attribute] = {
        "voxline.session_id": session_id, "voxline.turn_id": turn_id,
        "voxline.source": "audio" if "input.speech_stopped" in first else "text",
        "voxline.status": "open" if end_event is None else "cancelled"
        if end_event.type == "response.cancelled" else str(end_event.data.status),
    }
    if started is not None:
        attributes["voxline.mode"] = started.data.mode
    if audio:
        attributes["voxline.first_audio_ms"] = audio[0].ts - origin
    marks = tuple(
        (e.type, e.ts, {f"voxline.{key}": _value(getattr(e.data, key))} if key else {})
        for e in mine if e.type in _ROOT_EVENTS for key in [_ROOT_EVENTS[e.type]])
    root = Span("turn", root_id, None, origin, max(origin, root_end), attributes, marks)
    return TurnTrace(trace_id, session_id, turn_id, (root, *spans))


def _value(value: object) -> Attribute:
    if isinstance(value, str | int | float | bool):
        return value
    return str(getattr(value, "value", value))
