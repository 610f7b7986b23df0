"""One live session, as a socket faces it: client input in, events out through the log.

:class:`LiveSession` is what a socket handler (``deployments/api/session_socket.py``), the SSE
chat and the ``voxline demo`` command drive. It takes the client's messages and hands
each to the part of the session it concerns, built once, each given what it uses:

* :class:`~pipeline.session.emitter.SessionEmitter`: the one way events go out. It
  appends to the log and folds into :attr:`LiveSession.state`; it queues nothing, so what
  a session holds is its live response, however long the connection has lasted;
* :class:`~pipeline.session.voice_turns.VoiceTurns`: speech input, barge-in, utterances
  (:mod:`pipeline.turntaking.speech_input`);
* :class:`~pipeline.session.responder.Responder`: one response at a time, cancel, and
  preemptive turns (:mod:`pipeline.session.speculation`: a reply prepared during a pause),
  with the replies a :class:`~pipeline.session.reply_source.ReplySource` makes.

Data flows one way, down this list; nothing calls back up. Everything the session knows
it folds from the log (:mod:`pipeline.log.state`), so any process can pick it up. Readers
tail the log: a socket sends the session's whole log, a chat stream one turn of it
(:func:`pipeline.session.follow_turn`). Bad input raises :class:`schemas.ProtocolError`
from the call that received it; the caller turns it into an ``error`` event
(:meth:`LiveSession.reject`) and the session goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from pipeline.audio import EndpointConfig
from pipeline.log import EventLog, SessionState, TurnState, fold
from pipeline.privacy import redacted_for
from pipeline.reply import ReplyConfig
from pipeline.retrieval import Grounder
from pipeline.session.admission import Admission
from pipeline.session.call_recovery import CallRecovery
from pipeline.session.creation import Tenant, created_data, new_turn_id, with_redaction
from pipeline.session.emitter import SessionEmitter
from pipeline.session.engines import SessionEngines
from pipeline.session.reply_source import ReplySource
from pipeline.session.reply_writer import ReplyWriter
from pipeline.session.responder import Responder
from pipeline.session.settings import merge_settings
from pipeline.session.speculation import Speculator
from pipeline.session.voice_turns import VoiceTurns
from pipeline.tools import Toolbox
from pipeline.tracing import TurnSpans, bind_session
from schemas import (
    CancelReason,
    ClientMessageUnion,
    ErrorCode,
    Event,
    EventBase,
    HistorySettings,
    InputAudioAppend,
    InputAudioClear,
    InputAudioCommit,
    InputText,
    InputTextData,
    InputTextMessage,
    ProtocolError,
    ResponseCancel,
    ResponseCreate,
    ResponseTruncate,
    ResponseTruncated,
    ResponseTruncatedData,
    SearchToolConfig,
    SessionClosed,
    SessionClosedData,
    SessionCreated,
    SessionError,
    SessionSettings,
    SessionUpdate,
    SessionUpdated,
    SessionUpdatedData,
    ToolCallOutput,
    ToolCallOutputData,
    ToolOutput,
    VoxlineError,
)


class LiveSession:
    """A session's live side. Create with :meth:`open`; end with :meth:`close`."""

    def __init__(
        self,
        session_id: str,
        log: EventLog,
        engines: SessionEngines,
        state: SessionState,
        *,
        turn_config: ReplyConfig | None = None,
        endpoint_config: EndpointConfig | None = None,
        history: HistorySettings | None = None,
        admission: Admission | None = None,
        grounder: Grounder | None = None,
        toolbox: Toolbox | None = None,
        max_buffer_s: float | None = None,
        tracer: Any = None,
    ) -> None:
        self.session_id = session_id
        self.log = log
        self.engines = engines
        #: which past turns the LLM sees (trimmed in blocks: a stable prompt prefix)
        self.history = history or HistorySettings()
        self.emitter = SessionEmitter(session_id, log, state, self.history)
        if tracer is not None:  # each turn's spans, recorded as it ends
            self.emitter.observers.append(TurnSpans(session_id, tracer).observe)
        toolbox = toolbox or Toolbox()
        source = ReplySource(session_id, engines, state, self.history, turn_config, toolbox,
                             late=self.emitter.emit)
        #: the reply prepared during a pause, if any (preemptive turns)
        self.speculator = Speculator(self.emitter, transcribe=source.transcribe,
                                     reply=source.reply)
        self.responder = Responder(self.emitter, source, ReplyWriter(self.emitter, grounder),
                                   admission, speculator=self.speculator)
        self.voice = VoiceTurns(self.emitter, self.responder, self.speculator, engines,
                                endpoint_config=endpoint_config, max_buffer_s=max_buffer_s)
        #: ends the server calls a dead replica left running (started when opened)
        self.recovery = CallRecovery(self.emitter, log, toolbox, self._go_on)
        self._recovering: asyncio.Task[int] | None = None

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
        tenant: Tenant | None = None,
        **options: object,
    ) -> LiveSession:
        """Fold the session's log (or take ``state``, a fold the caller just made); with
        ``create``, start a new session with those settings (made with the API key
        ``tenant``, if any).

        An unknown session without ``create`` raises :class:`SessionError`.
        """
        bind_session(session_id)  # this task's log records are about the session
        if state is None:
            events, horizon = await log.read_remaining(session_id)
            state = fold(session_id, events, trimmed=horizon is not None)
        session = cls(session_id, log, engines, state, **options)  # type: ignore[arg-type]
        if create is not None and not state.created:
            await session.emit(
                SessionCreated(session_id=session_id,
                               data=created_data(create, tenant))
            )
        elif not state.created:
            raise SessionError(f"no session {session_id!r}", code=ErrorCode.SESSION_NOT_FOUND)
        if state.closed:
            raise SessionError(f"session {session_id!r} is closed", code=ErrorCode.SESSION_CLOSED)
        if session.recovery.orphans():  # in the background: a lease may still have to lapse
            session._recovering = asyncio.create_task(
                session.recovery.run(), name=f"recover-calls-{session_id}")
        return session

    async def close(self, reason: str | None = None) -> None:
        """Stop the running response; with ``reason``, also end the session in the log."""
        if self._recovering is not None:
            self._recovering.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._recovering
        await self.responder.stop()
        if reason is not None and not self.state.closed:
            await self.emit(
                SessionClosed(session_id=self.session_id, data=SessionClosedData(reason=reason))
            )
        await self.voice.stop()

    @property
    def state(self) -> SessionState:
        """The session as folded from its log, current with every event it emitted."""
        return self.emitter.state

    @property
    def settings(self) -> SessionSettings:
        return self.state.settings

    @property
    def responding(self) -> bool:
        return self.responder.responding

    # ---- the outgoing side ------------------------------------------------------------

    async def emit(self, *events: EventBase) -> list[Event]:
        """Append events (one atomic batch) and fold them (:meth:`SessionEmitter.emit`)."""
        return await self.emitter.emit(*events)

    async def reject(self, error: VoxlineError, turn_id: str | None = None) -> None:
        """Tell the client about bad input: an ``error`` event; the session goes on."""
        await self.emitter.reject(error, turn_id)

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
            case ResponseTruncate():
                await self.truncate_response(message.turn_id, message.audio_end_ms)
            case SessionUpdate():
                await self.update_settings(message.settings)
            case ToolOutput():
                await self.submit_tool_output(message.call_id, message.output,
                                              respond=message.respond)
            case _:
                raise ProtocolError(f"{message.type} is not handled here")

    async def update_settings(self, patch: dict[str, object]) -> None:
        """Merge ``patch`` into the settings (``session.updated``); the speech input is
        rebuilt when a setting it is built from changed. ``tags`` stay what the session
        was created with: a selection by tag must not depend on when it was made."""
        settings = merge_settings(self.settings, patch)
        if settings.tags != self.settings.tags:
            raise ProtocolError("tags are set when the session is created; session.update "
                                "may not change them", code=ErrorCode.INVALID_SETTINGS)
        required = self.state.redact_required  # the API key's: never removed by an update
        settings = with_redaction(settings, required)
        await self.voice.settings_changed(settings)
        await self.emit(
            SessionUpdated(
                session_id=self.session_id,
                data=SessionUpdatedData(settings=settings, changed=tuple(sorted(patch)),
                                        redact_required=required),
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
        text = redacted_for(text, self.settings.redact, self.settings.language)
        turn_id = new_turn_id()
        await self.speculator.drop("superseded")
        if not (self.settings.auto_response if respond is None else respond):
            await self.emit(InputText(
                session_id=self.session_id, turn_id=turn_id, data=InputTextData(text=text)))
            return turn_id
        await self.cancel_response("barge_in")
        permit = self.responder.admit()  # refused: nothing appended, the session goes on
        try:
            [event] = await self.emit(InputText(
                session_id=self.session_id, turn_id=turn_id, data=InputTextData(text=text)))
        except BaseException:
            if permit is not None:
                permit.release()
            raise
        self.responder.start(turn_id, text, event.id, permit=permit, search=search)
        return turn_id

    async def push_audio(self, data: bytes) -> None:
        """Audio in the session's ``input_format`` (PCM16 mono, or G.711 from a phone
        line) at its input rate; VAD decides where utterances end.

        With manual turns (no ``auto_response``) the client commits: what it appends
        between two commits is at most ``max_buffer_s`` (``audio_too_long``, nothing is
        taken); with server VAD the forced cut bounds every utterance."""
        await self.voice.push(data)

    async def commit_audio(self) -> None:
        """End the current utterance now (push-to-talk), without waiting for silence."""
        await self.voice.commit()

    async def clear_audio(self) -> None:
        """Drop the audio not yet cut into an utterance; the next push starts afresh."""
        await self.voice.clear()

    async def create_response(self) -> None:
        """Reply to the newest turn, which has a user input and no reply yet.

        Its transcription may still run (a commit then ``response.create``, as OpenAI
        clients send them): the reply then follows it. Anything else is a client error:
        a reply running, or no turn waiting for one.
        """
        await self.responder.create()

    async def submit_tool_output(self, call_id: str, output: str, *,
                                 respond: bool = False) -> None:
        """The output of a call the client ran (``tool.call.output``); with ``respond``,
        the reply goes on once no call of its turn waits any more.

        A call this session does not hold (unknown, older than its history, a server
        tool's) or one already ended is ``tool_call_not_found``."""
        turn = next((t for t in reversed(self.state.turns.values())
                     if call_id in t.tool_calls), None)
        record = None if turn is None else turn.tool_calls[call_id]
        if turn is None or record is None or record.runs_on != "client" or record.ended:
            state = "ended" if record is not None and record.ended else "unknown"
            raise ProtocolError(f"no client tool call {call_id!r} waits for its output "
                                f"({state})", code=ErrorCode.TOOL_CALL_NOT_FOUND,
                                param="call_id")
        await self.emit(ToolCallOutput(session_id=self.session_id, turn_id=turn.turn_id,
                                       data=ToolCallOutputData(call_id=call_id, output=output)))
        if respond and not turn.pending_calls:
            await self.create_response()

    async def _go_on(self) -> None:
        """After a recovery: the newest turn's reply goes on with its calls' outcomes,
        unless the client has started something else meanwhile."""
        with contextlib.suppress(ProtocolError):
            await self.responder.create()

    async def cancel_response(self, reason: CancelReason) -> None:
        """Cancel the running response, if any, and wait until it has ended."""
        await self.responder.cancel(reason)

    async def truncate_response(self, turn_id: str | None, audio_end_ms: int) -> None:
        """The client played the reply of ``turn_id`` (None: the newest reply) only up
        to ``audio_end_ms``: cancel it if it still runs, and log what was heard
        (``response.truncated``), which later turns' history holds instead of the reply.

        A position past the audio sent, a turn with no spoken reply, or one this
        session no longer holds (older than the history window) is a client error.
        """
        turn = self._spoken_reply(turn_id)
        if turn.status == "responding":
            await self.cancel_response("client")
        if audio_end_ms > turn.audio_ms:
            raise ProtocolError(
                f"audio_end_ms {audio_end_ms} is past the reply's audio ({turn.audio_ms} ms)",
                code=ErrorCode.INVALID_MESSAGE, param="audio_end_ms", limit=turn.audio_ms)
        data = ResponseTruncatedData(audio_end_ms=audio_end_ms, audio_ms=turn.audio_ms,
                                     text_heard=turn.heard(audio_end_ms))
        await self.emit(ResponseTruncated(
            session_id=self.session_id, turn_id=turn.turn_id, data=data))

    def _spoken_reply(self, turn_id: str | None) -> TurnState:
        if turn_id is None:
            started = [t for t in self.state.turns.values() if t.started_ts is not None]
            if not started:
                raise ProtocolError("no reply to truncate", code=ErrorCode.NOT_FOUND,
                                    param="turn_id")
            turn = started[-1]
        else:
            found = self.state.turns.get(turn_id)
            if found is None or found.started_ts is None:
                raise ProtocolError(f"no reply of turn {turn_id!r} to truncate",
                                    code=ErrorCode.NOT_FOUND, param="turn_id")
            turn = found
        if not turn.audio_ms and turn.status != "responding":
            raise ProtocolError(f"the reply of turn {turn.turn_id!r} has no audio",
                                code=ErrorCode.INVALID_MESSAGE, param="turn_id")
        return turn

    async def wait_response(self) -> None:
        """Wait for the running response (tests and the demo use it)."""
        await self.responder.wait()
