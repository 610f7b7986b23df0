"""What a turn runs under and what it reports: :class:`ReplyConfig` and :class:`ReplyStats`.

A :class:`ReplyConfig` is per deployment (the session's own settings come with each run):
the bounds the module docstring of :mod:`pipeline.reply.orchestrator` describes, how text
deltas are coalesced, and the sentence buffer's rules. A :class:`ReplyStats` is per run:
pass one to ``ReplyOrchestrator.run`` to read afterwards what it did and how close it came
to its bounds (tests and benchmarks read it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pipeline.reply.sentences import VOICE_FIRST_PIECE, SentenceBufferConfig
from schemas import ConfigurationError

#: How a response with audio is produced (``text`` mode follows from the settings).
ReplyMode = Literal["streaming", "sequential"]


@dataclass(frozen=True, slots=True)
class ReplyConfig:
    """Knobs of the orchestrator (per deployment, not per session)."""

    mode: ReplyMode = "streaming"
    #: syntheses running at once; the next piece starts while the current one speaks
    tts_concurrency: int = 2
    #: pieces admitted to TTS and not yet sent; beyond it the LLM is not read (backpressure)
    max_pending_pieces: int = 4
    #: chunks one synthesis may buffer before it waits for its turn to be sent
    chunk_buffer: int = 16
    #: events waiting for the consumer (a soft bound, see pipeline.reply.outbox)
    outbox_size: int = 64
    #: a delta event is sent when its first token is this old, or it holds this many
    #: tokens or characters, or something else must be sent; 0 ms sends every token alone
    delta_coalesce_ms: float = 50.0
    delta_coalesce_tokens: int = 8
    delta_coalesce_chars: int = 160
    #: how long to wait for engines to acknowledge a cancel before giving up on them
    shutdown_grace_s: float = 1.0
    #: language and min_sentence_chars are replaced by the session's settings per turn
    #: (default: the voice first-piece rule, tuned against the CPU engines' speed)
    sentences: SentenceBufferConfig = field(default_factory=lambda: VOICE_FIRST_PIECE)

    def __post_init__(self) -> None:
        for name in ("tts_concurrency", "max_pending_pieces", "chunk_buffer", "outbox_size",
                     "delta_coalesce_tokens", "delta_coalesce_chars"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"ReplyConfig.{name} must be at least 1", setting=name)
        if self.delta_coalesce_ms < 0 or self.shutdown_grace_s < 0:
            raise ConfigurationError("ReplyConfig durations must not be negative")


@dataclass(slots=True)
class ReplyStats:
    """What one run did; pass one to :meth:`ReplyOrchestrator.run` to read it afterwards."""

    tokens: int = 0
    pieces: int = 0
    delta_events: int = 0
    chunks: int = 0
    #: the most pieces admitted to TTS and not yet sent, at once (≤ max_pending_pieces)
    max_pieces_pending: int = 0
    #: the most syntheses running at once (≤ tts_concurrency)
    max_tts_active: int = 0
    #: first pieces synthesized a token early and spoken, and guesses dropped
    early_pieces: int = 0
    early_pieces_dropped: int = 0
