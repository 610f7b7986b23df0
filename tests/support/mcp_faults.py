"""An MCP server that misbehaves on request, for the tests of bounds (stdio):
``slow`` never answers in time, ``fail`` answers with an error result, ``crash`` ends
the server process in the middle of the call, ``big`` answers with a huge output."""

from __future__ import annotations

import os
import time

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("voxline-faults")


@server.tool()
def slow(seconds: float) -> str:
    """Answers after ``seconds``."""
    time.sleep(seconds)
    return "finally"


@server.tool()
def fail(reason: str) -> str:
    """Always fails, saying why (a tool error: its message reaches the client)."""
    raise ToolError(reason)


@server.tool()
def crash() -> str:
    """Ends the server's process mid-call."""
    os._exit(3)


@server.tool()
def big(chars: int) -> str:
    """An output of ``chars`` characters."""
    return "x" * chars


if __name__ == "__main__":
    server.run("stdio")
