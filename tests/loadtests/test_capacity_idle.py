"""``loadtests._capacity_idle``: a dropped idle session is counted by who closed it, and why."""

from __future__ import annotations

from websockets.exceptions import ConnectionClosedError
from websockets.frames import Close

from loadtests._capacity_idle import closed_how


def test_a_drop_the_server_closed_names_its_code_and_reason() -> None:
    exc = ConnectionClosedError(Close(1011, "keepalive ping timeout"), None)
    assert closed_how(exc) == "ConnectionClosedError 1011 keepalive ping timeout (received)"


def test_a_drop_the_client_gave_up_on_says_it_sent_the_close() -> None:
    exc = ConnectionClosedError(None, Close(1011, "keepalive ping timeout"))
    assert closed_how(exc) == "ConnectionClosedError 1011 keepalive ping timeout (sent)"


def test_a_connection_lost_without_a_close_frame_says_so() -> None:
    exc = ConnectionClosedError(None, None)
    assert closed_how(exc) == "ConnectionClosedError (no close frame)"
    assert closed_how(ConnectionClosedError(Close(1006, ""), None)) == \
        "ConnectionClosedError 1006 (received)"
