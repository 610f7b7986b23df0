"""What tests that cut or kill a Redis server share.

The server they cut or kill leaves redis-py's connections to it dead; one a pool drops is
closed by its finalizer, which warns (here an unraisable error, raised in whichever test
the garbage collector happens to run): seen in CI and under load, two to four at a time.
Those tests take :data:`DEAD_SOCKETS` as marks; every other test still fails on a
connection it leaves open."""

from __future__ import annotations

from typing import Any

import pytest

DEAD_SOCKETS = [pytest.mark.filterwarnings(f"ignore:{message}:ResourceWarning") for message in (
    "unclosed Connection", "unclosed <StreamWriter", "unclosed transport",
    "unclosed <socket.socket")]


def lose_appends_after_sending(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every direct append channel (:mod:`pipeline.log._direct`) loses its connection
    right after writing a batch: the commands may or may not reach the server, no reply
    comes back, and the appends go to redis-py again (a retry that landed is a duplicate).
    ``monkeypatch.undo()`` ends it."""
    from pipeline.log._direct import _Replies

    send = _Replies.send

    def sent_then_lost(self: _Replies, packed: list[bytes], *args: Any) -> None:
        send(self, packed, *args)
        self.close("lost")

    monkeypatch.setattr(_Replies, "send", sent_then_lost)
