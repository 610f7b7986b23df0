"""The LLM side of a response: the model's stream read into deltas, pieces and tool calls.

:class:`ReplyReader` pulls a response's LLM stream. Every text delta goes to the turn's
outbox, and to the sentence buffer, whose pieces go to the outbox and to TTS (pulling no
more while either is behind). When the model calls tools instead of (or after) writing,
a round ends: the words written so far are cut and spoken, the calls go out
(:class:`~pipeline.reply.items.CallsMade`; their ``tool.call.started`` events are
appended before anything runs), server calls run and their outcomes go out, and the model
is asked again with the calls and their outputs in its dialogue — until it answers in
words, a client call hands the turn to the client, or the turn's calls reach
``max_calls`` (the model is then asked for words only).
"""

from __future__ import annotations

import asyncio

from pipeline.aio import aclose_stream
from pipeline.engines import LanguageModel
from pipeline.reply.config import ReplyStats
from pipeline.reply.events import error_payload
from pipeline.reply.items import TEXT_END, CallEnded, CallsMade, Failure, Piece, TurnItem
from pipeline.reply.outbox import Outbox
from pipeline.reply.sentences import SentenceBuffer
from pipeline.reply.speaker import OrderedSpeaker
from pipeline.reply.tools import CallGatherer, ResponseTools, StartedCall, ToolOutcome
from schemas import (
    ChatMessage,
    EngineError,
    ErrorCode,
    GenerationRequest,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    failed_call_output,
)

__all__ = ["ReplyReader"]

#: first pieces synthesized early per reply: a word split over several tokens is guessed
#: once per token, and each wrong guess costs a synthesis nobody hears
MAX_GUESSES = 2


