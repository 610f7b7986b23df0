"""Make LLM markdown speakable, incrementally.

`MarkdownToSpeech` is the first stage of the sentence buffer: it turns raw LLM deltas into the
text a TTS voice should read, and marks where markdown structure forces a sentence boundary.

What it does, and why:

- Emphasis markers (``*``, ``**``, ``~~``, ``_``/``__`` unless inside a word such as
  ``snake_case``) and backticks are dropped; a voice must not say "asterisk".  A lone ``*``
  between numbers is dropped too (we cannot tell emphasis from multiplication cheaply).
- ``[text](url)`` becomes ``text``, ``![alt](url)`` becomes ``alt``, ``<https://x>`` becomes
  ``https://x``; HTML tags are dropped, with their ``name=value`` attributes (a small base
  model writes ``<span class="x">`` as readily as ``<em>``).  ``\\*`` keeps the escaped
  character literally.
- Line-start markers (``#`` headings, ``-``/``*``/``+`` bullets, ``1.``/``1)`` numbers, ``>``
  quotes, ``---`` rules) are dropped and start a new sentence.  List numbers are dropped rather
  than read ("1." after a pause sounds like a stray number); the items' own order carries it.
- Table rows become one sentence each, cells joined by ", "; separator rows vanish.
- Code blocks are *dropped*, fences and contents alike: code read aloud is noise in a voice
  reply, and the surrounding prose ("here is the script:") still makes sense.  Inline code
  spans keep their text (usually a name worth saying) without the backticks.
- A newline starts a new sentence (chat replies use line breaks for structure, not for
  wrapping), except when the next line starts in lowercase, which reads as a wrapped line.

Boundaries are emitted as ``"\\n"`` (`HARD_BREAK`); all other whitespace is emitted as single
spaces, so the next stage only ever sees ``" "`` and ``"\\n"``.  Before a hard break, a line that
does not end in punctuation gets a full stop ("。" after CJK), so a list read aloud pauses
between items and short items can later be merged into one well-phrased TTS request.

Chunking invariance: every decision depends only on the text, never on how it was split.  When
a decision needs text that has not arrived (is ``[`` a link? is ``-`` a bullet?) the stage
stops and waits; ``final=True`` decides with what is there.  Lookahead is bounded (a link is
at most `_LINK_TEXT_MAX` + `_LINK_URL_MAX` characters) so a stray ``[`` cannot stall the stream.
"""

from __future__ import annotations

import re

HARD_BREAK = "\n"

_LINK_TEXT_MAX = 200
_LINK_URL_MAX = 500
_ANGLE_MAX = 300

_CJK_RE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f]")
# Characters that end a line well enough that no full stop is added before a hard break.
_ENDS_LINE = frozenset(".!?…:;,。！？：；，、‼⁇⁈⁉।॥؟")
# Inline characters that need a decision; everything else is copied through in runs.
_SPECIAL = r"\s*_`\[!<\\~"
_PLAIN_RUN = re.compile(rf"(?:[^{_SPECIAL}]| (?=[^{_SPECIAL}]))+")
_HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9]{0,10}/?>")
_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{0,10}")
# A tag with attributes, each ``name=value`` ("<b and c>" stays text: no "=").
_HTML_TAG_ATTRS = re.compile(
    r"<[A-Za-z][A-Za-z0-9]{0,10}"
    r"(?:[ \t]+[A-Za-z_:][\w:.-]{0,30}=(?:\"[^\"<>\n]*\"|'[^'<>\n]*'|[^\s\"'<>=]+))+"
    r"[ \t]*/?>"
)
_AUTOLINK = re.compile(r"<((?:[A-Za-z][A-Za-z0-9+.-]{1,20}:|www\.)[^<>\s]+|[^<>\s@]+@[^<>\s@]+)>")
_ASCII_PUNCT = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_DIGITS = "0123456789"
# No space is put for a dropped tag before these ("<b>Italy</b>." reads "Italy.").
_NO_SPACE_BEFORE = frozenset(".,;:!?…)]}\"'”’»")


