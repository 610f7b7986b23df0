"""The turn orchestrator: LLM token stream → sentence buffer → TTS per piece → ordered audio.

:meth:`TurnOrchestrator.run` is an async generator of the events of one response. It never
touches the log: the caller appends each event before sending it. The contract:

**What is yielded**, in this order per response (``id`` stays ``None``; ``ts`` is now)::

    response.started                   always first; data.mode: streaming | sequential | text
    response.text.delta*               coalesced deltas; the first one goes out at once
    response.sentence*                 each piece when the sentence buffer cuts it
    response.audio.chunk*              strictly in piece order, numbered and encoded by the
                                       run's AudioOutput (default: raw PCM16 at the engine's
                                       rate); its flushed tail, if any, comes last
    error*                             stage tts: that piece failed, the turn goes on;
                                       stage llm: the reply broke off (recoverable false)
    response.audio.done                not in text mode
    response.done                      full text, status completed | failed
  or
    response.cancelled                 instead of the two above; nothing follows it

Deltas, sentences and audio interleave freely; a sentence event precedes its audio; the
deltas sent before ``response.sentence`` *k* cover the reply text that pieces 0..k were cut
from (a piece is the speakable form of its text: markdown removed).

**Modes.** ``streaming``: each piece goes to TTS as soon as it is cut, while the LLM keeps
writing. ``sequential``: the whole reply first, then its pieces go to TTS (the baseline that
benchmarks compare against, same engines, same pieces, same audio). ``text``: no synthesizer,
or ``settings.realtime_tts`` is off; the sentence events are still emitted (clients and
auto-play narration get the pieces), no audio events and no ``response.audio.done``.

**Bounds.** At most ``max_pending_pieces`` pieces are admitted to TTS and not yet sent; when
that many are pending the orchestrator stops pulling from the LLM (backpressure). At most
``tts_concurrency`` syntheses run at once, each buffers ``chunk_buffer`` chunks at most, and
about ``outbox_size`` events wait for the consumer (a slow consumer stops the LLM too). In
sequential mode the reply is held whole (bounded by ``sampling.max_tokens``).

**Errors.** A synthesis failure yields ``error`` (stage ``tts``, ``tts_failed`` unless the
engine raised a more specific :class:`VoxlineError` code) and the next piece is spoken. An
LLM failure yields ``error`` (stage ``llm``, ``llm_failed``); the pieces cut before it are
still spoken, the unfinished tail is not, and ``response.done`` says ``failed``.

**Cancellation.** :meth:`CancelToken.cancel` cancels the LLM stream and every synthesis at
once (synchronously, from the callback); the engines see ``CancelledError`` (or
``GeneratorExit`` via ``aclose()``), then ``response.cancelled`` is yielded with what was
already yielded. If the consumer instead calls ``aclose()`` or cancels its task, nothing more
is yielded but the engines are cancelled all the same (in ``finally``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncGenerator, Callable, Coroutine
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pipeline.aio import aclose_stream
from pipeline.engines import LanguageModel, Synthesizer
from pipeline.turn.cancel import CancelReason, CancelToken
from pipeline.turn.events import (
    CANCELLED,
    TEXT_END,
    Emitter,
    Failure,
    Piece,
    error_payload,
)
from pipeline.turn.outbox import Outbox
from pipeline.turn.output import AudioOutput
from pipeline.turn.sentences import VOICE_FIRST_PIECE, SentenceBuffer, SentenceBufferConfig
from pipeline.turn.speaker import (
    SPEECH_END,
    OrderedSpeaker,
    PieceFailed,
    SpokenChunk,
)
from pipeline.turn.text_to_audio import synthesizer_for
from schemas import (
    ConfigurationError,
    ErrorCode,
    ErrorPayload,
    Event,
    GenerationRequest,
    ResponseMode,
    SessionSettings,
)

__all__ = [
    "CancelReason",
    "CancelToken",
    "ResponseMode",
    "TurnConfig",
    "TurnMode",
    "TurnOrchestrator",
    "TurnStats",
    "error_payload",
]

logger = logging.getLogger(__name__)

#: How a response with audio is produced (``text`` mode follows from the settings).
TurnMode = Literal["streaming", "sequential"]


@dataclass(frozen=True, slots=True)
class TurnConfig:
    """Knobs of the orchestrator (per deployment, not per session)."""

    mode: TurnMode = "streaming"
    #: syntheses running at once; the next piece starts while the current one speaks
    tts_concurrency: int = 2
    #: pieces admitted to TTS and not yet sent; beyond it the LLM is not read (backpressure)
    max_pending_pieces: int = 4
    #: chunks one synthesis may buffer before it waits for its turn to be sent
    chunk_buffer: int = 16
    #: events waiting for the consumer (a soft bound, see pipeline.turn.outbox)
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
                raise ConfigurationError(f"TurnConfig.{name} must be at least 1", setting=name)
        if self.delta_coalesce_ms < 0 or self.shutdown_grace_s < 0:
            raise ConfigurationError("TurnConfig durations must not be negative")


@dataclass(slots=True)
class TurnStats:
    """What one run did; pass one to :meth:`TurnOrchestrator.run` to read it afterwards."""

    tokens: int = 0
    pieces: int = 0
    delta_events: int = 0
    chunks: int = 0
    #: the most pieces admitted to TTS and not yet sent, at once (≤ max_pending_pieces)
    max_pieces_pending: int = 0
    #: the most syntheses running at once (≤ tts_concurrency)
    max_tts_active: int = 0


class TurnOrchestrator:
    """Runs responses: one LLM, an optional synthesizer, one :class:`TurnConfig`.

    Holds no per-response state, so one orchestrator serves any number of concurrent
    responses (sessions).
    """

    def __init__(
        self, llm: LanguageModel, tts: Synthesizer | None = None, config: TurnConfig | None = None
    ) -> None:
        self.llm = llm
        self.tts = tts
        self.config = config if config is not None else TurnConfig()

    def mode_for(self, settings: SessionSettings) -> ResponseMode:
        if self.tts is None or not settings.realtime_tts:
            return "text"
        return settings.speech_mode or self.config.mode

    async def run(
        self,
        *,
        session_id: str,
        turn_id: str,
        request: GenerationRequest,
        settings: SessionSettings,
        cancel: CancelToken | None = None,
        input_event_id: str | None = None,
        stats: TurnStats | None = None,
        output: AudioOutput | None = None,
    ) -> AsyncGenerator[Event, None]:
        """Yield the events of one response (see the module docstring for the contract).

        ``output`` numbers and encodes the audio (a live session passes
        ``AudioOutput.for_settings(settings)``); it is closed when the run ends.
        """
        cfg = self.config
        token = cancel if cancel is not None else CancelToken()
        stats = stats if stats is not None else TurnStats()
        output = output if output is not None else AudioOutput()
        mode = self.mode_for(settings)
        emit = Emitter(session_id, turn_id)
        out = Outbox(cfg.outbox_size)
        speaker = None
        if mode != "text":
            assert self.tts is not None
            synthesize = synthesizer_for(self.tts, language=settings.language,
                                         voice=settings.voice, speed=settings.speech_speed)
            speaker = OrderedSpeaker(
                synthesize, out, concurrency=cfg.tts_concurrency,
                max_pending=cfg.max_pending_pieces, chunk_buffer=cfg.chunk_buffer)
        buffer = SentenceBuffer(replace(cfg.sentences, language=settings.language,
                                        min_sentence_chars=settings.min_sentence_chars))
        # stages start as factories: a task cancelled before its first step leaves no
        # never-awaited coroutine behind
        reader = functools.partial(
            self._read, request, buffer, speaker, out, stats, mode == "sequential")
        tasks = [asyncio.create_task(_guard(reader, out), name=f"llm-{turn_id}")]
        if speaker is not None:
            tasks.append(asyncio.create_task(_guard(speaker.forward, out), name=f"tts-{turn_id}"))

        def interrupt(_: CancelReason) -> None:
            for task in tasks:
                task.cancel()
            if speaker is not None:
                speaker.cancel()
            out.replace_all(CANCELLED)  # what was queued is never sent

        remove_callback = token.add_callback(interrupt)
        try:
            yield emit.started(mode, input_event_id)
            loop = asyncio.get_running_loop()
            window = cfg.delta_coalesce_ms / 1000
            held: list[str] = []  # deltas not yet sent, coalescing
            held_chars = 0
            deadline = 0.0
            first_delta = True
            text_done, audio_done, failed = False, speaker is None, False
            carry: object = None  # an item fetched while deltas were held
            while not (text_done and audio_done):
                if token.cancelled:
                    break
                if carry is not None:
                    item, carry = carry, None
                elif not held:
                    item = await out.get()
                elif not out.empty():
                    item = out.get_nowait()
                else:
                    try:
                        async with asyncio.timeout_at(deadline):
                            item = await out.get()
                    except TimeoutError:
                        item = None
                if isinstance(item, str):
                    if not held:
                        deadline = loop.time() + window
                    held.append(item)
                    held_chars += len(item)
                    if not (first_delta or window <= 0 or len(held) >= cfg.delta_coalesce_tokens
                            or held_chars >= cfg.delta_coalesce_chars):
                        continue
                    item = None
                if held and item is not CANCELLED:
                    carry = item
                    stats.delta_events += 1
                    first_delta = False
                    text = "".join(held)
                    held.clear()
                    held_chars = 0
                    yield emit.delta(text)
                elif isinstance(item, SpokenChunk):
                    stats.chunks += 1
                    if (data := output.add(item.index, item.chunk)) is not None:
                        yield emit.chunk(data)
                elif isinstance(item, Piece):
                    yield emit.sentence(item)
                elif isinstance(item, PieceFailed):
                    yield emit.error(error_payload(
                        item.error, stage="tts", code=ErrorCode.TTS_FAILED, recoverable=True,
                        sentence_index=item.index))
                elif isinstance(item, Failure):
                    failed = True
                    yield emit.error(item.payload)
                    if item.abort:
                        break
                elif item is TEXT_END:
                    text_done = True
                elif item is SPEECH_END:
                    audio_done = True
                elif item is CANCELLED:
                    break
            await self._stop(tasks, speaker)
            if (tail := output.finish()) is not None:  # what the encoder still held
                yield emit.chunk(tail)
            if speaker is not None and not token.cancelled:
                yield emit.audio_done(output.chunks)
            if token.cancelled:
                yield emit.cancelled(token.reason or "client", output.chunks)
                return
            yield emit.done("failed" if failed else "completed")
        finally:
            remove_callback()
            output.close()
            await self._stop(tasks, speaker)
            if speaker is not None:
                stats.max_pieces_pending = speaker.max_pending_seen
                stats.max_tts_active = speaker.max_active_seen

    # -- the LLM side ----------------------------------------------------------------------

    async def _read(
        self,
        request: GenerationRequest,
        buffer: SentenceBuffer,
        speaker: OrderedSpeaker | None,
        out: Outbox,
        stats: TurnStats,
        sequential: bool,
    ) -> None:
        """Pull the LLM stream: every delta to ``out``, every piece to ``out`` and to TTS."""
        held: list[Piece] = []  # sequential mode: pieces wait for the end of the reply

        async def cut(text: str) -> None:
            if not text.strip():
                return
            piece = Piece(stats.pieces, text)
            stats.pieces += 1
            out.put(piece)
            if speaker is None:
                return
            if sequential:
                held.append(piece)
            else:
                await speaker.submit(piece.index, piece.text)  # waits while TTS is behind
                await asyncio.sleep(0)  # its synthesis starts now, even if the LLM never waits

        failure: Exception | None = None
        stream = self.llm.generate(request)
        try:
            while True:
                if out.full():  # the consumer is behind: pull no more
                    await out.wait_room()
                try:
                    delta = await anext(stream)
                except StopAsyncIteration:
                    break
                except Exception as exc:
                    failure = exc
                    break
                if not delta:
                    continue
                stats.tokens += 1
                out.put(delta)
                for text in buffer.push(delta):
                    await cut(text)
        finally:
            await aclose_stream(stream)
        if failure is None:
            for text in buffer.flush():
                await cut(text)
        else:
            payload = error_payload(failure, stage="llm", code=ErrorCode.LLM_FAILED,
                                    recoverable=False)
            out.put(Failure(payload, abort=False))
        if speaker is not None:
            for piece in held:
                await speaker.submit(piece.index, piece.text)
            speaker.close()
        out.put(TEXT_END)

    async def _stop(self, tasks: list[asyncio.Task[None]], speaker: OrderedSpeaker | None) -> None:
        """Cancel whatever still runs and wait (bounded) until the engines let go."""
        for task in tasks:
            task.cancel()
        if speaker is not None:
            speaker.cancel()
        grace = self.config.shutdown_grace_s
        running = [task for task in tasks if not task.done()]
        if running:
            _, still = await asyncio.wait(running, timeout=grace)
            if still:
                logger.warning("turn stage(s) ignored cancellation: %s", still)
        if speaker is not None:
            await speaker.wait_stopped(grace)


async def _guard(work: Callable[[], Coroutine[Any, Any, None]], out: Outbox) -> None:
    """Run one stage; a bug in it ends the turn with an internal error, not a hang."""
    try:
        await work()
    except Exception as exc:
        logger.exception("turn stage crashed")
        payload = ErrorPayload(code=ErrorCode.INTERNAL_ERROR, message="the turn failed",
                               recoverable=False, details={"exception": type(exc).__name__})
        out.put(Failure(payload, abort=True))
