"""``voxline trace``: a logged turn's spans as a waterfall in the terminal, or as OTLP
JSON for a tracing backend; from the log alone (:mod:`pipeline.tracing`), so any logged
session can be traced, also one served before tracing was on."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from pipeline.tracing import Span, TurnTrace, turn_traces
from pipeline.workers import scan_session
from voxline.inspect import SessionRecord

__all__ = ["session_traces", "waterfall"]

#: characters of the widest bar
BAR = 48


def session_traces(record: SessionRecord, turn_id: str | None = None) -> list[TurnTrace]:
    """The traces of the session's turns (only ``turn_id``'s when given), in order."""
    events = record.events
    # the VAD tails as `voxline stats` and the metrics measure them, in one pass
    tails = {turn.turn_id: turn.stages["vad_tail"] for turn in scan_session(events).turns
             if "vad_tail" in turn.stages}
    traces = turn_traces(record.session_id, events, tails)
    return [t for t in traces if turn_id is None or t.turn_id == turn_id]


def _label(span: Span) -> str:
    index = span.attributes.get("voxline.sentence_index")
    return span.name if index is None else f"{span.name} #{index}"


def waterfall(trace: TurnTrace, width: int = BAR) -> Table:
    """One row a span: where it starts and how long it lasts (ms from the turn's origin:
    the end of speech or the typed text) and a bar on the turn's time line."""
    root = trace.root
    start = min(s.start_ms for s in trace.spans)
    span_ms = max(max(s.end_ms for s in trace.spans) - start, 1)
    table = Table(title=f"turn {trace.turn_id} ({root.attributes.get('voxline.status')}) — "
                        f"trace {trace.trace_id}", title_justify="left")
    for column, justify in (("span", "left"), ("start ms", "right"), ("ms", "right"),
                            ("", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for span in trace.spans:
        left = round((span.start_ms - start) * width / span_ms)
        length = max(1, round(span.duration_ms * width / span_ms))
        bar = Text(" " * left + "█" * length, style="cyan" if span is not root else "bold")
        marks = ", ".join(f"{name} +{ms - root.start_ms}" for name, ms, _ in span.events)
        label = _label(span) if span is root else f"  {_label(span)}"
        table.add_row(label + (f" ({marks})" if marks else ""),
                      str(span.start_ms - root.start_ms), str(span.duration_ms), bar)
    return table
