"""Auto-play: narrate finished responses that have no audio, exactly once per response.

When a session has ``auto_play`` on and a response finishes (``response.done``, status
``completed``) without audio (a text turn, or ``realtime_tts`` off), :class:`NarrationWorker`
cuts the response's text with the sentence buffer (:func:`split_text`, the session's
language), synthesizes each piece, appends its ``response.audio.chunk`` events (the
response's ``turn_id``; ``chunk_index`` 0..n-1; ``sentence_index`` = the piece) and then
``narration.ready {chunk_count: n}``. Settings are the session's *as of* ``response.done``.

**One narration, even when a worker dies half-way.** A per-(session, turn) lease keeps two
workers from narrating one turn at once (:mod:`pipeline.workers.feed_worker`). Each piece's chunks
are appended in **one atomic batch**, so a piece is in the log whole or not at all: a worker
that takes over reads the chunks already there (after the ``response.done`` event), skips
the pieces they belong to, numbers its chunks after them and redoes only the pieces that
have none. Pieces are a deterministic function of the text, the session's language and
``min_sentence_chars`` and the worker's :class:`SentenceBufferConfig` (all replicas of the
worker must share that config). The cost: a piece's audio is appended when the piece is
synthesized whole, not chunk by chunk (the narration streams piece by piece).

**Encoding.** Each piece is encoded on its own, through :class:`AudioOutput` (the session's
``output_format`` at ``output_sample_rate``) and flushed at its end, so a takeover cannot
lose audio an encoder held back, and the bytes do not depend on whether one happened:
``pcm16`` and ``wav`` narrations are one continuous stream (the WAV header goes on the first
chunk of the narration only); ``mp3`` narrations are piece-sized MP3 segments back to back
(valid MP3); ``opus`` narrations are chained Ogg streams, one per piece.

**Failures.** A piece the synthesizer refuses for good (a non-transient
:class:`VoxlineError`) gets an ``error`` event (stage ``tts``, ``details.sentence_index``,
``details.narration: true``), counts as done, and the next piece is spoken, like in a live
turn. A transient failure, or any other exception, leaves the feed entry pending: it is
retried after ``claim_idle_ms`` (resuming after the pieces already appended) and
dead-lettered after ``max_deliveries``.

Not narrated: responses that failed or were cancelled, responses that had audio (any
``response.audio.chunk`` or ``response.audio.done`` of the turn before ``response.done``),
sessions without ``auto_play``, and turns already narrated (``narration.ready`` present).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.engines import Synthesizer
from pipeline.log import EventLog, SessionState
from pipeline.reply import (
    AudioOutput,
    SentenceBufferConfig,
    error_payload,
    pieces_of,
    speak,
    synthesizer_for,
)
from pipeline.workers.feed_worker import FeedWorker, Job
from schemas import (
    ErrorCode,
    ErrorEvent,
    Event,
    NarrationReady,
    NarrationReadyData,
    ResponseAudioChunk,
    ResponseDone,
    SessionSettings,
    VoxlineError,
)

__all__ = ["NarrationProgress", "NarrationWorker", "narration_pieces", "narration_progress"]

#: The consumer group of the auto-play workers.
GROUP = "autoplay"


@dataclass(frozen=True)
class NarrationProgress:
    """What the log already holds of a turn's narration (events after its response.done)."""

    chunks: int  # narration chunk events: the next chunk_index
    end_ms: int  # where the last of them ends in the narration's audio
    done_pieces: frozenset[int]  # pieces with chunks, or with a narration error
    ready: bool  # narration.ready is there


def narration_progress(turn_id: str, after: Sequence[Event]) -> NarrationProgress:
    chunks, end_ms, done, ready = 0, 0, set[int](), False
    for event in after:
        if event.turn_id != turn_id:
            continue
        if isinstance(event, ResponseAudioChunk):
            chunks += 1
            end_ms = event.data.end_ms or end_ms
            done.add(event.data.sentence_index)
        elif isinstance(event, NarrationReady):
            ready = True
        elif isinstance(event, ErrorEvent) and event.data.details.get("narration"):
            index = event.data.details.get("sentence_index")
            if isinstance(index, int):
                done.add(index)
    return NarrationProgress(chunks, end_ms, frozenset(done), ready)


