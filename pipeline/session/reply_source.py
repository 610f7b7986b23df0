"""What a session's replies are made of: its engines, under its settings and history.

:class:`ReplySource` turns audio into a transcript and a transcript into the events of a
reply, as the session's settings ask at that moment and with the dialogue history its
state shows. It appends nothing (but the end of a server call that runs on after its
reply was cancelled, when it comes) and holds no reply: the responder sends what it makes
(:mod:`pipeline.session.responder`), a speculation holds it until the turn is known
(:mod:`pipeline.session.speculation`). Both call it; it calls neither.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence

from pipeline.log import SessionState
from pipeline.privacy import redacted_for
from pipeline.reply import AudioOutput, CancelToken, ReplyConfig, ReplyOrchestrator, ToolOutcome
from pipeline.session.engines import SessionEngines
from pipeline.tools import CallScope, Toolbox
from pipeline.turntaking import transcribe_in
from schemas import (
    ChatMessage,
    ErrorCode,
    Event,
    EventBase,
    GenerationRequest,
    HistorySettings,
)


class ReplySource:
    """Transcripts and reply streams for one session; nothing is appended."""

    def __init__(
        self,
        session_id: str,
        engines: SessionEngines,
        state: SessionState,
        history: HistorySettings,
        turn_config: ReplyConfig | None = None,
        toolbox: Toolbox | None = None,
        late: Callable[[EventBase], Awaitable[object]] | None = None,
    ) -> None:
        self.session_id = session_id
        self.engines = engines
        #: read for the settings and the dialogue history (the emitter keeps it current)
        self.state = state
        #: which past turns the LLM sees (trimmed in blocks: a stable prompt prefix)
        self.history = history
        self.orchestrator = ReplyOrchestrator(engines.llm, engines.tts, turn_config)
        #: the server tools this replica runs (a session's functions run at its client)
        self.toolbox = toolbox or Toolbox()
        #: the one thing a reply appends itself: the end of a server call that ran on
        #: after its reply was cancelled (a tool whose ``on_barge_in`` is finish)
        self.late = late

    async def transcribe(self, audio: bytes, sample_rate: int, *, quick: bool = False,
                         prompt: str | None = None) -> str:
        """The transcript of ``audio`` in the session's language (:func:`transcribe_in`)."""
        assert self.engines.stt is not None
        return await transcribe_in(self.engines.stt, audio, sample_rate,
                                   self.state.settings.language, quick=quick, prompt=prompt)

    def reply(
        self, turn_id: str, text: str | None, token: CancelToken,
        input_event_id: str | None = None, context: Sequence[ChatMessage] = (),
    ) -> AsyncGenerator[Event, None]:
        """The reply's events, unsent: the responder appends them; a speculation holds them.
        ``context`` (retrieved passages) goes between the history and the question.
        ``text`` None: the turn goes on after its tool calls' outputs (the history holds
        its question and the calls)."""
        settings = self.state.settings
        history = self.state.history(self.history)
        # what the model reads is redacted as the log is (a speculation's transcript too)
        question = () if text is None else (ChatMessage(
            role="user", content=redacted_for(text, settings.redact, settings.language)),)
        request = GenerationRequest(
            request_id=f"{self.session_id}:{turn_id}",
            messages=(*history, *context, *question),
            sampling=settings.sampling,
        )
        turn = self.state.turns.get(turn_id)
        tools = self.toolbox.for_response(settings, CallScope(
            self.session_id, turn_id, calls_made=0 if turn is None else len(turn.tool_calls),
            logged=self._logged(turn_id), late=self.late))
        return self.orchestrator.run(
            session_id=self.session_id,
            turn_id=turn_id,
            request=request,
            settings=settings,
            cancel=token,
            input_event_id=input_event_id,
            output=AudioOutput.for_settings(settings),  # the session's output format
            tools=tools,
        )

    def _logged(self, turn_id: str) -> Callable[[str], ToolOutcome | None]:
        """What the log holds as the end of a call of this turn (never run twice)."""
        def logged(call_id: str) -> ToolOutcome | None:
            turn = self.state.turns.get(turn_id)
            record = None if turn is None else turn.tool_calls.get(call_id)
            if record is None or not record.ended:
                return None
            if record.status == "cancelled":
                return ToolOutcome.failed(ErrorCode.TOOL_INTERRUPTED, "the call was cancelled")
            return ToolOutcome(record.output or "", record.code)
        return logged
