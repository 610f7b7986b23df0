"""Admission control for one Gateway replica: refuse work past capacity, never queue it.

Work that waits behind more work than the stages can do only gets later, and makes what
is already running later too (row 6 of issue #11: a bystander's first text after 9.9 s
with 30 turns in flight). So each kind of work has a capacity per replica
(:class:`schemas.AdmissionSettings`): live sessions (sockets and chat streams), turns
being answered, uploaded transcriptions and speech requests. Past it, :meth:`Admission.
acquire` raises :class:`schemas.OverloadedError` at once, with a retry hint; the API
answers 503 + ``Retry-After`` (or an ``overloaded`` error event on a socket), and the
admitted work keeps its latency.

A server that is stopping refuses all new work the same way, with the code
``server_draining`` (:meth:`Admission.drain`), while the admitted work finishes.

Framework-free and synchronous: acquiring never awaits, so nothing can slip in between
the check and the count on the event loop. A :class:`Permit` is released exactly once,
however many times its holder's cleanup paths call :meth:`Permit.release`, and at the
latest when it is collected.
"""

from __future__ import annotations

import contextlib
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
            self._admission._in_use[self.kind] -= 1

    def __del__(self) -> None:
        # A holder that lost it without releasing (a response body that never started:
        # the client left before its first byte) gives the place back when collected.
        self.release()

    def __enter__(self) -> Permit:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


class Admission:
    """Counters of admitted work per kind, each refused past its limit."""

    def __init__(self, settings: AdmissionSettings | None = None) -> None:
        self.settings = settings or AdmissionSettings()
        self._in_use: dict[Work, int] = dict.fromkeys(WORK, 0)
        #: refusals per kind since start (for logs and metrics)
        self.refused: dict[Work, int] = dict.fromkeys(WORK, 0)
        #: the server is stopping: every new piece of work is refused (see :meth:`drain`)
        self.draining = False

    def resize(self, settings: AdmissionSettings) -> None:
        """New limits (an operator's ``user_config``): work in flight keeps its place, the
        next :meth:`acquire` is judged by them."""
        self.settings = settings

    def limit(self, kind: Work) -> int | None:
        limit: int | None = getattr(self.settings, f"max_{kind}")
        return limit

    def in_use(self, kind: Work) -> int:
        return self._in_use[kind]

    def drain(self) -> None:
        """The server is stopping: from now on all new work is refused with
        ``server_draining`` (an :class:`OverloadedError`: retry, elsewhere), while what was
        admitted goes on; :meth:`in_use` says when it is done."""
        self.draining = True

    def check_draining(self) -> None:
        """Raise ``server_draining`` if the server is stopping (for work that takes no
        place of its own, such as creating a session before any socket opens)."""
        if self.draining:
            raise OverloadedError(
                "the server is stopping; try again (another replica takes over)",
                retry_after_ms=self.settings.retry_after_ms, code=ErrorCode.SERVER_DRAINING)

    def check(self, kind: Work) -> None:
        """Raise :class:`OverloadedError` if ``kind`` is at capacity now, or the server is
        stopping (reserves nothing: for refusing early, before work that would be wasted;
        :meth:`acquire` decides)."""
        self.check_draining()
        limit = self.limit(kind)
        if limit is not None and self._in_use[kind] >= limit:
            self.refused[kind] += 1
            raise OverloadedError(
                f"the server is at capacity ({limit} {_WHAT[kind]}); try again shortly",
                retry_after_ms=self.settings.retry_after_ms,
                limit=limit,
                work=kind,
            )

    def acquire(self, kind: Work) -> Permit:
        """A place for one piece of ``kind``, or :class:`OverloadedError` at once."""
        self.check(kind)
        self._in_use[kind] += 1
        return Permit(self, kind)

    @contextlib.contextmanager
    def admit(self, kind: Work) -> Iterator[Permit]:
        """``with admission.admit("speech"):`` work that ends with the block."""
        with self.acquire(kind) as permit:
            yield permit

    def snapshot(self) -> dict[str, dict[str, int | None]]:
        """In use, limit and refusals per kind (``/readyz`` may show it)."""
        return {kind: {"in_use": self._in_use[kind], "limit": self.limit(kind),
                       "refused": self.refused[kind]} for kind in WORK}
