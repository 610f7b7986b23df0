"""Redis stream ids (``ms-seq``) as values: parsed, ordered, stepped."""

from __future__ import annotations

import functools
from typing import NamedTuple

from schemas import ProtocolError

__all__ = ["ZERO", "StreamId", "parse_cursor"]


class StreamId(NamedTuple):
    """A Redis stream id ``ms-seq``, ordered like Redis orders them. A tuple, compared
    and made in C: ids are compared and stepped several times for each event appended
    and delivered (an ordered dataclass compared in Python, a twentieth of a writer)."""

    ms: int
    seq: int

    @staticmethod
    def parse(text: str | bytes) -> StreamId:
        """``ms-seq`` as a value (``ValueError`` if it is not one). Remembered for the
        ids in use: an event's id is parsed at each step of its way through a Gateway
        (stamped, pushed, handed out, tailed), and a value cannot change."""
        return _parse(text)

    def next(self, now_ms: int) -> StreamId:
        return StreamId(now_ms, 0) if now_ms > self.ms else StreamId(self.ms, self.seq + 1)

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}"


ZERO = StreamId(0, 0)


@functools.lru_cache(maxsize=4096)
def _parse(text: str | bytes) -> StreamId:
    if isinstance(text, bytes):
        text = text.decode()
    ms, sep, seq = text.partition("-")
    if not (sep and ms.isdigit() and seq.isdigit()):
        raise ValueError(f"not a stream id: {text!r}")
    return StreamId(int(ms), int(seq))


def parse_cursor(after: str) -> StreamId:
    try:
        return StreamId.parse(after)
    except ValueError:
        raise ProtocolError(f"{after!r} is not an event id (ms-seq)") from None
