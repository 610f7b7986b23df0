"""What the operator allows tools to do: which server tools sessions may enable, and the
bounds every server-side call runs under (``VOXLINE_TOOLS__*``).

Nothing runs on the server that is not in ``allow``: a session's ``{"type": "server"}``
tool names one of these, and a call's arguments, time and output are bounded here, so a
hostile model output or a slow tool costs a coded tool output, never a hung turn.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

#: the server tools Voxline has built in (MCP servers add theirs)
BUILTIN_SERVER_TOOLS = ("search_documents",)


class ToolSettings(BaseModel):
    """Server-side tools and the bounds of every call."""

    model_config = ConfigDict(frozen=True)

    allow: tuple[str, ...] = Field(
        default=(),
        description="server tools a session may enable by name (built in: "
        "search_documents, over the session's collection); empty: none, only the client's "
        "own functions",
    )
    timeout_s: float = Field(
        default=10.0, gt=0, le=600,
        description="one server-side call; past it the model is told the call timed out "
        "(tool_timeout) and the turn goes on",
    )
    max_calls_per_turn: int = Field(
        default=4, ge=1, le=64,
        description="tool calls one turn may make; then the model must answer in words",
    )
    max_output_chars: int = Field(
        default=8000, ge=100, le=1_000_000,
        description="a server tool's output, cut to this many characters before the model "
        "and the log see it",
    )
    lease_s: float = Field(
        default=10.0, gt=0, le=600,
        description="a running server call's lease in Redis, refreshed while it runs: a "
        "call whose replica died is taken over (retried if its tool is idempotent, else "
        "told to the model as interrupted) this long after its last refresh",
    )
    concurrency: int = Field(
        default=8, ge=1, le=1024,
        description="server-side calls running at once in one Gateway replica; a call "
        "past it waits for a place within its timeout",
    )

    def allows(self, name: str) -> bool:
        return name in self.allow
