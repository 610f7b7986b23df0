"""Every pause the end-of-turn judge hears on the turn-taking corpus, and what it says there.

The live benchmark tells how often a turn was cut off; this tells why. Each corpus item is
replayed through the same endpointer, VAD and end-of-turn model a live session uses
(:func:`pipeline.session.replay_turn_ends`, with a threshold no verdict reaches, so that
every pause is judged and none ends the turn), and each pause judged is transcribed as the
text cues transcribe it (a quick transcription of the turn so far). A pause is *inside* the
turn when speech follows it, else it is the turn's *end*. The summary counts, per
threshold of the model's probability, the pauses inside turns and the ends that a rule
"complete when the model says so and the words do not read unfinished" calls complete:
the first are cut-offs wherever the speaker's pause outlasts ``turn_complete_ms``, and
ends it does not call complete wait ``turn_incomplete_ms``. With a text end-of-turn model
(``turn_judge`` text), each transcript's probability is there too (``p_text``), with the
same counts for it, and how well each probability tells an end from a pause inside a turn
(ROC AUC: 0.5 is chance, 1 a threshold that never errs).

In-process, no server: ``bench_turn_taking --part pauses``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from loadtests._turn_corpus import RATE, TurnItem
from pipeline.audio import SpeechPause
from pipeline.session import LoggedInput, replay_turn_ends, sounds_unfinished
from schemas import SessionSettings

__all__ = ["pause_verdicts", "roc_auc", "summarize_pauses"]

#: the model's thresholds the summary tries
THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(1, 20))


async def pause_verdicts(items: Sequence[TurnItem], vad: Any, turn: Any, stt: Any,
                         text_model: Any = None) -> list[dict[str, Any]]:
    """One row per pause judged: where, inside the turn or not, the model's probability
    and the quick transcript of the turn so far (``stt`` an STT engine, loaded), and the
    text model's probability of that transcript (``text_model``, loaded, when given)."""
    from pipeline.engines import transcribed_text
    from schemas import TranscriptionRequest

    rows: list[dict[str, Any]] = []
    for item in items:
        heard: list[tuple[SpeechPause, float | None]] = []
        settings = SessionSettings(turn_detection="smart", turn_threshold=0.999,
                                   language=item.language)
        await replay_turn_ends(LoggedInput(item.id, item.pcm16, (), ()), settings, vad, turn,
                               on_judged=lambda pause, p, into=heard: into.append((pause, p)))
        for pause, verdict in heard:
            request = TranscriptionRequest(audio=pause.audio, sample_rate=RATE,
                                           language=item.language, quick=True)
            text = await transcribed_text(stt, request)
            rows.append({
                "item": item.id, "kind": item.kind, "language": item.language,
                "at_ms": pause.audio_ms, "inside": pause.audio_ms < item.end_ms,
                "p": None if verdict is None else round(verdict, 4), "text": text,
                "reads_unfinished": sounds_unfinished(text, item.language),
            })
            if text_model is not None:
                rows[-1]["p_text"] = round(await text_model.completion(text, item.language), 4)
    return rows


def summarize_pauses(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Counts of the rows (see the module docstring): the model's probabilities in tenths,
    the text's verdicts, and per threshold what the combined rule calls complete."""
    inside = [r for r in rows if r["inside"] and r["p"] is not None]
    ends = [r for r in rows if not r["inside"] and r["p"] is not None]

    def tenths(group: list[dict[str, Any]]) -> list[int]:
        counts = [0] * 10
        for row in group:
            counts[min(9, int(row["p"] * 10))] += 1
        return counts

    def complete(group: list[dict[str, Any]], threshold: float, key: str = "p") -> int:
        return sum(r[key] >= threshold and not r["reads_unfinished"] for r in group)

    texts = all("p_text" in r for r in rows)
    by_words = {
        "auc_text": roc_auc([r["p_text"] for r in ends], [r["p_text"] for r in inside]),
        "rule_text": [{"threshold": t, "inside_called_complete": complete(inside, t, "p_text"),
                       "ends_called_complete": complete(ends, t, "p_text")}
                      for t in THRESHOLDS],
    } if texts else {}
    return {
        "pauses_inside": len(inside),
        "ends": len(ends),
        "p_tenths_inside": tenths(inside),
        "p_tenths_ends": tenths(ends),
        "auc": roc_auc([r["p"] for r in ends], [r["p"] for r in inside]),
        "reads_unfinished_inside": sum(r["reads_unfinished"] for r in inside),
        "reads_unfinished_ends": sum(r["reads_unfinished"] for r in ends),
        "rule": [{"threshold": t, "inside_called_complete": complete(inside, t),
                  "ends_called_complete": complete(ends, t)} for t in THRESHOLDS],
        "inside_called_complete_at_0.5": [
            {k: r[k] for k in ("item", "p", "text")}
            for r in inside if r["p"] >= 0.5 and not r["reads_unfinished"]],
        **by_words,
    }


def roc_auc(positives: Sequence[float], negatives: Sequence[float]) -> float | None:
    """How often a positive scores above a negative (ties half): the area under the ROC
    curve. None without both."""
    if not positives or not negatives:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return round(wins / (len(positives) * len(negatives)), 4)
