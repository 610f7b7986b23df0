"""A call's events channel as a peer: ordered, bounded, told once per burst, ended once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from pipeline.webrtc import MAX_PENDING, ChannelClosedError, EventsChannel


class DataChannel:
    """The part of aiortc's ``RTCDataChannel`` the events channel uses: handlers by
    event name, a ready state, what was sent."""

    def __init__(self) -> None:
        self.readyState = "open"
        self.handlers: dict[str, list[Callable[..., Any]]] = {}
        self.sent: list[str] = []

    def on(self, name: str, handler: Callable[..., Any]) -> None:
        self.handlers.setdefault(name, []).append(handler)

    def emit(self, name: str, *args: Any) -> None:
        for handler in self.handlers.get(name, []):
            handler(*args)

    def send(self, text: str) -> None:
        self.sent.append(text)


class Recorded:
    def __init__(self) -> None:
        self.overflows = 0
        self.closes: list[tuple[int, str]] = []

    def overflowed(self) -> None:
        self.overflows += 1

    def closed(self, code: int, reason: str) -> None:
        self.closes.append((code, reason))


def channel(**options: Any) -> tuple[DataChannel, EventsChannel, Recorded]:
    raw, seen = DataChannel(), Recorded()
    events = EventsChannel(raw, on_overflow=seen.overflowed, on_close=seen.closed, **options)
    return raw, events, seen


async def test_messages_come_in_order_and_the_end_after_them() -> None:
    raw, events, _ = channel()
    raw.emit("message", "a")
    raw.emit("message", b"b")
    raw.emit("close")
    raw.emit("message", "after the close")  # aiortc may still hand one over
    assert [await events.receive() for _ in range(3)] == ["a", b"b", None]
    assert not events.connected


async def test_past_the_bound_messages_are_dropped_and_told_once_per_burst() -> None:
    raw, events, seen = channel()
    for i in range(MAX_PENDING + 10):
        raw.emit("message", str(i))
    assert seen.overflows == 1  # ten dropped, told once
    taken = [await events.receive() for _ in range(MAX_PENDING)]
    assert taken == [str(i) for i in range(MAX_PENDING)]
    for i in range(MAX_PENDING + 1):  # no receive has found the inbox empty: same burst
        raw.emit("message", str(i))
    assert seen.overflows == 1
    for _ in range(MAX_PENDING):
        await events.receive()
    waiting = asyncio.create_task(events.receive())  # finds it empty: the burst is over
    await asyncio.sleep(0)
    for i in range(MAX_PENDING + 2):
        raw.emit("message", str(i))
    assert await waiting == "0" and seen.overflows == 2


async def test_the_bound_is_the_setting() -> None:
    raw, events, seen = channel(max_pending=2)
    for text in "abc":
        raw.emit("message", text)
    assert seen.overflows == 1
    assert [await events.receive() for _ in range(2)] == ["a", "b"]


async def test_the_end_fits_behind_a_full_inbox() -> None:
    raw, events, _ = channel()
    for i in range(MAX_PENDING):
        raw.emit("message", str(i))
    raw.emit("close")
    received = [await events.receive() for _ in range(MAX_PENDING + 1)]
    assert received[-1] is None and len(received) == MAX_PENDING + 1


async def test_sending_to_a_closed_channel_says_the_peer_left() -> None:
    raw, events, _ = channel()
    await events.send_text("hello")
    assert raw.sent == ["hello"]
    raw.readyState = "closed"
    with pytest.raises(ChannelClosedError):
        await events.send_text("gone")
    assert isinstance(ChannelClosedError(), ConnectionError)  # what the skeleton catches


async def test_a_close_by_the_server_ends_the_call_with_its_code_and_reason() -> None:
    _, events, seen = channel()
    await events.close(4503, "event_log_unavailable")
    assert seen.closes == [(4503, "event_log_unavailable")]
    assert await events.receive() is None and not events.connected
    with pytest.raises(ChannelClosedError):
        await events.send_text("too late")
