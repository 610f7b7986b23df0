"""Sessions' events to a dataset folder (the layout: :mod:`pipeline.datasets.layout`).

The caller reads the sessions (and records the read in the audit: an export is a read);
this writes what it was given. Text is written as the log holds it, which is already
redacted as each session asked (``redact``, and the kinds its API key requires): an
export can only add kinds (``redact``), applied to every text of every event, so a
dataset that leaves the machine carries less than the log, never more. Ids, times,
settings and numbers are not text and are kept as they are.
"""

from __future__ import annotations

import json
import wave
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.audio import decode_frames
from pipeline.datasets.layout import (
    DATASET_FORMAT,
    DATASET_VERSION,
    MANIFEST,
    METADATA,
    DatasetSummary,
    audio_path,
    session_path,
)
from pipeline.log import fold
from pipeline.privacy import Entity, redact
from schemas import AudioData, Event, InputAudio, InputAudioFormat

#: data fields that are never free text (left unredacted: ids, codes, names of things)
_NOT_TEXT = {"type", "format", "language", "voice", "code", "status", "reason", "name",
             "model", "engine", "role", "call_id", "tool_choice", "source", "runs_on"}


def write_dataset(
    sessions: Iterable[tuple[str, Sequence[Event]]],
    out: Path,
    *,
    redact_kinds: Sequence[Entity] = (),
    skipped: Mapping[str, str] | None = None,
) -> DatasetSummary:
    """Write ``sessions`` (id, events in log order) to ``out`` (see :class:`DatasetWriter`)."""
    writer = DatasetWriter(out, redact_kinds=redact_kinds)
    try:
        for session_id, events in sessions:
            writer.add(session_id, events)
    except BaseException:
        writer.close()
        raise
    return writer.finish(skipped)


class DatasetWriter:
    """A dataset written one session at a time (a caller reading sessions from the log
    holds one at a time). ``out`` must not exist or be an empty folder: nothing of
    another dataset is overwritten. :meth:`finish` writes ``dataset.json``: a folder
    without it is an export that did not finish."""

    def __init__(self, out: Path, *, redact_kinds: Sequence[Entity] = ()) -> None:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise FileExistsError(f"{out} exists and is not an empty folder")
        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        self.redact_kinds = tuple(redact_kinds)
        self.summary = DatasetSummary()
        self._metadata = (out / METADATA).open("w", encoding="utf-8")

    def add(self, session_id: str, events: Sequence[Event]) -> int:
        """Write one session; returns its utterances."""
        rows = _write_session(self.out, session_id, events, self.redact_kinds, self.summary)
        for row in rows:
            self._metadata.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.summary.sessions += 1
        return len(rows)

    def close(self) -> None:
        """Stop without finishing (no ``dataset.json``: the folder says it is unfinished)."""
        self._metadata.close()

    def finish(self, skipped: Mapping[str, str] | None = None) -> DatasetSummary:
        """Close the dataset: ``skipped`` are the sessions not exported, and why."""
        self.close()
        summary = self.summary
        summary.skipped.update(skipped or {})
        manifest = {"format": DATASET_FORMAT, "version": DATASET_VERSION,
                    "sessions": summary.sessions, "utterances": summary.utterances,
                    "events": summary.events,
                    "audio_seconds": round(summary.audio_seconds, 3),
                    "redact": list(self.redact_kinds), "skipped": summary.skipped}
        (self.out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n",
                                         encoding="utf-8")
        return summary


def _write_session(out: Path, session_id: str, events: Sequence[Event],
                   kinds: Sequence[Entity], summary: DatasetSummary) -> list[dict[str, Any]]:
    state = fold(session_id, events)
    rows: list[dict[str, Any]] = []
    path = out / session_path(session_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as lines:
        for event in events:
            record = event.model_dump(mode="json", exclude={"data": {"audio"}})
            record["data"] = _redacted(record["data"], kinds)
            if isinstance(event, InputAudio):
                record["audio_file"] = file_name = audio_path(session_id, str(event.id))
                pcm = decode_frames(event.data.audio, InputAudioFormat(event.data.format),
                                    event.data.sample_rate)
                _write_wav(out / file_name, pcm, event.data.sample_rate)
                turn = state.turns.get(event.turn_id or "")
                rows.append({
                    "file_name": file_name, "session_id": session_id,
                    "event_id": event.id, "turn_id": event.turn_id,
                    "start_ms": event.data.start_ms, "duration_ms": event.data.duration_ms,
                    "sample_rate": event.data.sample_rate, "format": event.data.format,
                    "transcript": _text(turn.user_text if turn else "", kinds),
                    "reply": _text(turn.assistant_text if turn else "", kinds),
                })
                summary.utterances += 1
                summary.audio_seconds += len(pcm) / 2 / event.data.sample_rate
            elif isinstance(event.data, AudioData):
                record["audio_bytes"] = len(event.data.audio)
            lines.write(json.dumps(record, ensure_ascii=False) + "\n")
            summary.events += 1
    return rows


def _write_wav(path: Path, pcm: bytes, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)


def _text(text: str, kinds: Sequence[Entity]) -> str:
    return redact(text, kinds).text if kinds else text


def _redacted(value: Any, kinds: Sequence[Entity], key: str = "") -> Any:
    """Every free-text string in ``value`` redacted (see the module docstring)."""
    if not kinds:
        return value
    if isinstance(value, dict):
        return {k: _redacted(v, kinds, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(item, kinds, key) for item in value]
    if isinstance(value, str) and key not in _NOT_TEXT and not key.endswith("_id") \
            and key != "id" and key != "settings":
        return redact(value, kinds).text
    return value
