"""A small async client for Voxline's API: what the demo, ``voxline talk`` and the
latency benchmark use, and what an application can use too.

    async with VoxlineClient("http://127.0.0.1:8000") as client:
        session = await client.create_session(input_sample_rate=24000)
        async with client.connect(session) as conn:
            await conn.send_text("What is the capital of France?")
            async for event in conn.until_done():
                ...

Errors from the server arrive as :class:`VoxlineAPIError` with the server's code. A
socket the server closes with 1012 (it is stopping: :data:`RESUME_CLOSE_CODE`) is reopened
and resumed from the last event seen, with no gap and no repeat (:meth:`SessionSocket.events`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError, InvalidHandshake

from schemas import ClientMessage, Event, ResponseTruncate, parse_event

#: events that end a response
FINAL_TYPES = frozenset({"response.done", "response.cancelled"})
#: the close code of a server that is stopping (RFC 6455 "Service Restart"): resume elsewhere
RESUME_CLOSE_CODE = 1012
#: how a server refuses a socket it cannot take now (4000 + 503): retry shortly
_REFUSED_CLOSE_CODE = 4503
_RETRY_CODES = frozenset({"server_draining", "overloaded", "event_log_unavailable"})
#: a socket closed with 4503 for this reason is resumed like one closed with 1012: the
#: session's log did not answer for longer than the server waits (a failover, a restart)
_LOG_UNAVAILABLE = "event_log_unavailable"


class VoxlineAPIError(Exception):
    """A 4xx/5xx answer or an error frame: ``code`` is the server's error code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class SessionInfo:
    session_id: str
    token: str
    ws_url: str
    events_url: str
    settings: dict[str, Any]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


