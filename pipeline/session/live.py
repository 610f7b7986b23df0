"""One live session: client input in, events out, every event appended before it goes out.

:class:`LiveSession` is what a socket handler (``deployments/api/realtime.py``), the SSE
chat and the ``voxline demo`` command drive. It owns the per-connection work: speech input
(:mod:`pipeline.session.speech_input`), one response at a time, barge-in and cancel.
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

from pipeline.audio import EndpointConfig, SpeechEnd
from pipeline.log import EventLog, SessionState, fold
from pipeline.session.admission import Admission, Permit
from pipeline.session.engines import SessionEngines
from pipeline.session.follow import ends_turn
from pipeline.session.settings import merge_settings
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
    InputAudioCommit,
    InputText,
    InputTextData,
    InputTextMessage,
    OverloadedError,
    ProtocolError,
    ResponseCancel,
    SessionClosed,
    SessionClosedData,
    SessionCreated,
    SessionCreatedData,
    SessionError,
    SessionSettings,
    SessionUpdate,
    SessionUpdated,
    SessionUpdatedData,
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
    ) -> None:
        self.session_id = session_id
        self.log = log
        self.engines = engines
        self.state = state
        self.orchestrator = TurnOrchestrator(engines.llm, engines.tts, turn_config)
        #: which past turns the LLM sees (trimmed in blocks: a stable prompt prefix)
        self.history = history or HistorySettings()
        #: the replica's capacity for turns; None: unlimited
        self.admission = admission
        self._endpoint_config = endpoint_config or EndpointConfig()
        self._append_lock = asyncio.Lock()
        self._response: asyncio.Task[None] | None = None
        self._cancel: CancelToken | None = None
        self._audio: SpeechInput | None = None
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
                await self.submit_text(message.text)
            case InputAudioAppend():
                await self.push_audio(message.audio)
            case InputAudioCommit():
                await self.commit_audio()
            case ResponseCancel():
                await self.cancel_response("client")
            case SessionUpdate():
                await self.update_settings(message.settings)
            case _:
                raise ProtocolError(f"{message.type} is not handled here")

    async def update_settings(self, patch: dict[str, object]) -> None:
        settings = merge_settings(self.settings, patch)
        audio_changed = (settings.input_sample_rate, settings.end_of_speech_ms) != (
            self.settings.input_sample_rate, self.settings.end_of_speech_ms)
        if audio_changed and self._audio:
            await self._audio.close()
            self._audio = None
        await self.emit(
            SessionUpdated(
                session_id=self.session_id,
                data=SessionUpdatedData(settings=settings, changed=tuple(sorted(patch))),
            )
        )

    async def submit_text(self, text: str) -> str:
        """A typed turn: ``input.text``, then the response. Returns the turn id."""
        if not text.strip():
            raise ProtocolError("empty text", code=ErrorCode.EMPTY_INPUT)
        turn_id = _new_turn_id()
        await self.cancel_response("barge_in")
        permit = self._admit_turn()  # refused: nothing appended, the session goes on
        try:
            [event] = await self.emit(InputText(
                session_id=self.session_id, turn_id=turn_id, data=InputTextData(text=text)))
        except BaseException:
            if permit is not None:
                permit.release()
            raise
        self._start_response(turn_id, text, event.id, permit=permit)
        return turn_id

    async def push_audio(self, pcm: bytes) -> None:
        """PCM16 mono at the session's input rate; VAD decides where utterances end."""
        check_pcm16(pcm, allow_empty=True)
        audio = await self._audio_input()
        await audio.push(pcm)

    async def commit_audio(self) -> None:
        """End the current utterance now (push-to-talk), without waiting for silence."""
        if self._audio is not None:
            await self._audio.commit()

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
            self._audio = SpeechInput(
                self.engines.vad,
                endpoint_config(self._endpoint_config, self.settings.end_of_speech_ms),
                sample_rate=self.settings.input_sample_rate,
                on_speech=self._speech_started,
                on_utterance=self._utterance,
            )
        return self._audio

    async def _speech_started(self, audio_ms: int) -> None:
        if self.responding:  # barge-in: the user talks over the reply
            await self.cancel_response("barge_in")
        await self.emit(
            SpeechStarted(session_id=self.session_id, data=SpeechBoundaryData(audio_ms=audio_ms))
        )

    async def _utterance(self, end: SpeechEnd, sample_rate: int) -> None:
        turn_id = _new_turn_id()
        await self.cancel_response("barge_in")
        try:
            permit = self._admit_turn()
        except OverloadedError as exc:  # the utterance is dropped; the client is told
            await self.reject(exc)
            return
        try:
            await self._utterance_events(turn_id, end, sample_rate, permit)
        except BaseException:
            if permit is not None:
                permit.release()
            raise

    async def _utterance_events(
        self, turn_id: str, end: SpeechEnd, sample_rate: int, permit: Permit | None
    ) -> None:
        _, audio_event = await self.emit(
            *utterance_events(self.session_id, turn_id, end, sample_rate))
        self._start_response(turn_id, None, audio_event.id, audio=(end.audio, sample_rate),
                             permit=permit)

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
    ) -> None:
        token = CancelToken()
        self._cancel = token
        self._response = asyncio.create_task(
            self._respond(turn_id, text, input_event_id, token, audio),
            name=f"response-{self.session_id}-{turn_id}",
        )
        if permit is not None:  # the turn's place is given back however it ends
            self._response.add_done_callback(lambda _: permit.release())

    async def _respond(
        self,
        turn_id: str,
        text: str | None,
        input_event_id: str | None,
        token: CancelToken,
        audio: tuple[bytes, int] | None,
    ) -> None:
        try:
            if audio is not None:
                text = await self._transcribe(turn_id, *audio)
                if not text:
                    return
            assert text is not None
            await self._reply(turn_id, text, input_event_id, token)
        except VoxlineError as exc:
            await self.reject(exc, turn_id)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must not kill the session silently
            logger.exception("response %s of session %s failed", turn_id, self.session_id)
            await self.reject(VoxlineError("internal error; it was logged"), turn_id)

    async def _transcribe(self, turn_id: str, audio: bytes, sample_rate: int) -> str:
        assert self.engines.stt is not None
        request = TranscriptionRequest(
            audio=audio, sample_rate=sample_rate, language=self.settings.language.split("-")[0]
        )
        segments = [s async for s in self.engines.stt.transcribe(request)]
        text = " ".join(s.text.strip() for s in segments).strip()
        await self.emit(
            TranscriptFinal(
                session_id=self.session_id,
                turn_id=turn_id,
                data=TranscriptData(text=text, language=self.settings.language),
            )
        )
        return text

    async def _reply(
        self, turn_id: str, text: str, input_event_id: str | None, token: CancelToken
    ) -> None:
        settings = self.settings
        history = self.state.history(self.history)
        request = GenerationRequest(
            request_id=f"{self.session_id}:{turn_id}",
            messages=(*history, ChatMessage(role="user", content=text)),
            sampling=settings.sampling,
        )
        async with contextlib.aclosing(
            self.orchestrator.run(
                session_id=self.session_id,
                turn_id=turn_id,
                request=request,
                settings=settings,
                cancel=token,
                input_event_id=input_event_id,
                output=AudioOutput.for_settings(settings),  # the session's output format
            )
        ) as stream:
            async for event in stream:
                await self.emit(event)


def _new_turn_id() -> str:
    return f"turn_{uuid.uuid4().hex[:12]}"
