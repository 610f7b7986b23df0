"""Decoding uploads and encoding output audio, with PyAV (FFmpeg): no hand-written codecs.

* :func:`decode_audio` turns an uploaded file (WAV, MP3, FLAC, OGG/Opus/Vorbis, M4A,
  WebM ... whatever FFmpeg recognises by content) into PCM16 mono at the rate asked for.
* :class:`AudioEncoder` turns PCM16 chunks into ``pcm16``, ``wav``, ``mp3``, ``opus``
  (in Ogg), ``flac``, ``aac`` (in ADTS, a stream a player can start anywhere) or G.711
  ``pcmu`` / ``pcma`` (raw, as a phone line carries them) bytes *as they are produced*,
  so speech can be streamed in a compressed format; :func:`encode_audio` is the
  whole-buffer shortcut.
* :func:`decode_frames` turns a client's raw audio frames (PCM16, or G.711 from a phone
  line) into PCM16 as they arrive: each byte of G.711 is one sample, so any frame decodes
  on its own.

Bad input raises ``InvalidAudioError``: ``empty_input`` for no bytes or no samples,
``unsupported_format`` when FFmpeg cannot tell what the bytes are, ``invalid_audio`` when
a recognised file is corrupt, ``unsupported_sample_rate`` for a rate we do not take.
PyAV is imported lazily: modules that import this one stay light.
"""

from __future__ import annotations

import io
import struct
from typing import Any

import numpy as np

from pipeline.audio.pcm import check_pcm16, check_sample_rate
from pipeline.audio.resampler import PcmResampler
from schemas import (
    AudioFormat,
    ErrorCode,
    InputAudioFormat,
    InputTooLargeError,
    InvalidAudioError,
)

__all__ = [
    "CONTENT_TYPES",
    "AudioEncoder",
    "content_type",
    "decode_audio",
    "decode_frames",
    "encode_audio",
]

CONTENT_TYPES: dict[AudioFormat, str] = {
    AudioFormat.PCM16: "audio/L16",
    AudioFormat.WAV: "audio/wav",
    AudioFormat.MP3: "audio/mpeg",
    AudioFormat.OPUS: "audio/ogg; codecs=opus",
    AudioFormat.FLAC: "audio/flac",
    AudioFormat.AAC: "audio/aac",
    AudioFormat.PCMU: "audio/PCMU",  # RFC 3551's names; the rate goes with them
    AudioFormat.PCMA: "audio/PCMA",
}

#: (container, encoder) per compressed format.
_AV_FORMATS: dict[AudioFormat, tuple[str, str]] = {
    AudioFormat.MP3: ("mp3", "libmp3lame"),
    AudioFormat.OPUS: ("ogg", "libopus"),
    AudioFormat.FLAC: ("flac", "flac"),
    AudioFormat.AAC: ("adts", "aac"),
    AudioFormat.PCMU: ("mulaw", "pcm_mulaw"),  # raw muxers: each packet out as it is
    AudioFormat.PCMA: ("alaw", "pcm_alaw"),
}
#: FFmpeg's decoder of each G.711 law a client may send
_G711_DECODERS = {InputAudioFormat.PCMU: "pcm_mulaw", InputAudioFormat.PCMA: "pcm_alaw"}
#: speech, mono; FLAC is lossless (no bitrate to set)
_DEFAULT_BITRATES = {AudioFormat.MP3: 64000, AudioFormat.OPUS: 32000, AudioFormat.AAC: 64000}
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
_MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


def content_type(fmt: AudioFormat, sample_rate: int) -> str:
    """The HTTP media type of audio in ``fmt`` (raw PCM16 and G.711 name their rate)."""
    if fmt is AudioFormat.PCM16:
        return f"audio/L16; rate={sample_rate}; channels=1"
    if fmt in (AudioFormat.PCMU, AudioFormat.PCMA):
        return f"{CONTENT_TYPES[fmt]}; rate={sample_rate}"
    return CONTENT_TYPES[fmt]


def decode_frames(data: bytes, fmt: InputAudioFormat, sample_rate: int) -> bytes:
    """A client's raw audio frame as PCM16 at the same rate.

    PCM16 is checked (``invalid_audio`` for an odd byte count) and returned as it is;
    G.711 goes through FFmpeg's decoder, one sample per byte, with no state between
    frames (a phone line's 20 ms frame is 160 bytes at 8 kHz).
    """
    if fmt is InputAudioFormat.PCM16:
        return check_pcm16(data, allow_empty=True)
    if not data:
        return b""
    import av

    decoder: Any = av.CodecContext.create(_G711_DECODERS[fmt], "r")  # an audio decoder
    decoder.sample_rate = sample_rate
    decoder.layout = "mono"
    frames = decoder.decode(av.Packet(data))
    return b"".join(frame.to_ndarray().astype("<i2", copy=False).tobytes() for frame in frames)


