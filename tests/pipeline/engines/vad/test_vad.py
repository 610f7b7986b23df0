"""Silero VAD on real speech (both packaged exports): where speech starts and stops,
streamed as a socket would.

The audio is Piper's English and espeak-ng's German laid between silences of known
length over a faint noise floor; the true boundaries are where the clips' audible parts
begin and end (see ``audio_fixtures.compose``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import numpy as np
import pytest

from pipeline.audio import EndpointConfig, SpeechEnd, SpeechStart, segment_speech
from pipeline.engines import create_engine
from pipeline.engines.vad.silero import SileroVoiceActivityDetector
from schemas import ErrorCode, InvalidAudioError, ModelMissingError
from tests.support.audio_fixtures import (
    ENGLISH_SENTENCES,
    GERMAN_SENTENCES,
    Composition,
    compose,
    espeak_available,
    espeak_float,
    piper_float,
)

pytestmark = pytest.mark.models


@pytest.fixture(scope="module", params=["silero-vad", "silero-vad-v6"])
def vad(request: pytest.FixtureRequest) -> Iterator[SileroVoiceActivityDetector]:
    """Both packaged exports: the batched one (the default) and faster-whisper's."""
    detector = create_engine("vad", "silero", {"model": request.param})
    assert isinstance(detector, SileroVoiceActivityDetector)
    detector.load_sync()
    yield detector


@pytest.fixture(scope="module")
def speech_with_pauses() -> Composition:
    clips = [piper_float(s) for s in ENGLISH_SENTENCES[:3]]
    if espeak_available():
        clips.append(espeak_float(GERMAN_SENTENCES[1]))
    gaps = [1.0, 1.2, 0.8, 1.5, 1.0][: len(clips) + 1]
    return compose(clips, gaps)


async def chunked(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_finds_speech_segments_within_100_ms(
    vad: SileroVoiceActivityDetector, speech_with_pauses: Composition
) -> None:
    # Odd chunk sizes, as a socket delivers them: the assembler makes 512-sample frames.
    events = [
        e
        async for e in segment_speech(
            chunked(speech_with_pauses.pcm16, 1234), vad, EndpointConfig()
        )
    ]
    starts = [e.audio_ms for e in events if isinstance(e, SpeechStart)]
    ends = [e for e in events if isinstance(e, SpeechEnd)]
    truth = speech_with_pauses.segments_ms
    print("\ntrue segments ms:", truth)
    print("found          ms:", list(zip(starts, [e.audio_ms for e in ends], strict=False)))
    assert len(starts) == len(ends) == len(truth)
    for (true_start, true_end), start, end in zip(truth, starts, ends, strict=True):
        assert abs(start - true_start) <= 100
        assert abs(end.audio_ms - true_end) <= 100
        assert end.reason == "silence"
        # The utterance holds the speech plus the padding around it.
        assert end.start_ms <= true_start and end.start_ms + end.duration_s * 1000 >= true_end


def test_streaming_state_equals_one_batched_call(
    vad: SileroVoiceActivityDetector, speech_with_pauses: Composition
) -> None:
    pcm = speech_with_pauses.pcm16
    n = len(pcm) // 1024
    stream = vad.stream()
    one_by_one = np.array([stream.process(pcm[i * 1024 : (i + 1) * 1024]) for i in range(n)])
    batched = vad.stream().process_many(
        np.frombuffer(pcm[: n * 1024], "<i2").astype(np.float32) / 32768
    )
    assert np.allclose(one_by_one, batched, atol=1e-4)
    assert one_by_one.max() > 0.9 and one_by_one.min() < 0.1


def test_quiet_noise_is_not_speech(vad: SileroVoiceActivityDetector) -> None:
    rng = np.random.default_rng(3)
    noise = (rng.normal(0, 0.003, 512 * 60) * 32768).astype("<i2")
    stream = vad.stream()
    probs = stream.process_many(noise.astype(np.float32) / 32768)
    assert probs.max() < 0.5


def test_reset_forgets_the_state(vad: SileroVoiceActivityDetector) -> None:
    frame = (np.sin(np.arange(512) / 3) * 8000).astype("<i2").tobytes()
    first = vad.probability(frame)
    vad.probability(frame)
    vad.reset()
    assert vad.probability(frame) == pytest.approx(first, abs=1e-6)


def test_wrong_frame_size_is_refused(vad: SileroVoiceActivityDetector) -> None:
    with pytest.raises(InvalidAudioError) as info:
        vad.stream().process(b"\x00" * 1000)
    assert info.value.code == ErrorCode.INVALID_AUDIO


async def test_missing_model_file_names_the_setting() -> None:
    detector = SileroVoiceActivityDetector(model="/nonexistent/silero.onnx")
    with pytest.raises(ModelMissingError) as info:
        await detector.load()
    assert "VOXLINE_VAD__MODEL" in info.value.message


async def test_unknown_model_name_names_the_setting() -> None:
    with pytest.raises(ModelMissingError) as info:
        await SileroVoiceActivityDetector(model="silero-v99").load()
    assert "VOXLINE_VAD__MODEL" in info.value.message


def test_cost_per_frame(vad: SileroVoiceActivityDetector) -> None:
    """Printed, not asserted tightly: the machine is shared."""
    frame = (np.sin(np.arange(512) / 3) * 8000).astype("<i2").tobytes()
    stream = vad.stream()
    for _ in range(50):
        stream.process(frame)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(300):
            stream.process(frame)
        best = min(best, (time.perf_counter() - start) / 300)
    print(f"\n{vad.options.model}: {best * 1e6:.0f} us per 32 ms frame")
    assert best < 0.032  # far below real time even on a busy machine
