"""Speech input of one live session: PCM in, speech starts and utterances out.

The segmentation itself is :func:`pipeline.audio.segment_speech`, run in one task per
input over a queue of frames. What this adds around it is what a session needs:

* the session's input rate, resampled to the detector's;
* a bounded queue between the socket and the detector (:data:`FRAME_QUEUE` frames, about
  8 s at 32 ms a frame): :meth:`SpeechInput.push` waits while it is full, so a client that
  sends faster than the detector runs is slowed down, not buffered without end;
* push-to-talk (:meth:`SpeechInput.commit`), which returns once its utterance is handled,
  and the seconds pushed since the last commit, which the session bounds for manual turns
  (:meth:`SpeechInput.check_room`);
* failures raised where the client is answered, by the next :meth:`~SpeechInput.push` or
  :meth:`~SpeechInput.commit` (the task that met them cannot raise to the client): the
  detector's ends the input (every later call raises it); a callback's is raised once
  and the input goes on listening.

What happens on a speech start or an utterance is the session's: two callbacks, awaited
in the input's task, in stream order; two optional ones hear of pauses and resumptions
when the endpointing config asks for pauses (``pause_ms``: preemptive turns, smart turn
detection), and an optional judge sets the silence that ends each pause
(:data:`pipeline.audio.Judge`: an end-of-turn model's verdict).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable

from pipeline.aio import reraise_lost_cancel
from pipeline.audio import (
    Commit,
    EndpointConfig,
    Endpointer,
    FrameAssembler,
    FrameDetector,
    Judge,
    PcmResampler,
    SpeechEnd,
    SpeechOnset,
    SpeechOnsetDropped,
    SpeechPause,
    SpeechResume,
    listening_quality,
    segment_speech,
)
from schemas import (
    ErrorCode,
    InputAudio,
    InputAudioData,
    InputTooLargeError,
    SessionSettings,
    SpeechStopped,
    SpeechStoppedData,
)

#: frames queued between the socket and the detector
FRAME_QUEUE = 256

#: ``(audio_ms)``: speech was confirmed, starting at ``audio_ms`` of the input stream
OnSpeech = Callable[[int], Awaitable[None]]
#: ``(utterance, sample_rate)``: an utterance ended; its audio is at the detector's rate
OnUtterance = Callable[[SpeechEnd, int], Awaitable[None]]
#: ``(pause, sample_rate)``: the speaker paused; the utterance so far, at the detector's rate
OnPause = Callable[[SpeechPause, int], Awaitable[None]]
#: ``(audio_ms)``: speech came back after a pause
OnResume = Callable[[int], Awaitable[None]]
#: a frame that may start speech (its position), or (True) the run dropped: no speech
OnOnset = Callable[[int, bool], Awaitable[None]]


def session_endpoint(
    base: EndpointConfig, settings: SessionSettings, smart: bool
) -> EndpointConfig:
    """The endpointing of a session with these settings: with smart turn detection, the
    endpointer's own silence is ``turn_incomplete_ms`` (a verdict shortens it) and every
    pause is reported to be judged; else ``end_of_speech_ms``, and pauses only for
    preemptive turns. With interruptions confirmed, onsets are reported (a reply goes
    quiet at the first frame that may be speech)."""
    pause = settings.preemptive_pause_ms if settings.preemptive_turns or smart else None
    silence = settings.turn_incomplete_ms if smart else settings.end_of_speech_ms
    config = endpoint_config(base, silence, pause)
    return config.model_copy(update={"onsets": settings.interruptions == "confirmed"})


def endpoint_config(
    base: EndpointConfig, end_of_speech_ms: int, pause_ms: int | None = None
) -> EndpointConfig:
    """``base`` with the session's silence that ends an utterance (the padding after the
    speech cannot be longer than that silence) and, for preemptive turns, the pause that
    starts a speculative reply (none when it is not shorter than that silence)."""
    pause = pause_ms if pause_ms is not None and pause_ms < end_of_speech_ms else None
    return base.model_copy(update={
        "min_silence_ms": end_of_speech_ms,
        "post_padding_ms": min(base.post_padding_ms, end_of_speech_ms),
        "pause_ms": pause,
    })


class SpeechInput:
    """Incoming audio of one session, at ``sample_rate``; end it with :meth:`close`."""

    def __init__(
        self,
        vad: FrameDetector,
        config: EndpointConfig,
        *,
        sample_rate: int,
        on_speech: OnSpeech,
        on_utterance: OnUtterance,
        on_pause: OnPause | None = None,
        on_resume: OnResume | None = None,
        judge: Judge | None = None,
        on_onset: OnOnset | None = None,
    ) -> None:
        self.rate = vad.sample_rate
        self.input_rate = sample_rate
        self._uncommitted = 0  # bytes of input pushed since the start or the last commit
        self._resampler = (PcmResampler(sample_rate, self.rate,
                                        quality=listening_quality(sample_rate, self.rate))
                           if sample_rate != self.rate else None)
        self._assembler = FrameAssembler(vad.frame_samples)
        self._queue: asyncio.Queue[bytes | Commit] = asyncio.Queue(maxsize=FRAME_QUEUE)
        self._commits: deque[asyncio.Future[None]] = deque()  # one per commit in the queue
        self._failure: Exception | None = None  # a callback's, not yet raised
        self._on_speech = on_speech
        self._on_utterance = on_utterance
        self._on_pause = on_pause
        self._on_resume = on_resume
        self._on_onset = on_onset
        self._judge = judge
        self._endpointer = Endpointer(config.model_copy(update={"sample_rate": self.rate}))
        self._task = asyncio.create_task(self._run(vad))

    def pause_after(self, pause_ms: int | None) -> None:
        """Report a pause after ``pause_ms`` of silence (None: the configured pause),
        from the next frame endpointed on: set from a callback, it holds from the frame
        after the event's. See :meth:`~pipeline.audio.Endpointer.pause_after`."""
        self._endpointer.pause_after(pause_ms)

    @property
    def queued(self) -> int:
        """Frames (and commits) waiting for the detector; at most :data:`FRAME_QUEUE`."""
        return self._queue.qsize()

    @property
    def uncommitted_s(self) -> float:
        """Seconds of input pushed since this input started or was last committed."""
        return self._uncommitted / 2 / self.input_rate

    def check_room(self, size: int, max_s: float) -> None:
        """Refuse ``size`` more bytes of input that would take what is uncommitted past
        ``max_s`` seconds (``audio_too_long``); nothing is pushed then."""
        after = (self._uncommitted + size) / 2 / self.input_rate
        if after > max_s:
            raise InputTooLargeError(
                f"the audio buffer would hold {after:.1f} s, over the limit of {max_s:g} s; "
                "commit it (or clear it) before appending more",
                code=ErrorCode.AUDIO_TOO_LONG, limit_s=max_s,
                buffered_s=round(self.uncommitted_s, 3))

    async def push(self, pcm: bytes) -> None:
        """Queue PCM16 for the detector; waits while the queue is full."""
        self._raise_if_stopped()
        self._uncommitted += len(pcm)
        if self._resampler is not None:
            pcm = self._resampler.push(pcm)
        for frame in self._assembler.push(pcm):
            await self._queue.put(frame)

    async def commit(self) -> None:
        """Push-to-talk: end the utterance in progress now, and return once every frame
        pushed so far has been endpointed and the utterance (if any) handled.

        When the detector heard no speech since the last commit, everything pushed since is
        the utterance; when it already cut one, there is nothing left to commit (the rules
        are :mod:`pipeline.audio.segmenting`'s).
        """
        self._raise_if_stopped()
        self._uncommitted = 0
        done = asyncio.get_running_loop().create_future()
        self._commits.append(done)
        await self._queue.put(Commit())
        await asyncio.wait((done, self._task), return_when=asyncio.FIRST_COMPLETED)
        self._raise_if_stopped()  # e.g. this commit's utterance could not be appended

    async def close(self) -> None:
        """Stop listening; what is queued is dropped. A caller cancelled meanwhile is
        cancelled still (the input's own end is what is awaited and dropped here)."""
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
        except Exception:  # the detector's failure: already the client's, or moot now
            pass

    def _raise_if_stopped(self) -> None:
        if self._task.done():
            self._task.result()  # the detector's failure (CancelledError once closed)
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure

    async def _frames(self) -> AsyncGenerator[bytes | Commit, None]:
        while True:
            # A close() whose cancel a callback's log append swallowed (redis-py on 3.11:
            # see reraise_lost_cancel) would otherwise leave this task waiting for frames
            # that never come, and close() waiting for it: seen under load in tests.
            reraise_lost_cancel()
            yield await self._queue.get()

    async def _run(self, vad: FrameDetector) -> None:
        segments = segment_speech(self._frames(), vad, judge=self._judge,
                                  endpointer=self._endpointer)
        async with contextlib.aclosing(segments) as events:
            async for event in events:
                if isinstance(event, Commit):
                    self._commits.popleft().set_result(None)
                    continue
                try:
                    if isinstance(event, SpeechEnd):
                        await self._on_utterance(event, self.rate)
                    elif isinstance(event, SpeechPause):
                        if self._on_pause is not None:
                            await self._on_pause(event, self.rate)
                    elif isinstance(event, SpeechResume):
                        if self._on_resume is not None:
                            await self._on_resume(event.audio_ms)
                    elif isinstance(event, SpeechOnset | SpeechOnsetDropped):
                        if self._on_onset is not None:
                            await self._on_onset(event.audio_ms,
                                                 isinstance(event, SpeechOnsetDropped))
                    else:
                        await self._on_speech(event.audio_ms)
                except Exception as exc:  # the session's trouble, not the detector's
                    self._failure = self._failure or exc


def utterance_events(
    session_id: str, turn_id: str, end: SpeechEnd, sample_rate: int,
    end_of_turn: float | None = None, *, keep_audio: bool = True,
) -> tuple[SpeechStopped, InputAudio]:
    """What an utterance appends, in one batch: where speech stopped and how the turn's
    end was decided (the silence waited, the end-of-turn verdict if one was asked), and
    the audio itself (the log alone can replay and re-transcribe it; ``keep_audio``
    false, the session's ``store_audio`` off: its timing only)."""
    return (
        SpeechStopped(session_id=session_id, turn_id=turn_id,
                      data=SpeechStoppedData(audio_ms=end.audio_ms, silence_ms=end.silence_ms,
                                             end_of_turn=end_of_turn)),
        InputAudio(session_id=session_id, turn_id=turn_id,
                   data=InputAudioData(sample_rate=sample_rate, start_ms=end.start_ms,
                                       duration_ms=int(end.duration_s * 1000),
                                       audio=end.audio if keep_audio else b"")),
    )
