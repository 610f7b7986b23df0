"""Session state as a fold over the session's events.

Nothing about a session lives anywhere but in its log; this module is how any process
(any ingress replica, a worker, a fresh CLI) turns the log into what it needs to go on:
the settings, the turns so far, the dialogue history for the LLM and what was narrated.
The fold is deterministic and depends only on the events, so folding the same log twice,
or in another process, gives the same state (a test holds it to that).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, Field

from pipeline.log.heard import heard_text
from pipeline.log.history import turn_cost, window_start
from schemas import (
    CANCELLED_CALL_OUTPUT,
    ChatMessage,
    Citation,
    ErrorCode,
    ErrorEvent,
    Event,
    HistorySettings,
    InputAudio,
    InputText,
    NarrationReady,
    RedactKind,
    ResponseAudioChunk,
    ResponseAudioDone,
    ResponseCancelled,
    ResponseCitations,
    ResponseDone,
    ResponseSentence,
    ResponseStarted,
    ResponseTextDelta,
    ResponseTruncated,
    SessionClosed,
    SessionCreated,
    SessionSettings,
    SessionUpdated,
    ToolCall,
    ToolCallCancelled,
    ToolCallFailed,
    ToolCallOutput,
    ToolCallStarted,
    TranscriptFinal,
    TranscriptRefined,
    WarningEvent,
    failed_call_output,
)

TurnStatus = Literal["open", "responding", "completed", "cancelled", "failed"]
ToolCallStatus = Literal["started", "output", "failed", "cancelled"]


class ToolCallRecord(BaseModel):
    """One tool call of a turn, as its events tell it."""

    call_id: str
    name: str
    arguments: str
    runs_on: Literal["client", "server"]
    status: ToolCallStatus = "started"
    #: the call's output, or its failure's message
    output: str | None = None
    #: the failure's code (``tool.call.failed``)
    code: ErrorCode | None = None

    @property
    def ended(self) -> bool:
        return self.status != "started"

    @property
    def model_output(self) -> str:
        """What the model reads as the call's output (a failure or a cancellation said
        in words, as the live reply told it)."""
        if self.status == "cancelled":
            return CANCELLED_CALL_OUTPUT
        if self.code is not None:
            return failed_call_output(self.code.value, self.output or "")
        return self.output or ""


class TurnState(BaseModel):
    """One user input and the response to it."""

    turn_id: str
    source: Literal["text", "audio"] = "text"
    user_text: str = ""
    input_event_id: str | None = None
    assistant_text: str = ""
    status: TurnStatus = "open"
    audio_chunks: int = 0
    #: the reply said its audio was complete (``response.audio.done``: a voice reply,
    #: even one whose text had nothing to speak)
    audio_done: bool = False
    narrated: bool = False
    errors: list[str] = Field(default_factory=list)
    started_ts: int | None = None
    done_ts: int | None = None
    #: a grounded turn (retrieval): what the reply cited, and the warnings of the turn (codes)
    citations: list[Citation] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    #: the reply's spoken sentences by index, where each one's audio ends (ms from the
    #: reply's start), and its audio sent in all: what :meth:`heard` reads
    sentences: dict[int, str] = Field(default_factory=dict)
    sentence_ends_ms: dict[int, int] = Field(default_factory=dict)
    audio_ms: int = 0
    #: when its first chunk was appended (server clock, ms): the audio plays until about
    #: ``audio_started_ts + audio_ms`` at a client that plays it as it comes
    audio_started_ts: int | None = None
    #: the audio played, as the client reported it (``response.truncated``); None: all
    played_ms: int | None = None
    #: the turn's tool calls by id, in the order made
    tool_calls: dict[str, ToolCallRecord] = Field(default_factory=dict)
    #: what came between the user's message and the reply's last words: the assistant
    #: messages that made calls (with the words said before them) and the calls' outputs
    exchange: list[ChatMessage] = Field(default_factory=list)
    #: where in ``assistant_text`` the words after the last calls begin
    said_before_calls: int = 0
    #: a call's output came after the response ended (a client tool): the turn waits for
    #: ``response.create`` to go on
    awaits_reply: bool = False

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "cancelled", "failed")

    @property
    def reply_text(self) -> str:
        """The reply's words after its last tool calls (all of them when it made none)."""
        return self.assistant_text[self.said_before_calls:]

    @property
    def pending_calls(self) -> list[ToolCallRecord]:
        """Calls started and not ended (a client's not yet answered)."""
        return [call for call in self.tool_calls.values() if not call.ended]

    def messages(self) -> list[ChatMessage]:
        """The turn as the LLM's history holds it: the user's message, the calls and
        their outputs, the reply's last words."""
        messages = [ChatMessage(role="user", content=self.user_text), *self.exchange]
        if self.reply_text:
            messages.append(ChatMessage(role="assistant", content=self.reply_text))
        return messages

    def _call_started(self, event: ToolCallStarted) -> None:
        data = event.data
        if data.call_id in self.tool_calls:  # an append retried: the first one holds
            return
        self.tool_calls[data.call_id] = ToolCallRecord(
            call_id=data.call_id, name=data.name, arguments=data.arguments,
            runs_on=data.runs_on)
        call = ToolCall(id=data.call_id, name=data.name, arguments=data.arguments)
        said = self.assistant_text[self.said_before_calls:].strip()
        last = self.exchange[-1] if self.exchange else None
        if last is not None and last.role == "assistant" and not said:  # one more call
            self.exchange[-1] = last.model_copy(update={"tool_calls": (*last.tool_calls,
                                                                       call)})
        else:
            self.exchange.append(ChatMessage(role="assistant", content=said,
                                             tool_calls=(call,)))
        self.said_before_calls = len(self.assistant_text)

    def _call_ended(self, event: ToolCallOutput | ToolCallFailed | ToolCallCancelled) -> None:
        data = event.data
        record = self.tool_calls.get(data.call_id)
        if record is None or record.ended:  # not this turn's, or told twice: the first holds
            return
        match event:
            case ToolCallOutput():
                record.status, record.output = "output", event.data.output
            case ToolCallFailed():
                record.status, record.output = "failed", event.data.message
                record.code = event.data.code
            case ToolCallCancelled():
                record.status = "cancelled"
        self.exchange.append(ChatMessage(role="tool", content=record.model_output,
                                         tool_call_id=record.call_id))
        self.awaits_reply = self.status != "responding"

    def heard(self, audio_end_ms: int) -> str:
        """The reply's text heard when its audio was played up to ``audio_end_ms``."""
        return heard_text(self.sentences, self.sentence_ends_ms, audio_end_ms)

    def _add_audio(self, chunk: ResponseAudioChunk) -> None:
        """Place a live reply's chunk (narration after ``response.done`` is not the reply)."""
        data = chunk.data
        end = data.end_ms
        if end is None:  # a log older than end_ms: only raw PCM can be measured
            if data.format != "pcm16":
                return
            end = self.audio_ms + len(data.audio) * 1000 // (2 * data.sample_rate)
        self.audio_ms = max(self.audio_ms, end)
        if self.audio_started_ts is None:
            self.audio_started_ts = chunk.ts
        index = data.sentence_index
        self.sentence_ends_ms[index] = max(self.sentence_ends_ms.get(index, 0), end)


