"""Does the transcript of a turn so far read as unfinished?

The end-of-turn model hears intonation; on a thinking pause after "I'd like to book a table
for" it often hears a finished sentence all the same. The words say otherwise: nobody ends
a turn on "for", "the", "and" or "um", nor on a question that has no verb yet ("Can you?").
Whisper says so too, when it writes a trailing "..." or leaves the sentence without its
full stop. Smart turn detection with ``turn_text_cues`` asks this module about each pause
the model judged complete, with a quick transcript of the turn so far; a turn that reads
unfinished waits for ``turn_incomplete_ms``.

The cues are deliberately one-sided: they can only keep a turn open, never end one, so a
transcript that misses a cue costs nothing against the model alone, and one that finds a
cue where there is none costs a longer wait, never a cut-off.
"""

from __future__ import annotations

import re

from schemas import primary_language

__all__ = ["UNFINISHED_WORDS", "sounds_unfinished"]

#: words a turn does not end on: articles, conjunctions, prepositions, possessives, the
#: copula, fillers (lower case; per language, the first part of its tag)
UNFINISHED_WORDS: dict[str, frozenset[str]] = {
    "en": frozenset({
        "a", "an", "the", "and", "or", "but", "so", "because", "if", "that", "than", "as",
        "to", "of", "for", "with", "in", "on", "at", "from", "about", "by", "into", "like",
        "is", "are", "was", "were", "am", "be", "my", "your", "our", "their", "his", "her",
        "its", "some", "any", "very", "um", "uh", "er", "erm", "uhm", "ehm",
    }),
    "de": frozenset({
        "der", "die", "das", "den", "dem", "des", "ein", "eine", "einen", "einem", "einer",
        "und", "oder", "aber", "weil", "dass", "wenn", "ob", "als", "zu", "von", "für",
        "mit", "in", "im", "auf", "an", "am", "aus", "bei", "nach", "über", "um", "mein",
        "meine", "dein", "deine", "ist", "sind", "äh", "ähm", "öhm", "hm", "also",
    }),
}  # fmt: skip
#: an inverted question with no main verb yet ("Can you?", "Kannst du mir?"): an
#: auxiliary, then pronouns only
_AUXILIARIES = {
    "en": frozenset({"can", "could", "would", "will", "do", "does", "did", "should", "shall",
                     "may", "might", "have", "has"}),
    "de": frozenset({"kannst", "könntest", "kann", "könnte", "willst", "würdest", "hast",
                     "bist", "können", "könnten", "würden", "haben"}),
}  # fmt: skip
_PRONOUNS = {
    "en": frozenset({"you", "i", "we", "they", "he", "she", "it", "me", "us"}),
    "de": frozenset({"du", "ich", "wir", "sie", "ihr", "er", "es", "mir", "mich", "uns",
                     "dir", "dich"}),
}
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
_TRAILING = re.compile(r"(\.\.\.|…|[,;:\-–—])\s*$")
_FINISHED = re.compile(r"[.?!]['\"»”)]*\s*$")


def sounds_unfinished(text: str, language: str = "en") -> bool:
    """True when ``text`` (a transcript of the turn so far) stops where no turn ends: on a
    trailing "..." or comma, without a full stop at all, on a word of
    :data:`UNFINISHED_WORDS`, or on an auxiliary and pronouns with no verb after them.
    An empty transcript, or a language without word lists but for the punctuation, gives
    no cue beyond what punctuation says."""
    text = text.strip()
    if not text:
        return False
    if _TRAILING.search(text) or not _FINISHED.search(text):
        return True
    words = _WORD.findall(text.lower())
    if not words:
        return False
    tag = primary_language(language)
    if words[-1] in UNFINISHED_WORDS.get(tag, frozenset()):
        return True
    auxiliaries, pronouns = _AUXILIARIES.get(tag, frozenset()), _PRONOUNS.get(tag, frozenset())
    rest = words[:]
    while rest and rest[-1] in pronouns:
        rest.pop()
    return len(rest) < len(words) and bool(rest) and rest[-1] in auxiliaries