def narration_pieces(
    text: str, settings: SessionSettings, config: SentenceBufferConfig | None = None
) -> list[str]:
    """The pieces a response's text is narrated in (as a live turn would cut them)."""
    return pieces_of(text, settings.language, min_sentence_chars=settings.min_sentence_chars,
                     config=config)


def _had_audio(turn_id: str, state: SessionState) -> bool:
    """Whether the turn's reply was spoken (a chunk or its audio's end before its
    ``response.done``): a voice reply is not narrated again."""
    turn = state.turns.get(turn_id)
    return turn is not None and (turn.audio_chunks > 0 or turn.audio_done)


class NarrationWorker(FeedWorker):
    """Consumer group ``autoplay``: narrates finished text-only responses (see the module)."""

    group = GROUP
    event_types = frozenset({"response.done"})

    def __init__(
        self,
        log: EventLog,
        tts: Synthesizer,
        *,
        consumer: str,
        sentences: SentenceBufferConfig | None = None,
        lease_ms: int = 10_000,
        block_ms: int = 1000,
    ) -> None:
        super().__init__(log, consumer=consumer, lease_ms=lease_ms, block_ms=block_ms)
        self.tts = tts
        self.sentences = sentences or SentenceBufferConfig()

    def lease_subject(self, job: Job) -> str:
        return f"turn:{job.event.turn_id}"

    def wanted(self, job: Job) -> bool:
        event, settings = job.event, job.state.settings
        if not isinstance(event, ResponseDone) or event.turn_id is None:
            return False
        if event.data.status != "completed" or not settings.auto_play:
            return False
        if _had_audio(event.turn_id, job.state):
            return False
        return not narration_progress(event.turn_id, job.after).ready

    async def act(self, job: Job) -> None:
        event = job.event
        assert isinstance(event, ResponseDone) and event.turn_id is not None
        settings = job.state.settings
        progress = narration_progress(event.turn_id, job.after)
        next_chunk, end_ms = progress.chunks, progress.end_ms
        pieces = narration_pieces(event.data.text, settings, self.sentences)
        for index, text in enumerate(pieces):
            if index in progress.done_pieces:
                continue
            events = await self._piece(event, settings, index, text, next_chunk, end_ms)
            if events:
                await job.append(events)
                chunks = [e for e in events if isinstance(e, ResponseAudioChunk)]
                next_chunk += len(chunks)
                if chunks:
                    end_ms = chunks[-1].data.end_ms or end_ms
        await job.append(
            [
                NarrationReady(
                    session_id=event.session_id,
                    turn_id=event.turn_id,
                    data=NarrationReadyData(chunk_count=next_chunk),
                )
            ]
        )

    async def _piece(
        self, done: ResponseDone, settings: SessionSettings, index: int, text: str, first: int,
        start_ms: int,
    ) -> list[Event]:
        """Piece ``index`` as events: its encoded chunks numbered from ``first`` and placed
        from ``start_ms``, or an ``error`` event when the synthesizer refused it."""
        session_id, turn_id = done.session_id, done.turn_id
        synthesize = synthesizer_for(self.tts, language=settings.language,
                                     voice=settings.voice, speed=settings.speech_speed)
        # a WAV's header went out with chunk 0: later pieces continue its stream
        output = AudioOutput.for_settings(settings, first_index=first, continues=first > 0,
                                          start_ms=start_ms)
        try:
            return [
                ResponseAudioChunk(session_id=session_id, turn_id=turn_id, data=data)
                async for data in speak([text], synthesize, output, first_piece=index)
            ]
        except VoxlineError as exc:
            if exc.transient:
                raise
            payload = error_payload(
                exc, stage="tts", code=ErrorCode.TTS_FAILED, recoverable=True,
                sentence_index=index, narration=True,
            )  # fmt: skip
            return [ErrorEvent(session_id=session_id, turn_id=turn_id, data=payload)]
