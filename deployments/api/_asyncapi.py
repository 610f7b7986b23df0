"""The WebSocket protocol as an AsyncAPI 3.0 document, built from the JSON Schema.

One source of truth: ``schemas.protocol_json_schema()`` (also written to
``docs/protocol.schema.json``). Each client message type becomes a message the server
receives on the session channel, each event type one it sends; their payload schemas are
the protocol's ``$defs``, moved to ``components/schemas``.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from schemas import protocol_json_schema

_REF = "#/$defs/"
_COMPONENT = "#/components/schemas/"


def _variants(union: dict[str, Any]) -> dict[str, str]:
    """``type`` value → schema name, from a discriminated union's mapping."""
    mapping: dict[str, str] = union.get("discriminator", {}).get("mapping", {})
    return {kind: ref.removeprefix(_REF) for kind, ref in mapping.items()}


def _message_name(kind: str) -> str:
    return kind.replace(".", "_")


@functools.cache
def asyncapi_document() -> dict[str, Any]:
    schema = protocol_json_schema()
    defs = json.loads(json.dumps(schema["$defs"]).replace(f'"{_REF}', f'"{_COMPONENT}'))
    events = _variants(schema["$defs"]["ServerEvent"])
    messages = _variants(schema["$defs"]["ClientMessage"])
    components: dict[str, Any] = {"schemas": defs, "messages": {}}
    for direction, variants in (("client", messages), ("server", events)):
        for kind, name in variants.items():
            components["messages"][f"{direction}_{_message_name(kind)}"] = {
                "name": kind,
                "title": kind,
                "summary": defs[name].get("description", ""),
                "contentType": "application/json",
                "payload": {"$ref": f"{_COMPONENT}{name}"},
            }
    components["messages"]["client_audio"] = {
        "name": "audio",
        "title": "binary PCM16 frame",
        "summary": "raw audio at the session's input_sample_rate, in its input_format (PCM16 "
                   "mono by default; G.711 pcmu/pcma), as a binary frame",
        "contentType": "application/octet-stream",
        "payload": {"type": "string", "format": "binary"},
    }
    channel_messages = {key: {"$ref": f"#/components/messages/{key}"}
                        for key in components["messages"]}
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Voxline native socket protocol",
            "version": "0.1.0",
            "description": (
                "Open a session with `POST /v1/sessions`, then this socket with the session's "
                "token. Server → client: every event of the session as JSON, in log order, "
                "each already in the log (`id` is its log id; reconnect with "
                "`?last_event_id=` to resume). Client → server: JSON messages and binary "
                "PCM16 frames. A socket that cannot start gets one `error` frame and close "
                "code 4000 + the HTTP status."
            ),
        },
        "servers": {
            "local": {"host": "127.0.0.1:8000", "protocol": "ws",
                      "description": "the Gateway (any replica serves any session)"},
        },
        "channels": {
            "session": {
                "address": "/v1/sessions/{session_id}/ws",
                "parameters": {"session_id": {"description": "from POST /v1/sessions"}},
                "bindings": {"ws": {"query": {"type": "object", "properties": {
                    "token": {"type": "string", "description": "the session's token"},
                    "last_event_id": {"type": "string", "pattern": r"^\d+-\d+$",
                                      "description": "resume after this event"},
                }}}},
                "messages": channel_messages,
            },
        },
        "operations": {
            "sendToServer": {
                "action": "receive",
                "channel": {"$ref": "#/channels/session"},
                "summary": "what a client sends",
                "messages": [{"$ref": f"#/channels/session/messages/{key}"}
                             for key in channel_messages if key.startswith("client_")],
            },
            "receiveFromServer": {
                "action": "send",
                "channel": {"$ref": "#/channels/session"},
                "summary": "what the server sends",
                "messages": [{"$ref": f"#/channels/session/messages/{key}"}
                             for key in channel_messages if key.startswith("server_")],
            },
        },
        "components": components,
    }
