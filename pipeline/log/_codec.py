"""Events to Redis stream fields and back.

Field order is fixed (``type``, ``turn``, ``ts``, ``data`` and, for audio events, ``audio``)
because the append script compares a retried append field by field. Audio is stored as a
binary field, never as base64 inside the JSON: a second of 24 kHz speech stays 48 kB.
The per-session number ``n`` is added by the append script, not here. With the session's
data key (encryption at rest), ``data`` and ``audio`` are sealed and the entry carries a
clear ``sealed`` field (:mod:`pipeline.log._sealing`).
"""

from __future__ import annotations

import functools
import json
from typing import Any

from pipeline.log._sealing import SEALED, open_field, seal_field
from schemas import EVENT_CLASSES, AudioData, Event, EventBase, SessionError

Fields = list[bytes]


def encode_fields(event: EventBase, key: bytes | None = None) -> Fields:
    """The stream fields of ``event`` as a flat [name, value, ...] list; with ``key``, its
    payload sealed (the event must have its id)."""
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
    if key is not None:
        assert event.id is not None, "an event is sealed once it has its id"
        for at in range(7, len(fields), 2):  # data, audio
            fields[at] = seal_field(key, event.session_id, event.id, fields[at - 1], fields[at])
        fields += [SEALED, b"1"]
    return fields


def decode_entry(session_id: str, entry_id: bytes | str, raw: dict[bytes, bytes],
                 key: bytes | None = None) -> Event:
    """Rebuild an event from a stream entry (``raw`` as redis-py returns it); a sealed one
    with its session's data ``key`` (none: the key was destroyed, the session erased)."""
    kind = raw[b"type"].decode()
    event_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    payload, audio = raw[b"data"], raw.get(b"audio")
    if SEALED in raw:
        if key is None:
            raise SessionError.erased(session_id)
        payload = open_field(key, session_id, event_id, b"data", payload)
        if audio is not None:
            audio = open_field(key, session_id, event_id, b"audio", audio)
    cls = EVENT_CLASSES[kind]
    turn, ts = raw[b"turn"], raw[b"ts"]
    if audio is None and ts.isdigit():
        # the stored JSON inside an envelope, validated from bytes in one pass of
        # pydantic-core: no dict of the payload is built in Python (a reader's main cost)
        envelope = b"".join((
            # (a stream id is digits and a dash: nothing to escape)
            b'{"id":"', event_id.encode(), b'","session_id":', _json_text(session_id),
            b',"turn_id":', _json_text(turn.decode()) if turn else b"null",
            b',"ts":', ts, b',"data":', payload, b"}"))
        return cls.model_validate_json(envelope)  # type: ignore[return-value]
    data: dict[str, Any] = json.loads(payload)
    if audio is not None:
        data["audio"] = audio
    event = cls.model_validate(
        {
            "id": event_id,
            "session_id": session_id,
            "turn_id": turn.decode() or None,
            "ts": int(ts),
            "data": data,
        }
    )
    return event  # type: ignore[return-value]


@functools.lru_cache(maxsize=4096)
def _json_text(text: str) -> bytes:
    """A session's or a turn's id as JSON: the same few ids, each for many events."""
    return json.dumps(text).encode()


def entry_number(raw: dict[bytes, bytes]) -> int:
    """The entry's 1-based position in its session (set by the append script)."""
    return int(raw[b"n"])
