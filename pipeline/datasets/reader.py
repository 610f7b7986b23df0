"""A dataset folder back into sessions' events (the layout: :mod:`pipeline.datasets.layout`).

Each event is validated as the log's events are (the schema's event classes): a dataset
edited by hand into something the log could not hold is refused with the file and line.
An utterance's audio comes back from its WAV as PCM16 at its rate (a phone call's G.711
decoded: what the session heard); a reply's audio does not come back (it was not
exported), its chunk events keep their times and sizes with no bytes.
"""

from __future__ import annotations

import json
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pipeline.datasets.layout import DATASET_FORMAT, DATASET_VERSION, MANIFEST, SESSIONS_DIR
from schemas import AudioFormat, Event, ProtocolError, parse_event


@dataclass(frozen=True)
class DatasetSession:
    """One session of a dataset: its id and its events, in log order."""

    session_id: str
    events: tuple[Event, ...]


def read_dataset(folder: Path, sessions: set[str] | None = None) -> list[DatasetSession]:
    """The sessions of the dataset in ``folder`` (only ``sessions``, when given), in the
    order of their ids."""
    manifest = _manifest(folder)
    found = []
    for path in sorted((folder / SESSIONS_DIR).glob("*.jsonl")):
        events = tuple(_events(folder, path))
        if not events:
            continue
        session_id = events[0].session_id
        if sessions is None or session_id in sessions:
            found.append(DatasetSession(session_id, events))
    if sessions is not None and (missing := sessions - {s.session_id for s in found}):
        raise ProtocolError(f"{folder} holds no session {', '.join(sorted(missing))} "
                            f"({manifest.get('sessions')} sessions in it)")
    return found


def _manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    try:
        manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ProtocolError(f"{folder} is not a Voxline dataset: {path.name}: {exc}") from exc
    if manifest.get("format") != DATASET_FORMAT or manifest.get("version") != DATASET_VERSION:
        raise ProtocolError(f"{path}: format {manifest.get('format')!r} version "
                            f"{manifest.get('version')!r}; this reads {DATASET_FORMAT!r} "
                            f"version {DATASET_VERSION}")
    return manifest


def _events(folder: Path, path: Path) -> list[Event]:
    events = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            record = json.loads(line)
            audio_file = record.pop("audio_file", None)
            record.pop("audio_bytes", None)
            data = record.get("data")
            if audio_file is not None and isinstance(data, dict):
                data["audio"], data["sample_rate"] = _read_wav(folder / audio_file)
                data["format"] = AudioFormat.PCM16.value
            elif isinstance(data, dict) and "sample_rate" in data and "audio" not in data:
                data["audio"] = ""  # a reply's chunk: its audio was not exported
            try:
                events.append(parse_event(record))
            except ValidationError as exc:
                raise ProtocolError(f"{path}:{number}: not an event: {exc}") from exc
    return events


def _read_wav(path: Path) -> tuple[bytes, int]:
    with wave.open(str(path), "rb") as wav:
        if wav.getnchannels() != 1 or wav.getsampwidth() != 2:
            raise ProtocolError(f"{path}: not PCM16 mono")
        return wav.readframes(wav.getnframes()), wav.getframerate()
