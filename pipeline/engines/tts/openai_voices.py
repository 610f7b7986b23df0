"""OpenAI's voice names onto the voices this server has.

OpenAI's SDK requires a ``voice`` and its users write ``alloy`` or ``nova``; no local
engine has those voices, so ``/v1/audio/speech`` maps each OpenAI name through a
configurable table (``VOXLINE_API__VOICE_MAP``, JSON ``{"alloy": "en_US-lessac-medium"}``).
A name the table leaves out means the engine's default voice, so the SDK works unchanged
on a fresh install. Any other name is an engine voice and is checked by the engine.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["OPENAI_VOICES", "engine_voice"]

#: every voice name OpenAI's speech endpoint takes
OPENAI_VOICES: frozenset[str] = frozenset({
    "alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer",
    "verse", "marin", "cedar",
})  # fmt: skip


def engine_voice(voice: str | None, voice_map: Mapping[str, str]) -> str | None:
    """The engine voice for a requested one: mapped, the default (``None``), or itself."""
    if not voice:
        return None
    if voice in voice_map:
        return voice_map[voice] or None
    if voice.lower() in OPENAI_VOICES:
        return None
    return voice
