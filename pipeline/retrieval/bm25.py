"""BM25 over a collection's chunks, kept as segments that merge, and their serialised form.

Text is tokenised by ``bm25s``'s scikit-learn-style tokenizer (lower case, words of two or
more characters, English stop words removed) and stemmed with the Snowball English stemmer
of ``PyStemmer`` (a compiled wheel, no download): "capitals" finds "capital". Nothing is
fetched from a hub.

A :class:`Segment` holds the raw term frequencies of some chunks, term-major (each term's
postings side by side), and no score: BM25's statistics (how many chunks hold a term, the
average length) are the whole collection's, so they are summed over every segment at query
time, and a query costs the postings of its own terms only (about a millisecond at 10k
chunks). Because nothing collection-wide is baked in, a new document is a segment of its
own, built from that document alone, and two segments merge by concatenating postings
(Lucene's segments, in miniature): adding a document costs what the document costs.
:class:`BM25Index` searches a list of segments as one collection (Lucene's variant: k1
1.5, b 0.75, idf ``log(1 + (N - df + 0.5) / (df + 0.5))``, the same ranking ``bm25s``
gives).

A segment is stored in Redis as bytes (:meth:`Segment.to_bytes`: numpy arrays in an
``.npz``, no pickle, so bytes from a document reader process are safe to load).
"""

from __future__ import annotations

import io
import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

__all__ = ["BM25Index", "Segment", "tokenize"]

_FORMAT = 2
K1, B = 1.5, 0.75


@lru_cache(maxsize=1)
def _stemmer() -> Callable[[list[str]], list[str]] | None:
    try:
        import Stemmer  # PyStemmer
    except ImportError:  # pragma: no cover - a core dependency; without it: no stemming
        return None
    stem: Callable[[list[str]], list[str]] = Stemmer.Stemmer("english").stemWords
    return stem


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    """The index's tokens of each text (queries and chunks go through the same)."""
    import bm25s

    tokens: list[list[str]] = bm25s.tokenize(
        list(texts), stopwords="en", stemmer=_stemmer(), return_ids=False,
        show_progress=False, allow_empty=True)
    return [[t for t in row if t] for row in tokens]  # an empty text: no token, not ""


@dataclass(frozen=True, slots=True)
class Hit:
    index: int
    score: float


@dataclass(frozen=True, eq=False)
class Segment:
    """Term frequencies of some chunks (rows), term-major: the postings of term ``t`` are
    ``rows[indptr[t]:indptr[t + 1]]`` with their counts in ``tfs``. ``keys`` names each
    row (the store's ``"{document}:{n}"``)."""

    vocab: tuple[str, ...]
    indptr: np.ndarray
    rows: np.ndarray
    tfs: np.ndarray
    lengths: np.ndarray
    keys: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        return len(self.lengths)

    @cached_property
    def term_ids(self) -> dict[str, int]:
        return {term: i for i, term in enumerate(self.vocab)}

    @cached_property
    def total_length(self) -> int:
        return int(self.lengths.sum())

    @classmethod
    def empty(cls) -> Segment:
        return cls((), np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32),
                   np.zeros(0, np.int32))

    @classmethod
    def from_tokens(cls, tokens: Sequence[Sequence[str]], keys: Sequence[str] = ()) -> Segment:
        """A segment of these rows' tokens (a Python pass over the tokens: run it off the
        event loop for anything but a short text)."""
        ids: dict[str, int] = {}
        terms: list[int] = []
        rows: list[int] = []
        counts: list[int] = []
        for row, row_tokens in enumerate(tokens):
            for term, count in Counter(row_tokens).items():
                terms.append(ids.setdefault(term, len(ids)))
                rows.append(row)
                counts.append(count)
        lengths = np.fromiter((len(t) for t in tokens), np.int32, len(tokens))
        return _assemble(tuple(ids), np.asarray(terms, np.int64), np.asarray(rows, np.int32),
                         np.asarray(counts, np.float32), lengths, tuple(keys))

    def postings(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        t = self.term_ids.get(term)
        if t is None:
            return _NO_ROWS, _NO_TFS
        start, end = int(self.indptr[t]), int(self.indptr[t + 1])
        return self.rows[start:end], self.tfs[start:end]

    def merged(self, *others: Segment) -> Segment:
        """One segment of this one's rows, then each other's (in order)."""
        vocab: dict[str, int] = dict(self.term_ids)
        terms, rows, tfs = [self._posting_terms()], [self.rows], [self.tfs]
        offset = self.size
        for other in others:
            remap = np.fromiter((vocab.setdefault(t, len(vocab)) for t in other.vocab),
                                np.int64, len(other.vocab))
            terms.append(remap[other._posting_terms()])
            rows.append(other.rows + offset)
            tfs.append(other.tfs)
            offset += other.size
        return _assemble(tuple(vocab), np.concatenate(terms),
                         np.concatenate(rows).astype(np.int32), np.concatenate(tfs),
                         np.concatenate([self.lengths, *(o.lengths for o in others)]),
                         self.keys + tuple(k for o in others for k in o.keys))

    def without(self, drop: Callable[[str], bool]) -> Segment:
        """This segment less the rows whose key ``drop`` says to drop."""
        keep = np.fromiter((not drop(k) for k in self.keys), bool, len(self.keys))
        if keep.all():
            return self
        renumber = np.cumsum(keep, dtype=np.int64) - 1
        kept = keep[self.rows]
        return _assemble(self.vocab, self._posting_terms()[kept],
                         renumber[self.rows[kept]].astype(np.int32), self.tfs[kept],
                         self.lengths[keep], tuple(k for k, y in zip(self.keys, keep,
                                                                     strict=True) if y))

    def with_keys(self, keys: Sequence[str]) -> Segment:
        if len(keys) != self.size:
            raise ValueError(f"{len(keys)} keys for {self.size} rows")
        return Segment(self.vocab, self.indptr, self.rows, self.tfs, self.lengths, tuple(keys))

    def _posting_terms(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.vocab), dtype=np.int64), np.diff(self.indptr))

    def to_bytes(self) -> bytes:
        """The segment as an ``.npz`` (arrays and JSON; loadable without pickle)."""
        header = {"format": _FORMAT, "vocab": self.vocab, "keys": self.keys}
        buffer = io.BytesIO()
        np.savez(buffer, allow_pickle=False, indptr=self.indptr, rows=self.rows,
                 tfs=self.tfs, lengths=self.lengths,
                 header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8))
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> Segment:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            header = json.loads(npz["header"].tobytes())
            if header.get("format") != _FORMAT:
                raise ValueError(f"unknown BM25 segment format {header.get('format')!r}")
            segment = cls(tuple(header["vocab"]), npz["indptr"], npz["rows"], npz["tfs"],
                          npz["lengths"], tuple(header["keys"]))
        if (len(segment.indptr) != len(segment.vocab) + 1 or len(segment.rows) !=
                len(segment.tfs) or (segment.keys and len(segment.keys) != segment.size)):
            raise ValueError("a BM25 segment whose arrays disagree")
        return segment


