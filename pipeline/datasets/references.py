"""Reference transcripts: what was really said in an utterance, as a person wrote it down,
for an evaluation's word error rate against the truth rather than against the log.

A references file is JSON Lines, one utterance a row, named by ``session_id`` and
``turn_id`` with its ``reference`` text; other fields are ignored and rows without a
``reference`` are skipped. So an exported dataset's ``metadata.jsonl`` is one as soon as
someone adds ``reference`` to the rows they checked (:func:`dataset_references`), and a
file of only those three fields serves for sessions read from the log.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.datasets.layout import METADATA
from schemas import ConfigurationError

__all__ = ["MAX_REFERENCES_BYTES", "References", "dataset_references", "read_references"]

#: (session id, turn id) → the reference text of that turn's utterance
References = dict[tuple[str, str], str]
#: a references file larger than this is refused (a transcript file, not a corpus)
MAX_REFERENCES_BYTES = 64 * 1024 * 1024


def read_references(path: Path, *, setting: str = "--references") -> References:
    """The references in ``path`` (see the module docstring); a clear error naming the
    line for a row that is not a JSON object or names no session and turn."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ConfigurationError(f"{setting} {path}: {exc.strerror}", setting=setting) from None
    if size > MAX_REFERENCES_BYTES:
        raise ConfigurationError(
            f"{setting} {path} is {size:,} bytes; at most {MAX_REFERENCES_BYTES:,}",
            setting=setting)
    found: References = {}
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigurationError(f"{path}:{number}: not JSON ({exc.msg})",
                                         setting=setting) from None
            if not isinstance(row, dict):
                raise ConfigurationError(f"{path}:{number}: a row is a JSON object",
                                         setting=setting)
            reference = row.get("reference")
            if reference is None:
                continue
            session_id, turn_id = row.get("session_id"), row.get("turn_id")
            if not (isinstance(session_id, str) and isinstance(turn_id, str)
                    and isinstance(reference, str)):
                raise ConfigurationError(
                    f"{path}:{number}: a reference needs session_id and turn_id, and all "
                    "three are strings", setting=setting)
            found[(session_id, turn_id)] = reference
    return found


def dataset_references(folder: Path) -> References:
    """The references written into an exported dataset's ``metadata.jsonl`` (none when
    nobody added any)."""
    path = folder / METADATA
    return read_references(path, setting="--dataset") if path.exists() else {}
