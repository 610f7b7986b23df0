"""The pauses part of the turn-taking benchmark: every pause judged, and its summary.

The summary's counts on hand-made rows; and on two corpus items with the real VAD,
end-of-turn model and transcriber, a turn with a thinking pause gives a pause inside the
turn and one at its end, each with the model's probability and a transcript.
"""

from __future__ import annotations

import pytest

from loadtests._turn_corpus import build_corpus
from loadtests._turn_pauses import pause_verdicts, roc_auc, summarize_pauses
from pipeline.engines import create_engine
from schemas import ModelMissingError


def _row(inside: bool, p: float | None, unfinished: bool, text: str = "") -> dict[str, object]:
    return {"item": "x", "inside": inside, "p": p, "text": text, "reads_unfinished": unfinished}


def test_the_summary_counts_what_the_rule_calls_complete() -> None:
    rows = [
        _row(True, 0.9, False, "What should I cook tonight?"),  # a cut-off waiting to happen
        _row(True, 0.9, True, "I'd like to book a table for"),  # the words keep it open
        _row(True, 0.2, False),
        _row(True, None, False),  # a failed verdict: not counted
        _row(False, 0.95, False),
        _row(False, 0.3, False),
        _row(False, 0.6, True),
    ]
    summary = summarize_pauses(rows)
    assert (summary["pauses_inside"], summary["ends"]) == (3, 3)
    assert summary["p_tenths_inside"] == [0, 0, 1, 0, 0, 0, 0, 0, 0, 2]
    assert summary["p_tenths_ends"] == [0, 0, 0, 1, 0, 0, 1, 0, 0, 1]
    assert (summary["reads_unfinished_inside"], summary["reads_unfinished_ends"]) == (1, 1)
    rule = {row["threshold"]: row for row in summary["rule"]}
    assert rule[0.5] == {"threshold": 0.5, "inside_called_complete": 1,
                         "ends_called_complete": 1}
    assert rule[0.25] == {"threshold": 0.25, "inside_called_complete": 1,
                          "ends_called_complete": 2}
    assert rule[0.15]["inside_called_complete"] == 2
    assert summary["inside_called_complete_at_0.5"] == [
        {"item": "x", "p": 0.9, "text": "What should I cook tonight?"}]
    # ends over inside pauses: 0.95 beats all 3, 0.3 and 0.6 beat 0.2 only: 5 of 9
    assert summary["auc"] == round(5 / 9, 4)
    assert "rule_text" not in summary  # no text model's verdicts in these rows


def test_the_text_models_verdicts_are_counted_by_the_same_rule() -> None:
    rows = [{**_row(inside, 0.5, unfinished), "p_text": p_text}
            for inside, unfinished, p_text in [
                (True, False, 0.1), (True, True, 0.9), (False, False, 0.8),
                (False, False, 0.4)]]
    summary = summarize_pauses(rows)
    rule = {row["threshold"]: row for row in summary["rule_text"]}
    assert rule[0.5] == {"threshold": 0.5, "inside_called_complete": 0,
                         "ends_called_complete": 1}
    assert rule[0.05]["inside_called_complete"] == 1  # the unfinished words keep the other
    assert summary["auc_text"] == 0.5  # 0.8 and 0.4 beat 0.1, neither beats 0.9
    assert roc_auc([], [0.1]) is None and roc_auc([1.0], [1.0]) == 0.5


@pytest.mark.models
async def test_a_paused_turn_gives_a_pause_inside_and_an_end() -> None:
    items = [i for i in build_corpus(0) if i.kind == "paused" and i.voice == "joe"][:1]
    engines = [create_engine(stage, name, {}) for stage, name in
               (("vad", "silero"), ("turn", "smart-turn"), ("stt", "language-router"))]
    try:
        for engine in engines:
            await engine.load()
    except ModelMissingError as exc:
        pytest.skip(exc.message)
    try:
        rows = await pause_verdicts(items, *engines)
    finally:
        for engine in engines:
            await engine.close()
    inside = [r for r in rows if r["inside"]]
    ends = [r for r in rows if not r["inside"]]
    assert inside and len(ends) == 1
    assert ends[0]["at_ms"] >= items[0].end_ms > inside[0]["at_ms"]
    assert all(0.0 <= r["p"] <= 1.0 and r["text"] for r in rows)
    assert "capital" in ends[0]["text"].lower()  # the whole turn, at its end