class VoxlineClient:
    def __init__(self, base_url: str = "http://127.0.0.1:8000", *, timeout: float = 120) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout)

    async def __aenter__(self) -> VoxlineClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _check(self, response: httpx.Response) -> httpx.Response:
        if response.is_error:
            await response.aread()
            try:
                error = response.json()["error"]
                code, message = error["code"], error["message"]
            except (ValueError, KeyError, TypeError):
                code, message = "http_error", response.text[:200]
            raise VoxlineAPIError(response.status_code, code, message)
        return response

    async def ready(self) -> dict[str, Any]:
        response = await self.http.get("/readyz")
        body: dict[str, Any] = response.json()
        return body

    async def create_session(self, **settings: Any) -> SessionInfo:
        response = await self._check(
            await self.http.post("/v1/sessions", json={"settings": settings})
        )
        body = response.json()
        return SessionInfo(body["session_id"], body["token"], body["ws_url"],
                           body["events_url"], body["settings"])

    async def speech(self, text: str, *, response_format: str = "pcm", **options: Any) -> bytes:
        """Speak ``text``; ``pcm`` is 16-bit mono at 24 kHz."""
        body = {"input": text, "response_format": response_format, **options}
        response = await self._check(await self.http.post("/v1/audio/speech", json=body))
        return response.content

    async def transcribe(
        self, audio: bytes, filename: str = "audio.wav", **form: str
    ) -> dict[str, Any] | str:
        files = {"file": (filename, audio)}
        response = await self._check(
            await self.http.post("/v1/audio/transcriptions", files=files, data=form)
        )
        if form.get("response_format") == "text":
            return response.text
        result: dict[str, Any] = response.json()
        return result

    async def chat_stream(
        self, message: str | None, *, session: SessionInfo | None = None, audio: bool = False,
        search: dict[str, Any] | None = None, tool_outputs: dict[str, str] | None = None,
        **settings: Any,
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """``(event, data)`` pairs of ``POST /v1/chat/stream`` as they arrive; ``search``
        is the message's ``search_tool_config`` (collection, strategy, top_k);
        ``tool_outputs`` (call id → output, with ``session`` and no message) answers the
        function calls of the session's last reply, which then goes on."""
        body: dict[str, Any] = {"message": message, "audio": audio, "settings": settings}
        if tool_outputs:
            body["tool_outputs"] = [{"call_id": call_id, "output": output}
                                    for call_id, output in tool_outputs.items()]
        if search is not None:
            body["search_tool_config"] = search
        headers = {}
        if session is not None:
            body["session_id"] = session.session_id
            headers = session.auth
        async with self.http.stream("POST", "/v1/chat/stream", json=body,
                                    headers=headers) as response:
            await self._check(response)
            async for name, data in _sse_messages(response.aiter_lines()):
                yield name, data

    def connect(
        self, session: SessionInfo, last_event_id: str | None = None, *,
        resume_for_s: float = 60.0,
    ) -> SessionSocket:
        """The session's socket; closed with 1012 it is resumed for up to ``resume_for_s``
        (0: never, the close is raised)."""
        url = f"{session.ws_url}?token={session.token}"
        if last_event_id:
            url += f"&last_event_id={last_event_id}"
        return SessionSocket(url, resume_for_s=resume_for_s)


class SessionSocket:
    """One native socket (``/v1/sessions/{id}/ws``) to a session: send messages and audio,
    receive events."""

    def __init__(self, url: str, *, resume_for_s: float = 60.0) -> None:
        self.url = url
        self.ws: ClientConnection | None = None
        #: the server's greeting (``session.created`` with the session's settings, not in
        #: the log): kept here, not yielded, so events() yields what the log holds
        self.greeting: Event | None = None
        #: the id of the last logged event received: where a resumed socket continues
        self.last_event_id: str | None = None
        #: times the socket was reopened after a 1012 close
        self.resumes = 0
        self.resume_for_s = resume_for_s
        self._resuming_until: float | None = None

    async def __aenter__(self) -> SessionSocket:
        self.ws = await connect(self.url, max_size=None, compression=None)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.ws is not None:
            await self.ws.close()

    def _socket(self) -> ClientConnection:
        if self.ws is None:
            raise RuntimeError("use `async with client.connect(session)`")
        return self.ws

    async def send(self, message: ClientMessage | dict[str, Any]) -> None:
        if isinstance(message, ClientMessage):
            await self._socket().send(message.model_dump_json(exclude_none=True))
        else:
            await self._socket().send(json.dumps(message))

    async def send_text(self, text: str) -> None:
        await self.send({"type": "input.text", "text": text})

    async def send_audio(self, pcm: bytes) -> None:
        await self._socket().send(pcm)

    async def commit(self) -> None:
        await self.send({"type": "input_audio.commit"})

    async def cancel(self) -> None:
        await self.send({"type": "response.cancel"})

    async def truncate(self, audio_end_ms: int, turn_id: str | None = None) -> None:
        """The reply (of ``turn_id``; default: the newest) was played only up to
        ``audio_end_ms``: the server cancels it if it still runs and keeps only what was
        heard in the history (``response.truncated``)."""
        await self.send(ResponseTruncate(turn_id=turn_id, audio_end_ms=audio_end_ms))

    async def events(self) -> AsyncIterator[Event]:
        """Events until the server closes the socket (the greeting goes to :attr:`greeting`).

        A server that stops closes with 1012, and one whose log stopped answering for
        longer than it waits closes with 4503 ``event_log_unavailable``: the socket is
        reopened with ``last_event_id`` (to another replica, or the server once restarted,
        or once the log answers again) and the events go on where they stopped. A reopened
        socket the server cannot take yet (an ``error`` frame ``server_draining``,
        ``overloaded`` or ``event_log_unavailable``, then close 4503) is retried with
        growing pauses (0.25 s … 4 s) until ``resume_for_s`` after the first close; then, as for
        any other close, :class:`websockets.exceptions.ConnectionClosed` is raised.
        """
        while True:
            try:
                async for frame in self._socket():
                    event = parse_event(json.loads(frame))
                    if event.id is None and event.type == "session.created":
                        self.greeting = event
                        continue
                    if (event.id is None and event.type == "error"
                            and self._resuming_until is not None
                            and event.data.code in _RETRY_CODES):
                        continue  # a reopened socket refused: its close follows
                    if event.id is not None:
                        self.last_event_id = event.id
                        self._resuming_until = None  # resumed
                    yield event
                return
            except ConnectionClosedError as closed:
                code, reason = (closed.rcvd.code, closed.rcvd.reason) if closed.rcvd else (
                    None, "")
                if not await self._resume(code, reason):
                    raise

    async def _resume(self, code: int | None, reason: str = "") -> bool:
        """Reopen the socket after ``code`` if it says "resume elsewhere" or "the log was
        unavailable" (or a reopened socket was refused), within the time allowed; False:
        give up."""
        if code == RESUME_CLOSE_CODE or (code == _REFUSED_CLOSE_CODE
                                         and reason == _LOG_UNAVAILABLE):
            if self._resuming_until is None:
                self._resuming_until = time.monotonic() + self.resume_for_s
        elif code != _REFUSED_CLOSE_CODE or self._resuming_until is None:
            return False
        delay = 0.25
        while (left := self._resuming_until - time.monotonic()) > 0:
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, 4.0)
            try:
                self.ws = await connect(self._resume_url(), max_size=None, compression=None)
            except (OSError, InvalidHandshake):  # down or restarting: try again
                continue
            self.resumes += 1
            return True
        return False

    def _resume_url(self) -> str:
        parts = urlsplit(self.url)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "last_event_id"]
        if self.last_event_id:
            query.append(("last_event_id", self.last_event_id))
        return urlunsplit(parts._replace(query=urlencode(query)))

    async def until_done(self, *, stop_on_error: bool = False) -> AsyncIterator[Event]:
        """Events up to and including the end of the next response, or the error that
        says none will come: one that belongs to no turn (the input was refused before a
        turn began: ``overloaded``, ``server_draining``, bad input) or was never logged.
        A turn's own error is followed by its ``response.done``, so it ends the wait only
        with ``stop_on_error``."""
        async for event in self.events():
            yield event
            if event.type in FINAL_TYPES:
                return
            if event.type == "error" and (
                    stop_on_error or event.id is None or event.turn_id is None):
                return


class SseDecoder:
    """Lines of a ``text/event-stream`` in; each message out, as (event name, JSON data),
    once the blank line that ends it arrives. For sync and async readers alike."""

    def __init__(self) -> None:
        self.name, self.data = "message", list[str]()

    def feed(self, line: str) -> tuple[str, dict[str, Any]] | None:
        if not line:
            message = (self.name, json.loads("\n".join(self.data))) if self.data else None
            self.name, self.data = "message", []
            return message
        if line.startswith("event:"):
            self.name = line[6:].strip()
        elif line.startswith("data:"):
            self.data.append(line[5:].lstrip())
        return None


async def _sse_messages(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    decoder = SseDecoder()
    async for line in lines:
        if (message := decoder.feed(line)) is not None:
            yield message
