"""How often one client may start a costly thing on this replica: a token bucket each.

Admission bounds what runs at once; it cannot tell one client holding every place from
many holding one each. A WebRTC offer is the case in point: it is cheap to post and
holds a session's place and a UDP socket until its ICE gives up, so one client posting
fast could hold them all. :class:`RateLimiter` gives each client (an API key, else an
address: the caller says) ``per_minute`` starts a minute, ``per_minute`` of them at once
at most, and refuses the rest with ``429 rate_limited`` and the wait until the next one
(``Retry-After``).

Framework-free and never awaiting, like :class:`~pipeline.session.Admission`. Its memory
is bounded: at most ``max_clients`` buckets, the least recently seen dropped first
(a dropped client starts again with a full bucket, which only errs towards letting it
in).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from schemas import ErrorCode, OverloadedError

__all__ = ["RateLimiter"]


class RateLimiter:
    """See the module docstring; ``what`` names the thing in the refusal."""

    def __init__(self, per_minute: int, what: str, *, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute < 1 or max_clients < 1:
            raise ValueError("per_minute and max_clients are at least 1")
        self.per_minute = per_minute
        self.what = what
        self._rate_per_s = per_minute / 60.0
        self._max_clients = max_clients
        self._clock = clock
        #: client -> (tokens when last seen, when)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def check(self, client: str) -> None:
        """Take one token of ``client``'s bucket, or raise ``rate_limited`` (HTTP 429,
        transient, ``retry_after_ms`` until a token is back)."""
        now = self._clock()
        tokens, seen = self._buckets.pop(client, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - seen) * self._rate_per_s)
        if tokens < 1.0:
            self._keep(client, tokens, now)
            wait_ms = math.ceil((1.0 - tokens) / self._rate_per_s * 1000)
            raise OverloadedError(
                f"more than {self.per_minute} {self.what} a minute from this client: "
                f"wait {wait_ms / 1000:.1f} s", code=ErrorCode.RATE_LIMITED,
                http_status=429, retry_after_ms=wait_ms)
        self._keep(client, tokens - 1.0, now)

    def _keep(self, client: str, tokens: float, now: float) -> None:
        self._buckets[client] = (tokens, now)
        while len(self._buckets) > self._max_clients:
            self._buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)
