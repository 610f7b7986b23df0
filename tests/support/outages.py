"""What tests that cut or kill a Redis server share.

The server they cut or kill leaves redis-py's connections to it dead; one a pool drops is
closed by its finalizer, which warns (here an unraisable error, raised in whichever test
the garbage collector happens to run): seen in CI and under load, two to four at a time.
Those tests take :data:`DEAD_SOCKETS` as marks; every other test still fails on a
connection it leaves open."""

from __future__ import annotations

import pytest

DEAD_SOCKETS = [pytest.mark.filterwarnings(f"ignore:{message}:ResourceWarning") for message in (
    "unclosed Connection", "unclosed <StreamWriter", "unclosed transport",
    "unclosed <socket.socket")]
