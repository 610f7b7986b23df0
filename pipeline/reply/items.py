"""What a turn's workers hand its event loop: one closed union, :data:`TurnItem`.

A turn runs as a few tasks (the LLM reader, the speaker's forwarder) that put items into
one outbox (:mod:`pipeline.reply.outbox`); the loop of ``ReplyOrchestrator.run`` takes them
out in order and makes each into events. The union lists every kind, so the loop
dispatches with ``match`` and mypy checks that no kind goes unhandled. A delta of the
reply's text is the ``str`` itself: there is one per token, and a wrapper would be an
allocation on the hottest path for no information. Every other kind is a small frozen
dataclass; the three that carry nothing (the ends and the cancel) have one instance each.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final, TypeAlias

from pipeline.reply.tools import StartedCall, ToolOutcome
from schemas import AudioChunk, ErrorPayload

__all__ = [
    "AUDIO_END",
    "CANCELLED",
    "TEXT_END",
    "AudioEnd",
    "CallEnded",
    "CallsMade",
    "Cancelled",
    "Failure",
    "Piece",
    "PieceFailed",
    "SpeakerItem",
    "SpokenChunk",
    "TextEnd",
    "TurnItem",
]


@dataclass(frozen=True, slots=True)
class Piece:
    """Piece ``index`` of the reply, as the sentence buffer cut it."""

    index: int
    text: str


@dataclass(frozen=True, slots=True)
class Failure:
    """An error to send; ``abort`` ends the turn at once (a bug in a stage) instead of
    letting the audio already under way finish."""

    payload: ErrorPayload
    abort: bool


@dataclass(frozen=True, slots=True)
class SpokenChunk:
    """One chunk of audio of piece ``index``."""

    index: int
    chunk: AudioChunk


@dataclass(frozen=True, slots=True)
class PieceFailed:
    """Synthesis of piece ``index`` raised ``error``; the pieces after it go on."""

    index: int
    error: Exception


@dataclass(frozen=True, slots=True)
class CallsMade:
    """The model called tools: their ``tool.call.started`` events go out, and ``logged``
    says whether the consumer took them all (appended them); a server call runs only
    then."""

    calls: tuple[StartedCall, ...]
    logged: asyncio.Future[bool]


@dataclass(frozen=True, slots=True)
class CallEnded:
    """A server call ended: its output, or its failure as the model reads it."""

    call_id: str
    outcome: ToolOutcome


@dataclass(frozen=True, slots=True)
class TextEnd:
    """The LLM reader is done: every delta and piece it cut came before this."""


@dataclass(frozen=True, slots=True)
class AudioEnd:
    """The speaker is done: the audio of every piece it was given came before this."""


@dataclass(frozen=True, slots=True)
class Cancelled:
    """The turn was cancelled: put in place of everything still waiting, never sent."""


TEXT_END: Final = TextEnd()
AUDIO_END: Final = AudioEnd()
CANCELLED: Final = Cancelled()

#: what the speaker puts into its sink, piece by piece in order, then :data:`AUDIO_END`
SpeakerItem: TypeAlias = SpokenChunk | PieceFailed | AudioEnd
#: everything a turn's outbox carries (``str``: a delta of the reply's text)
TurnItem: TypeAlias = (str | Piece | Failure | SpeakerItem | CallsMade | CallEnded | TextEnd
                       | Cancelled)