class SessionState(BaseModel):
    session_id: str
    settings: SessionSettings = Field(default_factory=SessionSettings)
    #: redaction the session's API key requires (``session.created``, carried forward by
    #: each ``session.updated`` so a trimmed log keeps it)
    redact_required: tuple[RedactKind, ...] = ()
    created: bool = False
    closed: bool = False
    turns: dict[str, TurnState] = Field(default_factory=dict)
    last_event_id: str | None = None
    event_count: int = 0
    #: retention removed the log's start (``session.created`` among it): the settings
    #: are those of the newest ``session.updated`` left, else the defaults
    trimmed: bool = False

    def apply(self, event: Event) -> None:
        """Fold one event into the state (in place: the fold runs per event)."""
        self.event_count += 1
        self.last_event_id = event.id or self.last_event_id
        turn = self._turn(event.turn_id) if event.turn_id else None
        match event:
            case SessionCreated() | SessionUpdated():
                self.settings = event.data.settings
                self.redact_required = event.data.redact_required
                self.created = True
            case SessionClosed():
                self.closed = True
            case InputText() if turn is not None:
                turn.source, turn.user_text = "text", event.data.text
                turn.input_event_id = event.id
            case InputAudio() if turn is not None:
                turn.source, turn.input_event_id = "audio", event.id
            case TranscriptFinal() if turn is not None:
                turn.user_text = event.data.text
            case TranscriptRefined() if turn is not None and event.data.text.strip():
                turn.user_text = event.data.text  # an empty refinement keeps the realtime text
            case ResponseStarted() if turn is not None:
                turn.status, turn.started_ts = "responding", event.ts
                turn.assistant_text, turn.audio_ms, turn.played_ms = "", 0, None
                turn.said_before_calls, turn.awaits_reply = 0, False
                turn.audio_started_ts = None
                turn.sentences, turn.sentence_ends_ms = {}, {}
            case ResponseTextDelta() if turn is not None:
                turn.assistant_text += event.data.delta
            case ResponseSentence() if turn is not None and turn.status == "responding":
                turn.sentences[event.data.index] = event.data.text
            case ResponseAudioChunk() if turn is not None:
                turn.audio_chunks += 1
                if turn.status == "responding":
                    turn._add_audio(event)
            case ResponseAudioDone() if turn is not None:
                turn.audio_done = True
            case ResponseDone() if turn is not None:
                turn.assistant_text = event.data.text
                turn.status = "completed" if event.data.status == "completed" else "failed"
                turn.done_ts = event.ts
            case ResponseCancelled() if turn is not None:
                turn.status, turn.done_ts = "cancelled", event.ts
                turn.assistant_text = event.data.text_sent
            case ResponseTruncated() if turn is not None:
                turn.assistant_text = event.data.text_heard
                turn.played_ms = event.data.audio_end_ms
            case NarrationReady() if turn is not None:
                turn.narrated = True
            case ErrorEvent() if turn is not None:
                turn.errors.append(event.data.code.value)
            case ResponseCitations() if turn is not None:
                turn.citations = list(event.data.citations)
            case WarningEvent() if turn is not None:
                turn.warnings.append(event.data.code.value)
            case ToolCallStarted() if turn is not None:
                turn._call_started(event)
            case ToolCallOutput() | ToolCallFailed() | ToolCallCancelled() if turn is not None:
                turn._call_ended(event)
            case _:
                pass

    def _turn(self, turn_id: str) -> TurnState:
        turn = self.turns.get(turn_id)
        if turn is None:
            turn = self.turns[turn_id] = TurnState(turn_id=turn_id)
        return turn

    def history(self, window: HistorySettings | None = None) -> list[ChatMessage]:
        """The dialogue for the LLM: the system prompt, then the finished turns the window
        shows (:mod:`pipeline.log.history`: bounded in tokens and turns, trimmed in blocks
        so the prompt's prefix stays the same from turn to turn), oldest first.

        A cancelled turn contributes the text sent (``text_sent``), and a truncated one
        what the client played (``response.truncated``), so the model does not believe it
        said more than the user heard.
        """
        messages = [ChatMessage(role="system", content=self.settings.system_prompt)]
        for turn in self._shown(window or HistorySettings()):
            messages += turn.messages()
        return messages

    def _shown(self, window: HistorySettings) -> list[TurnState]:
        finished = [t for t in self.turns.values() if t.finished and t.user_text]
        costs = [turn_cost(t.user_text, t.reply_text, window, t.exchange)
                 for t in finished]
        return finished[window_start(costs, window):]

    def forget_turns(self, window: HistorySettings | None = None) -> None:
        """Drop the turns that :meth:`history` with this ``window`` no longer shows,
        keeping the newest turn (:attr:`open_turn`) and any turn still responding.

        For a holder of the state that lives as long as a connection (a live session):
        its memory must not grow with the number of turns. A fold of the log has them all;
        both show the same history (the window restarts where it stands).
        """
        window = window or HistorySettings()
        if len(self.turns) <= 1:
            return
        needed = {t.turn_id for t in self._shown(window)}
        needed.add(next(reversed(self.turns)))
        needed.update(t.turn_id for t in self.turns.values() if t.status == "responding")
        for turn_id in [turn_id for turn_id in self.turns if turn_id not in needed]:
            del self.turns[turn_id]

    @property
    def open_turn(self) -> TurnState | None:
        """The turn still in progress, if any (at most one at a time per session)."""
        if not self.turns:
            return None
        last = next(reversed(self.turns.values()))
        return None if last.finished else last


def fold(session_id: str, events: Iterable[Event], *, trimmed: bool = False) -> SessionState:
    """The state of a session from its events; ``trimmed``: they are what retention left
    (see :meth:`pipeline.log.eventlog.EventLog.read_remaining`), so the session existed."""
    state = SessionState(session_id=session_id, trimmed=trimmed, created=trimmed)
    for event in events:
        state.apply(event)
    return state
