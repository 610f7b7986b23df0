"""The event loop a Ray worker runs its asyncio code on, for a benchmark's child process
that stands in for one (a Gateway replica, a process of the log's clients)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable


def replica_loop() -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop a Serve replica runs on: Ray installs uvloop in every worker when it
    is importable and ``RAY_USE_UVLOOP`` is not off, so what is measured here runs on the
    same (asyncio's own loop spent ~8 % more CPU per event on the gateway phase).
    ``RAY_USE_UVLOOP=0`` measures on asyncio's loop."""
    if os.environ.get("RAY_USE_UVLOOP", "1").strip().lower() not in ("0", "false", "no"):
        with contextlib.suppress(ImportError):
            import uvloop

            return uvloop.new_event_loop
    return asyncio.new_event_loop
