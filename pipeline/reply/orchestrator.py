"""The turn orchestrator: LLM token stream → sentence buffer → TTS per piece → ordered audio.

:meth:`ReplyOrchestrator.run` is an async generator of the events of one response. It never
touches the log: the caller appends each event before sending it. The contract:

**What is yielded**, in this order per response (``id`` stays ``None``; ``ts`` is now)::

    response.started                   always first; data.mode: streaming | sequential | text
    response.text.delta*               coalesced deltas; the first one goes out at once
    response.sentence*                 each piece when the sentence buffer cuts it
    response.audio.chunk*              strictly in piece order, numbered and encoded by the
                                       run's AudioOutput (default: raw PCM16 at the engine's
                                       rate); its flushed tail, if any, comes last
    tool.call.started*                 the model called a tool (``tools``): a server call
                                       runs only once the consumer asked for the next event
                                       (it appended this one); a client call ends the reply
    tool.call.output | .failed         a server call's outcome; the model goes on with it
    error*                             stage tts: that piece failed, the turn goes on;
                                       stage llm: the reply broke off (recoverable false)
    response.audio.done                not in text mode
    response.done                      full text, status completed | failed
  or
    tool.call.cancelled*               each call started and not ended, then
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

**Tools.** The model may call tools in rounds (:mod:`pipeline.reply.reader`): the words
before a call are cut and spoken while it runs, the model is asked again with the outputs,
and the reply's deltas and pieces go on in one response. A consumer that cannot append a
``tool.call.started`` throws :class:`EventLogError` into the generator (``athrow``): the
call is not run and the reply fails.

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
import logging
from collections.abc import AsyncGenerator, Callable, Coroutine
from dataclasses import replace
from typing import Any, assert_never

from pipeline.engines import LanguageModel, Synthesizer
from pipeline.reply.cancel import CancelReason, CancelToken
from pipeline.reply.config import ReplyConfig, ReplyStats
from pipeline.reply.events import Emitter, error_payload
from pipeline.reply.items import (
    CANCELLED,
    AudioEnd,
    CallEnded,
    CallsMade,
    Cancelled,
    Failure,
    Piece,
    PieceFailed,
    SpokenChunk,
    TextEnd,
    TurnItem,
)
from pipeline.reply.outbox import Outbox
from pipeline.reply.output import AudioOutput
from pipeline.reply.reader import ReplyReader
from pipeline.reply.sentences import SentenceBuffer
from pipeline.reply.speaker import OrderedSpeaker
from pipeline.reply.text_to_audio import synthesizer_for
from pipeline.reply.tools import ResponseTools
from schemas import (
    ErrorCode,
    ErrorPayload,
    Event,
    EventLogError,
    GenerationRequest,
    ResponseMode,
    SessionSettings,
)

__all__ = [
    "CancelReason",
    "CancelToken",
    "ReplyOrchestrator",
    "ResponseMode",
    "error_payload",
]

logger = logging.getLogger(__name__)

class ReplyOrchestrator:
    """Runs responses: one LLM, an optional synthesizer, one :class:`ReplyConfig`.

    Holds no per-response state, so one orchestrator serves any number of concurrent
    responses (sessions).
    """

    def __init__(
        self, llm: LanguageModel, tts: Synthesizer | None = None, config: ReplyConfig | None = None
    ) -> None:
        self.llm = llm
        self.tts = tts
        self.config = config if config is not None else ReplyConfig()

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
        stats: ReplyStats | None = None,
        output: AudioOutput | None = None,
        tools: ResponseTools | None = None,
    ) -> AsyncGenerator[Event, None]:
        """Yield the events of one response (see the module docstring for the contract).

        ``output`` numbers and encodes the audio (a live session passes
        ``AudioOutput.for_settings(settings)``); it is closed when the run ends.
        ``tools``: what the model may call (none: a call fails the reply).
        """
        cfg = self.config
        token = cancel if cancel is not None else CancelToken()
        stats = stats if stats is not None else ReplyStats()
        output = output if output is not None else AudioOutput()
        mode = self.mode_for(settings)
        emit = Emitter(session_id, turn_id)
        out: Outbox[TurnItem] = Outbox(cfg.outbox_size)
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
        reader = ReplyReader(self.llm, request, buffer, speaker, out, stats,
                             sequential=mode == "sequential", tools=tools)
        tasks = [asyncio.create_task(_guard(reader.read, out), name=f"llm-{turn_id}")]
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
            carry: TurnItem | None = None  # an item fetched while deltas were held
            open_calls: dict[str, str] = {}  # calls started and not ended: id → name
            while not (text_done and audio_done):
                if token.cancelled:
                    break
                item: TurnItem | None
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
                        item = None  # the held deltas' window closed
                match item:
                    case str():  # a delta: held, to go out with the next ones
                        if not held:
                            deadline = loop.time() + window
                        held.append(item)
                        held_chars += len(item)
                        if not (first_delta or window <= 0
                                or len(held) >= cfg.delta_coalesce_tokens
                                or held_chars >= cfg.delta_coalesce_chars):
                            continue
                    case Cancelled():
                        break
                    case _ if held:  # anything else waits for the deltas held before it
                        carry = item  # (handled next time round)
                    case None:  # the window closed with nothing held: nothing to send
                        pass
                    case SpokenChunk():
                        stats.chunks += 1
                        if (data := output.add(item.index, item.chunk)) is not None:
                            yield emit.chunk(data)
                    case Piece():
                        yield emit.sentence(item)
                    case PieceFailed():
                        yield emit.error(error_payload(
                            item.error, stage="tts", code=ErrorCode.TTS_FAILED,
                            recoverable=True, sentence_index=item.index))
                    case CallsMade():
                        try:
                            for started in item.calls:
                                open_calls[started.call.id] = started.call.name
                                yield emit.tool_started(started)
                        except EventLogError:  # not in the log: not run
                            item.logged.set_result(False)
                        if not item.logged.done():
                            item.logged.set_result(True)
                    case CallEnded():
                        open_calls.pop(item.call_id, None)
                        yield emit.tool_ended(item.call_id, item.outcome)
                    case Failure():
                        failed = True
                        yield emit.error(item.payload)
                        if item.abort:
                            break
                    case TextEnd():
                        text_done = True
                    case AudioEnd():
                        audio_done = True
                    case _:
                        assert_never(item)
                if held:  # a delta that ends the window, or an item after the held ones
                    stats.delta_events += 1
                    first_delta = False
                    text = "".join(held)
                    held.clear()
                    held_chars = 0
                    yield emit.delta(text)
            await self._stop(tasks, speaker)
            if (tail := output.finish()) is not None:  # what the encoder still held
                yield emit.chunk(tail)
            if speaker is not None and not token.cancelled:
                yield emit.audio_done(output.chunks)
            if token.cancelled:
                for call_id, name in open_calls.items():  # stopped, or no longer awaited
                    if tools is None or not tools.finishes(name):  # else it logs its end
                        yield emit.tool_cancelled(call_id, token.reason or "client")
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
                stats.early_pieces = speaker.prepared_adopted
                stats.early_pieces_dropped = speaker.prepared_dropped

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


async def _guard(
    work: Callable[[], Coroutine[Any, Any, None]], out: Outbox[TurnItem]
) -> None:
    """Run one stage; a bug in it ends the turn with an internal error, not a hang."""
    try:
        await work()
    except Exception as exc:
        logger.exception("turn stage crashed")
        payload = ErrorPayload(code=ErrorCode.INTERNAL_ERROR, message="the turn failed",
                               recoverable=False, details={"exception": type(exc).__name__})
        out.put(Failure(payload, abort=True))
