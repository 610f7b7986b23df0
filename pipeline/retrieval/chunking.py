"""Cutting a document's text into overlapping chunks.

A chunk is at most ``size`` characters of the document's text with its whitespace
folded, cut at word boundaries (a single longer "word" is cut hard); each chunk after the
first starts with about ``overlap`` characters of the one before, so a sentence that
straddles a cut is whole in at least one chunk when it is shorter than the overlap.
Paragraph breaks are kept as one blank line, so markdown headings and lists stay readable
in a citation's snippet.
"""

from __future__ import annotations

import re

__all__ = ["chunk_text"]

_WORD = re.compile(r"\S+")
_PARAGRAPH = re.compile(r"\n[ \t]*\n\s*")


def chunk_text(text: str, size: int, overlap: int) -> list[str]:
    """The chunks of ``text`` (see the module docstring); no chunk is empty."""
    if size < 1 or not 0 <= overlap < size:
        raise ValueError("chunk size must be positive and the overlap smaller than it")
    words: list[str] = []
    for p, paragraph in enumerate(_PARAGRAPH.split(text.strip())):
        found = _WORD.findall(paragraph)
        if not found:
            continue
        if p and words:
            words.append("\n\n")  # a paragraph break, kept as one token
        for word in found:
            while len(word) > size:  # a "word" longer than a chunk is cut hard
                words.append(word[:size])
                word = word[size:]
            words.append(word)
    chunks: list[str] = []
    start = 0
    while start < len(words):
        end, length = start, 0
        while end < len(words) and length + len(words[end]) + (end > start) <= size:
            length += len(words[end]) + (end > start)
            end += 1
        chunk = _join(words[start:end])
        if chunk:
            chunks.append(chunk)
        if end >= len(words):
            break
        # the next chunk repeats the tail of this one, about ``overlap`` characters
        back, kept = end, 0
        while back - 1 > start and kept + len(words[back - 1]) + 1 <= overlap:
            back -= 1
            kept += len(words[back]) + 1
        start = back
    return chunks


def _join(words: list[str]) -> str:
    text = ""
    for word in words:
        if word == "\n\n":
            text = text.rstrip(" ") + "\n\n"
        elif text and not text.endswith("\n\n"):
            text += " " + word
        else:
            text += word
    return text.strip()
