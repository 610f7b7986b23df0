"""A turn's latency, stage by stage, from the timestamps of its events.

The log is the single clock: every event carries the server's ``ts`` (ms), so the same
numbers come out for the demo, the latency benchmark and the metrics consumer. The
origin of a turn is the end of the user's speech (``input.speech_stopped``) or the typed
text (``input.text``); the stages are the gaps between the first event of each kind.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from schemas import Event

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

    @classmethod
    def of(cls, events: Iterable[Event], turn_id: str | None = None) -> TurnTimeline:
        """The timeline of ``turn_id`` (default: the first turn that has an origin)."""
        first: dict[str, int] = {}
        for event in events:
            if event.type not in _MARKS or event.turn_id is None:
                continue
            if turn_id is None:
                if event.type not in ("input.speech_stopped", "input.text"):
                    continue
                turn_id = event.turn_id
            if event.turn_id == turn_id:
                first.setdefault(event.type, event.ts)
        return cls(turn_id, first)

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
