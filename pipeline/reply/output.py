"""A response's audio, numbered and encoded as it streams: the one owner of ``chunk_index``.

The TTS engines produce PCM16 at their own rate; a client asked for some format at some
rate. :class:`AudioOutput` takes the engine's chunks in playback order, each with the piece
(sentence) it belongs to, and returns the payloads to send: :class:`AudioChunkData`, ready
to become ``response.audio.chunk`` events, numbered ``first_index``, ``first_index + 1``, …
over the chunks it actually returned. Whoever turns text into audio (the live turn,
auto-play narration, ``/v1/audio/speech``) goes through one of these, so numbering and
encoding happen in one place.

**Encoding.** One :class:`AudioEncoder` per output, opened on the first chunk (a response
without audio opens none) at that chunk's rate; chunks at another rate (a routing engine
switching voices mid-response) are resampled to it first. The payloads, concatenated in
``chunk_index`` order, are one valid stream of the format (raw ``pcm16``, a WAV with a
streaming header, MP3 frames, Ogg/Opus pages). ``rate=None`` keeps the engine's rate.

**Empty encoder output is merged, not returned.** A codec filling a frame may return no
bytes for a chunk; that chunk gets no payload and its audio goes out with the next one that
has bytes, so ``chunk_index`` has no gaps. A payload's ``sentence_index`` is the piece whose
audio completed its bytes.

**Positions.** Each payload's ``end_ms`` is where it ends in the stream's audio: the
samples handed to the encoder so far, after ``start_ms`` (a stream continued from an earlier
output; a codec's own delay is not counted). A client reports what it played in the same
unit (``response.truncate``).

**The tail.** :meth:`finish` flushes what the encoder still holds (one more payload, the
``sentence_index`` of the last chunk in); :meth:`close` frees FFmpeg's resources however the
response ended (call it in ``finally``; idempotent).

**Continuing a stream** (``continues=True``): the stream's start was sent by an earlier
output (a narration resumed after a takeover, numbered from ``first_index``); a WAV then
carries no second header: its payloads are raw samples labelled ``wav``.
"""

from __future__ import annotations

from pipeline.audio import AudioEncoder, PcmResampler
from schemas import AudioChunk, AudioChunkData, AudioFormat, SessionSettings

__all__ = ["AudioOutput"]


class AudioOutput:
    """Numbers and encodes the audio of one stream of pieces (see the module docstring)."""

    def __init__(
        self,
        fmt: AudioFormat = AudioFormat.PCM16,
        rate: int | None = None,
        *,
        first_index: int = 0,
        continues: bool = False,
        start_ms: int = 0,
    ) -> None:
        self.format = AudioFormat(fmt)
        self.rate = rate
        self.first_index = first_index
        #: payloads returned so far (the next chunk_index is first_index + chunks)
        self.chunks = 0
        self._encode_as = self.format
        if continues and self.format is AudioFormat.WAV:
            self._encode_as = AudioFormat.PCM16  # the header went out with the stream's start
        self._encoder: AudioEncoder | None = None
        self._finished = False
        self._sentence = 0  # sentence_index of the last chunk in
        self.start_ms = start_ms
        self._samples = 0  # handed to the encoder, at its input rate
        #: engine rates other than the encoder's input rate (a mid-stream switch)
        self._resamplers: dict[int, PcmResampler] = {}

    @classmethod
    def for_settings(
        cls, settings: SessionSettings, *, first_index: int = 0, continues: bool = False,
        start_ms: int = 0,
    ) -> AudioOutput:
        """The session's ``output_format`` at its ``output_sample_rate``."""
        return cls(settings.output_format, settings.output_sample_rate,
                   first_index=first_index, continues=continues, start_ms=start_ms)

    @property
    def next_index(self) -> int:
        return self.first_index + self.chunks

    def add(self, sentence_index: int, chunk: AudioChunk) -> AudioChunkData | None:
        """Encode one engine chunk of piece ``sentence_index``; None when no bytes are ready."""
        if self._finished:
            raise RuntimeError("audio output already finished")
        source = chunk.sample_rate
        if self._encoder is None:
            self._encoder = AudioEncoder(self._encode_as, source, output_rate=self.rate)
        pcm = chunk.audio
        self._sentence = sentence_index
        if source != self._encoder.input_rate:
            resampler = self._resamplers.get(source)
            if resampler is None:
                resampler = PcmResampler(source, self._encoder.input_rate)
                self._resamplers[source] = resampler
            pcm = resampler.push(pcm)
        return self._payload(self._encode(pcm), sentence_index)

    def finish(self) -> AudioChunkData | None:
        """Flush the encoder: the last payload, or None (nothing held, or no audio at all).

        Later calls return None; :meth:`add` after it raises.
        """
        encoder = self._encoder
        if self._finished:
            return None
        self._finished = True
        if encoder is None:
            return None
        try:
            tail = b"".join(self._encode(r.flush()) for r in self._resamplers.values())
            tail += encoder.finish()
        finally:
            encoder.close()
        return self._payload(tail, self._sentence)

    def close(self) -> None:
        """Free the encoder (idempotent); audio not yet flushed is dropped."""
        if self._encoder is not None:
            self._encoder.close()

    def _encode(self, pcm: bytes) -> bytes:
        assert self._encoder is not None
        self._samples += len(pcm) // 2
        return self._encoder.encode(pcm)

    def _payload(self, audio: bytes, sentence_index: int) -> AudioChunkData | None:
        if not audio:
            return None
        assert self._encoder is not None
        data = AudioChunkData(
            format=self.format,
            sample_rate=self._encoder.sample_rate,
            sentence_index=sentence_index,
            chunk_index=self.next_index,
            end_ms=self.start_ms + self._samples * 1000 // self._encoder.input_rate,
            audio=audio,
        )
        self.chunks += 1
        return data
