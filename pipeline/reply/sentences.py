"""Streaming sentence buffer: LLM text deltas in, speakable pieces out.

The orchestrator pushes every LLM delta into a `SentenceBuffer` and sends each piece it
returns to TTS at once.  The first piece is cut early, after a clause mark (``,;:`` or a
dash) once ``first_piece_min_words`` words have arrived, or at the first sentence end; later
pieces are whole sentences, one shorter than ``min_sentence_chars`` being held and merged
with the next.  Markdown is made speakable first (`pipeline.reply._markdown`).

Chunking invariance: the buffer scans strictly left to right and decides each candidate
boundary from the text alone; when it needs characters that have not arrived (the word after
``". "``, the character after ``","``) it waits, and `flush` decides with what is there.  So
the pieces never depend on how the text was split into deltas.

Why rules and not pysbd (MIT, evaluated): it is not incremental and costs ~600 µs per call on
a 200-character window, against a budget of well under 50 µs per token; its result for a
window can change as text is appended, so the lookahead below would still be needed; and it
fails table cases ("Well... I think so." and "Hauptstr. 5" are split, "Birnen usw. Das ist
gut." is not).  These rules are table-tested and cost ~10 µs per token.

Where a sentence or a clause ends is decided by the rules of
:mod:`pipeline.reply._sentence_rules` (its docstring lists them); this module holds the
streaming state around them: what is decided, the piece pending, a short sentence held
back, the quotes and brackets open.

A piece longer than ``max_piece_chars`` is cut at its last held sentence end or last space,
or hard at the limit when a "word" is longer than that: no piece is ever longer than
``max_piece_chars``, which is at most what a synthesizer takes (``MAX_SYNTHESIS_CHARS``).
Pieces are stripped, never empty, and joined with single spaces give the speakable text with
whitespace normalised, except that a cut after a CJK mark, an unspaced "—" or inside an
overlong word has no space.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

from pipeline.aio import aclose_stream
from pipeline.reply._markdown import HARD_BREAK, MarkdownToSpeech
from pipeline.reply._sentence_rules import (
    BRACKETS,
    CJK_RE,
    CLAUSE,
    CLAUSE_CJK,
    CLOSERS,
    DASHES,
    HAS_ALNUM,
    NO_SPACE_TERMINATORS,
    OPEN_BRACKETS,
    OPENERS,
    QUOTE_CLOSES,
    QUOTE_SPAN,
    SPECIAL,
    TERMINATORS,
    WORD_RE,
    SentenceEndRules,
    clause_boundary,
    count_words,
)
from schemas import MAX_SYNTHESIS_CHARS

__all__ = [
    "VOICE_FIRST_PIECE",
    "SentenceBuffer",
    "SentenceBufferConfig",
    "split_stream",
    "split_text",
]


@dataclass(frozen=True)
class SentenceBufferConfig:
    """How the buffer cuts.

    ``first_piece_min_words`` defaults to 5: about 1.5–2 s of speech, long enough for a TTS
    voice to find a natural intonation and to cover the synthesis of the next piece (the LLM
    produces dozens of tokens meanwhile), yet only ~7 tokens, so first audio is not delayed
    noticeably.  Three words sound clipped ("Well, I think,") and leave a gap after them.

    ``first_piece_max_words`` ends a first piece that has no clause mark at the first word
    boundary after that many words (``None``: wait for a clause mark or sentence end).  The
    live turn uses 4 and 4 (:data:`VOICE_FIRST_PIECE`), tuned against the measured engines:
    on the CPU profile (README) the LLM writes ~36 tokens/s (~0.04 s a word) and Piper
    synthesizes at a real-time factor of 0.09 (~0.03 s of work per spoken word, ~0.35 s
    of audio), so every word the first piece waits for costs ~0.07 s of first audio,
    while 4 words (~1.3 s of audio) still cover the synthesis of the next piece several
    times over.  ``loadtests/bench_latency.py``: a clause mark after 4 words or a cut after
    7 gave text TTFA p50 530 ms (streaming ÷ sequential 0.33); 4 words, 358 ms (0.22).
    The price is a prosodic break in a long first sentence ("The capital of France | is
    Paris, a city ..."); a first sentence of 4 words or fewer is still one piece.  3 words
    was ~90 ms sooner still, but left silence inside 11 of 152 replies where 4 left none
    in 120 (the longer second piece was not ready in time; docs/measurements.md).
    """

    language: str = "en"
    min_sentence_chars: int = 20
    first_piece_min_words: int = 5
    first_piece_max_words: int | None = None
    early_first_piece: bool = True
    max_piece_chars: int = 400

    def __post_init__(self) -> None:
        if min(self.min_sentence_chars + 1, self.first_piece_min_words, self.max_piece_chars,
               self.first_piece_max_words or 1) < 1:
            raise ValueError("need min_sentence_chars >= 0 and the other limits >= 1")
        if self.max_piece_chars > MAX_SYNTHESIS_CHARS:
            raise ValueError(f"max_piece_chars is over what a synthesizer takes "
                             f"({MAX_SYNTHESIS_CHARS})")


#: The live turn's first-piece rule (see :class:`SentenceBufferConfig`): the first 4 words
#: (a sentence that ends sooner is a piece of its own).
VOICE_FIRST_PIECE = SentenceBufferConfig(first_piece_min_words=4, first_piece_max_words=4)


class SentenceBuffer:
    """Cuts a stream of LLM deltas into speakable pieces (see the module docstring).

    `push` returns the pieces completed by a delta, `flush` the rest at the end of the
    stream; after `flush` the buffer is empty and can take a new stream.  Not thread-safe.
    """

    def __init__(self, config: SentenceBufferConfig | None = None) -> None:
        self.config = config or SentenceBufferConfig()
        self._rules = SentenceEndRules.for_language(self.config.language)
        self._min = self.config.min_sentence_chars
        self._markdown = MarkdownToSpeech()
        self._reset()

    def _reset(self) -> None:
        self._buf = ""  # speakable text from the start of the pending piece
        self._i = 0  # next index to scan; everything before it is decided
        self._start = 0  # start of the pending piece
        self._held: int | None = None  # end of a short sentence held back for merging
        self._base = 0  # absolute offset of _buf[0], for quote ages
        self._stack: list[tuple[str, int]] = []  # open quotes/brackets, absolute positions
        self._first = self.config.early_first_piece
        self._out: list[str] = []

    def push(self, delta: str) -> list[str]:
        """Add an LLM delta; return the pieces it completed (often none)."""
        text = self._markdown.feed(delta)
        if text:
            self._buf += text
            self._scan(final=False)
        return self._take()

    def flush(self) -> list[str]:
        """End of stream: return the remaining pieces and reset the buffer."""
        self._buf += self._markdown.feed("", final=True)
        self._scan(final=True)
        self._emit(len(self._buf))
        out = self._take()
        self._reset()
        return out

    def likely_first_piece(self) -> str | None:
        """The first piece as it will be cut if a space comes next; None when it is not
        that near.

        The first piece is cut at the word boundary after ``first_piece_max_words`` words,
        so it waits for the token after its last word. Once that word reaches the end of
        what arrived, a space next cuts exactly this text; the word may instead go on, or
        a mark follow, and then the piece differs. A reader may start synthesizing it a
        token early, and must compare it with the piece it is given.
        """
        limit = self.config.first_piece_max_words
        if not self._first or limit is None or self._held is not None or self._markdown.holds_back:
            return None
        buf, n = self._buf, len(self._buf)
        if n - self._text_start() > self.config.max_piece_chars:
            return None
        words = list(WORD_RE.finditer(buf, self._start, n))
        if len(words) < limit or words[-1].end() != n or self._i > n or buf[n - 1].isdigit():
            return None  # (a number goes on: tokenizers such as Gemma's split every digit)
        oldest = self._base + n - QUOTE_SPAN  # as _inside(n) reads it, popping nothing
        if any(opened >= oldest for _, opened in self._stack):
            return None
        return buf[self._start : n].replace(HARD_BREAK, " ").strip() or None

    # -- scanning ---------------------------------------------------------------------------

    def _scan(self, final: bool) -> None:
        buf = self._buf
        while True:
            m = SPECIAL.search(buf, self._i)
            j = m.start() if m else len(buf)
            if (self._first and self._word_cut(j)) or self._overflow(j):
                continue
            self._i = j
            if m is None or not self._step(buf[j], j, final):
                return

    def _step(self, c: str, j: int, final: bool) -> bool:
        """Decide the special character at `j`; False when more text is needed."""
        if c == HARD_BREAK:
            self._stack.clear()
            self._i = j + 1
            self._cut(j + 1)
        elif c in TERMINATORS:
            return self._terminator(j, final)
        elif c in CLAUSE or c in CLAUSE_CJK or c in DASHES:
            return self._clause(j, final)
        else:
            self._quote(c, j)
            self._i = j + 1
        return True

    def _clause(self, j: int, final: bool) -> bool:
        """A clause mark or dash at `j`: the first piece may end after it."""
        buf, n = self._buf, len(self._buf)
        k = j + 1
        while buf[j] in DASHES and k < n and buf[k] in DASHES:
            k += 1
        if self._first and buf[j] not in CLAUSE_CJK and k == n and not final:
            return False  # "3,50" or ", "? "-" or " - "?
        self._i = k
        if not self._first:
            return True
        if clause_boundary(buf, self._start, j, k) and self._clause_ok(k):
            self._cut(k)
        return True

    def _terminator(self, j: int, final: bool) -> bool:
        buf, n = self._buf, len(self._buf)
        k = j
        while k < n and buf[k] in TERMINATORS:
            k += 1
        e = k
        while e < n and buf[e] in CLOSERS:
            e += 1
        if e == n and not final:
            return False
        run = buf[j:k]
        if e < n and run[-1] in NO_SPACE_TERMINATORS:
            cut = not (e > k and buf[e] in "とっ")  # 「…。」と言った: the quote goes on
        elif e < n and buf[e] == " ":
            decision = self._rules.sentence_ends(buf, self._start, run, j, e + 1, final)
            if decision is None:
                return False
            cut = decision
        else:  # "3.14", "a.b", a hard break (cut by itself) or the end of the text
            self._i = k
            return True
        for p in range(k, e):
            self._quote(buf[p], p)
        self._i = e
        if cut and not self._inside(e):
            self._cut(e)
        return True

    def _quote(self, c: str, j: int) -> None:
        """Track open quotes and brackets; straight quotes open after a space or opener."""
        stack = self._stack
        top = stack[-1][0] if stack else ""
        prev = self._buf[j - 1] if j > self._start else " "
        opens = prev.isspace() or prev in OPENERS
        if c in OPEN_BRACKETS or c == "„":
            stack.append((c, self._base + j))
        elif c in BRACKETS:
            for idx in range(len(stack) - 1, -1, -1):
                if stack[idx][0] == BRACKETS[c]:
                    del stack[idx:]
                    break
        elif (top, c) in QUOTE_CLOSES:
            stack.pop()
        elif c in '"“«»' and opens:
            stack.append((c, self._base + j))

    def _inside(self, j: int) -> bool:
        stack, oldest = self._stack, self._base + j - QUOTE_SPAN
        while stack and stack[0][1] < oldest:
            stack.pop(0)
        return bool(stack)

    def _word_cut(self, j: int) -> bool:
        """The first piece has ``first_piece_max_words`` words and no boundary yet: cut it
        after the first of its words, from that count on, that a space follows (text up to
        `j` is decided; a word ending at `j` may go on). Only within ``max_piece_chars``:
        past it :meth:`_overflow` cuts, so the cut never depends on how text arrived."""
        limit = self.config.first_piece_max_words
        if limit is None:
            return False
        buf = self._buf
        longest = self._text_start() + self.config.max_piece_chars
        for count, word in enumerate(WORD_RE.finditer(buf, self._start, j), start=1):
            end = word.end()
            if end > longest:
                return False
            if count >= limit and self._i <= end < j and buf[end] == " " and not self._inside(end):
                self._i = end
                self._cut(end)
                return not self._first  # a piece went out (it always does here)
        return False

    def _clause_ok(self, end: int) -> bool:
        if self._inside(end):
            return False
        return count_words(self._buf[self._start : end]) >= self.config.first_piece_min_words

    def _text_start(self) -> int:
        """Where the pending piece's text starts (past the space that a cut left)."""
        return self._start + (self._buf[self._start : self._start + 1] == " ")

    # -- cutting ----------------------------------------------------------------------------

    def _cut(self, end: int) -> None:
        """A boundary at `end`: emit the pending piece, or hold it if it is too short."""
        text = self._buf[self._start : end].replace(HARD_BREAK, " ").strip()
        length = len(text) + len(CJK_RE.findall(text))  # a CJK character says ~2 letters' worth
        if not text:
            self._start = end
        elif HAS_ALNUM.search(text) and (self._first or length >= self._min):
            self._emit(end)
        else:
            self._held = end

    def _overflow(self, j: int) -> bool:
        """Cut a piece that grew past ``max_piece_chars`` without a boundary (text up to `j`
        is decided).  The cut point depends only on the text, never on `j`'s chunking."""
        first = self._text_start()
        limit = first + self.config.max_piece_chars
        if j <= limit:
            return False
        if self._held is not None:
            self._emit(self._held)
            return True
        p = self._buf.rfind(" ", first + 1, limit + 1)
        self._emit(p if p >= 0 else limit)  # a "word" longer than a piece: cut it hard
        return True

    def _emit(self, end: int) -> None:
        text = self._buf[self._start : end].replace(HARD_BREAK, " ").strip()
        limit = self.config.max_piece_chars
        while len(text) > limit:  # a boundary a few closing marks past the limit
            p = text.rfind(" ", 1, limit + 1)
            p = limit if p < 0 else p
            self._out.append(text[:p].rstrip())
            text = text[p:].lstrip()
        if text:
            self._out.append(text)
        if self._out:
            self._first = False
        self._start = end
        self._held = None

    def _take(self) -> list[str]:
        """Return the finished pieces and drop decided text before the pending piece."""
        if self._start:
            s = self._start
            self._buf = self._buf[s:]
            self._i -= s
            self._base += s
            self._start = 0
            if self._held is not None:
                self._held -= s
        out, self._out = self._out, []
        return out


async def split_stream(
    deltas: AsyncIterable[str], config: SentenceBufferConfig | None = None
) -> AsyncIterator[str]:
    """Yield speakable pieces from an async stream of LLM deltas.

    Each piece is yielded as soon as it is cut; the rest follows when `deltas` ends.  An
    exception from `deltas` propagates and the unfinished tail is dropped (half a sentence
    of a failed reply should not be spoken).  Closing or cancelling this generator closes
    `deltas` if it can be closed, so the LLM request behind it is aborted.
    """
    buffer = SentenceBuffer(config)
    try:
        async for delta in deltas:
            for piece in buffer.push(delta):
                yield piece
        for piece in buffer.flush():
            yield piece
    finally:
        await aclose_stream(deltas)


def split_text(text: str, config: SentenceBufferConfig | None = None) -> list[str]:
    """All pieces of a complete text at once (``push`` then ``flush``)."""
    buffer = SentenceBuffer(config)
    return buffer.push(text) + buffer.flush()
