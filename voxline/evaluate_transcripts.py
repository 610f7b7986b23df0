"""The transcripts of ``voxline evaluate``: each logged utterance heard again by a
candidate's transcriber, and its word error rate against the logged transcript and,
where one is given, against a reference transcript (:func:`pipeline.datasets.read_references`;
the logged transcripts against the references too: what a candidate should beat)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from pipeline.datasets import References
from pipeline.engines import Transcriber
from pipeline.log import fold
from pipeline.turntaking import transcribe_in
from schemas import Event, InputAudio, Settings
from voxline.candidates import Candidate, resolved
from voxline.evaluate import judged_overlaps, loaded_engine, spread
from voxline.evaluate_latency import by_turn_ms
from voxline.word_errors import normalize, reported_wer

__all__ = ["logged_vs_reference", "transcript_measures"]


async def transcript_measures(
    read: dict[str, Sequence[Event]], candidate: Candidate, settings: Settings,
    references: References, deadline: float,
) -> tuple[dict[str, Any], bool, dict[str, Any] | None]:
    """The utterances heard again by the candidate's transcriber, against the log (and
    the references); whether all were heard before ``deadline``; and, for a candidate
    with a transcriber of its own, the speech over replies judged again with its words
    (:func:`voxline.evaluate.judged_overlaps`; None: the words are the logged ones)."""
    spoken = {session_id: _utterances(session_id, events) for session_id, events in read.items()}
    choice = resolved(candidate.stt, settings.stt)
    engine = await loaded_engine("stt", choice, Transcriber)
    try:
        heard, took, finished = await _heard(spoken, engine, deadline)
        overlaps = None
        if candidate.stt is not None and finished:
            overlaps = await judged_overlaps(read, candidate.turn_patch, engine)
    finally:
        await engine.close()
    return _word_measures(heard, took, references), finished, overlaps


#: a session's language and its utterances, each with the transcript its turn logged
Spoken = tuple[str, list[tuple[InputAudio, str]]]
#: one utterance heard again: (session id, turn id), what was logged, what was heard
Heard = tuple[tuple[str, str], str, str]


async def _heard(spoken: dict[str, Spoken], stt: Transcriber, deadline: float,
                 ) -> tuple[list[Heard], list[float], bool]:
    """Each utterance logged and heard, the ms each took, and whether all were heard
    before ``deadline``."""
    heard: list[Heard] = []
    took: list[float] = []
    for session_id, (language, utterances) in spoken.items():
        if time.monotonic() > deadline:
            return heard, took, False
        for utterance, logged in utterances:
            began = time.perf_counter()
            text = await transcribe_in(stt, utterance.data.audio, utterance.data.sample_rate,
                                       language)
            took.append((time.perf_counter() - began) * 1000)
            heard.append(((session_id, utterance.turn_id or ""), logged, text))
    return heard, took, True


def _utterances(session_id: str, events: Sequence[Event]) -> Spoken:
    """The session's language, and each utterance with the transcript its turn logged
    (utterances without one, such as those a turn never transcribed, are left out:
    nothing to compare with)."""
    state = fold(session_id, events)
    found = []
    for event in events:
        if isinstance(event, InputAudio):
            turn = state.turns.get(event.turn_id or "")
            if turn is not None and turn.user_text:
                found.append((event, turn.user_text))
    return state.settings.language, found


def _word_measures(heard: list[Heard], took: list[float],
                   references: References) -> dict[str, Any]:
    checked = [(references[where], text) for where, _, text in heard if where in references]
    changed = [(logged, text) for _, logged, text in heard
               if normalize(logged) != normalize(text)]
    return {
        "utterances": len(heard),
        "wer_vs_logged": reported_wer([(logged, text) for _, logged, text in heard]),
        "with_reference": len(checked),
        "wer_vs_reference": reported_wer(checked),
        "changed": len(changed),
        "changed_rate": round(len(changed) / len(heard), 4) if heard else None,
        "stt_ms": spread(took),
        "by_turn_ms": by_turn_ms((where, ms) for (where, _, _), ms in zip(heard, took,
                                                                         strict=True)),
        "examples": [{"logged": logged, "heard": text} for logged, text in changed][:5],
    }


def logged_vs_reference(read: dict[str, Sequence[Event]],
                         references: References) -> dict[str, Any]:
    """The logged transcripts against the references: what a candidate should beat."""
    checked = [(references[(session_id, utterance.turn_id or "")], logged)
               for session_id, events in read.items()
               for utterance, logged in _utterances(session_id, events)[1]
               if (session_id, utterance.turn_id or "") in references]
    return {"with_reference": len(checked), "wer_vs_reference": reported_wer(checked)}
