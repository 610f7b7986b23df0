"""What a listener heard of a spoken reply, from how far its audio was played.

Generation usually ends long before the audio has played, so a user who interrupts has
heard less than the reply's text. The client says how far it played
(``response.truncate``); this module turns that position into the text heard, which then
replaces the reply in the history the LLM sees (``response.truncated``).

A reply's audio comes piece by piece, one piece per sentence, so the log knows where each
sentence's audio ends (``end_ms`` of its last chunk). Sentences that end at or before the
position were heard whole. Of the sentence playing at that moment, the words are kept in
proportion to its audio played, rounded down: speech runs at a roughly even pace within a
sentence, and a word half-heard is better left out than claimed.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["heard_text"]


def heard_text(sentences: Mapping[int, str], ends_ms: Mapping[int, int], audio_end_ms: int) -> str:
    """The text heard when playback stopped at ``audio_end_ms``.

    ``sentences``: each sentence's text by its index; ``ends_ms``: where each sentence's
    audio ends, in ms from the reply's start (a sentence with no audio ends where the one
    before it did). Sentences are taken in index order.
    """
    heard: list[str] = []
    start = 0
    for index in sorted(sentences):
        text = sentences[index].strip()
        end = max(ends_ms.get(index, start), start)
        if audio_end_ms >= end:
            if text:
                heard.append(text)
            start = end
            continue
        words = text.split()
        played = len(words) * (audio_end_ms - start) // (end - start)
        if played > 0:
            heard.append(" ".join(words[:played]))
        break
    return " ".join(heard)
