"""A live session's replies: one at a time, from the turn that asks for one to its end.

:class:`Responder` owns the session's running response: it starts one for a turn (typed,
spoken, or asked for by ``response.create``), cancels it (barge-in, the client, shutdown),
and ends a failed one with an ``error`` event, never the session. A spoken turn is
transcribed first; a turn a speculation already prepared a reply to
(:mod:`pipeline.session.speculation`) adopts that reply when the final transcript is
what the speculation heard. It gets everything it uses handed down when the session is
built: replies and transcripts come from a :class:`ReplySource`, events go out through the
session's :class:`SessionEmitter` (directly, or through the :class:`ReplyWriter`, which
grounds a turn and appends its reply); none of them calls back into it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from pipeline.audio import SpeechEnd
from pipeline.privacy import redacted_for
from pipeline.reply import CancelToken
from pipeline.session.admission import Admission, Permit, Waiting
from pipeline.session.emitter import SessionEmitter
from pipeline.session.reply_source import ReplySource
from pipeline.session.reply_writer import ReplyWriter
from pipeline.session.speculation import Speculation, Speculator, final_transcript
from pipeline.tools import SEARCH_DOCUMENTS
from pipeline.tracing import turn_context
from schemas import (
    CancelReason,
    ChatMessage,
    ErrorCode,
    EventLogError,
    OverloadedError,
    ProtocolError,
    ResponseCitations,
    SearchToolConfig,
    TranscriptData,
    TranscriptFinal,
    VoxlineError,
)

logger = logging.getLogger(__name__)


class Responder:
    """Runs a session's responses, one at a time (see the module docstring)."""

    def __init__(
        self,
        emitter: SessionEmitter,
        source: ReplySource,
        writer: ReplyWriter,
        admission: Admission | None = None,
        *,
        speculator: Speculator,
    ) -> None:
        self.session_id = emitter.session_id
        self._emitter = emitter
        self.source = source
        #: grounds turns in a collection (retrieval) and appends their replies
        self.writer = writer
        #: the replica's capacity for turns; None: unlimited
        self.admission = admission
        #: the reply prepared during a pause, if any (preemptive turns): adopted or
        #: discarded here once its turn starts (:meth:`start_speculated`)
        self.speculator = speculator
        self._response: asyncio.Task[None] | None = None
        self._cancel: CancelToken | None = None
        #: the running response's place among the replica's turns (admission)
        self._place: Permit | Waiting | None = None
        #: the turn the running response replies to: its own from the start, or one only
        #: transcribed (auto_response off) once ``response.create`` asked for its reply
        self._replies_to: str | None = None

    @property
    def responding(self) -> bool:
        return self._response is not None and not self._response.done()

    @property
    def replying(self) -> bool:
        """A response runs that is or will be a reply; not a turn only transcribed for a
        later ``response.create`` (auto_response off), over which there is nothing to
        pause: speech then is the next turn, however short."""
        return self.responding and self._replies_to is not None

    def admit(self) -> Permit | None:
        """A place among the replica's turns, or :class:`OverloadedError` at once."""
        return None if self.admission is None else self.admission.acquire("turns")

    def admit_voice(self) -> Permit | Waiting | None:
        """A voice turn's place: one now, or one the response waits for first (up to
        ``voice_turn_wait_ms``; then its turn fails ``overloaded``), or
        :class:`OverloadedError` at once when no more may wait."""
        if self.admission is None:
            return None
        limits = self.admission.settings
        return self.admission.reserve("turns", limits.voice_turn_wait_ms / 1000,
                                      limits.max_waiting_turns)

    # ---- starting and ending a response ---------------------------------------------

    def start(
        self,
        turn_id: str,
        text: str | None,
        input_event_id: str | None,
        *,
        audio: tuple[bytes, int] | None = None,
        permit: Permit | Waiting | None = None,
        search: SearchToolConfig | None = None,
        reply: bool = True,
    ) -> None:
        """Respond to ``text`` (or to ``audio``, transcribed first) as the session's
        response; ``reply`` false: only transcribe, the turn waits for ``response.create``."""
        self._launch(turn_id, permit, lambda token: self._respond(
            turn_id, text, input_event_id, token, audio, search, reply), replies=reply)

    def start_speculated(
        self,
        turn_id: str,
        end: SpeechEnd,
        sample_rate: int,
        input_event_id: str | None,
        speculation: Speculation,
        permit: Permit | Waiting | None,
    ) -> None:
        """Like :meth:`start`, for an utterance a speculation prepared a reply to: the
        turn's token cancels the speculative work too (barge-in reaches it)."""

        async def not_admitted(exc: OverloadedError | None) -> None:
            closed = exc is None and token.reason == "shutdown"
            await self.speculator.discard(speculation, "closed" if closed else "superseded")
            if exc is not None:
                await self._turn_failed(turn_id, exc)

        token = self._launch(turn_id, permit, lambda token: self._respond_speculated(
            turn_id, end, sample_rate, input_event_id, speculation, token),
            not_admitted=not_admitted)
        token.add_callback(speculation.cancel.cancel)

    async def create(self) -> None:
        """Reply to the newest turn, which has a user input and no reply yet.

        Its transcription may still run (a commit then ``response.create``, as OpenAI
        clients send them): the reply then follows it. Anything else is a client error:
        a reply running, or no turn waiting for one.
        """
        turn = self._emitter.state.open_turn
        task = self._response
        if task is not None and not task.done():
            if turn is not None and turn.status == "open" and turn.source == "audio":
                self._replies_to = turn.turn_id  # being transcribed: reply after it
                return
            raise ProtocolError("a response is already in progress; cancel it first",
                                code=ErrorCode.INVALID_MESSAGE)
        newest = next(reversed(self._emitter.state.turns.values()), None)
        if turn is None and newest is not None and newest.awaits_reply:
            permit = self.admit()  # the turn goes on with its tool calls' outputs
            self._launch(newest.turn_id, permit,
                         lambda token: self._go_on(newest.turn_id, token))
            return
        if turn is None or turn.status != "open" or not turn.user_text.strip():
            raise ProtocolError("no user input waits for a response",
                                code=ErrorCode.EMPTY_INPUT)
        permit = self.admit()
        self.start(turn.turn_id, turn.user_text, turn.input_event_id, permit=permit,
                   reply=True)

    async def cancel(self, reason: CancelReason) -> None:
        """Cancel the running response, if any, and wait until it has ended."""
        task, token = self._response, self._cancel
        if task is None or task.done() or token is None:
            return
        token.cancel(reason)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def wait(self) -> None:
        """Wait for the running response (tests and the demo use it)."""
        if self._response is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._response

    async def stop(self) -> None:
        """The session closes: drop the speculation, cancel the response."""
        await self.speculator.drop("closed")
        await self.cancel("shutdown")

    def _launch(
        self,
        turn_id: str,
        permit: Permit | Waiting | None,
        respond: Callable[[CancelToken], Coroutine[Any, Any, None]],
        *,
        replies: bool = True,
        not_admitted: Callable[[OverloadedError | None], Coroutine[Any, Any, None]]
        | None = None,
    ) -> CancelToken:
        """Run ``respond(token)`` as the session's response, under a new cancel token (which
        is returned); the turn's place is given back however it ends. ``replies`` false:
        it only transcribes the turn, unless ``response.create`` asks for the reply.

        A place still waited for (:class:`Waiting`) is awaited first. A turn that never
        gets it goes to ``not_admitted``: with the refusal after its wait (by default the
        turn's ``overloaded`` error event), or ``None`` when the response was cancelled
        while it waited (barge-in, the session closing: it ends before it began).

        The place goes back in the task's own last step, not in a done-callback: the loop
        runs those one step after the task ends, and a client that read ``response.done``
        may have its next turn handled in between (``responding`` already false), which
        the replica's turn limit (1 on the CPU profiles) then refused as ``overloaded``.
        The callback stays for a task cancelled before its first step."""
        token = self._cancel = CancelToken()
        self._place = permit
        self._replies_to = turn_id if replies else None
        if not_admitted is None:
            async def not_admitted(exc: OverloadedError | None) -> None:
                if exc is not None:
                    await self._turn_failed(turn_id, exc)
        self._response = asyncio.create_task(  # its log records say the turn
            _holding(permit, respond, token, not_admitted),
            name=f"response-{self.session_id}-{turn_id}", context=turn_context(turn_id))
        if permit is not None:
            self._response.add_done_callback(lambda _: permit.release())
        return token

    # ---- the response's own task ----------------------------------------------------

    async def _respond(
        self,
        turn_id: str,
        text: str | None,
        input_event_id: str | None,
        token: CancelToken,
        audio: tuple[bytes, int] | None,
        search: SearchToolConfig | None = None,
        reply: bool = True,
    ) -> None:
        waited = self._waited_ms()  # read before any await: a later turn replaces the place
        try:
            if audio is not None:
                text = await self._transcribe(turn_id, *audio)
                if not text:
                    return
            if not (reply or self._replies_to == turn_id):
                return  # auto_response off: the turn waits for response.create
            assert text is not None
            await self._reply(turn_id, text, input_event_id, token, search, waited)
        except Exception as exc:
            await self._turn_failed(turn_id, exc)

    async def _respond_speculated(
        self,
        turn_id: str,
        end: SpeechEnd,
        sample_rate: int,
        input_event_id: str | None,
        speculation: Speculation,
        token: CancelToken,
    ) -> None:
        """Adopt the speculation when the final transcript is what it heard; else drop it
        and reply the usual way."""
        waited = self._waited_ms()
        try:
            text, reason = await final_transcript(
                speculation, end, sample_rate, self.source.transcribe)
            if reason is not None:
                await self.speculator.discard(speculation, reason)
                await self._emit_transcript(turn_id, text)
                if text:
                    await self._reply(turn_id, text, input_event_id, token, None, waited)
                return
            await self._emit_transcript(turn_id, text)
            if not text:
                return
            await self.writer.write(turn_id, speculation.adopt(input_event_id),
                                    waited_ms=waited)
        except Exception as exc:
            await self._turn_failed(turn_id, exc)
        finally:
            await speculation.discard()  # frees the work if anything above left early

    async def _go_on(self, turn_id: str, token: CancelToken) -> None:
        """A turn's reply after the client ran its tool calls: the history holds the
        question, the calls and their outputs."""
        try:
            await self.writer.write(turn_id, self.source.reply(turn_id, None, token))
        except Exception as exc:
            await self._turn_failed(turn_id, exc)

    async def _turn_failed(self, turn_id: str, exc: Exception) -> None:
        """A reply that failed ends its turn with an ``error`` event, never the session
        (a bug too: logged, and told to the client as an internal error)."""
        if not isinstance(exc, VoxlineError):
            logger.error("response %s of session %s failed", turn_id, self.session_id,
                         exc_info=exc)
            exc = VoxlineError("internal error; it was logged")
        try:
            await self._emitter.reject(exc, turn_id)
        except EventLogError as lost:  # nobody reading the log would learn the turn ended
            self._emitter.unlogged(lost)

    async def _transcribe(self, turn_id: str, audio: bytes, sample_rate: int) -> str:
        text = await self.source.transcribe(audio, sample_rate)
        return await self._emit_transcript(turn_id, text)

    async def _emit_transcript(self, turn_id: str, text: str) -> str:
        """Log the final transcript, redacted as the session asks; returns what it logged."""
        settings = self._emitter.state.settings
        text = redacted_for(text, settings.redact, settings.language)
        await self._emitter.emit(
            TranscriptFinal(
                session_id=self.session_id,
                turn_id=turn_id,
                data=TranscriptData(text=text, language=settings.language),
            )
        )
        return text

    async def _reply(
        self, turn_id: str, text: str, input_event_id: str | None, token: CancelToken,
        search: SearchToolConfig | None = None, waited_ms: int | None = None,
    ) -> None:
        """Reply to ``text``, grounded in a collection when ``search`` (or the session's
        ``search`` setting) names one: its citations go out right before ``response.done``;
        ``waited_ms``: how long the turn waited for its place."""
        settings = self._emitter.state.settings
        config = search or settings.search
        if search is None and any(t.name == SEARCH_DOCUMENTS for t in settings.tools):
            config = None  # the model searches when it chooses to (a tool)
        context: list[ChatMessage] = []
        citations: ResponseCitations | None = None
        if config is not None:  # retrieval: the passages go right before the question
            context, citations = await self.writer.ground(turn_id, config, text)
        stream = self.source.reply(turn_id, text, token, input_event_id, context)
        await self.writer.write(turn_id, stream, citations, waited_ms=waited_ms)

    def _waited_ms(self) -> int | None:
        """How long the running response waited for its place (None: it did not wait)."""
        place = self._place
        return place.waited_ms if isinstance(place, Waiting) else None


async def _holding(
    permit: Permit | Waiting | None,
    respond: Callable[[CancelToken], Coroutine[Any, Any, None]],
    token: CancelToken,
    not_admitted: Callable[[OverloadedError | None], Coroutine[Any, Any, None]],
) -> None:
    """``respond(token)`` once the turn has its place, then give the place back, before
    the task is done (made here, not by the caller: a task cancelled before it starts
    leaves no coroutine never awaited)."""
    try:
        if isinstance(permit, Waiting):
            remove = token.add_callback(lambda _: permit.release())  # barge-in: stop waiting
            try:
                await permit.permit()
            except OverloadedError as exc:
                await not_admitted(exc)
                return
            except asyncio.CancelledError:
                if not token.cancelled:
                    raise
                await not_admitted(None)
                return
            finally:
                remove()
        await respond(token)
    finally:
        if permit is not None:
            permit.release()
