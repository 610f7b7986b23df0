"""Property tests for the sentence buffer: chunking invariance and word preservation.

Texts are built from a vocabulary of tricky tokens (abbreviations, numbers, URLs, quotes,
markdown, CJK) and from the case table; each is fed whole, one character at a time, one
word at a time and in random splits, and the pieces must not change.
"""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.reply import SentenceBuffer, SentenceBufferConfig, split_text
from pipeline.reply._markdown import MarkdownToSpeech, speakable
from pipeline.reply._sentence_rules import WORD_RE
from tests.support.sentence_cases import CASES, Case

TOKENS = [
    # words and sentence ends
    "Hello", "world", "the", "and", "you", "I", "I'm", "it", "Das", "ist", "gut", "Oktober",
    "said.", "done.", "Yes.", "No!", "Why?", "What?!", "so.", "end.", "Then", "then", "Tag",
    # abbreviations, initials, numbers
    "Dr.", "Mr.", "Mrs.", "Prof.", "etc.", "e.g.", "i.e.", "vs.", "U.S.A.", "z.B.", "z.", "B.",
    "u.a.", "bzw.", "Nr.", "usw.", "ca.", "Str.", "Hauptstr.", "J.", "R.", "3.", "24.12.",
    "24.12.2026", "3.14", "3,50", "€", "$4.99", "1,000", "7:30", "v1.2.3", "3.11", "1945.",
    # URLs, ellipses, quotes, brackets, dashes, clause marks
    "https://example.com/a.b", "foo.bar@example.org", "docs.example.com.", "Well...", "…",
    "...", '"Stop!"', '"', "“Hi,”", "„Halt!“", "»Ja.«", "(see", "Fig.", "3.)", "(", ")", "[1]",
    ",", ";", ":", "-", "–", "—", "well-known", "!", "?", ".", "'", "’",
    # markdown
    "**bold**", "*", "_x_", "snake_case", "__", "`code`", "[link](http://x.y/z)", "![alt](a.png)",
    "<https://a.b>", "<br>", "<", ">", "~~", "\\*", "#", "|", "```",
    '<span class="x">', "</span>", "<a href='u' id=2>", "<b and c>", "<p", "=",
    # other scripts
    "你好。", "再见！", "「こんにちは。」", "と言った。", "，", "नमस्ते।",
    # "words" longer than a piece: cut hard
    "Donaudampfschifffahrtsgesellschaftskapitän", "a" * 45, "https://x.y/" + "z" * 50,
]
LINE_STARTS = ["", "", "", "- ", "* ", "1. ", "# ", "## ", "> ", "| ", "```", "---", "  "]
SEPARATORS = [" ", " ", " ", " ", "", "  ", "\n", "\n\n", "\t"]


@st.composite
def texts(draw: st.DrawFn) -> str:
    parts: list[str] = []
    for _ in range(draw(st.integers(0, 40))):
        sep = draw(st.sampled_from(SEPARATORS))
        parts.append(sep)
        if "\n" in sep:
            parts.append(draw(st.sampled_from(LINE_STARTS)))
        parts.append(draw(st.sampled_from(TOKENS)))
    return "".join(parts)


configs = st.builds(
    SentenceBufferConfig,
    language=st.sampled_from(["en", "de", "zh", "da", "xx"]),
    min_sentence_chars=st.sampled_from([0, 5, 20, 60]),
    first_piece_min_words=st.integers(1, 8),
    first_piece_max_words=st.none() | st.integers(1, 10),
    early_first_piece=st.booleans(),
    max_piece_chars=st.sampled_from([12, 40, 400]),
)


def feed(chunks: list[str], config: SentenceBufferConfig) -> list[str]:
    buffer = SentenceBuffer(config)
    pieces = [piece for chunk in chunks for piece in buffer.push(chunk)]
    return pieces + buffer.flush()


def random_chunks(draw: st.DrawFn, text: str) -> list[str]:
    cuts = sorted(set(draw(st.lists(st.integers(0, len(text)), max_size=30))))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def check_pieces(text: str, config: SentenceBufferConfig, pieces: list[str]) -> None:
    """Pieces are stripped, non-empty, and spell the speakable text in order."""
    spoken = " ".join(speakable(text).split())
    pos = 0
    for piece in pieces:
        assert piece and piece == piece.strip()
        assert spoken.startswith(piece, pos), (spoken, pieces)
        pos += len(piece)
        if spoken[pos : pos + 1] == " ":
            pos += 1
    assert pos == len(spoken), (spoken, pieces)
    for piece in pieces:  # never longer than the limit, whatever the text
        assert len(piece) <= config.max_piece_chars, (piece, config.max_piece_chars)


