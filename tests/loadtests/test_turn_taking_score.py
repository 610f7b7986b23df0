"""The end-of-turn half's score on hand-made results: cut-offs and latencies in all and per
language (the issue's goal is on the English items), and the turn ends of each cut-off
item with their verdicts (why it was cut off)."""

from __future__ import annotations

from loadtests._turn_corpus import TurnItem
from loadtests.bench_turn_taking import score


def _item(item_id: str, language: str, end_ms: int) -> TurnItem:
    return TurnItem(id=item_id, kind="paused", language=language, voice="v", text="",
                    speech_ms=((400, 1000), (1800, end_ms)), pauses_ms=(800,),
                    noise_dbfs=-60.0, pcm16=b"")


def test_cut_offs_and_latencies_are_scored_in_all_and_per_language() -> None:
    items = [_item("en-cut", "en", 3000), _item("en-ok", "en", 3000),
             _item("de-ok", "de", 2500)]
    results = [
        [(1000, 1250, 0.9), (3000, 5000, 0.1)],  # ended in the pause, at 1,250 ms: cut off
        [(3000, 3300, 0.8)],  # 300 ms after the true end
        [(2500, 4500, None)],  # 2,000 ms after it, no verdict
    ]
    scored = score(items, results)
    assert scored["items"] == 3 and scored["false_cutoff_rate"] == round(1 / 3, 4)
    assert scored["end_of_turn_ms"]["p50"] == 2000  # 2,000, 300 and 2,000 ms
    assert scored["by_language"]["en"]["items"] == 2
    assert scored["by_language"]["en"]["false_cutoff_rate"] == 0.5
    assert scored["by_language"]["en"]["end_of_turn_ms"]["p50"] == 1150  # 2,000 and 300
    assert scored["by_language"]["de"] == {
        "items": 1, "false_cutoff_rate": 0.0, "no_end": 0,
        "end_of_turn_ms": {"p50": 2000, "p95": 2000, "p99": 2000, "max": 2000}}
    assert scored["false_cutoff_by_kind"] == {"paused/de": 0.0, "paused/en": 0.5}
    assert scored["cut_off_items"] == ["en-cut"]
    assert scored["cut_off_turn_ends"] == {"en-cut": [[1000, 1250, 0.9], [3000, 5000, 0.1]]}
