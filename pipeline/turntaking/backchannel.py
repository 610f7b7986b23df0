"""Is what a listener said over a reply a backchannel (keep talking) or an interruption?

Listeners say "mm-hm", "yeah", "right" while someone speaks to show they follow; they do
not want the speaker to stop. A real interruption says something else ("wait", "stop", a
new question). With ``interruptions: confirmed`` the session pauses the reply when speech
starts over it and asks this module, once the speech has been transcribed, whether to
resume it.

The test is lexical and deliberately narrow: every word must be a backchannel word (the
short acknowledgements of English and German, with Whisper's usual spellings of them,
or a hum spelt any way of m's and h's: "M-M-M.", "Mmmhmm"), and at most a few of them.
Speech with no words at all (a cough, a noise, breathing that VAD took for speech) is no
interruption either. Anything else interrupts: a reply that resumes over a real question
is worse than one that stops for a backchannel.

The speech is transcribed with :func:`backchannel_prompt` as Whisper's initial prompt: a few
backchannels spelt as this module knows them. Unprompted, tiny.en hears Piper's "Mm-hmm." as
"in a month." (an interruption, then); prompted, as a hum, while the overlap corpus's
interruptions keep their words. The prompt makes a short window loop now and then
("Yeah. Yeah. Yeah."), which the engine takes out rather than decoding again.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from schemas import primary_language

__all__ = ["BACKCHANNEL_WORDS", "MAX_BACKCHANNEL_WORDS", "backchannel_prompt", "heard_backchannel",
           "is_backchannel"]

#: words that acknowledge without taking the turn (lower case, without punctuation)
BACKCHANNEL_WORDS: frozenset[str] = frozenset({
    # English
    "mm", "mmm", "mhm", "mm-hm", "mm-hmm", "mmhmm", "hm", "hmm", "uh-huh", "uh", "huh",
    "um", "ah", "oh", "aha", "yeah", "yep", "yes", "yup", "right", "ok", "okay", "sure",
    "i", "see", "got", "it", "cool", "wow", "nice", "great", "alright", "true", "indeed",
    # German
    "ja", "jo", "genau", "stimmt", "klar", "achso", "ach", "so", "gut",
})  # fmt: skip
#: a backchannel is short: "yeah yeah, right, I see" is, a sentence of them is not
MAX_BACKCHANNEL_WORDS = 4

#: Whisper's initial prompt for speech over a reply, per language: backchannels as spelt here
_PROMPTS = {"en": "Mm-hmm. Uh-huh. Yeah. Right. Okay.", "de": "Mhm. Ja. Genau. Stimmt."}

_WORD = re.compile(r"[\w'-]+")
#: a hum: only m's and h's, at least one m, hyphens between ("m-m-m", "mmmhmm", "hm-hm")
_HUM = re.compile(r"[mh]*m[mh]*(?:-[mh]+)*")


def is_backchannel(text: str) -> bool:
    """True when ``text`` (a transcript) is only a short acknowledgement, or no words at
    all (a cough or a noise); False when it says anything that takes the turn."""
    words = [w.strip("'-") for w in _WORD.findall(text.lower())]
    words = [w for w in words if w]
    if len(words) > MAX_BACKCHANNEL_WORDS:
        return False
    return all(w in BACKCHANNEL_WORDS or _HUM.fullmatch(w) for w in words)


async def heard_backchannel(duration_ms: float, max_ms: int,
                            words: Callable[[], Awaitable[str]]) -> str | None:
    """What speech over a held reply said when it was a backchannel (or no words), else
    None: an interruption. Speech longer than ``max_ms`` (``backchannel_max_ms``)
    interrupts whatever it says, and its ``words`` are not asked for. The one rule of the
    live session and of the evaluation that judges logged overlaps again."""
    if duration_ms > max_ms:
        return None
    text = await words()
    return text if is_backchannel(text) else None


def backchannel_prompt(language: str) -> str | None:
    """Whisper's initial prompt for the speech over a reply in ``language`` (a code such as
    ``en`` or ``de-DE``); None where there is none."""
    return _PROMPTS.get(primary_language(language))