def check_invariance(text: str, config: SentenceBufferConfig, chunks: list[str]) -> None:
    whole = split_text(text, config)
    check_pieces(text, config, whole)
    assert feed(chunks, config) == whole
    assert feed(list(text), config) == whole
    assert feed(re.findall(r"\S+|\s+", text), config) == whole


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts(), config=configs, data=st.data())
def test_chunking_invariance_on_tricky_texts(
    text: str, config: SentenceBufferConfig, data: st.DataObject
) -> None:
    check_invariance(text, config, random_chunks(data.draw, text))


@settings(max_examples=200, deadline=None)
@given(case=st.sampled_from(CASES), data=st.data())
def test_chunking_invariance_on_case_table_texts(case: Case, data: st.DataObject) -> None:
    assert feed(random_chunks(data.draw, case.text), case.config()) == case.pieces


@settings(max_examples=200, deadline=None)
@given(text=texts(), data=st.data())
def test_markdown_stage_is_chunking_invariant(text: str, data: st.DataObject) -> None:
    stage = MarkdownToSpeech()
    out = "".join(stage.feed(chunk) for chunk in random_chunks(data.draw, text))
    out += stage.feed("", final=True)
    assert out == speakable(text)
    assert "  " not in out and " \n" not in out and "\n " not in out
    assert not out.startswith((" ", "\n"))
    assert "`" not in out and "~~" not in out
    assert "*" not in out or "\\*" in text


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=200), config=configs, data=st.data())
def test_chunking_invariance_on_arbitrary_unicode(
    text: str, config: SentenceBufferConfig, data: st.DataObject
) -> None:
    check_invariance(text, config, random_chunks(data.draw, text))


@settings(max_examples=100, deadline=None)
@given(
    words=st.lists(st.text(alphabet="ab.!,\"", min_size=1, max_size=900), max_size=6),
    limit=st.sampled_from([1, 7, 40, 400]),
    data=st.data(),
)
def test_no_piece_is_ever_longer_than_the_limit(
    words: list[str], limit: int, data: st.DataObject
) -> None:
    text = " ".join(words)
    config = SentenceBufferConfig(max_piece_chars=limit, min_sentence_chars=60)
    check_invariance(text, config, random_chunks(data.draw, text))


def test_the_limit_is_never_over_what_a_synthesizer_takes() -> None:
    from schemas import MAX_SYNTHESIS_CHARS

    assert SentenceBufferConfig().max_piece_chars <= MAX_SYNTHESIS_CHARS
    assert max(map(len, split_text("a" * 4000))) <= SentenceBufferConfig().max_piece_chars
    with pytest.raises(ValueError, match="synthesizer"):
        SentenceBufferConfig(max_piece_chars=MAX_SYNTHESIS_CHARS + 1)


# --- the likely first piece (synthesized a token early, then compared) -------------------


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts(), config=configs, data=st.data())
def test_asking_for_the_likely_first_piece_changes_no_piece(
    text: str, config: SentenceBufferConfig, data: st.DataObject
) -> None:
    buffer = SentenceBuffer(config)
    pieces: list[str] = []
    for chunk in random_chunks(data.draw, text):
        pieces += buffer.push(chunk)
        buffer.likely_first_piece()
    assert pieces + buffer.flush() == split_text(text, config)


#: replies as a model writes them: words, some split over tokens, a few marks
REPLY_TOKENS = [" the", " capital", " of", " France", " is", " Paris", ",", ".", " Ott", "awa",
                " It", "'s", " well", "-known", " \"", "Yes", "!", "\n", " **", " 3", ".5"]
replies = st.lists(st.sampled_from(REPLY_TOKENS), max_size=24).map("".join)
#: configs whose first piece is cut after a count of words: the ones with a likely piece
word_cut_configs = st.builds(
    SentenceBufferConfig,
    language=st.sampled_from(["en", "de", "zh"]),
    min_sentence_chars=st.sampled_from([0, 20]),
    first_piece_min_words=st.integers(1, 8),
    first_piece_max_words=st.integers(1, 6),
    max_piece_chars=st.sampled_from([12, 40, 400]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(texts(), replies), rest=texts(), config=word_cut_configs,
       data=st.data())
def test_the_likely_first_piece_is_the_one_a_word_after_a_space_cuts(
    text: str, rest: str, config: SentenceBufferConfig, data: st.DataObject
) -> None:
    # a guess can only stand where a word ends what arrived: try every such prefix; what
    # follows it may change the piece ("\n" ends a sentence, a mark joins it), a space
    # and a word never do
    for end in sorted({word.end() for word in WORD_RE.finditer(text)}):
        buffer = SentenceBuffer(config)
        before = [p for chunk in random_chunks(data.draw, text[:end]) for p in buffer.push(chunk)]
        likely = buffer.likely_first_piece()
        if likely is None:
            continue
        assert before == []  # only while the first piece is not cut
        after = buffer.push(" word " + rest) + buffer.flush()
        assert after[0] == likely, (text[:end], rest, after)