def decode_audio(
    data: bytes,
    *,
    sample_rate: int = 16000,
    max_seconds: float | None = None,
    source_rates: tuple[int, int] | None = None,
) -> bytes:
    """Decode a whole audio file to PCM16 mono at ``sample_rate``.

    Blocking and CPU-bound (FFmpeg): call it in a thread from async code. A small upload
    can expand to hours of samples (7 KB of WAV at 1 Hz is an hour at 16 kHz), so:

    * ``source_rates`` (lowest, highest) bounds the file's own rate
      (``unsupported_sample_rate``), read from the container's header before decoding;
    * ``max_seconds`` bounds the decoded length (``InputTooLargeError`` ``audio_too_long``):
      refused from the header's duration when it declares one, and while decoding
      otherwise (a stream that lies or declares nothing), before more is held than that.
    """
    check_sample_rate(sample_rate, None)
    if not data:
        raise InvalidAudioError("no audio: the upload is empty", code=ErrorCode.EMPTY_INPUT)
    import av

    limit = None if max_seconds is None else int(max_seconds * sample_rate) * 2
    out = bytearray()
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise InvalidAudioError(
            "unrecognised audio file: send WAV, MP3, FLAC, OGG/Opus or another common format",
            code=ErrorCode.UNSUPPORTED_FORMAT,
        ) from exc
    try:
        if not container.streams.audio:
            raise InvalidAudioError(
                "the file has no audio stream", code=ErrorCode.UNSUPPORTED_FORMAT
            )
        stream = container.streams.audio[0]
        _check_header(container, stream, max_seconds, source_rates)
        resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
        seconds = 0.0
        for frame in container.decode(stream):
            if source_rates is not None:
                _check_source_rate(frame.sample_rate, source_rates)
            seconds += frame.samples / frame.sample_rate  # known before it is resampled
            if max_seconds is not None and seconds > max_seconds:
                raise _too_long(max_seconds)
            for converted in resampler.resample(frame):
                out += converted.to_ndarray().tobytes()
            if limit is not None and len(out) > limit:
                raise _too_long(max_seconds)
        for converted in resampler.resample(None):
            out += converted.to_ndarray().tobytes()
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise InvalidAudioError(f"corrupt audio file: {exc}", code=ErrorCode.INVALID_AUDIO) from exc
    finally:
        container.close()
    if not out:
        raise InvalidAudioError("the file holds no audio samples", code=ErrorCode.EMPTY_INPUT)
    if limit is not None and len(out) > limit:
        raise _too_long(max_seconds)
    return bytes(out)


def _check_header(
    container: Any, stream: Any, max_seconds: float | None, source_rates: tuple[int, int] | None
) -> None:
    """Refuse from what the container declares, before decoding anything."""
    if source_rates is not None and stream.sample_rate:
        _check_source_rate(stream.sample_rate, source_rates)
    if max_seconds is None:
        return
    declared: float | None = None
    if stream.duration is not None and stream.time_base is not None:
        declared = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        declared = container.duration / 1_000_000  # AV_TIME_BASE
    if declared is not None and declared > max_seconds:
        raise _too_long(max_seconds, declared)


def _check_source_rate(rate: int, rates: tuple[int, int]) -> None:
    low, high = rates
    if not low <= rate <= high:
        raise InvalidAudioError(
            f"the file's sample rate {rate} Hz is outside {low}–{high} Hz",
            code=ErrorCode.UNSUPPORTED_SAMPLE_RATE, sample_rate=rate, min=low, max=high,
        )


def _too_long(max_seconds: float | None, declared: float | None = None) -> InputTooLargeError:
    said = "" if declared is None else f" ({declared:.1f} s)"
    return InputTooLargeError(
        f"the audio{said} is longer than the limit of {max_seconds:g} s",
        code=ErrorCode.AUDIO_TOO_LONG, max_seconds=max_seconds,
    )


def _wav_header(sample_rate: int, data_bytes: int | None) -> bytes:
    """A 44-byte RIFF header for PCM16 mono; ``None`` length means "streaming, unknown".

    Streamed WAV uses the largest sizes, which browsers and FFmpeg read as "until the end".
    """
    data_size = 0xFFFFFFFF if data_bytes is None else data_bytes
    riff_size = 0xFFFFFFFF if data_bytes is None else 36 + data_bytes
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", riff_size, b"WAVE", b"fmt ", 16, 1, 1,
        sample_rate, sample_rate * 2, 2, 16, b"data", data_size,
    )  # fmt: skip


