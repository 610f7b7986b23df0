"""The rules of the sentence buffer: where a sentence or a clause ends, from the text alone.

:mod:`pipeline.reply.sentences` scans the text as it streams in and keeps the state (what
is decided, what is held, which quotes are open); what it asks here is a question about
the text in front of it, answered the same however the text arrived: the language tables
(terminators, clause marks, quotes, the abbreviations and sentence starters that decide
whether a dot ends a sentence), :class:`SentenceEndRules` and :func:`clause_boundary`.
Teaching the buffer a language is an edit here, not of the scanner.

A ``.``/``!``/``?`` followed by a space ends a sentence, except:

- before a lowercase word, or a digit after ``.`` ("approx. five", "Fig. 3", "Nr. 5");
- after a title or mid-sentence abbreviation (the ``*_NEVER`` lists) or a single letter
  (initials "J. R. R.", "z. B.").  Abbreviations that often *end* a sentence (etc., usw.,
  U.S.A., a.m., Inc., Str.) are deliberately not listed: before a capitalised word they end
  it ("etc. Then we go" is two sentences; "the U.S. Army" is cut wrongly, an accepted cost);
- after a German ordinal or short date ("am 3. Oktober", "am 24.12. Abends") unless a word
  that starts sentences follows ("Das", "Dann", ...); other languages with
  ordinal dots (da, fi, cs, ...) never cut there;
- an ellipsis, before a capitalised word other than English "I" ("Well... I think so.");
- inside quotes or brackets ('"Stop!" she said.' is one sentence; the scanner tracks them);
  one left open for more than ``QUOTE_SPAN`` characters is taken to be stray.

CJK and Devanagari terminators (。！？।) need no space.  Clause marks need a space after them
("3,50 €", "1,000", "7:30", "https://x" never cut); a dash is " - ", " – ", " — " or "—".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

QUOTE_SPAN = 250
LOOKBEHIND = 64

TERMINATORS = ".!?…。！？．‼⁇⁈⁉।॥؟"
NO_SPACE_TERMINATORS = frozenset("。！？．।॥")
CLOSERS = frozenset("\"'”’»«)]}」』）】〕〉》")
OPENERS = "\"'“‘„‚«»([{¿¡「『（【〔〈《"
CLAUSE = ",;:،؛"  # need a space after them
CLAUSE_CJK = "，、；："
DASHES = "-–—"
BRACKETS = dict(zip(")]}）】」』〕〉》", "([{（【「『〔〈《", strict=True))  # closing -> opening
OPEN_BRACKETS = frozenset(BRACKETS.values())
# (open quote on the stack, closing character): „…“ and „…” (German), “…”, "…", «…», »…«.
QUOTE_CLOSES = frozenset({("„", "“"), ("„", "”"), ("“", "”"), ('"', '"'), ("«", "»"), ("»", "«")})
SPECIAL = re.compile(  # the characters the scan stops at
    "[\n" + re.escape(TERMINATORS + CLAUSE + CLAUSE_CJK + DASHES + '"“”„«»([{（【「『〔〈《')
    + re.escape("".join(BRACKETS)) + "]"
)
CJK_RE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")
WORD_RE = re.compile(r"[^\W_]+(?:['’.,:\-][^\W_]+)*")
HAS_ALNUM = re.compile(r"[^\W_]")
WORD_AT = re.compile(r"(?:[^\W\d_]|['’])*")
ORDINAL = re.compile(r"\d{1,3}\.|\d{1,2}\.\d{1,2}\.")
INITIAL = re.compile(r"[^\W\d_]\.")


def words(text: str) -> frozenset[str]:
    return frozenset(text.split())


EN_NEVER = words(
    "mr. mrs. ms. mx. dr. prof. rev. hon. st. mt. sgt. capt. col. gen. lt. gov. sen. rep. pres. "
    "vs. v. e.g. i.e. cf. approx. fig. figs. eq. eqs. vol. pp. dept. esp. incl. viz. resp. nos. "
    "ca."
)
DE_NEVER = words(
    "dr. prof. hr. fr. hrn. z.b. d.h. u.a. o.ä. u.u. v.a. z.t. i.d.r. i.a. o.g. bzw. ca. nr. vgl. "
    "ggf. evtl. inkl. zzgl. exkl. bspw. sog. bzgl. insb. mind. abs. geb. gest. tel. mio. mrd. "
    "tsd. ggü. allg. einschl. entspr. gem. lt. urspr. zit. st. abb. kap. bd. hl. ff. vs. z.zt."
)
ORDINAL_DOT_LANGUAGES = words("de da nb nn no fi cs sk pl hu tr sl hr sr bs is et lv lt")
DE_STARTERS = words(
    "der die das dem den des ein eine einer einem einen es er sie wir ich ihr du man mein meine "
    "dein deine sein seine ihre unser unsere dies diese dieser dieses dann danach daher deshalb "
    "dabei damit dazu aber und oder doch denn also so jetzt nun heute hier dort da auch nur noch "
    "schon bitte danke ja nein in im am an auf aus bei mit nach seit von vom vor zu zum zur für "
    "über unter um wenn weil wie was wer wo als ob obwohl falls trotzdem außerdem zudem "
    "allerdings leider insgesamt zunächst zuerst später"
)
I_WORDS = words("I I'm I’m I'll I’ll I've I’ve I'd I’d")


def count_words(text: str) -> int:
    """Words for the first-piece rule; two CJK characters count as one word."""
    cjk = len(CJK_RE.findall(text))
    if cjk:
        text = CJK_RE.sub(" ", text)
    return len(WORD_RE.findall(text)) + cjk // 2


def next_word(buf: str, p: int, final: bool) -> str | None:
    """The word at ``p`` of ``buf``; None when it may go on in text not arrived yet."""
    word = m.group() if (m := WORD_AT.match(buf, p)) else ""
    return None if p + len(word) == len(buf) and not final else word


def clause_boundary(buf: str, start: int, j: int, k: int) -> bool:
    """Whether the clause mark or dashes ``buf[j:k]`` end a clause (``start``: where the
    pending piece begins; nothing before it is looked at)."""
    prev = buf[j - 1] if j > start else ""
    nxt = buf[k] if k < len(buf) else ""
    if buf[j] in CLAUSE:
        return nxt == " "
    if "—" in buf[j:k]:
        return bool(nxt) and not (prev.isdigit() and nxt.isdigit())
    if buf[j] in DASHES:  # spaced; " - " between numbers is a minus sign
        minus = j - 2 >= start and buf[j - 2].isdigit() and buf[k + 1 : k + 2].isdigit()
        return prev == nxt == " " and not minus
    return True  # CJK clause marks need no space


@dataclass(frozen=True, slots=True)
class SentenceEndRules:
    """Whether a terminator followed by a space ends a sentence, in one language."""

    lang: str
    #: abbreviations after which a dot never ends a sentence
    never: frozenset[str]
    #: whether a number with a dot may be an ordinal ("am 3. Oktober")
    ordinals: bool

    @classmethod
    def for_language(cls, language: str) -> SentenceEndRules:
        lang = language.strip().lower().replace("_", "-").split("-")[0]
        # other languages get both lists: cutting too little beats cutting inside a name
        never = {"en": EN_NEVER, "de": DE_NEVER}.get(lang, EN_NEVER | DE_NEVER)
        return cls(lang, never, lang in ORDINAL_DOT_LANGUAGES)

    def sentence_ends(
        self, buf: str, start: int, run: str, j: int, p: int, final: bool
    ) -> bool | None:
        """Does the terminator ``run`` at ``j`` of ``buf``, followed by a space and ``p``,
        end a sentence? None: the text that decides has not arrived (``final``: it never
        will). ``start`` is where the pending piece begins; nothing before it is read."""
        n = len(buf)
        while p < n and buf[p] in OPENERS:
            p += 1
        if p == n:
            return True if final else None
        nxt = buf[p]
        if nxt.islower():
            return False
        if run.strip(".…"):  # "!", "?", "?!"
            return True
        if run != ".":  # an ellipsis
            if nxt.isdigit():
                return False
            if nxt == "I" and self.lang != "de":
                word = next_word(buf, p, final)
                if word is None:
                    return None
                return word not in I_WORDS
            return True
        lo = max(start, j - LOOKBEHIND)
        word = buf[max(buf.rfind(" ", lo, j) + 1, lo) : j + 1].lstrip(OPENERS).lower()
        if word in self.never or INITIAL.fullmatch(word) or nxt.isdigit():
            return False
        if self.ordinals and ORDINAL.fullmatch(word):
            if self.lang != "de":
                return False
            following = next_word(buf, p, final)
            if following is None:
                return None
            return following.lower() in DE_STARTERS
        return True
