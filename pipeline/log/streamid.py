"""Redis stream ids (``ms-seq``) as values: parsed, ordered, stepped."""

from __future__ import annotations

from dataclasses import dataclass

from schemas import ProtocolError

__all__ = ["ZERO", "StreamId", "parse_cursor"]


@dataclass(frozen=True, order=True)
class StreamId:
    """A Redis stream id ``ms-seq``, ordered like Redis orders them."""

    ms: int
    seq: int

    @classmethod
    def parse(cls, text: str | bytes) -> StreamId:
        if isinstance(text, bytes):
            text = text.decode()
        ms, sep, seq = text.partition("-")
        if not (sep and ms.isdigit() and seq.isdigit()):
            raise ValueError(f"not a stream id: {text!r}")
        return cls(int(ms), int(seq))

    def next(self, now_ms: int) -> StreamId:
        return StreamId(now_ms, 0) if now_ms > self.ms else StreamId(self.ms, self.seq + 1)

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}"


ZERO = StreamId(0, 0)


def parse_cursor(after: str) -> StreamId:
    try:
        return StreamId.parse(after)
    except ValueError:
        raise ProtocolError(f"{after!r} is not an event id (ms-seq)") from None
