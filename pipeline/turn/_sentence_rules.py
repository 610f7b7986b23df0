"""The language tables of the sentence buffer: terminators, clause marks, quotes, and
the abbreviations and sentence starters that decide whether a dot ends a sentence.

Kept apart from :mod:`pipeline.turn.sentences` (the scanner) so that teaching the buffer a
language is an edit of data here, not of the state machine.
"""

from __future__ import annotations

import re

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
