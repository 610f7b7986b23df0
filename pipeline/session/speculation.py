"""Preemptive turns: prepare the reply while the user pauses, send it only if the turn ends so.

Without it every stage waits for the one before: the endpointer waits ``end_of_speech_ms``
of silence, then STT runs, then the LLM, then TTS. Most pauses *are* the end of the turn,
so on a short pause (:class:`~pipeline.audio.SpeechPause`, ``preemptive_pause_ms``) the
session transcribes the utterance so far and starts the reply: LLM, sentence buffer and
the TTS of the first piece. Nothing is sent or logged meanwhile: the reply's events are
held here, in memory (at most :data:`HELD_EVENTS`; past that, and after the first audio
chunk, the reply simply waits: its stream is not read, so the orchestrator's own bounds
stop the LLM and TTS).

Then one of three things happens:

* **the endpoint confirms** the utterance the pause saw (the same onset and offset, so the
  same speech, so the same transcript): the session *adopts* the speculation: the held events
  go out at once, restamped with the time they are sent, and the rest of the reply
  streams on as any reply;
* **the endpoint ends a different utterance** (push-to-talk, a forced cut): it is
  transcribed as usual and the speculation is adopted if the transcript is the same
  (:func:`same_transcript`), discarded otherwise (``transcript_changed``);
* **the user speaks again** (:class:`~pipeline.audio.SpeechResume`), a typed turn comes,
  the session closes: the speculation is cancelled and dropped.

Every dropped speculation appends one ``speculation.discarded`` event (no turn: the turn
never existed), so metrics count the work thrown away; nothing else speculative ever
reaches the log. The :class:`Speculator` is the session's one owner of its speculation: it
starts one at a pause, drops it, hands it to the turn that confirms it, and appends the
discard itself, through the session's emitter; a speculation makes its transcript and
reply with the functions the speculator is given (the session's
:class:`~pipeline.session.reply_source.ReplySource`), so nothing here calls back into the
session.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Literal

from pipeline.aio import aclose_stream
from pipeline.audio import SpeechEnd, SpeechPause
from pipeline.reply import CancelToken
from pipeline.session.creation import new_turn_id
from pipeline.session.emitter import SessionEmitter
from pipeline.tracing import turn_context
from schemas import (
    Event,
    ResponseStarted,
    SpeculationDiscarded,
    SpeculationDiscardedData,
    now_ms,
)

__all__ = [
    "HELD_EVENTS",
    "DiscardReason",
    "Speculation",
    "Speculator",
    "final_transcript",
    "same_transcript",
]

#: events a speculation holds at most before it stops reading its reply
HELD_EVENTS = 256
#: where a speculation stops reading its reply: its first audio is ready, or the model
#: called a tool (nothing of a tool runs for a turn that may never be)
_HOLD_AT = frozenset({"response.audio.chunk", "tool.call.started"})
#: the reply's first marks a preparation reaches, in order, as the latency parts name them
_PREPARED_MARKS = (
    ("llm_first_token", "response.text.delta"),
    ("first_piece", "response.sentence"),
    ("tts_first_chunk", "response.audio.chunk"),
)

DiscardReason = Literal["speech_resumed", "transcript_changed", "superseded", "failed", "closed"]

#: ``(audio, sample_rate)`` → the transcript (no event appended)
Transcribe = Callable[[bytes, int], Awaitable[str]]
#: ``(turn_id, transcript, cancel)`` → the reply's events, as the orchestrator yields them
Reply = Callable[[str, str, CancelToken], AsyncGenerator[Event, None]]


def same_transcript(a: str, b: str) -> bool:
    """Whether two transcripts say the same words (case, punctuation and spacing aside)."""
    return _words(a) == _words(b)


async def final_transcript(
    speculation: Speculation, end: SpeechEnd, sample_rate: int, transcribe: Transcribe
) -> tuple[str, DiscardReason | None]:
    """The transcript of the utterance that ended, and why ``speculation`` may not be
    adopted (``None``: adopt it).

    The same speech as the pause's (the same onset and offset; at most more silent
    padding after it) has the same transcript, so it is not transcribed again; other audio
    is, and the speculation stands if the words are the same. A
    failed speculative STT leaves the decision to the final one.
    """
    try:
        heard: str | None = await speculation.transcript()
    except Exception:
        heard = None
    if heard is not None and speculation.covers(end):
        return heard, None
    text = await transcribe(end.audio, sample_rate)
    if heard is None:
        return text, "failed"
    return text, None if same_transcript(text, heard) else "transcript_changed"


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+(?:['’][^\W_]+)*", text.casefold())


class Speculation:
    """One reply prepared from a pause; see the module docstring.

    Created on the pause (it starts working at once, in a task of its own). The session
    then either :meth:`adopt`\\ s it or :meth:`discard`\\ s it, exactly once.
    """

    def __init__(
        self,
        turn_id: str,
        pause: SpeechPause,
        sample_rate: int,
        *,
        transcribe: Transcribe,
        reply: Reply,
    ) -> None:
        self.turn_id = turn_id
        self.pause = pause
        self.sample_rate = sample_rate
        self.cancel = CancelToken()
        #: when the preparation began (the log's clock): the reply's head start is from here
        self.started_ms = now_ms()
        #: the transcript of the paused audio, once known, and when it was
        self.text: str | None = None
        self.heard_ms: int | None = None
        #: the reply's events, held until adopted
        self.held: list[Event] = []
        self._reply = reply
        self._transcribe = transcribe
        self._stream: AsyncGenerator[Event, None] | None = None
        #: resolved with the transcript as soon as STT is done (the reply goes on after)
        self._heard: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(  # its calls are the turn's (logs, traces)
            self._prepare(), name=f"speculation-{turn_id}", context=turn_context(turn_id))

    @property
    def audio_ms(self) -> int:
        return self.pause.audio_ms

    def covers(self, end: SpeechEnd) -> bool:
        """The utterance that ended is the one this speculation heard (same onset and
        offset; its audio at most longer by padding the detector judged silent)."""
        return self.pause.covered_by(end)

    async def _prepare(self) -> None:
        try:
            # (the utterance as long as it will be at its end: SpeechPause.padded_audio)
            text = await self._transcribe(self.pause.padded_audio, self.sample_rate)
            self.text = text.strip()
        except BaseException as exc:
            if not self._heard.done():
                if isinstance(exc, asyncio.CancelledError):
                    self._heard.cancel()
                else:
                    self._heard.set_exception(exc)
            raise
        self.heard_ms = now_ms()
        self._heard.set_result(self.text)
        if not self.text:
            return
        self._stream = self._reply(self.turn_id, self.text, self.cancel)
        async for event in self._stream:
            self.held.append(event)
            if event.type in _HOLD_AT or len(self.held) >= HELD_EVENTS:
                return  # first audio is ready, or a tool would run: wait for the verdict

    async def transcript(self) -> str:
        """The transcript; waits for the speculative STT only (raises what it raised)."""
        return await asyncio.shield(self._heard)

    async def adopt(self, input_event_id: str | None) -> AsyncGenerator[Event, None]:
        """The reply's events for the log: those held (restamped now, ``response.started``
        pointing at the real input event), then the rest as the reply goes on.

        Raises what preparing raised (the caller then replies the usual way). Closing
        this stream closes the reply's.
        """
        await asyncio.shield(self._task)
        parts = self.prepared_parts()
        try:
            for event in self.held:
                yield _restamped(event, input_event_id, self.started_ms, parts)
            self.held.clear()
            if self._stream is not None:
                async for event in self._stream:
                    yield event
        finally:
            await self._close_stream()

    def prepared_parts(self) -> dict[str, int]:
        """Where the preparation's time went (ms), from the held events' own times, which
        the log does not keep (they are sent as of their adoption): the pause's transcript,
        then each first mark of the reply it reached, each from the one before."""
        if self.heard_ms is None:
            return {}
        parts = {"stt": max(0, self.heard_ms - self.started_ms)}
        previous = self.heard_ms
        for name, kind in _PREPARED_MARKS:
            at = next((event.ts for event in self.held if event.type == kind), None)
            if at is None:
                break
            parts[name] = max(0, at - previous)
            previous = max(previous, at)
        return parts

    async def discard(self) -> int:
        """Cancel the work and drop what it held; return how many events were dropped."""
        self.cancel.cancel("barge_in")
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        if not self._heard.done():
            self._heard.cancel()
        elif not self._heard.cancelled():
            self._heard.exception()  # retrieved: no "never retrieved" warning
        await self._close_stream()
        dropped = len(self.held)
        self.held.clear()
        return dropped

    async def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(Exception):
                await aclose_stream(stream)


def _restamped(event: Event, input_event_id: str | None, started_ms: int,
               parts: dict[str, int]) -> Event:
    """A held event as sent now; ``response.started`` points at the real input and says
    how long the reply was prepared before (``prepared_ms``: its head start) and where
    that time went (``prepared_parts``)."""
    now = now_ms()
    update: dict[str, object] = {"ts": now}
    if isinstance(event, ResponseStarted):
        update["data"] = event.data.model_copy(update={
            "input_event_id": input_event_id, "prepared_ms": max(0, now - started_ms),
            "prepared_parts": parts or None})
    return event.model_copy(update=update)


class Speculator:
    """A session's preemptive reply, its one owner: at most one speculation at a time,
    started at a pause (:meth:`start`), dropped when speech resumes or anything else
    supersedes it (:meth:`drop`), or handed to the turn its utterance ends (:meth:`take`),
    which adopts it or :meth:`discard`\\ s it, once. The end-of-turn judge may read the
    words it heard (:meth:`heard`)."""

    def __init__(self, emitter: SessionEmitter, *, transcribe: Transcribe, reply: Reply) -> None:
        self._emitter = emitter
        self._transcribe = transcribe
        self._reply = reply
        self.current: Speculation | None = None

    async def start(self, pause: SpeechPause, sample_rate: int) -> None:
        """Prepare the reply to what was said before ``pause``, unsent; it replaces the
        speculation of an earlier pause (``superseded``)."""
        speculation = Speculation(new_turn_id(), pause, sample_rate,
                                  transcribe=self._transcribe, reply=self._reply)
        await self.drop("superseded")
        self.current = speculation

    async def heard(self, audio: bytes, sample_rate: int) -> str | None:
        """The words of ``audio`` when the current speculation transcribes that very audio
        (its transcript, waited for: the same words are not asked for twice); None when no
        speculation does, or it was dropped before it heard them. Raises what its
        transcription raised."""
        speculation = self.current
        if (speculation is None or speculation.sample_rate != sample_rate
                or speculation.pause.padded_audio != audio):
            return None
        try:
            return await speculation.transcript()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the asker itself is being cancelled
            return None

    def take(self) -> Speculation | None:
        """Hand the current speculation over (to adopt or judge it); None if there is none."""
        speculation, self.current = self.current, None
        return speculation

    async def drop(self, reason: DiscardReason) -> None:
        """Discard the current speculation, if any, and log the fact."""
        speculation = self.take()
        if speculation is not None:
            await self.discard(speculation, reason)

    async def discard(self, speculation: Speculation, reason: DiscardReason) -> None:
        """Discard ``speculation`` (taken earlier) and log the one fact it leaves in the
        log (no turn: it never was one)."""
        dropped = await speculation.discard()
        await self._emitter.emit(SpeculationDiscarded(
            session_id=self._emitter.session_id,
            data=SpeculationDiscardedData(
                reason=reason, audio_ms=speculation.audio_ms,
                transcript=speculation.text or "", events_dropped=dropped,
            ),
        ))
