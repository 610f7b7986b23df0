"""The one text-to-audio path: AudioOutput numbers and encodes, speak() drives the speaker."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from pipeline.audio import decode_audio
from pipeline.reply import AudioOutput, pieces_of, speak, synthesizer_for
from schemas import AudioChunk, AudioChunkData, AudioFormat, EngineError, ErrorCode
from tests.support.engines import ScriptedTTS, scripted_audio


def tone(seconds: float, rate: int) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes()


def feed(output: AudioOutput, chunks: list[tuple[int, AudioChunk]]) -> list[AudioChunkData]:
    out = [data for index, chunk in chunks if (data := output.add(index, chunk)) is not None]
    if (tail := output.finish()) is not None:
        out.append(tail)
    output.close()
    return out


def test_raw_output_passes_engine_audio_through_and_numbers_it() -> None:
    chunks = [(0, AudioChunk(audio=b"\1\0" * 10, sample_rate=16000)),
              (0, AudioChunk(audio=b"\2\0" * 5, sample_rate=16000)),
              (1, AudioChunk(audio=b"\3\0" * 7, sample_rate=16000))]
    got = feed(AudioOutput(), chunks)
    assert [(d.chunk_index, d.sentence_index, d.audio) for d in got] == [
        (0, 0, b"\1\0" * 10), (1, 0, b"\2\0" * 5), (2, 1, b"\3\0" * 7)]
    assert {(d.format, d.sample_rate) for d in got} == {(AudioFormat.PCM16, 16000)}


def test_empty_encoder_output_is_merged_so_numbers_have_no_gaps() -> None:
    pcm = tone(1.0, 24000)
    slices = [pcm[i:i + 480] for i in range(0, len(pcm), 480)]  # 10 ms each: below a frame
    output = AudioOutput(AudioFormat.MP3, 24000)
    got = feed(output, [(i // 20, AudioChunk(audio=s, sample_rate=24000))
                        for i, s in enumerate(slices)])
    assert len(got) < len(slices)  # MP3 frames hold several slices back
    assert [d.chunk_index for d in got] == list(range(len(got))) and output.chunks == len(got)
    decoded = decode_audio(b"".join(d.audio for d in got), sample_rate=24000)
    assert abs(len(decoded) / 2 / 24000 - 1.0) < 0.1  # the tail was flushed


def test_wav_gets_one_header_and_a_continued_stream_none() -> None:
    pcm = tone(0.1, 24000)
    chunk = AudioChunk(audio=pcm, sample_rate=24000)
    first = feed(AudioOutput(AudioFormat.WAV, 24000), [(0, chunk)])
    assert first[0].audio[:4] == b"RIFF" and len(first[0].audio) == 44 + len(pcm)
    later = feed(AudioOutput(AudioFormat.WAV, 24000, first_index=3, continues=True),
                 [(2, chunk)])
    assert [(d.chunk_index, d.format, d.audio) for d in later] == [(3, AudioFormat.WAV, pcm)]


def test_a_mid_stream_rate_switch_is_resampled_to_the_first_rate() -> None:
    chunks = [(0, AudioChunk(audio=tone(0.5, 16000), sample_rate=16000)),
              (1, AudioChunk(audio=tone(0.5, 22050), sample_rate=22050))]
    got = feed(AudioOutput(AudioFormat.PCM16, 24000), chunks)
    samples = sum(len(d.audio) for d in got) // 2
    assert {d.sample_rate for d in got} == {24000}
    assert abs(samples - 24000) < 240  # one second at the output rate, within 10 ms


def test_finish_is_once_and_closes_the_output() -> None:
    output = AudioOutput(AudioFormat.MP3, 24000)
    output.add(0, AudioChunk(audio=tone(0.2, 24000), sample_rate=24000))
    assert output.finish() is not None
    assert output.finish() is None
    with pytest.raises(RuntimeError):
        output.add(0, AudioChunk(audio=b"\0\0", sample_rate=24000))
    assert AudioOutput().finish() is None  # no audio at all: nothing to flush


async def collect(pieces: list[str], tts: ScriptedTTS, **options: object) -> list[AudioChunkData]:
    synthesize = synthesizer_for(tts, language="en", voice=None, speed=1.0)
    return [d async for d in speak(pieces, synthesize, AudioOutput(), **options)]  # type: ignore[arg-type]


async def test_speak_keeps_piece_order_whatever_order_synthesis_finishes_in() -> None:
    # piece 0 is slow, piece 1 fast: with two at once, 1 finishes first and still goes second
    tts = ScriptedTTS(delay=lambda call, _k: 0.05 if call == 0 else 0.0)
    got = await collect(["One.", "Two."], tts, concurrency=2, first_piece=4)
    assert [(d.sentence_index, d.audio) for d in got] == [
        (4, scripted_audio("One.", 0)), (4, scripted_audio("One.", 1)),
        (5, scripted_audio("Two.", 0)), (5, scripted_audio("Two.", 1))]
    assert [d.chunk_index for d in got] == [0, 1, 2, 3]
    assert tts.max_active == 2


async def test_speak_raises_the_failed_piece_after_the_audio_before_it() -> None:
    tts = ScriptedTTS(fail_on={1})
    synthesize = synthesizer_for(tts, language="en", voice=None, speed=1.0)
    seen: list[int] = []
    with pytest.raises(EngineError) as caught:
        async for data in speak(["One.", "Two.", "Three."], synthesize, AudioOutput()):
            seen.append(data.sentence_index)
    assert caught.value.code is ErrorCode.TTS_FAILED
    assert seen == [0, 0]


async def test_leaving_speak_early_cancels_the_synthesis() -> None:
    tts = ScriptedTTS(delay=0.05, chunks_per_piece=50)
    synthesize = synthesizer_for(tts, language="en", voice=None, speed=1.0)
    stream = speak(["A long piece."], synthesize, AudioOutput())
    assert await anext(stream) is not None
    await stream.aclose()
    await asyncio.sleep(0)
    assert tts.running == [] and [r.outcome for r in tts.records] in (["cancelled"], ["closed"])


async def test_speak_with_no_pieces_ends_at_once() -> None:
    assert await collect([], ScriptedTTS()) == []


def test_pieces_are_cut_by_the_given_language() -> None:
    text = "Am 3. Oktober ist Feiertag. Dann gehen wir."
    assert pieces_of(text, "de") == ["Am 3. Oktober ist Feiertag.", "Dann gehen wir."]
    assert pieces_of(text, "en") == ["Am 3.", "Oktober ist Feiertag.", "Dann gehen wir."]
    assert pieces_of(text, "de-AT") == pieces_of(text, "de")
