"""One live session: client input in, events out, every event appended before it goes out.

:class:`LiveSession` is what a socket handler (``deployments/api/realtime.py``), the SSE
chat and the ``voxline demo`` command drive. It owns the per-connection work: speech input
(:mod:`pipeline.session.speech_input`), one response at a time, barge-in and cancel, and
preemptive turns (:mod:`pipeline.session.speculation`: a reply prepared during a pause).
Everything it knows about the session it folds from the log (:mod:`pipeline.log.state`),
so any process can pick the session up.

The outgoing contract: events leave a session one way, through the log. :meth:`emit`
appends them and folds them into :attr:`LiveSession.state`; it queues nothing, so what a
session holds is its live response, however long the connection has lasted. Readers tail
the log: a socket sends the session's whole log, a chat stream one turn of it
(:func:`pipeline.session.follow_turn`). Bad input raises :class:`schemas.ProtocolError`
from the call that received it; the caller turns it into an ``error`` event
(:meth:`LiveSession.reject`) and the session goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncGenerator, Callable, Coroutine, Sequence
from typing import Any

from pipeline.audio import EndpointConfig, SpeechEnd, SpeechPause
from pipeline.log import EventLog, SessionState, fold
from pipeline.retrieval import Grounder
from pipeline.session.admission import Admission, Permit
from pipeline.session.engines import SessionEngines
from pipeline.session.follow import ends_turn
from pipeline.session.reply_writer import ReplyWriter
from pipeline.session.settings import merge_settings
from pipeline.session.speculation import (
    DiscardReason,
    Speculation,
    Speculator,
    final_transcript,
)
from pipeline.session.speech_input import SpeechInput, endpoint_config, utterance_events
from pipeline.turn import AudioOutput, CancelToken, TurnConfig, TurnOrchestrator
from schemas import (
    CancelReason,
    ChatMessage,
    ClientMessageUnion,
    ErrorCode,
    ErrorEvent,
    Event,
    EventBase,
    GenerationRequest,
    HistorySettings,
    InputAudioAppend,
    InputAudioClear,
    InputAudioCommit,
    InputText,
    InputTextData,
    InputTextMessage,
    OverloadedError,
    ProtocolError,
    ResponseCancel,
    ResponseCitations,
    ResponseCreate,
    SearchToolConfig,
    SessionClosed,
    SessionClosedData,
    SessionCreated,
    SessionCreatedData,
    SessionError,
    SessionSettings,
    SessionUpdate,
    SessionUpdated,
    SessionUpdatedData,
    SpeculationDiscarded,
    SpeculationDiscardedData,
    SpeechBoundaryData,
    SpeechStarted,
    TranscriptData,
    TranscriptFinal,
    TranscriptionRequest,
    VoxlineError,
    check_pcm16,
)

logger = logging.getLogger(__name__)

#: events that start a turn (with those that end one: when the fold may forget turns)
_NEW_TURN = frozenset({"input.text", "input.audio"})


class LiveSession:
    """A session's live side. Create with :meth:`open`; end with :meth:`close`."""

    def __init__(
        self,
        session_id: str,
        log: EventLog,
        engines: SessionEngines,
        state: SessionState,
        *,
        turn_config: TurnConfig | None = None,
        endpoint_config: EndpointConfig | None = None,
        history: HistorySettings | None = None,
        admission: Admission | None = None,
        grounder: Grounder | None = None,
        max_buffer_s: float | None = None,
    ) -> None:
        self.session_id = session_id
        #: manual turns: audio appended between two commits, at most (None: unbounded)
        self.max_buffer_s = max_buffer_s
        self.log = log
        self.engines = engines
        self.state = state
        self.orchestrator = TurnOrchestrator(engines.llm, engines.tts, turn_config)
        #: which past turns the LLM sees (trimmed in blocks: a stable prompt prefix)
        self.history = history or HistorySettings()
        #: the replica's capacity for turns; None: unlimited
        self.admission = admission
        #: grounds turns in a collection (retrieval) and appends their replies
        self.writer = ReplyWriter(session_id, self.emit, grounder)
        self._endpoint_config = endpoint_config or EndpointConfig()
        self._append_lock = asyncio.Lock()
        self._response: asyncio.Task[None] | None = None
        self._cancel: CancelToken | None = None
        self._audio: SpeechInput | None = None
        #: the turn a ``response.create`` asked a reply for while it was still transcribed
        self._reply_requested: str | None = None
        #: the reply prepared during a pause, if any (preemptive turns)
        self.speculator = Speculator(self._speculation_discarded)
        self._closed = False

    # ---- lifecycle --------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        session_id: str,
        log: EventLog,
        engines: SessionEngines,
        *,
        create: SessionSettings | None = None,
        state: SessionState | None = None,
        **options: object,
    ) -> LiveSession:
        """Fold the session's log (or take ``state``, a fold the caller just made); with
        ``create``, start a new session with those settings.

        An unknown session without ``create`` raises :class:`SessionError`.
        """
        if state is None:
            events, horizon = await log.read_remaining(session_id)
            state = fold(session_id, events, trimmed=horizon is not None)
        session = cls(session_id, log, engines, state, **options)  # type: ignore[arg-type]
        if create is not None and not state.created:
            await session.emit(
                SessionCreated(session_id=session_id, data=SessionCreatedData(settings=create))
            )
        elif not state.created:
            raise SessionError(f"no session {session_id!r}", code=ErrorCode.SESSION_NOT_FOUND)
        if state.closed:
            raise SessionError(f"session {session_id!r} is closed", code=ErrorCode.SESSION_CLOSED)
        return session

    async def close(self, reason: str | None = None) -> None:
        """Stop the running response; with ``reason``, also end the session in the log."""
        await self.speculator.drop("closed")
        await self.cancel_response("shutdown")
        if reason is not None and not self.state.closed:
            await self.emit(
                SessionClosed(session_id=self.session_id, data=SessionClosedData(reason=reason))
            )
        if self._audio is not None:
            await self._audio.close()
        self._closed = True

    @property
    def settings(self) -> SessionSettings:
        return self.state.settings

    @property
    def responding(self) -> bool:
        return self._response is not None and not self._response.done()

    # ---- the outgoing side ------------------------------------------------------------

    async def emit(self, *events: EventBase) -> list[Event]:
        """Append events (one atomic batch) and fold them; readers find them in the log.

        The fold keeps only the turns the dialogue history still shows (checked when a
        turn starts or ends), so the state does not grow with the number of turns either.
        """
        async with self._append_lock:
            result = await self.log.append_batch(events)
            for event in result.events:
                self.state.apply(event)
            if any(e.type in _NEW_TURN or ends_turn(e) for e in result.events):
                self.state.forget_turns(self.history)
        return list(result.events)

    async def reject(self, error: VoxlineError, turn_id: str | None = None) -> None:
        """Tell the client about bad input: an ``error`` event; the session goes on."""
        await self.emit(
            ErrorEvent(session_id=self.session_id, turn_id=turn_id, data=error.to_payload())
        )

    # ---- the incoming side ------------------------------------------------------------

    async def handle(self, message: ClientMessageUnion) -> None:
        """Act on one client message (``session.resume`` is the transport's job)."""
        match message:
            case InputTextMessage():
                await self.submit_text(message.text, search=message.search_tool_config,
                                       respond=message.respond)
            case InputAudioAppend():
                await self.push_audio(message.audio)
            case InputAudioCommit():
                await self.commit_audio()
            case InputAudioClear():
                await self.clear_audio()
            case ResponseCancel():
                await self.cancel_response("client")
            case ResponseCreate():
                await self.create_response()
            case SessionUpdate():
                await self.update_settings(message.settings)
            case _:
                raise ProtocolError(f"{message.type} is not handled here")

    async def update_settings(self, patch: dict[str, object]) -> None:
        settings = merge_settings(self.settings, patch)
        audio_changed = _audio_settings(settings) != _audio_settings(self.settings)
        if audio_changed and self._audio:
            await self._audio.close()
            self._audio = None
            await self.speculator.drop("superseded")  # its utterance will never end
        await self.emit(
            SessionUpdated(
                session_id=self.session_id,
                data=SessionUpdatedData(settings=settings, changed=tuple(sorted(patch))),
            )
        )

    async def submit_text(
        self, text: str, *, search: SearchToolConfig | None = None, respond: bool | None = None
    ) -> str:
        """A typed turn: ``input.text``, then the response. Returns the turn id.

        ``search`` grounds this turn in a collection (instead of ``settings.search``).
        ``respond`` false (unset: the session's ``auto_response``): the turn is logged and
        waits for :meth:`create_response`; a running reply goes on.
        """
        if not text.strip():
            raise ProtocolError("empty text", code=ErrorCode.EMPTY_INPUT)
        turn_id = _new_turn_id()
        await self.speculator.drop("superseded")
        if not (self.settings.auto_response if respond is None else respond):
            await self.emit(InputText(
                session_id=self.session_id, turn_id=turn_id, data=InputTextData(text=text)))
            return turn_id
        await self.cancel_response("barge_in")
        permit = self._admit_turn()  # refused: nothing appended, the session goes on
        try:
            [event] = await self.emit(InputText(
                session_id=self.session_id, turn_id=turn_id, data=InputTextData(text=text)))
        except BaseException:
            if permit is not None:
                permit.release()
            raise
        self._start_response(turn_id, text, event.id, permit=permit, search=search)
        return turn_id

    async def push_audio(self, pcm: bytes) -> None:
        """PCM16 mono at the session's input rate; VAD decides where utterances end.

        With manual turns (no ``auto_response``) the client commits: what it appends
        between two commits is at most ``max_buffer_s`` (``audio_too_long``, nothing is
        taken); with server VAD the forced cut bounds every utterance."""
        check_pcm16(pcm, allow_empty=True)
        audio = await self._audio_input()
        if not self.settings.auto_response and self.max_buffer_s is not None:
            audio.check_room(len(pcm), self.max_buffer_s)
        await audio.push(pcm)

    async def commit_audio(self) -> None:
        """End the current utterance now (push-to-talk), without waiting for silence."""
        if self._audio is not None:
            await self._audio.commit()

    async def clear_audio(self) -> None:
        """Drop the audio not yet cut into an utterance; the next push starts afresh."""
        if self._audio is not None:
            await self._audio.close()
            self._audio = None

    async def create_response(self) -> None:
        """Reply to the newest turn, which has a user input and no reply yet.

        Its transcription may still run (a commit then ``response.create``, as OpenAI
        clients send them): the reply then follows it. Anything else is a client error:
        a reply running, or no turn waiting for one.
        """
        turn = self.state.open_turn
        task = self._response
        if task is not None and not task.done():
            if turn is not None and turn.status == "open" and turn.source == "audio":
                self._reply_requested = turn.turn_id  # being transcribed: reply after it
                return
            raise ProtocolError("a response is already in progress; cancel it first",
                                code=ErrorCode.INVALID_MESSAGE)
        if turn is None or turn.status != "open" or not turn.user_text.strip():
            raise ProtocolError("no user input waits for a response",
                                code=ErrorCode.EMPTY_INPUT)
        permit = self._admit_turn()
        self._start_response(turn.turn_id, turn.user_text, turn.input_event_id, permit=permit,
                             reply=True)

    async def cancel_response(self, reason: CancelReason) -> None:
        """Cancel the running response, if any, and wait until it has ended."""
        task, token = self._response, self._cancel
        if task is None or task.done() or token is None:
            return
        token.cancel(reason)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def wait_response(self) -> None:
        """Wait for the running response (tests and the demo use it)."""
        if self._response is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._response

    # ---- turns ------------------------------------------------------------------------

    async def _audio_input(self) -> SpeechInput:
        if self._audio is None:
            if self.engines.vad is None or self.engines.stt is None:
                raise ProtocolError(
                    "this server takes no audio (no VAD or STT engine)",
                    code=ErrorCode.UNSUPPORTED_FORMAT,
                )
            settings = self.settings
            pause = settings.preemptive_pause_ms if settings.preemptive_turns else None
            self._audio = SpeechInput(
                self.engines.vad,
                endpoint_config(self._endpoint_config, settings.end_of_speech_ms, pause),
                sample_rate=settings.input_sample_rate,
                on_speech=self._speech_started,
                on_utterance=self._utterance,
                on_pause=self._paused,
                on_resume=self._resumed,
            )
        return self._audio

    async def _speech_started(self, audio_ms: int) -> None:
        if self.responding:  # barge-in: the user talks over the reply
            await self.cancel_response("barge_in")
        await self.emit(
            SpeechStarted(session_id=self.session_id, data=SpeechBoundaryData(audio_ms=audio_ms))
        )

    async def _paused(self, pause: SpeechPause, sample_rate: int) -> None:
        """Preemptive turns: prepare the reply to what was said so far, unsent."""
        if self.responding or self.engines.stt is None:
            return  # a reply is out: this pause is not the end of a turn to answer
        if not self.settings.auto_response or self.settings.search is not None:
            return  # a reply waits for response.create, or for a search: nothing to prepare
        speculation = Speculation(
            _new_turn_id(), pause, sample_rate, transcribe=self._stt_text, reply=self._reply_events
        )
        await self.speculator.start(speculation)

    async def _resumed(self, audio_ms: int) -> None:
        await self.speculator.drop("speech_resumed")

    async def _speculation_discarded(
        self, speculation: Speculation, reason: DiscardReason, dropped: int
    ) -> None:
        """The one fact a dropped speculation leaves in the log (no turn: it never was one)."""
        await self.emit(SpeculationDiscarded(
            session_id=self.session_id,
            data=SpeculationDiscardedData(
                reason=reason, audio_ms=speculation.audio_ms,
                transcript=speculation.text or "", events_dropped=dropped,
            ),
        ))

    async def _utterance(self, end: SpeechEnd, sample_rate: int) -> None:
        speculation = self.speculator.take()
        turn_id = speculation.turn_id if speculation is not None else _new_turn_id()
        await self.cancel_response("barge_in")
        try:
            permit = self._admit_turn()
        except OverloadedError as exc:  # the utterance is dropped; the client is told
            if speculation is not None:
                await self.speculator.discard(speculation, "superseded")
            await self.reject(exc)
            return
        try:
            await self._utterance_events(turn_id, end, sample_rate, permit, speculation)
        except BaseException:
            if permit is not None:
                permit.release()
            if speculation is not None:
                await self.speculator.discard(speculation, "failed")
            raise

    async def _utterance_events(
        self,
        turn_id: str,
        end: SpeechEnd,
        sample_rate: int,
        permit: Permit | None,
        speculation: Speculation | None = None,
    ) -> None:
        _, audio_event = await self.emit(
            *utterance_events(self.session_id, turn_id, end, sample_rate))
        if speculation is not None:
            self._start_speculated(turn_id, end, sample_rate, audio_event.id, speculation, permit)
            return
        self._start_response(turn_id, None, audio_event.id, audio=(end.audio, sample_rate),
                             permit=permit, reply=self.settings.auto_response)

    def _start_speculated(
        self,
        turn_id: str,
        end: SpeechEnd,
        sample_rate: int,
        input_event_id: str | None,
        speculation: Speculation,
        permit: Permit | None,
    ) -> None:
        """Like :meth:`_start_response`, for an utterance a speculation prepared a reply to:
        the turn's token cancels the speculative work too (barge-in reaches it)."""
        token = self._launch(turn_id, permit, lambda token: self._respond_speculated(
            turn_id, end, sample_rate, input_event_id, speculation, token))
        token.add_callback(speculation.cancel.cancel)

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
        try:
            text, reason = await final_transcript(speculation, end, sample_rate, self._stt_text)
            if reason is not None:
                await self.speculator.discard(speculation, reason)
                await self._emit_transcript(turn_id, text)
                if text:
                    await self._reply(turn_id, text, input_event_id, token)
                return
            await self._emit_transcript(turn_id, text)
            if not text:
                return
            await self.writer.write(turn_id, speculation.adopt(input_event_id))
        except Exception as exc:
            await self._turn_failed(turn_id, exc)
        finally:
            await speculation.discard()  # frees the work if anything above left early

    def _admit_turn(self) -> Permit | None:
        """A place among the replica's turns, or :class:`OverloadedError` at once."""
        return None if self.admission is None else self.admission.acquire("turns")

    def _start_response(
        self,
        turn_id: str,
        text: str | None,
        input_event_id: str | None,
        *,
        audio: tuple[bytes, int] | None = None,
        permit: Permit | None = None,
        search: SearchToolConfig | None = None,
        reply: bool = True,
    ) -> None:
        self._launch(turn_id, permit, lambda token: self._respond(
            turn_id, text, input_event_id, token, audio, search, reply))

    def _launch(
        self,
        turn_id: str,
        permit: Permit | None,
        respond: Callable[[CancelToken], Coroutine[Any, Any, None]],
    ) -> CancelToken:
        """Run ``respond(token)`` as the session's response, under a new cancel token (which
        is returned); the turn's place is given back however it ends."""
        token = self._cancel = CancelToken()
        self._reply_requested = None
        self._response = asyncio.create_task(
            respond(token), name=f"response-{self.session_id}-{turn_id}")
        if permit is not None:
            self._response.add_done_callback(lambda _: permit.release())
        return token

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
        try:
            if audio is not None:
                text = await self._transcribe(turn_id, *audio)
                if not text:
                    return
            if not (reply or self._reply_requested == turn_id):
                return  # auto_response off: the turn waits for response.create
            assert text is not None
            await self._reply(turn_id, text, input_event_id, token, search)
        except Exception as exc:
            await self._turn_failed(turn_id, exc)

    async def _turn_failed(self, turn_id: str, exc: Exception) -> None:
        """A reply that failed ends its turn with an ``error`` event, never the session
        (a bug too: logged, and told to the client as an internal error)."""
        if not isinstance(exc, VoxlineError):
            logger.error("response %s of session %s failed", turn_id, self.session_id,
                         exc_info=exc)
            exc = VoxlineError("internal error; it was logged")
        await self.reject(exc, turn_id)

    async def _transcribe(self, turn_id: str, audio: bytes, sample_rate: int) -> str:
        text = await self._stt_text(audio, sample_rate)
        await self._emit_transcript(turn_id, text)
        return text

    async def _stt_text(self, audio: bytes, sample_rate: int) -> str:
        """The transcript of ``audio`` in the session's language; nothing is appended."""
        assert self.engines.stt is not None
        request = TranscriptionRequest(
            audio=audio, sample_rate=sample_rate, language=self.settings.language.split("-")[0]
        )
        segments = [s async for s in self.engines.stt.transcribe(request)]
        return " ".join(s.text.strip() for s in segments).strip()

    async def _emit_transcript(self, turn_id: str, text: str) -> None:
        await self.emit(
            TranscriptFinal(
                session_id=self.session_id,
                turn_id=turn_id,
                data=TranscriptData(text=text, language=self.settings.language),
            )
        )

    async def _reply(
        self, turn_id: str, text: str, input_event_id: str | None, token: CancelToken,
        search: SearchToolConfig | None = None,
    ) -> None:
        """Reply to ``text``, grounded in a collection when ``search`` (or the session's
        ``search`` setting) names one: its citations go out right before ``response.done``."""
        config = search or self.settings.search
        context: list[ChatMessage] = []
        citations: ResponseCitations | None = None
        if config is not None:  # retrieval: the passages go right before the question
            context, citations = await self.writer.ground(turn_id, config, text)
        stream = self._reply_events(turn_id, text, token, input_event_id, context)
        await self.writer.write(turn_id, stream, citations)

    def _reply_events(
        self, turn_id: str, text: str, token: CancelToken, input_event_id: str | None = None,
        context: Sequence[ChatMessage] = (),
    ) -> AsyncGenerator[Event, None]:
        """The reply's events, unsent: :meth:`_reply` appends them; a speculation holds them.
        ``context`` (retrieved passages) goes between the history and the question."""
        settings = self.settings
        history = self.state.history(self.history)
        request = GenerationRequest(
            request_id=f"{self.session_id}:{turn_id}",
            messages=(*history, *context, ChatMessage(role="user", content=text)),
            sampling=settings.sampling,
        )
        return self.orchestrator.run(
            session_id=self.session_id,
            turn_id=turn_id,
            request=request,
            settings=settings,
            cancel=token,
            input_event_id=input_event_id,
            output=AudioOutput.for_settings(settings),  # the session's output format
        )


def _audio_settings(settings: SessionSettings) -> tuple[object, ...]:
    """The settings the speech input is built from: a change rebuilds it."""
    return (settings.input_sample_rate, settings.end_of_speech_ms, settings.preemptive_turns,
            settings.preemptive_pause_ms)


def _new_turn_id() -> str:
    return f"turn_{uuid.uuid4().hex[:12]}"
