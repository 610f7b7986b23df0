"""An MCP server to try Voxline's tools with: weather that needs no network.

``python -m voxline.mcp_weather`` serves it over stdio (what ``VOXLINE_TOOLS__MCP_SERVERS``
starts with ``{"weather": {"command": ["python", "-m", "voxline.mcp_weather"]}}``);
``--http PORT`` serves it over streamable HTTP on 127.0.0.1 at ``/mcp``. Its forecasts are
made up and deterministic: the same city and day give the same answer on every machine,
so a demo and a test can say what the agent should answer. Its tools are read-only (the
MCP annotation), so Voxline may retry a call its replica did not finish.
"""

from __future__ import annotations

import argparse
import hashlib
from typing import Literal

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

SKIES = ("sunny", "cloudy", "rainy", "windy", "foggy", "snowy")
READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True)

server = MCPServer("voxline-weather", instructions="Made-up weather, for demos and tests.")


def forecast(city: str, day: str) -> dict[str, object]:
    """The made-up weather of ``city`` on ``day``: a hash of the two, never the network."""
    digest = hashlib.sha256(f"{city.strip().lower()}|{day}".encode()).digest()
    return {"city": city.strip(), "day": day, "sky": SKIES[digest[0] % len(SKIES)],
            "temperature_celsius": digest[1] % 35 - 5, "wind_kmh": digest[2] % 60}


@server.tool(annotations=READ_ONLY)
def get_forecast(city: str, day: Literal["today", "tomorrow"] = "today") -> dict[str, object]:
    """The weather in a city today or tomorrow: sky, temperature (Celsius), wind (km/h)."""
    return forecast(city, day)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http", type=int, metavar="PORT",
                        help="serve streamable HTTP on 127.0.0.1:PORT/mcp instead of stdio")
    args = parser.parse_args()
    if args.http:
        server.run("streamable-http", host="127.0.0.1", port=args.http)
    else:
        server.run("stdio")


if __name__ == "__main__":
    main()