class _Sink:
    """A write-only, non-seekable file for FFmpeg's muxer: we drain it after every write,
    so encoded bytes go out as soon as they exist. Without ``seek`` FFmpeg never goes back
    to patch a header, which is what a stream needs."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def write(self, data: bytes) -> int:
        self.buffer += data
        return len(data)

    def drain(self) -> bytes:
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


class AudioEncoder:
    """Encode a stream of PCM16 mono chunks; each call returns the bytes ready so far.

    ``encoder.encode(chunk)`` may return ``b""`` (the codec is still filling a frame);
    :meth:`finish` flushes the codec and the container and must be called once at the end.
    ``output_rate`` resamples on the way (opus only takes 8/12/16/24/48 kHz: other rates
    go to 48 kHz). Not thread-safe; one encoder per stream. Use it as a context manager so
    FFmpeg's resources are freed even when the stream is cancelled.
    """

    def __init__(
        self,
        fmt: AudioFormat | str,
        sample_rate: int,
        *,
        output_rate: int | None = None,
        bitrate: int | None = None,
    ) -> None:
        try:
            self.format = AudioFormat(fmt)
        except ValueError:
            known = ", ".join(f.value for f in AudioFormat)
            raise InvalidAudioError(
                f"unsupported output format {fmt!r}; use one of {known}",
                code=ErrorCode.UNSUPPORTED_FORMAT,
            ) from None
        self.input_rate = check_sample_rate(sample_rate, None)
        rate = check_sample_rate(output_rate or sample_rate, None)
        if self.format is AudioFormat.OPUS and rate not in _OPUS_RATES:
            rate = 48000
        if self.format is AudioFormat.MP3 and rate not in _MP3_RATES:
            raise InvalidAudioError(
                f"mp3 cannot carry {rate} Hz", code=ErrorCode.UNSUPPORTED_SAMPLE_RATE
            )
        self.sample_rate = rate
        self._started = False
        self._finished = False
        self._samples = 0
        self._resampler: PcmResampler | None = None
        self._container: Any = None
        self._stream: Any = None
        self._sink = _Sink()
        if self.format in _AV_FORMATS:
            self._open_av(bitrate)
        elif rate != sample_rate:
            self._resampler = PcmResampler(sample_rate, rate)

    @property
    def content_type(self) -> str:
        return content_type(self.format, self.sample_rate)

    def _open_av(self, bitrate: int | None) -> None:
        import av

        container_format, codec = _AV_FORMATS[self.format]
        # Ogg holds pages back for a second by default; 100 ms pages keep latency low.
        options = {"page_duration": "100000"} if container_format == "ogg" else {}
        self._container = av.open(self._sink, mode="w", format=container_format, options=options)
        try:
            self._stream = self._container.add_stream(codec, rate=self.sample_rate)
            self._stream.layout = "mono"
            if self.format in _DEFAULT_BITRATES:
                self._stream.bit_rate = bitrate or _DEFAULT_BITRATES[self.format]
        except BaseException:
            self.close()
            raise

    def encode(self, pcm: bytes) -> bytes:
        """Add a chunk; return the encoded bytes that became ready (maybe none)."""
        if self._finished:
            raise RuntimeError("encoder already finished")
        check_pcm16(pcm, allow_empty=True)
        if self._container is None:
            header = b""
            if self.format is AudioFormat.WAV and not self._started:
                header = _wav_header(self.sample_rate, None)
            self._started = True
            body = self._resampler.push(pcm) if self._resampler else pcm
            return header + body
        if pcm:
            self._mux_frame(pcm)
        return self._sink.drain()

    def finish(self) -> bytes:
        """Flush everything; the stream is complete after the returned bytes."""
        if self._finished:
            return b""
        self._finished = True
        if self._container is None:
            tail = self._resampler.flush() if self._resampler else b""
            if self.format is AudioFormat.WAV and not self._started:
                return _wav_header(self.sample_rate, None) + tail
            return tail
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        finally:
            self.close()
        return self._sink.drain()

    def close(self) -> None:
        """Release FFmpeg's resources (idempotent); unflushed audio is dropped."""
        container, self._container = self._container, None
        if container is not None:
            container.close()

    def __enter__(self) -> AudioEncoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _mux_frame(self, pcm: bytes) -> None:
        import av

        samples = np.frombuffer(pcm, dtype="<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = self.input_rate
        frame.pts = self._samples
        self._samples += samples.shape[1]
        for packet in self._stream.encode(frame):
            self._container.mux(packet)


def encode_audio(
    pcm: bytes,
    sample_rate: int,
    fmt: AudioFormat | str,
    *,
    output_rate: int | None = None,
    bitrate: int | None = None,
) -> bytes:
    """Encode a whole PCM16 mono buffer (a WAV gets its exact sizes in the header)."""
    check_pcm16(pcm)
    encoder = AudioEncoder(fmt, sample_rate, output_rate=output_rate, bitrate=bitrate)
    with encoder:
        if encoder.format is AudioFormat.WAV:
            body = encoder.encode(pcm)[44:] + encoder.finish()
            return _wav_header(encoder.sample_rate, len(body)) + body
        return encoder.encode(pcm) + encoder.finish()
