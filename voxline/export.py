"""``voxline export``: logged sessions as a dataset (:mod:`pipeline.datasets`), to evaluate
elsewhere or load with Hugging Face ``datasets``.

Each session is read from the log as ``voxline replay`` reads it, and the read is
recorded in the audit (``voxline export``, the CLI's user): an export is a read. A
session the log no longer holds (erased, expired, never there) is skipped and said, never
half-written. Text is exported as the log holds it, redacted as the session asked;
``--redact`` adds kinds for the dataset alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from pipeline.datasets import DatasetSummary, DatasetWriter
from pipeline.privacy import ENTITIES, Entity
from schemas import ConfigurationError, SessionError, Settings
from voxline.inspect import read_session

__all__ = ["export_sessions", "redaction_kinds"]


def redaction_kinds(names: Sequence[str]) -> tuple[Entity, ...]:
    """``--redact`` values as redaction kinds (a :class:`ConfigurationError` names the
    ones there are)."""
    unknown = [name for name in names if name not in ENTITIES]
    if unknown:
        raise ConfigurationError(f"no redaction kind {', '.join(unknown)}: one of "
                                 f"{', '.join(ENTITIES)}", setting="--redact")
    return tuple(kind for kind in ENTITIES if kind in names)


async def export_sessions(
    session_ids: Sequence[str], out: Path, settings: Settings, *,
    redact_kinds: Sequence[Entity] = (), say: Callable[[str], None] = lambda _: None,
) -> DatasetSummary:
    """Export ``session_ids`` to the new folder ``out``, one session at a time."""
    writer = DatasetWriter(out, redact_kinds=redact_kinds)
    skipped: dict[str, str] = {}
    wanted = list(dict.fromkeys(session_ids))
    try:
        for number, session_id in enumerate(wanted, 1):
            try:
                record = await read_session(session_id, settings, action="voxline export")
            except SessionError as exc:
                skipped[session_id] = f"{exc.code.value}: {exc.message}"
                say(f"[{number}/{len(wanted)}] skipped {session_id}: {exc.code.value}")
                continue
            utterances = writer.add(session_id, record.events)
            say(f"[{number}/{len(wanted)}] {session_id}: {len(record.events)} events, "
                f"{utterances} utterances")
    except BaseException:
        writer.close()
        raise
    return writer.finish(skipped)
