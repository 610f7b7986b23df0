"""Events to Redis stream fields and back.

Field order is fixed (``type``, ``turn``, ``ts``, ``data`` and, for audio events, ``audio``)
because the append script compares a retried append field by field. Audio is stored as a
binary field, never as base64 inside the JSON: a second of 24 kHz speech stays 48 kB.
The per-session number ``n`` is added by the append script, not here.
"""

from __future__ import annotations

import json
from typing import Any

from schemas import EVENT_CLASSES, AudioData, Event, EventBase

Fields = list[bytes]


def encode_fields(event: EventBase) -> Fields:
    """The stream fields of ``event`` as a flat [name, value, ...] list."""
    data = event.data  # type: ignore[attr-defined]
    audio: bytes | None = None
    if isinstance(data, AudioData):
        audio = data.audio
        payload = data.model_dump_json(exclude={"audio"})
    else:
        payload = data.model_dump_json()
    fields: Fields = [
        b"type",
        event.type.encode(),  # type: ignore[attr-defined]
        b"turn",
        (event.turn_id or "").encode(),
        b"ts",
        str(event.ts).encode(),
        b"data",
        payload.encode(),
    ]
    if audio is not None:
        fields += [b"audio", audio]
    return fields


def decode_entry(session_id: str, entry_id: bytes | str, raw: dict[bytes, bytes]) -> Event:
    """Rebuild an event from a stream entry (``raw`` as redis-py returns it)."""
    kind = raw[b"type"].decode()
    data: dict[str, Any] = json.loads(raw[b"data"])
    if b"audio" in raw:
        data["audio"] = raw[b"audio"]
    turn = raw[b"turn"].decode()
    cls = EVENT_CLASSES[kind]
    event = cls.model_validate(
        {
            "id": entry_id.decode() if isinstance(entry_id, bytes) else entry_id,
            "session_id": session_id,
            "turn_id": turn or None,
            "ts": int(raw[b"ts"]),
            "data": data,
        }
    )
    return event  # type: ignore[return-value]


def entry_number(raw: dict[bytes, bytes]) -> int:
    """The entry's 1-based position in its session (set by the append script)."""
    return int(raw[b"n"])
