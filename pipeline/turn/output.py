"""A response's synthesized audio, encoded in the session's output format as it streams.

:class:`AudioOutput` sits between :meth:`TurnOrchestrator.run` and the log. The TTS engines
produce PCM16 at their own rate; the client asked for ``settings.output_format`` at
``settings.output_sample_rate``. One :class:`AudioEncoder` per response (opened on the first
audio chunk, so a text-only response opens none) resamples and encodes; the payloads of a
response's ``response.audio.chunk`` events, concatenated in ``chunk_index`` order, are one
valid stream of that format (``pcm16`` raw samples, a WAV with a streaming header, MP3
frames, Ogg/Opus pages).

**Empty encoder output is merged, not sent.** A codec filling a frame (or a resampler
filling its filter) may return no bytes for a chunk; that chunk gets no event, its audio
goes out in the next event that has bytes. Chunk events are numbered here, so
``chunk_index`` stays 0..n-1 over the events actually sent, and ``response.audio.done``
(``chunk_count``) and ``response.cancelled`` (``chunks_sent``) are rewritten to that n. A
chunk's ``sentence_index`` is the piece whose audio completed its bytes.

**The tail.** When the response's audio ends (``response.audio.done``, or
``response.cancelled`` / ``response.done`` while the encoder is open) the encoder is
flushed; what it still held goes out as one more chunk event (next ``chunk_index``, the
``sentence_index`` of the last audio chunk) just before that event.
:meth:`AudioOutput.close` frees FFmpeg's resources however the response ended; call it in
``finally``.
"""

from __future__ import annotations

from pipeline.audio import AudioEncoder, PcmResampler
from schemas import (
    AudioChunkData,
    Event,
    ResponseAudioChunk,
    ResponseAudioDone,
    ResponseCancelled,
    ResponseDone,
    SessionSettings,
)

__all__ = ["AudioOutput"]


class AudioOutput:
    """Re-encodes the audio events of one response; every other event passes through."""

    def __init__(self, settings: SessionSettings) -> None:
        self.format = settings.output_format
        self.rate = settings.output_sample_rate
        self.chunks = 0  # chunk events sent
        self._encoder: AudioEncoder | None = None
        self._finished = False
        self._sentence = 0  # sentence_index of the last audio chunk in
        #: engine rates other than the encoder's input rate (a mid-response switch)
        self._resamplers: dict[int, PcmResampler] = {}

    def convert(self, event: Event) -> list[Event]:
        """The events to append for ``event`` (none, it, or a tail chunk and it)."""
        if isinstance(event, ResponseAudioChunk):
            return self._chunk(event)
        if isinstance(event, ResponseAudioDone):
            tail = self._finish(event)
            done = event.data.model_copy(update={"chunk_count": self.chunks})
            return [*tail, event.model_copy(update={"data": done})]
        if isinstance(event, ResponseCancelled):
            tail = self._finish(event)
            cancelled = event.data.model_copy(update={"chunks_sent": self.chunks})
            return [*tail, event.model_copy(update={"data": cancelled})]
        if isinstance(event, ResponseDone):
            return [*self._finish(event), event]
        return [event]

    def close(self) -> None:
        """Free the encoder (idempotent); audio not yet flushed is dropped."""
        if self._encoder is not None:
            self._encoder.close()

    def _chunk(self, event: ResponseAudioChunk) -> list[Event]:
        source = event.data.sample_rate
        if self._encoder is None:
            self._encoder = AudioEncoder(self.format, source, output_rate=self.rate)
        pcm = event.data.audio
        self._sentence = event.data.sentence_index
        if source != self._encoder.input_rate:
            resampler = self._resamplers.get(source)
            if resampler is None:
                resampler = PcmResampler(source, self._encoder.input_rate)
                self._resamplers[source] = resampler
            pcm = resampler.push(pcm)
        encoded = self._encoder.encode(pcm)
        if not encoded:
            return []
        return [self._event(event, encoded, event.data.sentence_index)]

    def _finish(self, event: Event) -> list[Event]:
        encoder = self._encoder
        if encoder is None or self._finished:
            return []
        self._finished = True
        try:
            tail = b"".join(encoder.encode(r.flush()) for r in self._resamplers.values())
            tail += encoder.finish()
        finally:
            encoder.close()
        return [self._event(event, tail, self._sentence)] if tail else []

    def _event(self, like: Event, audio: bytes, sentence_index: int) -> Event:
        assert self._encoder is not None
        data = AudioChunkData(
            format=self.format,
            sample_rate=self._encoder.sample_rate,
            sentence_index=sentence_index,
            chunk_index=self.chunks,
            audio=audio,
        )
        self.chunks += 1
        return ResponseAudioChunk(session_id=like.session_id, turn_id=like.turn_id, data=data)
