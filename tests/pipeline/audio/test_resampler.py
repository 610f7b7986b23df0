"""The streaming resampler skips soxr over long digital silence and gives the same audio.

The reference is a plain soxr stream fed every chunk as float (what the resampler did
before it skipped anything): the same length at every point where both were flushed, and
every sample within one PCM16 step (a fresh filter sums in another order: ~1e-7 apart).
"""

from __future__ import annotations

import numpy as np
import pytest
import soxr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.audio import PcmResampler, float_to_pcm16, listening_quality, pcm16_to_float
from pipeline.audio.resampler import MARGIN_S, QUICK_MARGIN_S, SETTLE_S


def _sound(seconds: float, rate: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    wave = np.sin(np.arange(n) * 2 * np.pi * 440 / rate) * 0.3 + rng.standard_normal(n) * 0.05
    return float_to_pcm16(wave.astype(np.float32))


def _chunks(pcm: bytes, sizes: list[int]) -> list[bytes]:
    out, i, k = [], 0, 0
    while i < len(pcm):
        size = sizes[k % len(sizes)]
        out.append(pcm[i : i + size])
        i, k = i + size, k + 1
    return out


def _reference_chunks(chunks: list[bytes], from_rate: int, to_rate: int,
                      quality: str = "HQ") -> list[bytes]:
    """A plain soxr stream's output for each chunk (the float path every time, an odd
    byte carried to the next), then its flush."""
    stream = soxr.ResampleStream(from_rate, to_rate, 1, dtype="float32", quality=quality)
    carried, out = b"", []
    for chunk in chunks:
        data = carried + chunk
        usable = len(data) // 2 * 2
        carried = data[usable:]
        samples = pcm16_to_float(data[:usable], allow_empty=True)
        out.append(float_to_pcm16(stream.resample_chunk(samples)))
    out.append(float_to_pcm16(stream.resample_chunk(np.zeros(0, np.float32), last=True)))
    return out


def _reference(chunks: list[bytes], from_rate: int, to_rate: int,
               quality: str = "HQ") -> np.ndarray:
    joined = b"".join(_reference_chunks(chunks, from_rate, to_rate, quality))
    return np.frombuffer(joined, "<i2").astype(np.int32)


def _resampled(chunks: list[bytes], from_rate: int, to_rate: int,
               quality: str = "HQ") -> tuple[np.ndarray, bool]:
    resampler = PcmResampler(from_rate, to_rate, quality=quality)
    out, skipped = [], False
    for chunk in chunks:
        out.append(resampler.push(chunk))
        skipped = skipped or resampler.skipping
    out.append(resampler.flush())
    return np.frombuffer(b"".join(out), "<i2").astype(np.int32), skipped


def test_digital_silence_gives_the_same_bytes_as_the_float_path() -> None:
    """Digital silence skips the conversions (a shortcut): the bytes are those the float
    path gives, silence before speech, the filter's tail after it, odd chunk sizes."""
    pcm = bytes(9600) + _sound(0.3, 24000, 0) + bytes(19200) + b"\x01\x00"
    chunks = [pcm[i : i + size] for size in (960, 961, 959, 480, 1920)
              for i in range(0, len(pcm) - size, size * 5)]
    resampler = PcmResampler(24000, 16000)
    got = [resampler.push(chunk) for chunk in chunks]
    expected = _reference_chunks(chunks, 24000, 16000)[:-1]  # not flushed here
    assert got == expected
    assert any(not chunk.strip(b"\x00") and chunk for chunk in got)  # silence came through
    assert any(chunk.strip(b"\x00") for chunk in got)  # and speech


@pytest.mark.parametrize("from_rate", [8000, 22050, 24000, 44100, 48000])
@pytest.mark.parametrize("sizes", [[1280], [1923, 75, 9603], [333]])  # bytes, odd ones too
def test_silence_then_sound_then_silence_is_the_plain_streams_audio(
        from_rate: int, sizes: list[int]) -> None:
    pcm = (bytes(2 * from_rate) + _sound(0.4, from_rate, 1) + bytes(from_rate)
           + _sound(0.3, from_rate, 2) + bytes(from_rate // 2) + b"\x05\x00")
    chunks = _chunks(pcm, sizes)
    expected = _reference(chunks, from_rate, 16000)
    got, skipped = _resampled(chunks, from_rate, 16000)
    assert skipped
    assert got.size == expected.size
    assert np.abs(got - expected).max() <= 1
    assert np.count_nonzero(got) > 0.3 * 0.7 * 16000  # the sound came through


def test_it_skips_only_after_the_settle_time_and_stops_at_the_first_sound() -> None:
    resampler = PcmResampler(24000, 16000)
    frame = bytes(960)  # 20 ms
    settle_frames = int(SETTLE_S / 0.02)
    for _ in range(settle_frames - 1):
        resampler.push(frame)
    assert not resampler.skipping
    for _ in range(3):
        resampler.push(frame)
    assert resampler.skipping
    # the zeros follow the input MARGIN_S behind, where soxr's stream held back its own
    # 0-37 ms: the first skipped frames make up the difference, then a frame for a frame
    first = sum(len(resampler.push(frame)) for _ in range(10)) // 2
    assert abs(first - 10 * 320) <= 0.04 * 16000
    assert [len(resampler.push(frame)) // 2 for _ in range(5)] == [320] * 5
    resampler.push(_sound(0.02, 24000, 3))
    assert not resampler.skipping


def test_equal_rates_pass_through_and_never_skip() -> None:
    resampler = PcmResampler(16000, 16000)
    assert resampler.push(bytes(32000)) == bytes(32000)
    assert not resampler.skipping


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layout=st.lists(st.tuples(st.booleans(), st.floats(0.01, 0.6)), min_size=1, max_size=6),
       chunk_ms=st.sampled_from([10, 20, 33, 100]),
       from_rate=st.sampled_from([8000, 24000, 48000]),
       listening=st.booleans())
def test_any_layout_of_silence_and_sound_is_the_plain_streams_audio(
        layout: list[tuple[bool, float]], chunk_ms: int, from_rate: int,
        listening: bool) -> None:
    """At soxr's HQ and at the quality the input path takes (QQ when upsampling)."""
    quality = listening_quality(from_rate, 16000) if listening else "HQ"
    pcm = b"".join(_sound(seconds, from_rate, i) if loud else bytes(2 * int(seconds * from_rate))
                   for i, (loud, seconds) in enumerate(layout))
    chunks = _chunks(pcm, [2 * from_rate * chunk_ms // 1000])
    expected = _reference(chunks, from_rate, 16000, quality)
    got, _ = _resampled(chunks, from_rate, 16000, quality)
    assert got.size == expected.size
    assert got.size == 0 or np.abs(got - expected).max() <= 1


@pytest.mark.parametrize(("from_rate", "quality", "margin_s"), [
    (8000, "HQ", MARGIN_S), (24000, "HQ", MARGIN_S), (48000, "HQ", MARGIN_S),
    (8000, "QQ", QUICK_MARGIN_S), (24000, "QQ", QUICK_MARGIN_S)])
def test_skipped_silence_comes_out_at_most_the_margin_after_soxrs_own(
        from_rate: int, quality: str, margin_s: float) -> None:
    """An endpoint waits on silence: skipping must not hold it back (beyond the margin,
    which is less than soxr's own average hold-back at HQ, and a few ms at QQ)."""
    frame = bytes(2 * from_rate // 50)
    resampler = PcmResampler(from_rate, 16000, quality=quality)
    stream = soxr.ResampleStream(from_rate, 16000, 1, dtype="float32", quality=quality)
    ours = theirs = 0
    for i in range(200):
        ours += len(resampler.push(frame)) // 2
        theirs += stream.resample_chunk(np.zeros(len(frame) // 2, np.float32)).size
        assert ours >= theirs - margin_s * 16000 - 1, i
    assert resampler.skipping


@pytest.mark.parametrize(("from_rate", "quality"), [(8000, "QQ"), (12000, "QQ"),
                                                    (24000, "HQ"), (48000, "HQ")])
def test_the_input_is_filtered_only_where_it_is_downsampled(from_rate: int, quality: str) -> None:
    """Into the 16 kHz pipeline: a band-limiting filter where content above 8 kHz would
    fold into speech, none (and no hold-back) where there is nothing above the band."""
    assert listening_quality(from_rate, 16000) == quality


def test_upsampled_input_comes_out_as_it_goes_in() -> None:
    """A phone line's 8 kHz at the listening quality: every 20 ms frame gives its 20 ms at
    once (soxr's HQ held ~60 ms back, the head start a pause's reply lost)."""
    resampler = PcmResampler(8000, 16000, quality=listening_quality(8000, 16000))
    sound = _sound(1.0, 8000, 4)
    given = 0
    for start in range(0, len(sound), 320):
        given += len(resampler.push(sound[start : start + 320])) // 2
        # two samples out for each in (the bytes pushed so far, as samples at 16 kHz),
        # bar the interpolator's few (a quarter of a millisecond)
        assert given >= start + 320 - 8
