"""The barge-in corpus (sounds over a reply) and how the benchmark scores what the app did."""

from __future__ import annotations

import hashlib

import numpy as np

from loadtests import _turn_corpus as turn_corpus
from loadtests._barge_in import Outcome, score_overlaps
from loadtests._overlap_corpus import OverlapItem, build_overlaps
from loadtests._turn_corpus import RATE


def _digest(seed: int) -> str:
    items = build_overlaps(seed)
    return hashlib.sha256(b"".join(i.pcm16 + i.id.encode() for i in items)).hexdigest()


def test_the_same_bytes_from_the_same_seed() -> None:
    first = _digest(3)
    turn_corpus.synthesize.cache_clear()  # synthesised afresh, not remembered
    assert _digest(3) == first
    assert _digest(4) != first


def test_every_kind_is_there_and_starts_with_its_sound() -> None:
    items = build_overlaps(0)
    assert {i.kind for i in items} == {"backchannel", "noise", "interruption"}
    assert {i.language for i in items if i.kind != "noise"} == {"en", "de"}
    assert [i.should_stop for i in items] == [i.kind == "interruption" for i in items]
    for item in items:
        samples = np.frombuffer(item.pcm16, dtype="<i2").astype(np.float64) / 32768
        onset = samples[: RATE // 50]  # the first 20 ms: the sound itself, trimmed
        assert np.sqrt(np.mean(onset**2)) > 10 ** (-45 / 20), item.id
        assert 100 < item.duration_ms < 4000, item.id
    assert len(build_overlaps(0, languages=("en",), limit=5)) == 5


def _item(kind: str) -> OverlapItem:
    return OverlapItem(f"x-{kind}", kind, "en", "joe", "", b"")  # type: ignore[arg-type]


def test_scores() -> None:
    outcomes = [
        Outcome(_item("backchannel"), stop_ms=120, paused=True, resume_ms=300),  # resumed
        Outcome(_item("backchannel"), stop_ms=90, stopped_for_good=True),  # false
        Outcome(_item("noise"), stop_ms=80, paused=True, resume_ms=900),  # resumed late
        Outcome(_item("noise")),  # not even paused
        Outcome(_item("noise"), stop_ms=100, paused=True),  # paused, never resumed: false
        Outcome(_item("interruption"), stop_ms=140, paused=True, stopped_for_good=True),
        Outcome(_item("interruption"), stop_ms=420, stopped_for_good=True),  # too late
        Outcome(_item("interruption"), stop_ms=100, paused=True, resume_ms=200),  # resumed
    ]
    scores = score_overlaps(outcomes)
    assert scores["false_barge_in_rate"] == 0.4
    assert scores["false_barge_in_by_kind"] == {"backchannel": 0.5, "noise": round(1 / 3, 4)}
    assert (scores["resumed"], scores["resumed_within_bound"]) == (2, 1)
    assert scores["slow_resumes"] == {"x-noise": 900}  # which ones, to look into
    assert scores["missed_barge_in_rate"] == round(2 / 3, 4)
    assert scores["stop_ms"]["p50"] == 140


def test_scores_per_language_count_noises_with_english() -> None:
    german = OverlapItem("x-de", "backchannel", "de", "de", "Ja.", b"")
    noise = OverlapItem("x-noise", "noise", "", "noise", "cough", b"")
    outcomes = [
        Outcome(_item("backchannel"), stop_ms=50, paused=True, resume_ms=300),
        Outcome(noise, stop_ms=50, paused=True, resume_ms=400),
        Outcome(german, stop_ms=50, paused=True, resume_ms=600),  # the slow one
    ]
    scores = score_overlaps(outcomes)
    assert set(scores["by_language"]) == {"en", "de"}
    english, german_scores = scores["by_language"]["en"], scores["by_language"]["de"]
    assert (english["resumed"], english["resumed_within_bound"]) == (2, 2)
    assert (german_scores["resumed"], german_scores["resumed_within_bound"]) == (1, 0)
    assert scores["resumed_within_bound"] == 2  # in all, as before
    assert german_scores["missed_barge_in_rate"] is None  # no interruption among them
