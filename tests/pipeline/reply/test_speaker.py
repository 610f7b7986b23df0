"""``OrderedSpeaker.prepare``: a piece synthesized before it is submitted, adopted only when
the submitted piece is the same, and never a slot lost to a dropped guess."""

from __future__ import annotations

import asyncio

from pipeline.reply import synthesizer_for
from pipeline.reply.items import AUDIO_END, SpeakerItem, SpokenChunk
from pipeline.reply.outbox import Outbox
from pipeline.reply.speaker import OrderedSpeaker
from tests.support.engines import ScriptedTTS, scripted_audio

HANG = 5.0


def speaker_of(
    tts: ScriptedTTS, concurrency: int = 2
) -> tuple[OrderedSpeaker, Outbox[SpeakerItem]]:
    sink: Outbox[SpeakerItem] = Outbox(64)
    synthesize = synthesizer_for(tts, language="en", voice=None, speed=1.0)
    return OrderedSpeaker(synthesize, sink, concurrency=concurrency, max_pending=4,
                          chunk_buffer=4), sink


def audio_of(*texts: str) -> list[bytes]:
    """What one chunk a piece of each of ``texts`` sounds like."""
    return [scripted_audio(text, 0) for text in texts]


async def spoken(speaker: OrderedSpeaker, sink: Outbox[SpeakerItem]) -> list[bytes]:
    """The audio that reached the sink, in order, up to AUDIO_END."""
    await asyncio.wait_for(speaker.forward(), HANG)
    audio: list[bytes] = []
    while (item := await sink.get()) is not AUDIO_END:
        assert isinstance(item, SpokenChunk)
        audio.append(item.chunk.audio)
    return audio


def labels(tts: ScriptedTTS) -> list[str]:
    return [record.label for record in tts.records]


def release(tts: ScriptedTTS, syntheses: int = 10) -> None:
    assert tts.gate is not None
    for _ in range(syntheses):
        tts.gate.release()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_prepared_piece_submitted_as_it_was_is_synthesized_once() -> None:
    tts = ScriptedTTS(chunks_per_piece=1)
    speaker, sink = speaker_of(tts)
    speaker.prepare(0, "The capital of France")
    await settle()
    assert tts.completed == 1  # before it was submitted
    await speaker.submit(0, "The capital of France")
    await speaker.submit(1, "is Paris.")
    speaker.close()
    assert await spoken(speaker, sink) == audio_of("The capital of France", "is Paris.")
    assert labels(tts) == ["The capital of France", "is Paris."]
    assert (speaker.prepared_adopted, speaker.prepared_dropped) == (1, 0)


async def test_a_piece_that_differs_from_the_prepared_one_replaces_it() -> None:
    tts = ScriptedTTS(chunks_per_piece=1, gated=True)
    speaker, sink = speaker_of(tts)
    speaker.prepare(0, "The capital of Ott")
    await settle()
    await speaker.submit(0, "The capital of Ottawa")
    await settle()
    assert [r.label for r in tts.interrupted] == ["The capital of Ott"]
    release(tts)
    speaker.close()
    assert await spoken(speaker, sink) == audio_of("The capital of Ottawa")  # the guess unheard
    assert (speaker.prepared_adopted, speaker.prepared_dropped) == (0, 1)
    assert speaker.active == 0


async def test_a_guess_dropped_before_it_ran_frees_its_slot() -> None:
    tts = ScriptedTTS(chunks_per_piece=1)
    speaker, sink = speaker_of(tts, concurrency=1)
    speaker.prepare(0, "The capital of Ott")
    speaker.prepare(0, "The capital of Ottawa")  # at once: the first task never started,
    await settle()  # and its slot was not free yet, so the second is not prepared
    assert labels(tts) == []
    assert speaker.active == 0
    await speaker.submit(0, "The capital of Ottawa")
    await speaker.submit(1, "is the capital.")  # the one slot serves them in turn
    speaker.close()
    assert await spoken(speaker, sink) == audio_of("The capital of Ottawa", "is the capital.")
    assert (speaker.prepared_adopted, speaker.prepared_dropped) == (0, 1)


async def test_nothing_is_prepared_without_a_free_slot_or_after_a_cancel() -> None:
    tts = ScriptedTTS(chunks_per_piece=1, gated=True)
    speaker, _ = speaker_of(tts, concurrency=1)
    await speaker.submit(0, "One.")
    speaker.prepare(1, "Two")
    await settle()
    assert labels(tts) == ["One."]
    speaker.cancel()
    speaker.prepare(1, "Two")
    await settle()
    assert labels(tts) == ["One."]
    assert await speaker.wait_stopped(HANG)


async def test_closing_drops_a_guess_no_piece_confirmed() -> None:
    tts = ScriptedTTS(chunks_per_piece=1, gated=True)
    speaker, sink = speaker_of(tts)
    speaker.prepare(0, "The capital of")
    await settle()
    speaker.close()
    assert await spoken(speaker, sink) == []
    await settle()
    assert [r.label for r in tts.interrupted] == ["The capital of"] and speaker.active == 0
