"""The turn-taking corpus: the same bytes from the same seed, its labels where the speech
really is, and the paused kinds paused where the text says."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from loadtests import _turn_corpus as turn_corpus
from loadtests._turn_corpus import build_corpus, split_at_pauses


def _digest(seed: int) -> str:
    items = build_corpus(seed, languages=("en",), limit=4)
    return hashlib.sha256(b"".join(i.pcm16 + i.id.encode() for i in items)).hexdigest()


def test_the_corpus_is_the_same_from_the_same_seed() -> None:
    first = _digest(7)
    turn_corpus.synthesize.cache_clear()  # synthesised afresh, not remembered
    assert _digest(7) == first
    assert _digest(8) != first


def test_each_item_is_labelled_where_its_speech_is() -> None:
    items = build_corpus(3, limit=30)
    assert {i.kind for i in items} == {"complete", "paused", "filler"}
    for item in items:
        audio = np.frombuffer(item.pcm16, dtype="<i2").astype(np.float32) / 32768
        assert len(item.speech_ms) == len(item.pauses_ms) + 1 == item.text.count(",") + 1
        for pause, (end, start) in zip(item.pauses_ms, zip(
                [e for _, e in item.speech_ms[:-1]], [s for s, _ in item.speech_ms[1:]],
                strict=True), strict=True):
            assert 300 <= pause <= 1500 and abs(start - end - pause) <= 1
        # loud inside the labelled speech, faint after its end
        start, end = item.speech_ms[0][0], item.end_ms
        assert _rms(audio, start, end) > 10 * _rms(audio, end + 50, item.duration_ms)


def _rms(audio: np.ndarray, start_ms: int, end_ms: int) -> float:
    return float(np.sqrt(np.mean(audio[start_ms * 16 : end_ms * 16] ** 2)))


def test_a_split_needs_the_silences_it_is_asked_for() -> None:
    tone = np.sin(np.arange(16000) / 5).astype(np.float32) * 0.3
    one_gap = np.concatenate([tone, np.zeros(3200, np.float32), tone])
    head, tail = split_at_pauses(one_gap, 1)
    assert head.size == tail.size == 16000
    with pytest.raises(ValueError, match="2 pauses wanted"):
        split_at_pauses(one_gap, 2)
