"""Text pieces to ordered, numbered, encoded audio: the one path from text to sound.

Three callers turn text into audio: the live turn (pieces arrive while the LLM writes),
auto-play narration (a finished reply, piece by piece) and ``/v1/audio/speech`` (a text
from the client). All three build their synthesis requests with :func:`synthesizer_for`,
synthesize through an :class:`~pipeline.reply.speaker.OrderedSpeaker` (bounded concurrency,
audio strictly in piece order) and number and encode through an
:class:`~pipeline.reply.output.AudioOutput`. The live turn drives the speaker inside its
own event loop (it interleaves text and audio events); the other two have the whole text
up front and use :func:`speak`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from dataclasses import replace
from typing import assert_never

from pipeline.engines import Synthesizer
from pipeline.reply.items import AudioEnd, PieceFailed, SpeakerItem, SpokenChunk
from pipeline.reply.outbox import Outbox
from pipeline.reply.output import AudioOutput
from pipeline.reply.sentences import SentenceBufferConfig, split_text
from pipeline.reply.speaker import OrderedSpeaker, Synthesize
from schemas import AudioChunk, AudioChunkData, SynthesisRequest

__all__ = ["pieces_of", "speak", "synthesizer_for"]


def synthesizer_for(
    tts: Synthesizer, *, language: str, voice: str | None, speed: float
) -> Synthesize:
    """A function from a piece of text to the engine's audio stream, in one voice."""

    def synthesize(text: str) -> AsyncIterator[AudioChunk]:
        request = SynthesisRequest(text=text, language=language, voice=voice, speed=speed)
        return tts.synthesize(request)

    return synthesize


def pieces_of(
    text: str,
    language: str,
    *,
    min_sentence_chars: int | None = None,
    config: SentenceBufferConfig | None = None,
) -> list[str]:
    """The speakable pieces of a whole ``text``, cut by the rules of ``language`` as a live
    turn would cut them (empty pieces dropped)."""
    config = replace(config or SentenceBufferConfig(), language=language)
    if min_sentence_chars is not None:
        config = replace(config, min_sentence_chars=min_sentence_chars)
    return [piece for piece in split_text(text, config) if piece.strip()]


async def speak(
    pieces: Iterable[str],
    synthesize: Synthesize,
    output: AudioOutput,
    *,
    first_piece: int = 0,
    concurrency: int = 1,
    chunk_buffer: int = 16,
    shutdown_grace_s: float = 1.0,
) -> AsyncGenerator[AudioChunkData, None]:
    """Yield the encoded audio of ``pieces`` in order, numbered by ``output``; then its tail.

    Piece *k* of ``pieces`` is ``sentence_index`` ``first_piece + k``. Up to ``concurrency``
    pieces are synthesized at once (the next one starts while the current one is sent).
    **Errors:** the first piece whose synthesis fails raises its exception here, after the
    audio of the pieces before it (the output is not flushed then). **Ending early**
    (``aclose()``, a cancelled task) cancels every synthesis and waits for the engines,
    at most ``shutdown_grace_s``. The output is closed when the stream ends, however it ends.
    """
    texts = list(pieces)
    out: Outbox[SpeakerItem] = Outbox(chunk_buffer)
    speaker = OrderedSpeaker(synthesize, out, concurrency=concurrency,
                             max_pending=max(concurrency, 1) + 1, chunk_buffer=chunk_buffer)

    async def submit() -> None:
        for k, text in enumerate(texts):
            await speaker.submit(first_piece + k, text)
        speaker.close()

    tasks = [asyncio.create_task(submit(), name="speak-submit"),
             asyncio.create_task(speaker.forward(), name="speak-forward")]
    try:
        while True:
            item = await out.get()
            match item:
                case SpokenChunk():
                    if (data := output.add(item.index, item.chunk)) is not None:
                        yield data
                case PieceFailed():
                    raise item.error
                case AudioEnd():
                    if (tail := output.finish()) is not None:
                        yield tail
                    return
                case _:
                    assert_never(item)
    finally:
        for task in tasks:
            task.cancel()
        speaker.cancel()
        await asyncio.wait(tasks, timeout=shutdown_grace_s)
        await speaker.wait_stopped(shutdown_grace_s)
        output.close()
