"""Reading a document: its text (PDF pages extracted), its chunks and their index segment.

This is the CPU work a document costs, so it runs in a document reader process
(:mod:`pipeline.retrieval.readers`), never on an event loop. Its limits are checked while
it works, not after: a PDF's page count before any page is read, its extracted characters
as each piece of text comes out of pypdf (a page of 20,000 text operators stops at the
limit, not after the page), so a hostile document costs at most its limit.

Errors, all :class:`schemas.VoxlineError` with a code (the reader process sends them
back as they are):

* 413 ``document_too_large``: over ``max_document_chars`` or ``max_document_pages``
  (and, raised by the pool, over the time or memory a document may take);
* 422 ``document_unreadable``: a PDF pypdf fails on, whatever the failure (a malformed
  file, an array nested thousands deep: ``RecursionError``);
* 415 ``unsupported_format``: not a PDF at all, or an unknown format;
* 400 ``invalid_message``: a text document that is not UTF-8; ``empty_input``: no text.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from pipeline.retrieval.bm25 import Segment, tokenize
from pipeline.retrieval.chunking import chunk_text
from schemas import ErrorCode, InputTooLargeError, ProtocolError, VoxlineError

__all__ = ["DOCUMENT_FORMATS", "ReadDocument", "ReadLimits", "document_text", "read_document"]

#: what ``/v1/collections/{id}/documents`` takes
DOCUMENT_FORMATS = ("text", "markdown", "pdf")


@dataclass(frozen=True, slots=True)
class ReadLimits:
    """What one document may cost, and how it is cut (from ``RetrievalSettings``)."""

    max_chars: int = 1_000_000
    max_pages: int = 1000
    chunk_chars: int = 500
    chunk_overlap: int = 80

    @classmethod
    def of(cls, settings: Any) -> ReadLimits:
        return cls(settings.max_document_chars, settings.max_document_pages,
                   settings.chunk_chars, min(settings.chunk_overlap, settings.chunk_chars - 1))


@dataclass(frozen=True, slots=True)
class ReadDocument:
    """A document, read: its length, pages (PDF), chunks and their index segment."""

    chars: int
    pages: int
    chunks: list[str]
    segment: Segment


def read_document(content: str | bytes, fmt: str, limits: ReadLimits) -> ReadDocument:
    """Text, chunks and segment of one document (see the module docstring for errors)."""
    text, pages = _text_and_pages(content, fmt, limits)
    if len(text) > limits.max_chars:
        raise too_large(f"a document of {len(text)} characters is over the limit of "
                        f"{limits.max_chars}", limit=limits.max_chars)
    chunks = chunk_text(text, limits.chunk_chars, limits.chunk_overlap)
    if not chunks:
        raise VoxlineError("the document has no text", code=ErrorCode.EMPTY_INPUT,
                           http_status=400)
    return ReadDocument(len(text), pages, chunks, Segment.from_tokens(tokenize(chunks)))


def document_text(content: str | bytes, fmt: str, limits: ReadLimits | None = None) -> str:
    """The plain text of a document: text and markdown as they are, PDF pages extracted
    with pypdf within ``limits``."""
    return _text_and_pages(content, fmt, limits or ReadLimits())[0]


def too_large(message: str, **details: Any) -> InputTooLargeError:
    return InputTooLargeError(message, code=ErrorCode.DOCUMENT_TOO_LARGE, **details)


def unreadable(message: str) -> ProtocolError:
    return ProtocolError(message, code=ErrorCode.DOCUMENT_UNREADABLE, http_status=422)


def _text_and_pages(content: str | bytes, fmt: str, limits: ReadLimits) -> tuple[str, int]:
    if fmt in ("text", "markdown"):
        if isinstance(content, bytes):
            try:
                return content.decode("utf-8"), 0
            except UnicodeDecodeError:
                raise ProtocolError("a text document must be UTF-8") from None
        return content, 0
    if fmt == "pdf":
        if isinstance(content, str):
            raise ProtocolError("a PDF document is uploaded as a file, not as text")
        return _pdf_text(content, limits)
    raise ProtocolError(f"unknown document format {fmt!r}; one of {DOCUMENT_FORMATS}",
                        code=ErrorCode.UNSUPPORTED_FORMAT, http_status=415)


class _Stop(BaseException):  # not an error: a limit reached inside pypdf
    """Raised from pypdf's text visitor to stop extraction at the limit. A BaseException,
    so pypdf's own ``except Exception`` clauses cannot swallow it."""


def _pdf_text(data: bytes, limits: ReadLimits) -> tuple[str, int]:
    if b"%PDF-" not in data[:1024]:
        raise ProtocolError("not a PDF (no %PDF- header)", code=ErrorCode.UNSUPPORTED_FORMAT,
                            http_status=415)
    from pypdf import PdfReader

    total = 0

    def count(text: str, *_: Any) -> None:
        nonlocal total
        total += len(text)
        if total > limits.max_chars:
            raise _Stop

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = len(reader.pages)
        if pages > limits.max_pages:
            raise too_large(f"a PDF of {pages} pages is over the limit of {limits.max_pages}",
                            limit=limits.max_pages)
        texts = []
        for page in reader.pages:
            texts.append((page.extract_text(visitor_text=count) or "").strip())
            total += 2  # the paragraph break between pages
        return "\n\n".join(texts), pages
    except _Stop:
        raise too_large(f"the PDF's text passes the limit of {limits.max_chars} characters",
                        limit=limits.max_chars) from None
    except VoxlineError:
        raise
    except MemoryError:
        raise too_large("the PDF needs more memory than a document may take") from None
    except RecursionError:
        raise unreadable("not a readable PDF (nested too deep)") from None
    except Exception as exc:  # whatever pypdf raises, the PDF is unreadable
        raise unreadable(f"not a readable PDF ({type(exc).__name__})") from None