_NO_ROWS = np.zeros(0, np.int32)
_NO_TFS = np.zeros(0, np.float32)


def _assemble(vocab: tuple[str, ...], terms: np.ndarray, rows: np.ndarray, tfs: np.ndarray,
              lengths: np.ndarray, keys: tuple[str, ...]) -> Segment:
    """A segment from postings in any order: sorted by term, then row."""
    order = np.lexsort((rows, terms))
    indptr = np.zeros(len(vocab) + 1, np.int64)
    np.cumsum(np.bincount(terms, minlength=len(vocab)), out=indptr[1:])
    return Segment(vocab, indptr, rows[order], tfs[order], lengths.astype(np.int32), keys)


class BM25Index:
    """BM25 over segments searched as one collection; a hit's ``index`` counts rows
    across the segments in order."""

    def __init__(self, segments: Sequence[Segment]) -> None:
        self.segments = tuple(segments)
        self.size = sum(s.size for s in self.segments)

    @classmethod
    def build(cls, texts: Sequence[str]) -> BM25Index:
        return cls([Segment.from_tokens(tokenize(texts))])

    def search(self, query: str, top_k: int) -> list[Hit]:
        """The best ``top_k`` chunks with a positive score, best first."""
        if self.size == 0 or top_k < 1:
            return []
        [tokens] = tokenize([query])
        average = sum(s.total_length for s in self.segments) / self.size or 1.0
        scores = [np.zeros(s.size, np.float32) for s in self.segments]
        matched = False
        for term, times in Counter(tokens).items():
            found = [s.postings(term) for s in self.segments]
            df = sum(len(rows) for rows, _ in found)
            if not df:
                continue
            matched = True
            idf = math.log(1 + (self.size - df + 0.5) / (df + 0.5))
            for segment, score, (rows, tfs) in zip(self.segments, scores, found, strict=True):
                norm = K1 * (1 - B + B * segment.lengths[rows] / average)
                score[rows] += times * idf * tfs / (tfs + norm)
        if not matched:
            return []
        every = np.concatenate(scores)
        k = min(top_k, self.size)
        best = np.argpartition(-every, k - 1)[:k]
        best = best[np.argsort(-every[best], kind="stable")]
        return [Hit(int(i), float(every[i])) for i in best if every[i] > 0]

    def to_bytes(self) -> bytes:
        """The index as one segment's bytes."""
        return self.merged().to_bytes()

    def merged(self) -> Segment:
        if not self.segments:
            return Segment.empty()
        first, *rest = self.segments
        return first.merged(*rest) if rest else first

    @classmethod
    def from_bytes(cls, blob: bytes) -> BM25Index:
        return cls([Segment.from_bytes(blob)])
