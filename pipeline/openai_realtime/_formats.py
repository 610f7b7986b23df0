"""OpenAI's audio formats and Voxline's, both ways.

OpenAI names a format by type (GA: ``audio/pcm`` with a rate, 24 kHz unless said;
``audio/pcmu`` and ``audio/pcma``, G.711 at 8 kHz) or by the beta's name (``pcm16``,
``g711_ulaw``, ``g711_alaw``); Voxline's settings hold a format and a sample rate.
"""

from __future__ import annotations

from typing import Any

from schemas import ErrorCode, InvalidAudioError

#: G.711's one rate
G711_RATE = 8000
_OPENAI_RATE = 24000
_G711_TYPES = {"audio/pcmu": "pcmu", "audio/pcma": "pcma"}
_BETA_FORMATS = {"pcm16": ("pcm16", _OPENAI_RATE), "g711_ulaw": ("pcmu", G711_RATE),
                 "g711_alaw": ("pcma", G711_RATE)}


def from_openai(kind: str, rate: int | None, param: str) -> tuple[str, int]:
    """A GA format (its ``type`` and ``rate``) as Voxline's (format, sample rate);
    ``unsupported_format`` for another type, at ``<param>.type``."""
    if kind == "audio/pcm":
        return "pcm16", rate or _OPENAI_RATE
    if kind in _G711_TYPES:
        return _G711_TYPES[kind], G711_RATE
    raise InvalidAudioError(
        f"audio format {kind!r} is not supported; use audio/pcm (PCM16 mono), "
        "audio/pcmu or audio/pcma (G.711 at 8 kHz)",
        code=ErrorCode.UNSUPPORTED_FORMAT, param=f"{param}.type")


def from_beta(name: str, param: str) -> tuple[str, int]:
    """A beta format name as Voxline's (format, sample rate)."""
    if name not in _BETA_FORMATS:
        raise InvalidAudioError(
            f"audio format {name!r} is not supported; use {', '.join(_BETA_FORMATS)}",
            code=ErrorCode.UNSUPPORTED_FORMAT, param=param)
    return _BETA_FORMATS[name]


def to_openai(fmt: str, rate: int) -> dict[str, Any]:
    """Voxline's format as OpenAI's: ``audio/pcm`` with its rate, ``audio/pcmu`` and
    ``audio/pcma`` at 8 kHz bare; another Voxline format by its own name."""
    if fmt == "pcm16":
        return {"type": "audio/pcm", "rate": rate}
    if fmt in _G711_TYPES.values() and rate == G711_RATE:
        return {"type": f"audio/{fmt}"}
    return {"type": f"audio/{fmt}", "rate": rate}
