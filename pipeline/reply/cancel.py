"""Cancelling a response: a token with a reason, and callbacks that run at once.

The ingress holds one :class:`CancelToken` per running response and calls
:meth:`CancelToken.cancel` on ``response.cancel`` (reason ``client``), on barge-in
(``barge_in``) or when the replica shuts down (``shutdown``). Whoever runs the response
registers a callback that aborts its work; callbacks run synchronously inside ``cancel()``,
so the abort starts in the same event-loop step as the request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from schemas import CancelReason

__all__ = ["CancelReason", "CancelToken"]



class CancelToken:
    """Cancels one response, with a reason; the first :meth:`cancel` wins, later ones are
    no-ops. Callbacks run synchronously inside :meth:`cancel`, which is what makes
    cancellation reach the engines within one event-loop step; so call it on the event
    loop's thread (from another thread: ``loop.call_soon_threadsafe(token.cancel, reason)``).
    """

    __slots__ = ("_callbacks", "_event", "_reason")

    def __init__(self) -> None:
        self._reason: CancelReason | None = None
        self._callbacks: list[Callable[[CancelReason], None]] = []
        self._event = asyncio.Event()

    @property
    def cancelled(self) -> bool:
        return self._reason is not None

    @property
    def reason(self) -> CancelReason | None:
        return self._reason

    def cancel(self, reason: CancelReason = "client") -> None:
        if self._reason is not None:
            return
        self._reason = reason
        self._event.set()
        for callback in list(self._callbacks):
            callback(reason)

    def add_callback(self, callback: Callable[[CancelReason], None]) -> Callable[[], None]:
        """Run ``callback(reason)`` on cancel (at once if already cancelled); returns a
        function that removes it."""
        if self._reason is not None:
            callback(self._reason)
            return lambda: None
        self._callbacks.append(callback)

        def remove() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return remove

    async def wait(self) -> CancelReason:
        await self._event.wait()
        assert self._reason is not None
        return self._reason
