"""The dataset's layout, written by :mod:`~pipeline.datasets.writer` and read by
:mod:`~pipeline.datasets.reader`::

    DIR/
      dataset.json                 what it is: format, version, when, counts, redaction,
                                   the sessions skipped and why
      metadata.jsonl               one row per utterance (an ``input.audio`` event):
                                   file_name, session_id, event_id, turn_id, start_ms,
                                   duration_ms, sample_rate, format, transcript, reply
      audio/<session>/<event>.wav  that utterance, PCM16 mono at its logged rate
      sessions/<session>.jsonl     every event of the session, in log order, as the log
                                   holds it, except audio: an utterance's is in its WAV
                                   (``audio_file``), a reply's is left out (``audio``
                                   empty, ``audio_bytes`` its size)

``load_dataset("audiofolder", data_dir=DIR)`` (Hugging Face ``datasets``) gives one row per
utterance with its audio and the metadata columns. G.711 input (a phone call) is decoded
to PCM16 for its WAV (the samples a session's VAD and STT heard); its row keeps the
logged ``format``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DATASET_FORMAT = "voxline-sessions"
DATASET_VERSION = 1
MANIFEST = "dataset.json"
METADATA = "metadata.jsonl"
AUDIO_DIR = "audio"
SESSIONS_DIR = "sessions"


@dataclass
class DatasetSummary:
    """What an export wrote (and what ``dataset.json`` says)."""

    sessions: int = 0
    utterances: int = 0
    events: int = 0
    audio_seconds: float = 0.0
    #: sessions not exported, and why (erased, unknown)
    skipped: dict[str, str] = field(default_factory=dict)


def audio_path(session_id: str, event_id: str) -> str:
    """An utterance's WAV, relative to the dataset (``/`` separated, as the loader reads)."""
    return f"{AUDIO_DIR}/{_safe(session_id)}/{_safe(event_id)}.wav"


def session_path(session_id: str) -> str:
    return f"{SESSIONS_DIR}/{_safe(session_id)}.jsonl"


def _safe(name: str) -> str:
    """A file name from an id (ids are ours, but a dataset may travel: no path tricks)."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    if not cleaned or cleaned.startswith("."):
        raise ValueError(f"{name!r} cannot name a file")
    return cleaned
