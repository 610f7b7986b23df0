"""Small documents that cost a document reader a great deal: the inputs a hostile client
sends to ``/v1/collections/{id}/files``, written by hand (no PDF writer needed).

* :func:`operator_bomb` (about 4 KB): 20 pages that share one Flate stream of 20,000 text
  operators; fully extracted it is millions of characters.
* :func:`xobject_bomb` (under 2 KB): form XObjects nested ``depth`` deep, each drawing the
  one below ``fanout`` times: ``fanout ** depth`` draws from a page of a few bytes.
* :func:`deep_array` (well under 1 KB): a content stream holding an array nested 3,000
  deep (a recursive parser overflows).
* :func:`tiny_document`: the n-th of many small distinct text documents.

The tests (tests/api/test_retrieval_limits.py) and the benchmark
(loadtests/bench_limits.py ``--part collections``) send these.
"""

from __future__ import annotations

import zlib

__all__ = ["deep_array", "operator_bomb", "pdf", "tiny_document", "xobject_bomb"]

_FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"


def pdf(objects: list[bytes]) -> bytes:
    """A PDF of these objects (numbered from 1; object 1 is the catalog), with its xref."""
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)
    return bytes(out)


def _stream(data: bytes, extra: bytes = b"", compress: bool = True) -> bytes:
    if compress:
        data = zlib.compress(data, 9)
        extra += b" /Filter /FlateDecode"
    return b"<< /Length %d%s >>\nstream\n" % (len(data), extra) + data + b"\nendstream"


def _pages(count: int, contents: int, resources: bytes) -> list[bytes]:
    """Catalog, page tree and ``count`` pages (objects 3..) that all show object
    ``contents``."""
    first = 3
    kids = b" ".join(b"%d 0 R" % (first + i) for i in range(count))
    page = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
            b"/Resources %s >>" % (contents, resources))
    return [b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, count),
            *([page] * count)]


def operator_bomb(pages: int = 20, operators: int = 20_000) -> bytes:
    """``pages`` pages sharing one Flate stream of ``operators`` text-showing operators."""
    font = 3 + pages
    content = 3 + pages + 1
    ops = b"BT /F1 12 Tf 72 720 Td " + b"(Lorem ipsum dolor) Tj " * operators + b"ET"
    objects = _pages(pages, content, b"<< /Font << /F1 %d 0 R >> >>" % font)
    return pdf([*objects, _FONT, _stream(ops)])


def xobject_bomb(depth: int = 7, fanout: int = 10) -> bytes:
    """One page drawing form XObject ``depth``, which draws ``depth - 1`` ``fanout`` times,
    down to form 0, which shows a word."""
    font = 5
    forms = list(range(6, 6 + depth + 1))  # object numbers of form 0 .. form depth
    objects = _pages(1, 4, b"<< /XObject << /X%d %d 0 R >> >>" % (depth, forms[depth]))
    objects.append(_stream(b"q /X%d Do Q" % depth))
    objects.append(_FONT)
    for level in range(len(forms)):
        if level == 0:
            body, resources = b"BT /F1 9 Tf 10 10 Td (ab) Tj ET", b"/Font << /F1 5 0 R >>"
        else:
            body = b" ".join([b"/X%d Do" % (level - 1)] * fanout)
            resources = b"/XObject << /X%d %d 0 R >>" % (level - 1, forms[level - 1])
        extra = (b" /Type /XObject /Subtype /Form /BBox [0 0 612 792] "
                 b"/Resources << %s >>" % resources)
        objects.append(_stream(body, extra))
    assert font == 5 and len(objects) == forms[-1]
    return pdf(objects)


def deep_array(depth: int = 3000) -> bytes:
    """One page whose (Flate) content stream is an array nested ``depth`` deep."""
    objects = _pages(1, 4, b"<< >>")
    objects.append(_stream(b"[" * depth + b"]" * depth + b" Tj"))
    return pdf(objects)


def tiny_document(n: int) -> str:
    """A distinct short text (one chunk): a made-up fact with a word of its own."""
    return (f"Note {n}: the courier named zq{n:05d}x delivered parcel {n} to the harbour "
            f"office on a rainy morning.")
