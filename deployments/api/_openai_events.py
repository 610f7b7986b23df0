"""OpenAI Realtime client events applied to a session: what ``/v1/realtime``'s socket
and a WebRTC call's ``oai-events`` channel share."""

from __future__ import annotations

import json

from deployments.api._deps import engine_choices
from deployments.api._log_sender import JsonFraming
from deployments.api._services import Services
from pipeline.openai_realtime import (
    ClientTranslator,
    ServerTranslator,
    error_frame,
    local_id,
    retrieved_item,
)
from pipeline.session import LiveSession, merge_settings
from schemas import SessionUpdate, VoxlineError


class OpenAIFraming(JsonFraming):
    """Log events as OpenAI server events; a refusal is OpenAI's ``error`` event."""

    def refusal(self, session_id: str, exc: VoxlineError) -> str:
        return json.dumps(error_frame(exc.to_payload(), local_id()))


def client_translator(services: Services, session: LiveSession, *,
                      audio_formats: bool = True) -> ClientTranslator:
    """A translator under the API's limits, reading the session's input format live."""
    api = services.settings.api
    return ClientTranslator(
        voice_map=api.voice_map, max_message_bytes=api.max_message_bytes,
        max_text_chars=api.max_text_chars, max_json_depth=api.max_json_depth,
        input_format=lambda: session.settings.input_format, audio_formats=audio_formats)


async def apply_client_event(
    text: str, client: ClientTranslator, session: LiveSession, services: Services
) -> list[str]:
    """Apply one client event; the frames to send back at once (acknowledgements: the
    log answers the rest). A :class:`VoxlineError` carries the event's ``event_id``."""
    event = client.parse(text)
    try:
        if event.type == "conversation.item.retrieve":
            item = retrieved_item(event.item_id or "", session.state.turns)
            return [json.dumps({**item, "event_id": local_id()})]
        actions = client.actions(event)
        for message in actions.messages:
            if isinstance(message, SessionUpdate):  # voices, languages: the engines'
                merge_settings(session.settings, message.settings,
                               await engine_choices(services))
            await session.handle(message)
    except VoxlineError as exc:
        exc.details.setdefault("event_id", event.event_id)
        raise
    if actions.ack is None:
        return []
    return [json.dumps({**actions.ack, "event_id": local_id()})]


def follow_session(translator: ServerTranslator, services: Services,
                   session: LiveSession) -> None:
    """Let ``translator`` read what the log does not repeat from the live session: whether
    a reply is spoken, and the user's text of a turn."""
    tts = services.engines.tts is not None
    translator.spoken_default = lambda: tts and session.settings.realtime_tts
    translator.user_text = lambda turn_id: getattr(session.state.turns.get(turn_id),
                                                   "user_text", "")