class ReplyReader:
    """Reads one response's model stream into its outbox (see the module docstring)."""

    def __init__(
        self,
        llm: LanguageModel,
        request: GenerationRequest,
        buffer: SentenceBuffer,
        speaker: OrderedSpeaker | None,
        out: Outbox[TurnItem],
        stats: ReplyStats,
        *,
        sequential: bool,
        tools: ResponseTools | None,
    ) -> None:
        self.llm = llm
        self.buffer = buffer
        self.speaker = speaker
        self.out = out
        self.stats = stats
        self.sequential = sequential
        self.tools = tools
        self._held: list[Piece] = []  # sequential mode: pieces wait for the end of the reply
        self._said = False  # a piece was cut in this response
        self._guess: str | None = None  # the first piece's synthesis started early
        self._guesses = 0
        self._cutting = asyncio.Lock()
        if tools is not None:
            request = request.model_copy(update={"tools": tools.functions,
                                                 "tool_choice": tools.choice})
        self._request = request
        self._calls_made = 0 if tools is None else tools.calls_made

    async def read(self) -> None:
        """Every round of the response, then the end of its text (:data:`TEXT_END`)."""
        filler = self._forced_filler()
        try:
            await self._rounds()
        finally:
            if filler is not None:
                filler.cancel()

    def _forced_filler(self) -> asyncio.Task[None] | None:
        """A reply that must be a call says nothing until the call has run: its filler is
        timed from the reply's start, not the call's (the listener waits from the end of
        speech); any other reply's, from a slow call's start (:meth:`_call`)."""
        tools = self.tools
        if (tools is None or not tools.filler or tools.filler_after_s is None
                or self._request.tool_choice.mode not in ("required", "function")):
            return None
        return asyncio.create_task(self._filler_after(tools.filler, tools.filler_after_s))

    async def _filler_after(self, text: str, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        if not self._said:
            await self._say(text)

    async def _rounds(self) -> None:
        failure: Exception | None = None
        request: GenerationRequest | None = self._request
        while request is not None:
            words, gatherer, failure = await self._round(request)
            if failure is not None or not gatherer:
                break
            for text in self.buffer.flush():  # what was said before the calls is spoken
                await self._cut(text)
            try:  # None: the client runs a call; the turn is the client's now
                request = await self._call(request, words, gatherer.calls())
            except EngineError as exc:
                failure, request = exc, None
        if failure is None:
            for text in self.buffer.flush():
                await self._cut(text)
        else:
            payload = error_payload(failure, stage="llm", code=ErrorCode.LLM_FAILED,
                                    recoverable=False)
            self.out.put(Failure(payload, abort=False))
        if self.speaker is not None:
            for piece in self._held:
                await self.speaker.submit(piece.index, piece.text)
            self.speaker.close()
        self.out.put(TEXT_END)

    async def _round(
        self, request: GenerationRequest
    ) -> tuple[str, CallGatherer, Exception | None]:
        """One model reply: its words, its calls, and the failure that ended it early."""
        words: list[str] = []
        gatherer = CallGatherer()
        stream = self.llm.generate(request)
        try:
            while True:
                if self.out.full():  # the consumer is behind: pull no more
                    await self.out.wait_room()
                try:
                    delta = await anext(stream)
                except StopAsyncIteration:
                    return "".join(words), gatherer, None
                except Exception as exc:
                    return "".join(words), gatherer, exc
                if not delta:
                    continue
                if isinstance(delta, ToolCallDelta):
                    if self.tools is None:
                        return "".join(words), gatherer, EngineError(
                            "the model called a tool in a turn that offered none",
                            code=ErrorCode.LLM_FAILED, stage="llm")
                    gatherer.add(delta)
                    continue
                self.stats.tokens += 1
                words.append(delta)
                # the buffer reads it first: a delta that is no text (a bug upstream)
                # fails this stage, never the consumer's loop; the delta still goes out
                # before the pieces it completed
                pieces = self.buffer.push(delta)
                self.out.put(delta)
                for text in pieces:
                    await self._cut(text)
                if not pieces:
                    self._guess_first_piece()
        finally:
            await aclose_stream(stream)

    async def _call(
        self, request: GenerationRequest, words: str, calls: list[ToolCall]
    ) -> GenerationRequest | None:
        """Send the calls, run the server's, and return the request that goes on with
        their outputs; ``None`` when a call is the client's to run."""
        tools = self.tools
        assert tools is not None
        started = [StartedCall(call, tools.runs_on(call.name) or "server", self._calls_made + i)
                   for i, call in enumerate(calls)]
        logged: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.out.put(CallsMade(tuple(started), logged))
        if not await logged:
            raise EngineError("a tool call could not be written to the session log, so it "
                              "was not run", code=ErrorCode.LOG_WRITE_FAILED, stage="tool")
        allowed = tools.max_calls - self._calls_made
        self._calls_made += len(calls)
        if any(s.runs_on == "client" for s in started):
            return None
        runs = asyncio.ensure_future(asyncio.gather(*(
            self._run(tools, s.call) if n < allowed else _over_limit(tools.max_calls)
            for n, s in enumerate(started))))
        try:
            if tools.filler and tools.filler_after_s is not None and not (
                    words.strip() or self._said):
                done, _ = await asyncio.wait({runs}, timeout=tools.filler_after_s)
                if not done:  # slow, and nothing said yet: the listener hears it is coming
                    await self._say(tools.filler)
            outcomes = await runs
        finally:
            runs.cancel()
        outputs: list[ChatMessage] = []
        for call, outcome in zip(calls, outcomes, strict=True):
            self.out.put(CallEnded(call.id, outcome))
            outputs.append(ChatMessage(role="tool", tool_call_id=call.id,
                                       content=_model_reads(outcome)))
        messages = (*request.messages,
                    ChatMessage(role="assistant", content=words.strip(), tool_calls=tuple(calls)),
                    *outputs)
        choice = request.tool_choice
        if self._calls_made >= tools.max_calls or choice.mode in ("required", "function"):
            choice = ToolChoice(mode="none")  # words now (a forced call is made once)
        return request.model_copy(update={"messages": messages, "tool_choice": choice})

    @staticmethod
    async def _run(tools: ResponseTools, call: ToolCall) -> ToolOutcome:
        if tools.runs_on(call.name) is None:
            return ToolOutcome.failed(ErrorCode.TOOL_NOT_ALLOWED,
                                      f"there is no tool named {call.name!r}")
        return await tools.run(call)

    def _guess_first_piece(self) -> None:
        """The first piece waits for the token after its last word; its synthesis starts a
        token early on the text that token will most likely cut (the speaker keeps it
        only if the piece cut is that text), at most :data:`MAX_GUESSES` times a reply."""
        if (self.speaker is None or self.sequential or self.stats.pieces
                or self._guesses >= MAX_GUESSES):
            return
        if (likely := self.buffer.likely_first_piece()) is not None and likely != self._guess:
            self._guess, self._guesses = likely, self._guesses + 1
            self.speaker.prepare(self.stats.pieces, likely)

    async def _say(self, text: str) -> None:
        """Words the server says itself (a filler): sent and spoken as the model's are."""
        self.out.put(text + " ")
        await self._cut(text)

    async def _cut(self, text: str) -> None:
        if not text.strip():
            return
        async with self._cutting:  # a filler and the model's words: pieces in order
            piece = Piece(self.stats.pieces, text)
            self.stats.pieces += 1
            self._said = True
            self.out.put(piece)
            if self.speaker is None:
                return
            if self.sequential:
                self._held.append(piece)
            else:
                await self.speaker.submit(piece.index, piece.text)  # waits while TTS is behind
                await asyncio.sleep(0)  # its synthesis starts now, even if the LLM never waits


async def _over_limit(limit: int) -> ToolOutcome:
    return ToolOutcome.failed(ErrorCode.TOOL_CALL_LIMIT,
                              f"not run: a turn makes at most {limit} tool calls")


def _model_reads(outcome: ToolOutcome) -> str:
    """A call's outcome as the model's dialogue holds it (the log's fold says the same)."""
    if outcome.code is None:
        return outcome.output
    return failed_call_output(outcome.code.value, outcome.output)


