"""How a connection writes the session's log to its client: a protocol's framing of each
event, and :class:`LogSender`, the log's tail as the outgoing side of every socket and
call (:mod:`deployments.api._socket`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from deployments.api._peer import Peer, refuse
from deployments.api._sse import resync_required
from pipeline.aio import aclose_stream, reraise_lost_cancel
from pipeline.log import LogFanout
from pipeline.tracing import DeliverySpans
from schemas import (
    ErrorCode,
    ErrorEvent,
    Event,
    OverloadedError,
    ProtocolError,
    ResyncRequiredError,
    VoxlineError,
)


class Framing(Protocol):
    """How one socket writes what it sends."""

    def frames(self, event: Event) -> list[str]:
        """The text frames for one log event (none, one or several)."""
        ...

    def refusal(self, session_id: str, exc: VoxlineError) -> str | None:
        """The frame sent before the socket is closed for ``exc`` (None: none)."""
        ...


class Translator(Protocol):
    """Log events as another protocol's messages (JSON objects)."""

    def frames(self, event: Event) -> list[dict[str, Any]]: ...


class JsonFraming:
    """A translator's messages as JSON text frames (OpenAI's events, Twilio's messages).
    A refusal sends no frame (the close code and reason say it) unless a subclass writes
    one."""

    def __init__(self, translator: Translator) -> None:
        self.translator = translator

    def frames(self, event: Event) -> list[str]:
        return [json.dumps(frame) for frame in self.translator.frames(event)]

    def refusal(self, session_id: str, exc: VoxlineError) -> str | None:
        return None


class NativeFraming:
    """Voxline's own protocol: each event as it is in the log."""

    def frames(self, event: Event) -> list[str]:
        return [event.model_dump_json()]

    def refusal(self, session_id: str, exc: VoxlineError) -> str:
        frame = (resync_required(session_id, exc) if isinstance(exc, ResyncRequiredError)
                 else ErrorEvent(session_id=session_id, data=exc.to_payload()))
        return frame.model_dump_json()


class LogSender:
    """Sends the session's log from a cursor on, at once or after a window for resume.

    It reads through the replica's shared reader (:class:`pipeline.log.LogFanout`): an
    idle socket holds no Redis connection. A client too slow to take what the log holds
    for it is closed with 4503 ``overloaded`` (``details.last_event_id``), to reconnect
    with that id; nothing is lost, the log has it. A tail held back by its own ``follow``
    (a call's track, which reads the log no faster than it plays) reads on from the log
    instead: a call cannot reconnect. Frames not from the log (greetings,
    acknowledgements) go through :meth:`send`, never interleaved with the tail's.
    """

    def __init__(
        self, peer: Peer, tails: LogFanout, session_id: str, framing: Framing,
        deliveries: DeliverySpans | None = None,
        follow: Callable[[Event], Awaitable[None]] | None = None,
    ) -> None:
        self.peer = peer
        self.tails = tails
        self.session_id = session_id
        self.framing = framing
        #: tracing on: what a listener waits for becomes a span once it is sent
        self.deliveries = deliveries
        #: what else each event does before it is framed (a call's track plays its audio)
        self.follow = follow
        self.task: asyncio.Task[None] | None = None
        self.sent = 0
        self._go = asyncio.Event()
        self._lock = asyncio.Lock()
        self._failing: asyncio.Task[None] | None = None

    def start(self, after: str | None, *, delay_s: float = 0.0) -> None:
        if delay_s <= 0:
            self._go.set()
        self.task = asyncio.create_task(self._run(after, delay_s),
                                        name=f"ws-send-{self.session_id}")

    def go(self) -> None:
        """The client spoke: start sending now if still waiting for a resume."""
        self._go.set()

    async def send(self, text: str) -> None:
        """One frame that is not from the log (a client that left is not an error)."""
        async with self._lock:
            with contextlib.suppress(ConnectionError):
                await self.peer.send_text(text)

    def fail(self, exc: VoxlineError) -> None:
        """The session could not log how a turn ended (the log unavailable past its
        grace): stop the tail and close with ``exc`` (4503), so the client resumes from
        its last event once the log is back, instead of waiting on a log that will never
        say (:meth:`pipeline.session.SessionEmitter.unlogged`)."""
        if self._failing is None:
            self._failing = asyncio.create_task(self._fail(exc),
                                                name=f"ws-fail-{self.session_id}")

    async def _fail(self, exc: VoxlineError) -> None:
        await self.stop()
        async with self._lock:
            await refuse(self.peer, exc, self.framing.refusal(self.session_id, exc))

    async def resume(self, after: str) -> None:
        if self.sent:
            raise ProtocolError(
                "session.resume must come before the socket has sent events; "
                "reconnect with ?last_event_id= instead",
                code=ErrorCode.INVALID_MESSAGE,
            )
        await self.stop()
        self.start(after)

    async def stop(self) -> None:
        """Cancel the sending task (waiting at most a second for it to end)."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.wait({self.task}, timeout=1.0)
            self.task = None

    async def _run(self, after: str | None, delay_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._go.wait(), delay_s or None)
        reraise_lost_cancel()
        while (after := await self._send_tail(after)) is not None:
            pass  # held back by its follower, it fell behind the shared reader: read on

    async def _send_tail(self, after: str | None) -> str | None:
        """Send the tail from ``after`` until it ends; the id to read on after where a
        tail that ``follow`` paces (a call's track reads the log no faster than it plays)
        fell behind the shared reader: its client cannot resume by itself, and the log
        has everything from there. Any other end of the tail is the connection's."""
        tail = self.tails.tail(self.session_id, after)
        try:
            async for event in tail:
                if self.follow is not None:
                    await self.follow(event)
                for frame in self.framing.frames(event):
                    async with self._lock:
                        await self.peer.send_text(frame)
                if self.deliveries is not None:
                    self.deliveries.delivered(event)
                self.sent += 1
                after = event.id or after
                if event.type == "session.closed":
                    await self.peer.close(1000, "session closed")
                    return None
        except VoxlineError as exc:  # trimmed, the log unavailable, or the client fell behind
            if (isinstance(exc, OverloadedError) and self.follow is not None
                    and after is not None):
                return after
            await refuse(self.peer, exc, self.framing.refusal(self.session_id, exc))
        except ConnectionError:  # the client is gone
            pass
        finally:  # leave the shared reader now, not when the generator is collected
            await aclose_stream(tail)
        return None
