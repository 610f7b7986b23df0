"""Speech segmentation as a stream: audio in, speech boundaries and utterances out.

:class:`~pipeline.audio.endpointing.Endpointer` decides one frame at a time; this module
runs it over async streams, the way audio arrives from a socket:

* :func:`endpoint_stream` takes ``(frame, probability)`` pairs;
* :func:`segment_speech` takes PCM16 chunks of any size and a voice activity detector: it
  cuts the chunks into the detector's frames, asks it for each frame's probability and
  endpoints the pairs.

Both yield :class:`~pipeline.audio.speech_events.SpeechStart` and
:class:`~pipeline.audio.speech_events.SpeechEnd` in stream order; the end of the input
flushes an utterance still open (``reason="flush"``). Closing the output early closes the
detector.

**Push-to-talk.** Both also take :class:`Commit` markers between the audio: "the
utterance ends here". A marker is acted on in stream order, once every frame sent before
it has been endpointed, and is yielded back right after the utterance it ended, so whoever
put it in knows when the commit is done. A commit ends the utterance in progress
(``reason="flush"``, and the stream clock restarts at zero, as after any flush); when the
detector heard no speech at all since the previous commit, the audio sent since is the
utterance (the client pressed the button: it knows better), at most the last
``max_utterance_s`` of it, as for any utterance; when the detector already cut an
utterance since, there is nothing to commit.

**Judged pauses.** With a ``judge`` (an end-of-turn model's verdict), each
:class:`~pipeline.audio.speech_events.SpeechPause` is yielded, then judged before the next
frame is endpointed: the judge returns the silence that ends this pause's silence
(:meth:`~pipeline.audio.endpointing.Endpointer.end_silence_after`), or ``None`` to keep
``min_silence_ms``. Frames wait meanwhile, so where a turn ends depends on the audio and
the verdicts alone, never on how fast they came: a recorded stream endpoints the same
when replayed.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Protocol

from pipeline.aio import aclose_stream
from pipeline.audio.endpointing import EndpointConfig, Endpointer
from pipeline.audio.framing import FrameAssembler
from pipeline.audio.speech_events import EndpointEvent, SpeechEnd, SpeechPause

__all__ = ["Commit", "FrameDetector", "Judge", "endpoint_stream", "segment_speech"]

#: a pause in, the silence (ms) that ends it out; None: ``min_silence_ms`` as configured
Judge = Callable[[SpeechPause], Awaitable[int | None]]


class FrameDetector(Protocol):
    """What segmentation needs of a voice activity detector (``pipeline.engines``' VAD seam
    satisfies it; declared here so that audio code does not depend on the engines).

    ``probabilities`` yields one probability per frame, in order.
    """

    @property
    def frame_samples(self) -> int: ...

    @property
    def sample_rate(self) -> int: ...

    def probabilities(self, frames: AsyncIterator[bytes]) -> AsyncIterator[float]: ...


class Commit:
    """Push-to-talk marker: end the utterance here (see the module docstring).

    Each marker is yielded back, itself, once it has been acted on.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "Commit()"


async def endpoint_stream(
    frames: AsyncIterable[tuple[bytes, float] | Commit],
    config: EndpointConfig | None = None,
    judge: Judge | None = None,
    *,
    endpointer: Endpointer | None = None,
) -> AsyncGenerator[EndpointEvent | Commit, None]:
    """``(frame, probability)`` pairs (and commits) in, events (and the commits) out;
    ``judge`` sets the silence after each pause (see the module docstring). The caller's
    own ``endpointer`` (with its config) may be given, to change its pause meanwhile."""
    endpointer = endpointer or Endpointer(config)
    unheard = _Unheard(endpointer.config)
    async for item in frames:
        if isinstance(item, Commit):
            for end in unheard.commit(endpointer):
                yield end
            yield item
            continue
        frame, probability = item
        unheard.add(frame)
        events = endpointer.push(frame, probability)
        while events:
            event = events.pop(0)
            if isinstance(event, SpeechEnd):
                unheard.cut()
            yield event
            if isinstance(event, SpeechPause) and judge is not None:
                silence_ms = await judge(event)
                if silence_ms is not None:
                    events.extend(endpointer.end_silence_after(silence_ms))
    for event in endpointer.flush():
        yield event


