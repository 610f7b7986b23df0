"""A response's tools, as the orchestrator sees them: what the model is offered, where each
call runs, and how a server-side call is run.

The orchestrator knows no tool. It is handed a :class:`ResponseTools` (a session's:
:mod:`pipeline.tools`), offers its functions to the model, and for each call the model
makes, first sends ``tool.call.started`` (the consumer appends it before it asks for the
next event), then — only then — runs a server call through :meth:`ResponseTools.run` and
sends its ``tool.call.output`` or ``tool.call.failed``. A client call ends the response:
the client runs it and sends its output back.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Literal

from pydantic import ValidationError

from pipeline.engines import new_call_id
from schemas import (
    EngineError,
    ErrorCode,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolFunction,
)

__all__ = ["CallGatherer", "ResponseTools", "RunsOn", "StartedCall", "ToolOutcome"]

RunsOn = Literal["client", "server"]


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """How a server-side call ended: its ``output``, or a failure (``code`` set) whose
    ``output`` is what the model is told instead."""

    output: str
    code: ErrorCode | None = None
    truncated: bool = False
    duration_ms: int | None = None

    @classmethod
    def failed(cls, code: ErrorCode, message: str,
               duration_ms: int | None = None) -> ToolOutcome:
        return cls(message, code, duration_ms=duration_ms)


@dataclass(frozen=True, slots=True)
class StartedCall:
    """A call as ``tool.call.started`` tells it: where it runs, its place in the turn."""

    call: ToolCall
    runs_on: RunsOn
    index: int


class ResponseTools(abc.ABC):
    """The tools of one response: offered to the model, and run where they run."""

    #: what the model is offered, and whether it must call
    functions: tuple[ToolFunction, ...]
    choice: ToolChoice
    #: calls one turn may make; past it the model is asked for words only
    max_calls: int
    #: calls the turn made before this response (a turn goes on after a client's outputs)
    calls_made: int = 0

    @abc.abstractmethod
    def runs_on(self, name: str) -> RunsOn | None:
        """Where a call of ``name`` runs; ``None``: no such tool in this response."""

    #: what is said while a server call runs past ``filler_after_s``, when nothing was
    #: said in the reply yet ("" or ``filler_after_s`` None: nothing)
    filler: str = ""
    filler_after_s: float | None = None

    @abc.abstractmethod
    async def run(self, call: ToolCall) -> ToolOutcome:
        """Run a server-side call, bounded; never raises but :class:`CancelledError`
        (a failure is an outcome the model reads)."""

    def finishes(self, name: str) -> bool:
        """Whether a call of ``name`` runs on when its reply is cancelled (barge-in): its
        output is then logged when it ends, and no ``tool.call.cancelled`` is told."""
        return False


class CallGatherer:
    """The calls of one model reply, from its :class:`ToolCallDelta` pieces (a call's id
    and name on its first piece, its arguments in fragments)."""

    def __init__(self) -> None:
        self._calls: dict[int, list[str]] = {}  # index → [id, name, arguments]

    def add(self, delta: ToolCallDelta) -> None:
        call = self._calls.setdefault(delta.index, ["", "", ""])
        if delta.id is not None:
            call[0] = delta.id
        if delta.name is not None:
            call[1] = delta.name
        call[2] += delta.arguments

    def __bool__(self) -> bool:
        return bool(self._calls)

    def gathered(self) -> list[tuple[str, str, str]]:
        """(id, name, arguments) of each call, in the reply's order, as the pieces said."""
        return [(call_id, name, arguments)
                for _, (call_id, name, arguments) in sorted(self._calls.items())]

    def calls(self) -> list[ToolCall]:
        """The calls, in the reply's order (a call the model gave no id gets one); a call
        no tool could take (a name that is none, arguments past the bound) fails the
        reply (:class:`EngineError`)."""
        try:
            return [ToolCall(id=call_id or new_call_id(), name=name,
                             arguments=arguments or "{}")
                    for call_id, name, arguments in self.gathered()]
        except ValidationError as exc:
            raise EngineError(f"the model's tool call cannot be taken: {exc.errors()[0]['msg']}",
                              code=ErrorCode.LLM_FAILED, stage="llm",
                              reason="tool_call_invalid") from None
