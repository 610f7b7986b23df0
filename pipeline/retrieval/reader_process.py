"""A document reader process: ``python -m pipeline.retrieval.reader_process MEMORY_MB``.

:class:`pipeline.retrieval.readers.DocumentReaders` starts a few of these and hands each
one document at a time over its stdin; it answers on its stdout. Parsing runs here, not in
the server, because pypdf is pure Python: on a thread it would hold the server's GIL (its
event loop stalls), and a thread cannot be stopped when a document takes too long; a
process can be, and it cannot take the server's memory with it.

The process limits itself, so a runaway parse stops even if nobody kills it: a timer of
its CPU time (``ITIMER_PROF``: on a busy machine its lower priority must not count against
the document) interrupts a job past its time, ``RLIMIT_AS`` caps the memory it may add
beyond what it needed to start (``MEMORY_MB``), and it runs at a lower priority (nice 10)
so the server's loops come first on a busy CPU. It exits when its stdin closes (the server
went away) and after a job that ran out of time or memory (its heap may be left in a poor
state; the pool starts another).

The protocol (one job at a time): the server writes a JSON header line ``{"format",
"bytes", "timeout_s", "limits"}`` then ``bytes`` bytes of content; the process answers with
a 4-byte big-endian length and a JSON body, ``{"ok": {"chars", "pages", "chunks"}}``
followed by another length and the chunks' segment (an ``.npz``; see
:class:`pipeline.retrieval.bm25.Segment`), or ``{"error": {"code", "status", "message",
"details"}, "retire": bool}``. Nothing is pickled in either direction.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
import struct
import sys
from typing import Any, BinaryIO


class _TimeUp(BaseException):  # raised by the timer, through pypdf's own handlers
    pass


def _on_alarm(*_: Any) -> None:
    raise _TimeUp


def _limit_memory(extra_mb: int) -> None:
    if extra_mb <= 0:
        return
    with open("/proc/self/statm") as statm:
        used = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = used + (extra_mb << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _send(out: BinaryIO, *parts: bytes) -> None:
    for part in parts:
        out.write(struct.pack(">I", len(part)) + part)
    out.flush()


def _error(code: str, status: int, message: str, **details: Any) -> dict[str, Any]:
    return {"error": {"code": code, "status": status, "message": message, "details": details}}


def serve(stdin: BinaryIO, stdout: BinaryIO) -> None:
    from pipeline.retrieval.documents import ReadLimits, read_document
    from pipeline.retrieval.readers import READY
    from schemas import VoxlineError

    signal.signal(signal.SIGPROF, _on_alarm)
    stdout.write(READY)
    stdout.flush()
    while True:
        line = stdin.readline()
        if not line:
            return  # the server went away
        header = json.loads(line)
        content = stdin.read(int(header["bytes"]))
        retire = False
        reply: dict[str, Any]
        segment = b""
        try:
            signal.setitimer(signal.ITIMER_PROF, float(header["timeout_s"]))
            try:
                data: str | bytes = content
                read = read_document(data, header["format"], ReadLimits(**header["limits"]))
                segment = read.segment.to_bytes()
            finally:
                signal.setitimer(signal.ITIMER_PROF, 0)
            reply = {"ok": {"chars": read.chars, "pages": read.pages, "chunks": read.chunks}}
        except VoxlineError as exc:
            reply = _error(exc.code.value, exc.http_status, exc.message, **exc.details)
        except _TimeUp:
            reply = _error("document_too_large", 413, "reading the document took more than "
                           f"{header['timeout_s']} s of CPU time", limit_s=header["timeout_s"])
            retire = True
        except MemoryError:
            reply = _error("document_too_large", 413,
                           "the document needs more memory than a document may take")
            retire = True
        except RecursionError:
            reply = _error("document_unreadable", 422, "the document is nested too deep")
        except Exception as exc:  # any failure of a parser: the client's document's
            reply = _error("document_unreadable", 422,
                           f"the document cannot be read ({type(exc).__name__})")
        reply["retire"] = retire
        if "ok" in reply:
            _send(stdout, json.dumps(reply).encode(), segment)
        else:
            _send(stdout, json.dumps(reply).encode())
        if retire:
            return


def main() -> None:
    # pypdf logs each oddity of a document: a hostile one would flood the server's log
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    os.nice(10)
    _limit_memory(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    import pypdf  # noqa: F401 - loaded before the first job, not during it

    from pipeline.retrieval.bm25 import tokenize

    tokenize(["warm"])  # the tokenizer's and stemmer's imports, also before the first job
    serve(sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    main()
