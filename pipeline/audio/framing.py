"""Framing: a socket's audio chunks of any size cut into the fixed frames a detector needs."""

from __future__ import annotations

__all__ = ["FrameAssembler"]


class FrameAssembler:
    """Cut PCM16 byte chunks of any size into frames of exactly ``frame_samples`` samples.

    Sockets deliver whatever the client sends (20 ms, 100 ms, odd byte counts split across
    messages); the detector needs fixed frames. The remainder waits for the next chunk.
    """

    def __init__(self, frame_samples: int = 512) -> None:
        if frame_samples <= 0:
            raise ValueError("frame_samples must be positive")
        self.frame_bytes = frame_samples * 2
        self._pending = bytearray()

    def push(self, chunk: bytes) -> list[bytes]:
        """Add ``chunk``; return every whole frame now available, in order."""
        self._pending += chunk
        whole = len(self._pending) // self.frame_bytes * self.frame_bytes
        if not whole:
            return []
        view = bytes(self._pending[:whole])
        del self._pending[:whole]
        return [view[i : i + self.frame_bytes] for i in range(0, whole, self.frame_bytes)]

    def flush(self) -> bytes | None:
        """The remainder zero-padded to a whole frame (``None`` if nothing is pending).

        A trailing odd byte (half a sample) is dropped rather than padded into noise.
        """
        if len(self._pending) < 2:
            self._pending.clear()
            return None
        usable = len(self._pending) // 2 * 2
        frame = bytes(self._pending[:usable]).ljust(self.frame_bytes, b"\x00")
        self._pending.clear()
        return frame