async def segment_speech(
    audio: AsyncIterable[bytes | Commit],
    detector: FrameDetector,
    config: EndpointConfig | None = None,
    judge: Judge | None = None,
    *,
    endpointer: Endpointer | None = None,
) -> AsyncGenerator[EndpointEvent | Commit, None]:
    """PCM16 chunks of any size (and commits) in, events (and the commits) out.

    ``detector`` must be loaded; its frame size and rate are used, and ``config``'s rate
    (or that of the ``endpointer`` given instead) must be the detector's. The end of
    ``audio`` sends the remainder, zero-padded to a whole frame, then flushes.
    """
    if endpointer is not None:
        config = endpointer.config
    config = config or EndpointConfig(sample_rate=detector.sample_rate)
    if config.sample_rate != detector.sample_rate:
        raise ValueError("the endpointing rate must match the detector's")
    pairs = _Pairing(audio, FrameAssembler(detector.frame_samples)).pairs(detector)
    try:
        stream = endpoint_stream(pairs, config, judge, endpointer=endpointer)
        async with contextlib.aclosing(stream) as events:
            async for event in events:
                yield event
    finally:
        await pairs.aclose()


class _Unheard:
    """What a commit needs: the audio since the last commit, while no utterance was cut."""

    def __init__(self, config: EndpointConfig) -> None:
        self.rate = config.sample_rate
        self.limit = max(config.samples(config.max_utterance_s * 1000), 1) * 2  # bytes
        self.frames: deque[bytes] = deque()
        self.size = 0
        self.was_cut = False  # the detector cut an utterance since the last commit

    def add(self, frame: bytes) -> None:
        if self.was_cut:
            return  # this commit will not need it
        self.frames.append(frame)
        self.size += len(frame)
        while self.size > self.limit:  # the oldest goes, as past a forced cut
            self.size -= len(self.frames.popleft())

    def cut(self) -> None:
        self.frames.clear()
        self.size = 0
        self.was_cut = True

    def commit(self, endpointer: Endpointer) -> list[SpeechEnd]:
        ends = [e for e in endpointer.flush() if isinstance(e, SpeechEnd)]
        if not ends and self.frames and not self.was_cut:
            audio = b"".join(self.frames)
            # The flush restarted the stream clock, so the utterance is stamped at its zero.
            ends.append(SpeechEnd(
                audio_ms=0, audio=audio, duration_s=len(audio) / 2 / self.rate, start_ms=0,
                reason="flush",
            ))
        self.frames.clear()
        self.size = 0
        self.was_cut = False
        return ends


class _Pairing:
    """Frames to the detector and probabilities back, each paired with its frame in order;
    commits go around the detector and come out in their place.

    Audio is read outside the detector whenever it holds no frame, so a commit that
    arrives while the detector is idle comes out at once. A detector that reads ahead
    (asks for a frame before yielding the last one's probability) reads the audio
    itself; a commit then waits for the probability of the frame before it.
    """

    def __init__(self, audio: AsyncIterable[bytes | Commit], assembler: FrameAssembler) -> None:
        self.source = aiter(audio)
        self.assembler = assembler
        self.unsent: deque[bytes] = deque()  # frames the detector has not taken yet
        self.unpaired: deque[bytes | Commit] = deque()  # frames without probability, commits
        self.ended = False

    async def take(self) -> None:
        """Read one item of the audio; at its end, the remainder is the last frame."""
        try:
            item = await anext(self.source)
        except StopAsyncIteration:
            self.ended = True
            last = self.assembler.flush()
            frames = [] if last is None else [last]
        else:
            if isinstance(item, Commit):
                self.unpaired.append(item)
                return
            frames = self.assembler.push(item)
        self.unsent.extend(frames)
        self.unpaired.extend(frames)

    async def frames(self) -> AsyncGenerator[bytes, None]:
        """What the detector reads."""
        while True:
            while self.unsent:
                yield self.unsent.popleft()
            if self.ended:
                return
            await self.take()  # the detector reads ahead

    async def pairs(
        self, detector: FrameDetector
    ) -> AsyncGenerator[tuple[bytes, float] | Commit, None]:
        frames = self.frames()
        probabilities = detector.probabilities(frames)
        try:
            while True:
                if not self.unpaired:
                    if self.ended:
                        return
                    await self.take()
                    continue
                head = self.unpaired[0]
                if isinstance(head, Commit):
                    self.unpaired.popleft()
                    yield head
                    continue
                try:
                    probability = await anext(probabilities)
                except StopAsyncIteration:  # the detector stopped early
                    return
                self.unpaired.popleft()
                yield head, probability
        finally:  # stop the detector, then the frames behind it
            await aclose_stream(probabilities)
            await frames.aclose()

