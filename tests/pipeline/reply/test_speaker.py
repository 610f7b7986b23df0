"""``OrderedSpeaker.prepare``: a piece synthesized before it is submitted, adopted only when
the submitted piece is the same, and never a slot lost to a dropped guess."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from pipeline.reply.items import AUDIO_END, SpeakerItem, SpokenChunk
from pipeline.reply.outbox import Outbox
from pipeline.reply.speaker import OrderedSpeaker
from schemas import AudioChunk

HANG = 5.0


class Engine:
    """Synthesizes a text as one chunk holding its bytes; records what it was asked and
    what it finished, and holds every synthesis until ``release`` while ``held``."""

    def __init__(self, held: bool = False) -> None:
        self.asked: list[str] = []
        self.finished: list[str] = []
        self.cancelled: list[str] = []
        self.gate = asyncio.Event()
        if not held:
            self.gate.set()

    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        self.asked.append(text)
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled.append(text)
            raise
        self.finished.append(text)
        yield AudioChunk(audio=text.encode().ljust(2 * len(text), b"\0"), sample_rate=16000)


def speaker_of(engine: Engine, concurrency: int = 2) -> tuple[OrderedSpeaker, Outbox[SpeakerItem]]:
    sink: Outbox[SpeakerItem] = Outbox(64)
    return OrderedSpeaker(engine.synthesize, sink, concurrency=concurrency, max_pending=4,
                          chunk_buffer=4), sink


async def spoken(speaker: OrderedSpeaker, sink: Outbox[SpeakerItem]) -> list[str]:
    """The texts whose audio reached the sink, in order, up to AUDIO_END."""
    await asyncio.wait_for(speaker.forward(), HANG)
    texts: list[str] = []
    while (item := await sink.get()) is not AUDIO_END:
        assert isinstance(item, SpokenChunk)
        texts.append(item.chunk.audio.rstrip(b"\0").decode())
    return texts


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_prepared_piece_submitted_as_it_was_is_synthesized_once() -> None:
    engine = Engine()
    speaker, sink = speaker_of(engine)
    speaker.prepare(0, "The capital of France")
    await settle()
    assert engine.finished == ["The capital of France"]  # before it was submitted
    await speaker.submit(0, "The capital of France")
    await speaker.submit(1, "is Paris.")
    speaker.close()
    assert await spoken(speaker, sink) == ["The capital of France", "is Paris."]
    assert engine.asked == ["The capital of France", "is Paris."]
    assert (speaker.prepared_adopted, speaker.prepared_dropped) == (1, 0)


async def test_a_piece_that_differs_from_the_prepared_one_replaces_it() -> None:
    engine = Engine(held=True)
    speaker, sink = speaker_of(engine)
    speaker.prepare(0, "The capital of Ott")
    await settle()
    await speaker.submit(0, "The capital of Ottawa")
    await settle()
    assert engine.cancelled == ["The capital of Ott"]
    engine.gate.set()
    speaker.close()
    assert await spoken(speaker, sink) == ["The capital of Ottawa"]  # the guess never heard
    assert (speaker.prepared_adopted, speaker.prepared_dropped) == (0, 1)
    assert speaker.active == 0


async def test_a_guess_dropped_before_it_ran_frees_its_slot() -> None:
    engine = Engine()
    speaker, sink = speaker_of(engine, concurrency=1)
    speaker.prepare(0, "The capital of Ott")
    speaker.prepare(0, "The capital of Ottawa")  # at once: the first task never started,
    await settle()  # and its slot was not free yet, so the second is not prepared
    assert engine.asked == []
    assert speaker.active == 0
    await speaker.submit(0, "The capital of Ottawa")
    await speaker.submit(1, "is the capital.")  # the one slot serves them in turn
    speaker.close()
    assert await spoken(speaker, sink) == ["The capital of Ottawa", "is the capital."]
    assert (speaker.prepared_adopted, speaker.prepared_dropped) == (0, 1)


async def test_nothing_is_prepared_without_a_free_slot_or_after_a_cancel() -> None:
    engine = Engine(held=True)
    speaker, _ = speaker_of(engine, concurrency=1)
    await speaker.submit(0, "One.")
    speaker.prepare(1, "Two")
    await settle()
    assert engine.asked == ["One."]
    speaker.cancel()
    speaker.prepare(1, "Two")
    await settle()
    assert engine.asked == ["One."]
    assert await speaker.wait_stopped(HANG)


async def test_closing_drops_a_guess_no_piece_confirmed() -> None:
    engine = Engine(held=True)
    speaker, sink = speaker_of(engine)
    speaker.prepare(0, "The capital of")
    await settle()
    speaker.close()
    assert await spoken(speaker, sink) == []
    await settle()
    assert engine.cancelled == ["The capital of"] and speaker.active == 0
