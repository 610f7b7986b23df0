"""What the operator allows tools to do: which server tools sessions may enable, and the
bounds every server-side call runs under (``VOXLINE_TOOLS__*``).

Nothing runs on the server that is not in ``allow``: a session's ``{"type": "server"}``
tool names one of these, and a call's arguments, time and output are bounded here, so a
hostile model output or a slow tool costs a coded tool output, never a hung turn.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: the server tools Voxline has built in (MCP servers add theirs)
BUILTIN_SERVER_TOOLS = ("search_documents",)


#: an MCP server's label: its tools are offered as ``<label>__<tool>``
MCP_LABEL_PATTERN = r"^[A-Za-z0-9-]{1,24}$"
#: between an MCP server's label and its tool's name, in the name the model is offered
MCP_SEPARATOR = "__"


class McpServerSettings(BaseModel):
    """One MCP server the Gateway may call: a command it starts (stdio) or a URL
    (streamable HTTP). Listing it enables its tools (``tools`` narrows them)."""

    model_config = ConfigDict(frozen=True)

    command: tuple[str, ...] = Field(
        default=(), description="stdio: the program and its arguments, started by each "
        "Gateway replica")
    url: str | None = Field(default=None, description="streamable HTTP: the server's URL")
    env: dict[str, str] = Field(default_factory=dict,
                                description="stdio: environment for the program")
    tools: tuple[str, ...] = Field(
        default=(), description="only these of its tools; empty: every tool it lists")

    @model_validator(mode="after")
    def _one_way_in(self) -> McpServerSettings:
        if bool(self.command) == bool(self.url):
            raise ValueError("an MCP server is a command (stdio) or a url (HTTP), one of them")
        return self


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
    mcp_servers: dict[Annotated[str, Field(pattern=MCP_LABEL_PATTERN)], McpServerSettings] = (
        Field(default_factory=dict,
              description="MCP servers by label (letters, digits, '-'), as JSON: "
              '{"weather": {"command": ["python", "-m", "voxline.mcp_weather"]}}; their '
              "tools are offered as <label>__<tool>, attached to a session by "
              '{"type": "mcp", "server_label": "weather"}'))
    mcp_connect_s: float = Field(
        default=10.0, gt=0, le=300,
        description="connecting to an MCP server and listing its tools; one that fails is "
        "tried again in the background, and one that died is connected again within it "
        "before a call's own timeout_s starts",
    )
    filler_after_ms: int | None = Field(
        default=600, ge=0, le=60_000,
        description="a server call still running this long after the model called it, with "
        "nothing said in the reply yet: a filler is spoken (the session's tool_filler); "
        "unset: never",
    )
    concurrency: int = Field(
        default=8, ge=1, le=1024,
        description="server-side calls running at once in one Gateway replica; a call "
        "past it waits for a place within its timeout",
    )

    def allows(self, name: str) -> bool:
        return name in self.allow
