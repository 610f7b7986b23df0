"""Admission control for one Gateway replica: refuse work past capacity, never queue it.

Work that waits behind more work than the stages can do only gets later, and makes what
is already running later too (measured before admission existed: with 30 turns in
flight, a bystander's first text came after 9.9 s). So each kind of work has a capacity per replica
(:class:`schemas.AdmissionSettings`): live sessions (sockets and chat streams), turns
being answered, uploaded transcriptions and speech requests. Past it, :meth:`Admission.
acquire` raises :class:`schemas.OverloadedError` at once, with a retry hint; the API
answers 503 + ``Retry-After`` (or an ``overloaded`` error event on a socket), and the
admitted work keeps its latency.

One kind of work may wait instead, briefly: a voice turn that finds every turn's place
taken (:meth:`Admission.reserve`). Its question was asked aloud, and a refusal makes the
user ask it again, so it waits up to ``voice_turn_wait_ms`` for the next place, behind at
most ``max_waiting_turns`` others, first come first served; past either bound it is
refused as above. A released place passes straight to the first waiter, so nothing that
arrives later slips in before it.

A server that is stopping refuses all new work the same way, with the code
``server_draining`` (:meth:`Admission.drain`), while the admitted work finishes; the
waiting work is refused at once.

Framework-free: acquiring never awaits, so nothing can slip in between the check and the
count on the event loop (only :meth:`Waiting.permit` awaits, for a place already queued
for). A :class:`Permit` is released exactly once, however many times its holder's cleanup
paths call :meth:`Permit.release`, and at the latest when it is collected.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Iterator
from typing import Literal, get_args

from schemas import AdmissionSettings, ErrorCode, OverloadedError

Work = Literal["sessions", "turns", "transcriptions", "speech"]
WORK: tuple[Work, ...] = get_args(Work)

_WHAT = {"sessions": "live sessions", "turns": "turns being answered",
         "transcriptions": "transcriptions", "speech": "speech requests"}


class Permit:
    """One admitted piece of work; :meth:`release` gives its place back (idempotent)."""

    __slots__ = ("_admission", "kind", "released")

    def __init__(self, admission: Admission, kind: Work) -> None:
        self._admission = admission
        self.kind = kind
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._admission._give_back(self.kind)

    def __del__(self) -> None:
        # A holder that lost it without releasing (a response body that never started:
        # the client left before its first byte) gives the place back when collected.
        self.release()

    def __enter__(self) -> Permit:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


class Waiting:
    """A place queued for (:meth:`Admission.reserve`): :meth:`permit` waits for it,
    :meth:`release` gives up the wait or, once granted, the place (idempotent)."""

    __slots__ = ("_admission", "_future", "_since", "kind", "released", "wait_s", "waited_ms")

    def __init__(self, admission: Admission, kind: Work, wait_s: float,
                 future: asyncio.Future[Permit]) -> None:
        self._admission = admission
        self._future = future
        self._since = time.monotonic()
        self.kind = kind
        self.wait_s = wait_s
        self.released = False
        #: how long the place took to come, once it came (ms)
        self.waited_ms: int | None = None

    async def permit(self) -> Permit:
        """The place, once one is given back to this waiter; :class:`OverloadedError`
        after ``wait_s`` (or at once when the server starts draining);
        :class:`asyncio.CancelledError` if :meth:`release` gave the wait up meanwhile."""
        try:
            async with asyncio.timeout(self.wait_s):
                permit = await asyncio.shield(self._future)
        except TimeoutError:
            self.release()  # leaves the queue, or gives back a place granted just now
            raise self._admission.refuse(self.kind) from None
        self.waited_ms = round((time.monotonic() - self._since) * 1000)
        return permit

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        future = self._future
        if not future.done():
            self._admission._waiting[self.kind].remove(future)  # leaves the queue
            future.cancel()
        elif not future.cancelled() and future.exception() is None:
            future.result().release()


class Admission:
    """Counters of admitted work per kind, each refused past its limit."""

    def __init__(self, settings: AdmissionSettings | None = None) -> None:
        self.settings = settings or AdmissionSettings()
        self._in_use: dict[Work, int] = dict.fromkeys(WORK, 0)
        #: refusals per kind since start (for logs and metrics)
        self.refused: dict[Work, int] = dict.fromkeys(WORK, 0)
        #: the server is stopping: every new piece of work is refused (see :meth:`drain`)
        self.draining = False
        #: per kind, the waiters for a place (:meth:`reserve`), first come first served;
        #: only waiters still waiting (one that gives up removes itself)
        self._waiting: dict[Work, deque[asyncio.Future[Permit]]] = {
            kind: deque() for kind in WORK}

    def resize(self, settings: AdmissionSettings) -> None:
        """New limits (an operator's ``user_config``): work in flight keeps its place, the
        next :meth:`acquire` is judged by them; places a higher limit frees go to waiters."""
        self.settings = settings
        for kind in WORK:
            while self._waiting[kind] and not self._full(kind):
                self._waiting[kind].popleft().set_result(self._take(kind))

    def limit(self, kind: Work) -> int | None:
        limit: int | None = getattr(self.settings, f"max_{kind}")
        return limit

    def in_use(self, kind: Work) -> int:
        return self._in_use[kind]

    def waiting(self, kind: Work) -> int:
        return len(self._waiting[kind])

    def drain(self) -> None:
        """The server is stopping: from now on all new work is refused with
        ``server_draining`` (an :class:`OverloadedError`: retry, elsewhere), while what was
        admitted goes on; :meth:`in_use` says when it is done. Work waiting for a place is
        refused at once."""
        self.draining = True
        for queue in self._waiting.values():
            while queue:
                queue.popleft().set_exception(self._draining_error())

    def check_draining(self) -> None:
        """Raise ``server_draining`` if the server is stopping (for work that takes no
        place of its own, such as creating a session before any socket opens)."""
        if self.draining:
            raise self._draining_error()

    def _draining_error(self) -> OverloadedError:
        return OverloadedError(
            "the server is stopping; try again (another replica takes over)",
            retry_after_ms=self.settings.retry_after_ms, code=ErrorCode.SERVER_DRAINING)

    def _full(self, kind: Work) -> bool:
        limit = self.limit(kind)
        return limit is not None and self._in_use[kind] >= limit

    def refuse(self, kind: Work) -> OverloadedError:
        """The refusal of one piece of ``kind`` at capacity (counted)."""
        self.refused[kind] += 1
        limit = self.limit(kind)
        return OverloadedError(
            f"the server is at capacity ({limit} {_WHAT[kind]}); try again shortly",
            retry_after_ms=self.settings.retry_after_ms,
            limit=limit,
            work=kind,
        )

    def check(self, kind: Work) -> None:
        """Raise :class:`OverloadedError` if ``kind`` is at capacity now, or the server is
        stopping (reserves nothing: for refusing early, before work that would be wasted;
        :meth:`acquire` decides)."""
        self.check_draining()
        if self._full(kind):
            raise self.refuse(kind)

    def acquire(self, kind: Work) -> Permit:
        """A place for one piece of ``kind``, or :class:`OverloadedError` at once."""
        self.check(kind)
        return self._take(kind)

    def _take(self, kind: Work) -> Permit:
        self._in_use[kind] += 1
        return Permit(self, kind)

    def reserve(self, kind: Work, wait_s: float, max_waiting: int) -> Permit | Waiting:
        """A place for one piece of ``kind`` now, or a place in its queue (a
        :class:`Waiting`, whose :meth:`~Waiting.permit` waits up to ``wait_s``), or
        :class:`OverloadedError` at once: the server is stopping, or ``wait_s`` is 0, or
        ``max_waiting`` wait already. Must be called on the event loop that waits."""
        self.check_draining()
        if not self._full(kind):
            return self._take(kind)
        if wait_s <= 0 or self.waiting(kind) >= max_waiting:
            raise self.refuse(kind)
        future: asyncio.Future[Permit] = asyncio.get_running_loop().create_future()
        self._waiting[kind].append(future)
        return Waiting(self, kind, wait_s, future)

    def _give_back(self, kind: Work) -> None:
        """A place is free: it passes to the first waiter (the count stays), or the count
        goes down. (A waiter that gave up has left the queue: :meth:`Waiting.release`.)"""
        queue = self._waiting[kind]
        if queue:
            queue.popleft().set_result(Permit(self, kind))
        else:
            self._in_use[kind] -= 1

    @contextlib.contextmanager
    def admit(self, kind: Work) -> Iterator[Permit]:
        """``with admission.admit("speech"):`` work that ends with the block."""
        with self.acquire(kind) as permit:
            yield permit

    def snapshot(self) -> dict[str, dict[str, int | None]]:
        """In use, limit, waiting and refusals per kind (``/readyz`` may show it)."""
        return {kind: {"in_use": self._in_use[kind], "limit": self.limit(kind),
                       "waiting": self.waiting(kind), "refused": self.refused[kind]}
                for kind in WORK}
