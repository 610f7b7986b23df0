"""Text cues of an unfinished turn: examples in English and German, and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.turntaking.turn_text import UNFINISHED_WORDS, sounds_unfinished


# what Whisper wrote for the first half of the turn-taking corpus's paused turns
@pytest.mark.parametrize(("text", "language"), [
    ("Could you tell me about?", "en"),
    ("Can you remind me to?", "en"),
    ("The quickest way to get near is.", "en"),
    ("The quickest way to get there is...", "en"),
    ("What's the weather like in?", "en"),
    ("Well, wait, not like an...", "en"),
    ("I was wondering if...", "en"),
    ("Tell me about", "en"),
    ("Can you?", "en"),
    ("I'd like a table for, um.", "en"),
    ("I need eggs, milk,", "en"),
    ("Kannst du mir?", "de"),
    ("Ich möchte einen Tisch für.", "de"),
    ("Wie wird das Wetter, äh.", "de-AT"),
])
def test_unfinished(text: str, language: str) -> None:
    assert sounds_unfinished(text, language)


@pytest.mark.parametrize(("text", "language"), [
    ("What is the capital of France?", "en"),
    ("Please set a timer for 10 minutes.", "en"),
    ("Can you play some music?", "en"),
    ("Can you help me?", "en"),
    ("Thank you.", "en"),
    ("I would like to know.", "en"),  # a cue the words cannot give: the model's to hear
    ("Was ist die Hauptstadt von Frankreich?", "de"),
    ("Kannst du mir helfen?", "de"),
    ("", "en"),  # nothing heard: no cue
    ("Où est la gare ?", "fr"),  # no word lists: punctuation only
])
def test_finished(text: str, language: str) -> None:
    assert not sounds_unfinished(text, language)


_SENTENCE = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ", min_size=1, max_size=40).filter(
    lambda t: t.strip() != "")


@given(_SENTENCE, st.sampled_from(sorted(UNFINISHED_WORDS["en"])), st.sampled_from(["", ".", "?"]))
def test_a_turn_ending_on_a_function_word_is_unfinished(head: str, word: str, end: str) -> None:
    assert sounds_unfinished(f"{head} {word}{end}", "en")


@given(_SENTENCE, st.sampled_from(["...", "…", ",", " -"]))
def test_a_trailing_ellipsis_or_comma_is_unfinished(head: str, tail: str) -> None:
    assert sounds_unfinished(head + tail, "en")


@given(_SENTENCE)
def test_a_full_stop_after_a_content_word_is_no_cue(head: str) -> None:
    assert not sounds_unfinished(f"{head} tomorrow.", "en")
    assert not sounds_unfinished(f"{head} morgen?", "de")