class MarkdownToSpeech:
    """Streaming markdown-to-speakable-text converter (see the module docstring).

    `feed` returns the speakable text that became certain with this delta; the concatenation
    of all returned strings is the same however the input was split.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._raw = ""
        self._pos = 0
        self._out: list[str] = []
        self._last = ""  # last emitted character; "" at the start, "\n" after a break
        self._pending_space = False
        self._tag_space = False  # the pending space stands for a dropped tag, not a space
        self._line_start = True
        self._newline_pending = False  # a newline was consumed; soft or hard not yet decided
        self._force_break = False  # the next line starts a new sentence whatever its case
        self._fence: str | None = None

    @property
    def holds_back(self) -> bool:
        """Input is held undecided (markup not yet closed, a line break whose kind is
        open): what comes next may still end the text already returned (``"."``)."""
        return self._newline_pending or self._force_break or self._pos < len(self._raw)

    def feed(self, text: str, final: bool = False) -> str:
        """Consume `text`; return the speakable text decided so far (``final`` = end of stream)."""
        self._raw = self._raw[self._pos :] + text
        self._pos = 0
        while self._pos < len(self._raw):
            step = self._line(final) if self._line_start else self._inline(final)
            if not step:
                break
        out = "".join(self._out)
        self._out.clear()
        if final:
            self._reset()  # ready for the next stream
        return out

    # -- emission ---------------------------------------------------------------------------

    def _text(self, s: str) -> None:
        if self._last in ("", HARD_BREAK):
            s = s.lstrip()
        elif (
            self._pending_space
            and not s[0].isspace()
            and not (self._tag_space and s[0] in _NO_SPACE_BEFORE)  # "<b>Italy</b>."
        ):
            self._out.append(" ")
        self._pending_space = self._tag_space = False
        if s:
            self._out.append(s)
            self._last = s[-1]

    def _hard_break(self) -> None:
        self._pending_space = False
        if self._last in ("", HARD_BREAK):
            return
        if self._last not in _ENDS_LINE:
            self._out.append("。" if _CJK_RE.match(self._last) else ".")
        self._out.append(HARD_BREAK)
        self._last = HARD_BREAK

    # -- inline -----------------------------------------------------------------------------

    def _inline(self, final: bool) -> bool:
        raw, i = self._raw, self._pos
        run = _PLAIN_RUN.match(raw, i)
        if run:
            self._text(run.group())
            self._pos = run.end()
            return True
        c = raw[i]
        nxt = raw[i + 1] if i + 1 < len(raw) else None
        if c == "\n":
            self._pos = i + 1
            self._line_start = self._newline_pending = True
            self._pending_space = False
        elif c.isspace():
            self._pending_space = True
            self._tag_space = False
            self._pos = i + 1
        elif c in "*`":
            self._pos = i + 1
        elif c in "~\\!":
            if nxt is None and not final:
                return False
            if c == "~" and nxt == "~":
                self._pos = i + 2
            elif c == "\\" and nxt is not None and nxt in _ASCII_PUNCT:
                self._text(nxt)
                self._pos = i + 2
            elif c == "!" and nxt == "[":
                return self._link(i + 1, final, start=i)
            else:
                self._text(c)
                self._pos = i + 1
        elif c == "_":
            j = i
            while j < len(raw) and raw[j] == "_":
                j += 1
            if j == len(raw) and not final:
                return False
            intraword = not self._pending_space and self._last.isalnum()
            if intraword and j < len(raw) and raw[j].isalnum():
                self._text(raw[i:j])  # snake_case: part of a word
            self._pos = j
        elif c == "[":
            return self._link(i, final, start=i)
        else:  # "<"
            return self._angle(i, final)
        return True

    def _link(self, i: int, final: bool, start: int) -> bool:
        """``raw[i] == "["``: replace ``[text](url)`` (from `start`) by ``text``, or keep it."""
        raw = self._raw
        end = _match_link(raw, i)
        if end is None and not final:
            return False
        if end is None or end < 0:
            self._text(raw[start : i + 1])
            self._pos = i + 1
            return True
        close = raw.index("]", i)
        self._raw = raw[:start] + raw[i + 1 : close] + raw[end:]
        return True

    def _angle(self, i: int, final: bool) -> bool:
        """``raw[i] == "<"``: unwrap ``<https://x>``, drop ``<br>``, else keep the ``<``."""
        raw = self._raw
        j = i + 1
        limit = min(len(raw), i + _ANGLE_MAX)
        while j < limit and raw[j] not in "<>" and not raw[j].isspace():
            j += 1
        if j == len(raw) and j < i + _ANGLE_MAX and not final:
            return False
        if j < len(raw) and raw[j] in " \t" and _TAG_NAME.fullmatch(raw, i + 1, j):
            return self._tag_with_attributes(i, j, final)
        if j < len(raw) and raw[j] == ">":
            tag = raw[i : j + 1]
            auto = _AUTOLINK.fullmatch(tag)
            if auto:
                self._raw = raw[:i] + auto.group(1).removeprefix("mailto:") + raw[j + 1 :]
                return True
            if _HTML_TAG.fullmatch(tag):
                self._tag_space = not self._pending_space
                self._pending_space = True
                self._pos = j + 1
                return True
        self._text("<")
        self._pos = i + 1
        return True

    def _tag_with_attributes(self, i: int, j: int, final: bool) -> bool:
        """``raw[i:j]`` is ``<name`` and a space follows: drop ``<name a="b">``, else keep
        the ``<``. Waits (bounded by `_ANGLE_MAX`) for the closing ``>``."""
        raw = self._raw
        limit = min(len(raw), i + _ANGLE_MAX)
        k = j
        while k < limit and raw[k] not in "<>\n":
            k += 1
        if k == len(raw) and k < i + _ANGLE_MAX and not final:
            return False
        if k < len(raw) and raw[k] == ">" and _HTML_TAG_ATTRS.fullmatch(raw, i, k + 1):
            self._tag_space = not self._pending_space
            self._pending_space = True
            self._pos = k + 1
            return True
        self._text("<")
        self._pos = i + 1
        return True

    # -- line starts ------------------------------------------------------------------------

    def _line(self, final: bool) -> bool:
        """Classify the line starting at ``pos``; False when more text is needed to decide."""
        raw = self._raw
        j = self._pos
        while j < len(raw) and raw[j] != "\n" and raw[j].isspace():
            j += 1
        if j == len(raw):
            if final:
                self._pos = j
            return False
        nl = raw.find("\n", j)
        line_end = nl if nl >= 0 else len(raw)
        whole_line = nl >= 0 or final
        after_line = line_end + 1 if nl >= 0 else line_end
        c = raw[j]
        if self._fence is not None:
            if not whole_line:
                return False
            if raw[j:line_end].rstrip().strip(self._fence[0]) == "" and raw.startswith(
                self._fence, j
            ):
                self._fence = None
                self._force_break = True
            self._pos = after_line
            return True
        if c == "\n":
            self._force_break = True
            self._pos = j + 1
            return True
        if c == ">":
            self._pos = j + 1
            return True
        if c in "`~" and j + 3 > len(raw) and not whole_line:
            return False
        if c in "`~" and raw.startswith(c * 3, j):
            if not whole_line:
                return False
            self._block_start(after_line)
            self._fence = c * 3
            self._line_start = True
            return True
        if c == "#":
            k = j
            while k < len(raw) and raw[k] == "#":
                k += 1
            if k == len(raw) and not final:
                return False
            if k - j <= 6 and (k == len(raw) or raw[k].isspace()):
                self._block_start(k)
                self._force_break = True
                return True
        if c in "-*_+":
            rest = raw[j:line_end]
            if c != "+" and rest.strip(c + " \t") == "":
                if not whole_line:
                    return False
                if rest.count(c) >= 3:
                    self._block_start(after_line)
                    self._force_break = True
                    self._line_start = True
                    return True
            if c != "_":
                if j + 1 == len(raw) and not final:
                    return False
                if j + 1 < len(raw) and raw[j + 1] in " \t":
                    self._block_start(j + 2)
                    return True
        if c in _DIGITS:
            k = j
            while k < len(raw) and k - j < 4 and raw[k] in _DIGITS:
                k += 1
            if k + 2 > len(raw) and not final and k - j < 4:
                return False
            if k - j <= 3 and raw[k : k + 1] in (".", ")") and raw[k + 1 : k + 2] in (" ", "\t"):
                self._block_start(k + 2)
                return True
        if c == "|":
            if not whole_line:
                return False
            row = raw[j:line_end].strip()
            cells = [cell.strip() for cell in row.strip("|").split("|")]
            self._block_start(j)
            if set(row) <= set("|-: \t"):
                self._pos = after_line
                self._line_start = True
            else:
                self._raw = raw[:j] + ", ".join(cell for cell in cells if cell) + raw[line_end:]
            self._force_break = True
            return True
        # An ordinary line of prose.
        if self._newline_pending:
            if self._force_break or not c.islower():
                self._hard_break()
            else:
                self._pending_space = True
                self._tag_space = False
        self._newline_pending = self._force_break = False
        self._line_start = False
        self._pos = j
        return True

    def _block_start(self, content_pos: int) -> None:
        """A block marker ends the previous sentence; its content starts at `content_pos`."""
        self._hard_break()
        self._newline_pending = self._force_break = False
        self._line_start = False
        self._pos = content_pos


def _match_link(raw: str, i: int) -> int | None:
    """End of the ``[text](url)`` starting at ``raw[i]``; -1 if it is none, None if unknown yet."""
    j = i + 1
    while True:
        if j >= len(raw):
            return None
        c = raw[j]
        if c == "]":
            break
        if c in "[\n" or j - i > _LINK_TEXT_MAX:
            return -1
        j += 1
    if j + 1 >= len(raw):
        return None
    if raw[j + 1] != "(":
        return -1
    title = False  # inside the optional quoted title: [text](url "title")
    k = j + 2
    while True:
        if k >= len(raw):
            return None
        c = raw[k]
        if c == ")" and not title:
            return k + 1
        if c == "\n" or k - j > _LINK_URL_MAX:
            return -1
        if c == '"' and (title or raw[k - 1] == " "):
            title = not title
        elif not title and (c == "(" or (c == " " and raw[k + 1 : k + 2] not in ('"', " ", ""))):
            return -1
        k += 1


def speakable(text: str) -> str:
    """The whole speakable text of `text` at once (what the pieces of `split_text` join to)."""
    return MarkdownToSpeech().feed(text, final=True)
