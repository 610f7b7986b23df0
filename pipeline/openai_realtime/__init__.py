"""The OpenAI Realtime API over Voxline's sessions: translation both ways, no transport.

``WS /v1/realtime`` (``deployments/api/openai_realtime.py``) runs on the same live session
and log as the native socket; this package is what it says in between.
:class:`ClientTranslator` parses OpenAI client events under the socket's limits and turns
each into native client messages (``session.update`` → a settings patch, ``input_audio_buffer.*``
→ ``input_audio.*``, ``conversation.item.create`` → ``input.text`` that waits for
``response.create`` ...). :class:`ServerTranslator` turns each log event into the OpenAI
server events that say the same, with ``event_id`` = ``<log id>.<n>`` so a socket resumes
exactly (:func:`parse_resume_id`, :func:`log_id_before`).
"""

from pipeline.openai_realtime._client import (
    SUPPORTED_CLIENT_EVENTS,
    ClientActions,
    ClientTranslator,
)
from pipeline.openai_realtime._client_events import ClientEvent, SessionConfig
from pipeline.openai_realtime._frames import (
    Frame,
    error_frame,
    local_id,
    log_id_before,
    parse_resume_id,
    retrieved_item,
    session_object,
)
from pipeline.openai_realtime._server import BETA_NAMES, ServerTranslator

__all__ = [
    "BETA_NAMES",
    "SUPPORTED_CLIENT_EVENTS",
    "ClientActions",
    "ClientEvent",
    "ClientTranslator",
    "Frame",
    "ServerTranslator",
    "SessionConfig",
    "error_frame",
    "local_id",
    "log_id_before",
    "parse_resume_id",
    "retrieved_item",
    "session_object",
]
