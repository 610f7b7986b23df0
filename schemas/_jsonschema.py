"""The protocol's JSON Schema, exported to ``docs/protocol.schema.json``.

Clients in other languages generate types from it; a test keeps the file current.
Regenerate with ``python -m schemas``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from schemas._errors import ErrorPayload
from schemas._events import Event
from schemas._messages import ClientMessageUnion
from schemas._session import SessionSettings

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "docs" / "protocol.schema.json"


def protocol_json_schema() -> dict[str, Any]:
    """One document: server events, client messages, session settings and errors."""
    parts: dict[str, Any] = {
        "ServerEvent": TypeAdapter(Event).json_schema(mode="serialization"),
        "ClientMessage": TypeAdapter(ClientMessageUnion).json_schema(mode="validation"),
        "SessionSettings": SessionSettings.model_json_schema(),
        "Error": ErrorPayload.model_json_schema(),
    }
    defs: dict[str, Any] = {}
    for name, schema in parts.items():
        defs.update(schema.pop("$defs", {}))
        defs[name] = schema
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Voxline native socket protocol",
        "$defs": dict(sorted(defs.items())),
    }


def render() -> str:
    return json.dumps(protocol_json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write(path: Path = SCHEMA_PATH) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(), encoding="utf-8")
    return path
