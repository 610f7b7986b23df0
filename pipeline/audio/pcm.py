"""PCM16 helpers: checks, conversions and resampling at the edges of the pipeline.

Inside Voxline audio is PCM16 mono little-endian bytes plus a sample rate (see
``schemas.AudioChunk``); models want float32 numpy arrays at their own rate. These
functions convert between the two and refuse bad input with ``InvalidAudioError`` and a
stable code, so a client learns *why* (``empty_input``, ``invalid_audio``,
``unsupported_sample_rate``) instead of hearing nothing.

Resampling is soxr (imported lazily: the ingress never resamples; a stream of chunks goes
through :class:`pipeline.audio.resampler.PcmResampler`). Decoding uploads and
encoding output formats live in :mod:`pipeline.audio.codec` (PyAV).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from schemas import SUPPORTED_SAMPLE_RATES, ErrorCode, InvalidAudioError, check_pcm16

__all__ = [
    "FloatAudio",
    "check_pcm16",
    "check_sample_rate",
    "duration_s",
    "float_to_pcm16",
    "is_digital_silence",
    "pcm16_to_float",
    "resample",
    "resample_pcm16",
    "rms_dbfs",
]

#: Mono float32 samples in [-1, 1].
FloatAudio = npt.NDArray[np.float32]

_PCM16 = np.dtype("<i2")


def check_sample_rate(
    sample_rate: int, allowed: Iterable[int] | None = SUPPORTED_SAMPLE_RATES
) -> int:
    """Refuse a rate the pipeline does not accept (``allowed=None``: any positive rate)."""
    if sample_rate <= 0 or (allowed is not None and sample_rate not in tuple(allowed)):
        rates = ", ".join(str(r) for r in (allowed or ()))
        raise InvalidAudioError(
            f"unsupported sample rate {sample_rate}" + (f"; use one of {rates}" if rates else ""),
            code=ErrorCode.UNSUPPORTED_SAMPLE_RATE,
            sample_rate=sample_rate,
        )
    return sample_rate


@functools.lru_cache(maxsize=16)
def _zero_bytes(size: int) -> bytes:
    return bytes(size)


def is_digital_silence(data: bytes) -> bool:
    """Every byte zero: the silence a hands-free client sends between turns (and a phone
    line's, once decoded). One compare with cached zeros, ~0.1 µs for a 32 ms frame where
    ``data.strip(b"\\x00")`` or numpy took 3–4 µs; a Gateway asks it ~80 times a second per
    idle session (once per chunk in, once per VAD frame)."""
    return data == _zero_bytes(len(data))


def duration_s(data: bytes, sample_rate: int) -> float:
    return len(data) / 2 / sample_rate


def pcm16_to_float(data: bytes, *, allow_empty: bool = False) -> FloatAudio:
    """PCM16 little-endian bytes to float32 in [-1, 1) (a new array, safe to modify)."""
    check_pcm16(data, allow_empty=allow_empty)
    samples = np.frombuffer(data, dtype=_PCM16)
    return samples.astype(np.float32) / np.float32(32768.0)


def float_to_pcm16(samples: npt.NDArray[np.floating] | Iterable[float]) -> bytes:
    """Float samples (any float dtype, mono) to PCM16 bytes; out-of-range values clip.

    Clipping (not wrapping) matters: a TTS model that overshoots by 1 % must not turn a
    loud peak into a full-scale click.
    """
    array = np.asarray(samples, dtype=np.float32)
    if array.ndim != 1:
        raise InvalidAudioError(f"expected mono audio, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise InvalidAudioError("audio contains NaN or infinite samples")
    scaled = np.clip(array * 32768.0, -32768, 32767)
    pcm: bytes = np.rint(scaled).astype(_PCM16).tobytes()
    return pcm


def resample(
    samples: FloatAudio, from_rate: int, to_rate: int, *, quality: str = "HQ"
) -> FloatAudio:
    """Float32 mono from one rate to another with soxr (a copy-free no-op at equal rates).

    ``quality`` is soxr's: ``"HQ"`` by default; ``"QQ"`` is cheaper for interim results.
    """
    if from_rate <= 0 or to_rate <= 0:
        raise InvalidAudioError(
            f"sample rates must be positive, got {from_rate} -> {to_rate}",
            code=ErrorCode.UNSUPPORTED_SAMPLE_RATE,
        )
    if from_rate == to_rate or samples.size == 0:
        return samples
    import soxr

    out = soxr.resample(samples, from_rate, to_rate, quality=quality)
    return np.asarray(out, dtype=np.float32)


def resample_pcm16(data: bytes, from_rate: int, to_rate: int) -> bytes:
    """PCM16 bytes from one rate to another (the same bytes back at equal rates)."""
    check_pcm16(data, allow_empty=True)
    if from_rate == to_rate:
        return data
    return float_to_pcm16(resample(pcm16_to_float(data, allow_empty=True), from_rate, to_rate))


def loudest_dbfs(data: bytes, window: int) -> float:
    """The loudness of the loudest ``window`` samples of PCM16 ``data`` (in consecutive
    windows, the last one shorter), in dB relative to full scale; ``-inf`` for none or
    digital silence."""
    if is_digital_silence(data):
        return float("-inf")
    samples = pcm16_to_float(data)
    return max(rms_dbfs(samples[at : at + window]) for at in range(0, samples.size, window))


def rms_dbfs(samples: FloatAudio) -> float:
    """Loudness in dB relative to full scale; ``-inf`` for digital silence.

    Used to skip a model call on silence, where Whisper would invent "Thank you.".
    """
    if samples.size == 0:
        return float("-inf")
    power = float(np.mean(np.square(samples, dtype=np.float64)))
    if power <= 0.0:
        return float("-inf")
    return 10.0 * float(np.log10(power))
