"""A small bounded pool of document reader processes, driven from the event loop.

Every document a collection takes (text, markdown, PDF) is read in a reader process
(:mod:`pipeline.retrieval.reader_process`): text extraction, chunking and tokenising are
CPU work, and the event loop that serves every socket of a Gateway replica must never wait
on them. The pool is the one way in:

* **bounded**: ``document_readers`` processes, each one job at a time; at most
  ``document_queue`` more jobs wait for one. Past that the pool refuses at once with 503
  ``overloaded`` and a ``Retry-After`` rather than queue without end.
* **timed**: a job has ``document_timeout_s`` of CPU time. The process stops itself at
  that (its own timer); if it has not answered within twice that in wall time (plus two
  seconds: a busy machine runs it at a lower priority) the pool kills it. Either way the
  client gets 413 ``document_too_large`` (the document costs more than a document may).
* **contained**: a reader that crashes (a parser bug, the memory cap) costs only that
  job: 422 ``document_unreadable``; the pool starts another for the next job.

Processes start on first use (about a third of a second: an interpreter and pypdf),
stay for the next job, and go with :meth:`DocumentReaders.aclose` or when the server's
process ends (their stdin closes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import struct
import sys
from dataclasses import asdict
from typing import Any

from pipeline.aio import Places
from pipeline.retrieval.bm25 import Segment
from pipeline.retrieval.documents import ReadDocument, ReadLimits, unreadable
from schemas import (
    ErrorCode,
    OverloadedError,
    ProtocolError,
    RetrievalSettings,
    VoxlineError,
)

__all__ = ["DocumentReaders"]

#: what a reader process writes once it is ready for its first job
READY = b"R"

#: codes a reader may answer with (anything else it says is treated as unreadable)
_CODES = {ErrorCode.DOCUMENT_TOO_LARGE, ErrorCode.DOCUMENT_UNREADABLE,
          ErrorCode.UNSUPPORTED_FORMAT, ErrorCode.INVALID_MESSAGE, ErrorCode.EMPTY_INPUT}
#: a reader's wall time: this many times its CPU time, plus a grace, then it is killed
_WALL_FACTOR = 2.0
_GRACE_S = 2.0
_START_S = 30.0
_MAX_REPLY = 256 << 20


class _Reader:
    """One reader process and its pipes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, memory_mb: int) -> _Reader:
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join(filter(None, (
                   os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
                   os.environ.get("PYTHONPATH"))))}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pipeline.retrieval.reader_process", str(memory_mb),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env)
        reader = cls(process)
        try:
            assert process.stdout is not None
            ready = await asyncio.wait_for(process.stdout.readexactly(1), _START_S)
            if ready != READY:
                raise EOFError
        except (TimeoutError, EOFError, asyncio.IncompleteReadError):
            await reader.kill()
            raise VoxlineError("a document reader process failed to start",
                               code=ErrorCode.CONFIGURATION_ERROR, http_status=503,
                               transient=True) from None
        except BaseException:
            await reader.kill()
            raise
        return reader

    async def read(self, content: bytes, fmt: str, limits: ReadLimits,
                   timeout_s: float) -> tuple[dict[str, Any], bytes]:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        header = {"format": fmt, "bytes": len(content), "timeout_s": timeout_s,
                  "limits": asdict(limits)}
        stdin.write(json.dumps(header).encode() + b"\n" + content)
        await stdin.drain()
        frame = await self._frame(stdout)
        # a large document's chunks make a large reply: parsed on a thread, not the loop
        reply = json.loads(frame) if len(frame) < 1 << 18 else await asyncio.to_thread(
            json.loads, frame)
        segment = await self._frame(stdout) if "ok" in reply else b""
        return reply, segment

    @staticmethod
    async def _frame(stdout: asyncio.StreamReader) -> bytes:
        [length] = struct.unpack(">I", await stdout.readexactly(4))
        if length > _MAX_REPLY:
            raise EOFError
        return await stdout.readexactly(length)

    async def kill(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        with contextlib.suppress(Exception):
            await self.process.wait()


class DocumentReaders:
    """The pool (see the module docstring); one per process, shared by its requests."""

    def __init__(self, settings: RetrievalSettings) -> None:
        self.settings = settings
        self.limits = ReadLimits.of(settings)
        self._idle: list[_Reader] = []
        self._all: set[_Reader] = set()
        self._places = Places(settings.document_readers, settings.document_queue)
        self._closed = False

    @property
    def busy(self) -> int:
        """Jobs running or waiting for a reader."""
        return self._places.admitted

    async def read(self, content: str | bytes, fmt: str) -> ReadDocument:
        """Read one document in a reader process (see the module docstring for errors)."""
        size, queue = self.settings.document_readers, self.settings.document_queue
        if self._places.full:
            raise OverloadedError(
                f"all {size} document readers are busy and {queue} documents wait",
                retry_after_ms=int(1000 * min(self.settings.document_timeout_s, 5)))
        data = content.encode() if isinstance(content, str) else content
        async with self._places.hold():
            reply, blob = await self._run(data, fmt)
        if "ok" not in reply:
            raise _error_of(reply.get("error") or {})
        ok = reply["ok"]
        segment = await asyncio.to_thread(Segment.from_bytes, blob)
        return ReadDocument(int(ok["chars"]), int(ok["pages"]), list(ok["chunks"]), segment)

    async def _run(self, data: bytes, fmt: str) -> tuple[dict[str, Any], bytes]:
        if self._closed:
            raise VoxlineError("the document readers are closed",
                               code=ErrorCode.CONFIGURATION_ERROR, http_status=503,
                               transient=True)
        reader = None
        while self._idle and reader is None:
            candidate = self._idle.pop()
            if candidate.process.returncode is None:
                reader = candidate
            else:  # it died idle (killed from outside): not this document's fault
                self._all.discard(candidate)
        if reader is None:
            reader = await self._start()
        timeout = self.settings.document_timeout_s
        keep = False
        try:
            wall = timeout * _WALL_FACTOR + _GRACE_S
            reply, blob = await asyncio.wait_for(
                reader.read(data, fmt, self.limits, timeout), wall)
            keep = not reply.get("retire")
            return reply, blob
        except TimeoutError:
            raise ProtocolError(f"reading the document took longer than {timeout} s",
                                code=ErrorCode.DOCUMENT_TOO_LARGE, http_status=413,
                                limit_s=timeout) from None
        except (EOFError, asyncio.IncompleteReadError, ConnectionError, ValueError):
            raise unreadable("the document reader failed on this document") from None
        finally:
            if keep and not self._closed:
                self._idle.append(reader)
            else:
                self._all.discard(reader)
                await reader.kill()

    async def _start(self) -> _Reader:
        reader = await _Reader.start(self.settings.document_memory_mb)
        self._all.add(reader)
        return reader

    async def aclose(self) -> None:
        self._closed = True
        self._idle.clear()
        readers, self._all = list(self._all), set()
        await asyncio.gather(*(reader.kill() for reader in readers))


def _error_of(error: dict[str, Any]) -> VoxlineError:
    try:
        code = ErrorCode(str(error.get("code")))
    except ValueError:
        code = ErrorCode.DOCUMENT_UNREADABLE
    if code not in _CODES:
        return unreadable("the document cannot be read")
    status = int(error.get("status") or 422)
    raw = error.get("details")
    details: dict[str, Any] = raw if isinstance(raw, dict) else {}
    return ProtocolError(str(error.get("message") or code.value), code=code,
                         http_status=status if 400 <= status < 500 else 422, **details)
