"""Streaming PCM16 resampling (soxr) that skips the filter over long digital silence.

A hands-free client sends audio all the time, most of it silence; at 24 kHz into the 16 kHz
pipeline each 20 ms chunk of it cost a soxr call (~7–12 µs), a fifth of the Gateway's event
loop with 200 idle sessions. Filtering zeros gives zeros, so once a stream has fed the filter
:data:`SETTLE_S` of digital silence (its tail long gone) the resampler stops calling it and
emits zeros at the output rate, :data:`MARGIN_S` behind the input. The first chunk with
sound starts a fresh soxr stream :data:`MARGIN_S` of zeros before that chunk, so the
filter's look-back and look-ahead see what the old stream would have seen: the output is
the old stream's, sample for sample, to float rounding (measured at 8, 22.05, 24, 44.1 and
48 kHz into 16 kHz with margins of 10 to 50 ms: at most 6e-6 apart, a fifth of a PCM16
step), with the same length. The margin is also how late the skipped silence comes out:
20 ms, less than soxr's own hold-back at ``HQ`` (21 ms on average at 24 and 48 kHz, 64 ms
at 8 kHz, measured on zeros), so an endpoint that waits on silence is not later for it.
``QQ`` (cubic interpolation) reaches two samples either side and holds back a quarter of a
millisecond: its margin is :data:`QUICK_MARGIN_S`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from pipeline.audio.pcm import (
    FloatAudio,
    check_sample_rate,
    float_to_pcm16,
    is_digital_silence,
    pcm16_to_float,
)

__all__ = ["MARGIN_S", "QUICK_MARGIN_S", "SETTLE_S", "PcmResampler", "listening_quality"]

#: digital silence the filter is fed before it is skipped
SETTLE_S = 0.25
#: how far behind the input the skipped stretch's zeros are emitted, and how much of it a
#: fresh stream is fed before the sound that ends it (longer than the filter's reach)
MARGIN_S = 0.02
#: the same at ``QQ``, whose reach is two input samples: at 8 kHz, 16 of them
QUICK_MARGIN_S = 0.002


def listening_quality(from_rate: int, to_rate: int) -> str:
    """The soxr quality of a stream on its way to the VAD and the transcriber.

    soxr's band-limited qualities hold the newest input back until their filter can see
    past it: at 8 kHz into 16 kHz (a phone line) ``HQ`` gives each sample ~60 ms late on
    average (``LQ`` ~31), and the VAD hears a pause that much later, which is the head
    start a preemptive reply loses. Upsampling has nothing above the input's band to keep
    out, so it takes ``QQ`` (cubic interpolation: no hold-back); tiny.en heard a phone
    line's 8 kHz no worse for it (word error rate 23.8 % against 28.7 % with ``HQ`` over
    the turn corpus and 20 Piper renditions, 2026-11-30). Downsampling (a browser's 48 kHz,
    a client's 24 kHz) keeps ``HQ``: without its low-pass, what lies above 8 kHz would fold
    into the speech band (its hold-back there is ~21 ms)."""
    return "QQ" if from_rate < to_rate else "HQ"


class PcmResampler:
    """Streaming PCM16 resampler: chunks in, chunks out, no clicks at chunk boundaries.

    Resampling each chunk on its own restarts the filter every time (an audible tick per
    chunk); soxr's stream keeps the filter state between calls. Equal rates pass through.
    Digital silence skips the conversions to and from float, and past :data:`SETTLE_S`
    the filter itself (see the module docstring).
    """

    def __init__(self, from_rate: int, to_rate: int, *, quality: str = "HQ") -> None:
        check_sample_rate(from_rate, None)
        check_sample_rate(to_rate, None)
        self.from_rate = from_rate
        self.to_rate = to_rate
        self.quality = quality
        self._pending = b""  # an odd byte carried to the next chunk
        self._stream: Any = None
        #: input samples taken and output samples given, since the start
        self._in = self._out = 0
        #: input samples of digital silence in a row; skipping once past the settle point
        self._silent = 0
        self._skipping = False
        #: output samples a fresh stream repeats of what the old one already gave
        self._drop = 0
        if from_rate != to_rate:
            common = math.gcd(from_rate, to_rate)
            #: input samples per output period, and output samples in one
            self._period, self._period_out = from_rate // common, to_rate // common
            self._settle = int(SETTLE_S * from_rate)
            margin_s = QUICK_MARGIN_S if quality == "QQ" else MARGIN_S
            self._margin = int(margin_s * from_rate)
            self._stream = self._new_stream()

    @property
    def skipping(self) -> bool:
        """The filter is skipped now (a long stretch of digital silence)."""
        return self._skipping

    def push(self, pcm: bytes) -> bytes:
        data = self._pending + pcm
        usable = len(data) // 2 * 2
        self._pending = data[usable:]
        if self._stream is None:
            return data[:usable]
        chunk = data[:usable]
        count = usable // 2
        silent = is_digital_silence(chunk)
        if self._skipping:
            if silent:
                self._in += count
                return self._zeros_until(self._in - self._margin)
            head, lead = self._restart()
            return head + self._filtered(pcm16_to_float(chunk, allow_empty=True), lead=lead)
        self._silent = self._silent + count if silent else 0
        out = self._filtered(np.zeros(count, np.float32) if silent
                             else pcm16_to_float(chunk, allow_empty=True))
        if self._silent >= self._settle and is_digital_silence(out):  # settled: skip on
            self._skipping = True
        return out

    def flush(self) -> bytes:
        """The filter's tail; call once at the end of the stream."""
        self._pending = b""
        if self._stream is None:
            return b""
        head = b""
        if self._skipping:  # the stream's end as the unskipped stream would give it
            head, lead = self._restart()
            head += self._filtered(np.zeros(0, np.float32), lead=lead)
        return head + self._given(self._stream.resample_chunk(np.zeros(0, np.float32),
                                                              last=True))

    def _new_stream(self) -> Any:
        import soxr

        return soxr.ResampleStream(self.from_rate, self.to_rate, 1, dtype="float32",
                                   quality=self.quality)

    def _output_at(self, input_index: int) -> int:
        """The output index of ``input_index`` rounded down to a whole period."""
        return max(0, input_index) // self._period * self._period_out

    def _zeros_until(self, input_index: int) -> bytes:
        """Zeros from the last sample given up to the output of ``input_index``."""
        count = self._output_at(input_index) - self._out
        if count <= 0:
            return b""
        self._out += count
        return bytes(2 * count)

    def _restart(self) -> tuple[bytes, int]:
        """Sound after a skipped stretch: zeros up to the margin before it, a fresh
        stream from there, and how many zeros to feed it before the sound (the lead)."""
        start = max(0, self._in - self._margin) // self._period * self._period
        head = self._zeros_until(start)
        self._drop = self._out - self._output_at(start)  # given by the old stream already
        self._stream = self._new_stream()
        self._skipping = False
        self._silent = 0
        return head, self._in - start

    def _filtered(self, samples: FloatAudio, *, lead: int = 0) -> bytes:
        """``samples`` through the stream, after ``lead`` zeros already counted as input
        (a fresh stream's look-back over the skipped stretch)."""
        self._in += samples.size
        if lead:
            samples = np.concatenate([np.zeros(lead, np.float32), samples])
        return self._given(self._stream.resample_chunk(samples, last=False))

    def _given(self, out: FloatAudio) -> bytes:
        if self._drop:
            dropped = min(self._drop, out.size)
            out, self._drop = out[dropped:], self._drop - dropped
        self._out += out.size
        # count_nonzero: the same answer as out.any() without its Python wrapper (~1.6 µs)
        return float_to_pcm16(out) if np.count_nonzero(out) else bytes(2 * out.size)
