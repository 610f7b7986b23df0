"""Latency in ``voxline evaluate``: each stage as logged, and voice-to-voice as a candidate
would have had it, estimated turn by turn.

A candidate runs offline, one stage at a time, so it has no voice-to-voice of its own. What
it has is the time of each stage it changes, on each logged turn: its transcriber on the
utterance, its language model to the first item, its voice to the first chunk, and (for
turn-taking) the silence its replay waited. The estimate takes each logged voice turn's
voice-to-voice and adds, stage by stage, what the candidate's stage took on that turn less
what the logged configuration's took, both offline, on the same turn, on the same machine
(the *baseline*: :func:`baseline_candidate`, run beside the candidates). A live turn's
stage cannot stand in for the baseline: a preemptive reply hides most of its
transcription, language model and voice in the pause (the log says a few ms), and an
offline run has no pause to hide in. A stage the candidate leaves as it was keeps the
logged figure, so a candidate that changes nothing estimates exactly what was logged. The
silence waited is shifted by the difference of the medians of the two replays (the
candidate's and the logged settings'), since a replay's turns need not be the logged
ones.

What the estimate does not know: how much of a changed stage a live turn would hide in
its pause (it assumes as much of the difference as of the baseline: none of it), and the
queueing behind other sessions (load).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pipeline.workers import STAGES, scan_session
from schemas import EngineSettings, Event, Settings
from voxline.candidates import Candidate, resolved
from voxline.evaluate import spread

__all__ = ["BASELINE", "baseline_candidate", "by_turn_ms", "estimated_voice_to_voice",
           "logged_latency", "logged_turn_stages", "stt_changes"]

#: the baseline's name in the report (:func:`baseline_candidate`)
BASELINE = "as logged, offline"
#: a turn's stage figures: "<session id> <turn id>" → stage → ms
TurnStages = dict[str, dict[str, float]]


def turn_key(session_id: str, turn_id: str) -> str:
    return f"{session_id} {turn_id}"


def by_turn_ms(rows: Iterable[tuple[tuple[str, str], float | None]]) -> dict[str, float]:
    """A measure's ms per turn (the last where a turn has several), for the estimate."""
    return {turn_key(*where): round(ms, 1) for where, ms in rows if ms is not None}


def logged_turn_stages(read: dict[str, Sequence[Event]]) -> TurnStages:
    """Each finished turn's stages, as its events measure them."""
    return {turn_key(session_id, turn.turn_id): dict(turn.stages)
            for session_id, events in read.items()
            for turn in scan_session(events, closed=True).turns}


def logged_latency(turns: TurnStages) -> dict[str, dict[str, float] | None]:
    """Each stage's p50/p95 over the turns."""
    values: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for stages in turns.values():
        for stage, ms in stages.items():
            values.setdefault(stage, []).append(ms)
    return {stage: spread(found) for stage, found in values.items()}


def changed_stages(measures: dict[str, Any], changes_stt: bool) -> dict[str, dict[str, float]]:
    """The stages a candidate changes → its ms per turn (from its measures)."""
    found: dict[str, dict[str, float]] = {}
    if changes_stt:
        found["stt"] = (measures.get("transcripts") or {}).get("by_turn_ms") or {}
    if measures.get("answers"):
        found["llm_first_token"] = measures["answers"].get("by_turn_ms") or {}
    if measures.get("speech"):
        found["tts_first_chunk"] = measures["speech"].get("by_turn_ms") or {}
    return found


def baseline_candidate(candidates: Sequence[Candidate], server: Settings) -> Candidate | None:
    """The logged configuration, run offline on the stages the candidates change (its
    transcriber always: every candidate transcribes); None when none changes a stage."""
    answers = any(c.tries_answers for c in candidates)
    speech = any(c.tries_speech for c in candidates)
    if not (answers or speech or any(stt_changes(c.stt, server) for c in candidates)):
        return None
    # the server's own engines named: the same models, asked again
    return Candidate(BASELINE, llm=server.llm if answers else None,
                     tts=server.tts if speech else None)


def estimated_voice_to_voice(
    logged: TurnStages, measures: dict[str, Any], baseline: dict[str, Any] | None, *,
    changes_stt: bool, logged_turn_taking: dict[str, Any] | None,
    turn_taking: dict[str, Any] | None,
) -> dict[str, Any] | None:
    """The candidate's voice-to-voice p50/p95 over the logged voice turns (see the module
    docstring), how many, and the stages swapped; None when no logged turn has a
    voice-to-voice, or the candidate changes a stage the baseline has no figure for."""
    swaps = changed_stages(measures, changes_stt)
    base = changed_stages(baseline or {}, changes_stt=True)
    if any(stage not in base for stage in swaps):
        return None
    shift = _silence_shift(logged_turn_taking, turn_taking)
    estimates = []
    for key, stages in logged.items():
        if "voice_to_voice" not in stages:
            continue
        ms = stages["voice_to_voice"] + shift
        for stage, theirs in swaps.items():
            if key in theirs and key in base[stage]:
                ms += theirs[key] - base[stage][key]
        estimates.append(max(ms, 0.0))
    if not estimates:
        return None
    swapped = [*swaps] + (["vad_tail"] if turn_taking is not None else [])
    return {**(spread(estimates) or {}), "turns": len(estimates), "swapped": swapped,
            "silence_shift_ms": round(shift, 1)}


def stt_changes(choice: EngineSettings | None, server: Settings) -> bool:
    """Whether a candidate's transcriber differs from the server's (naming the same one,
    engine and options, is no change: its difference from the baseline would be noise)."""
    if choice is None:
        return False
    theirs = resolved(choice, server.stt)
    return (theirs.engine, theirs.engine_options()) != (server.stt.engine,
                                                        server.stt.engine_options())


def _silence_shift(logged: dict[str, Any] | None, candidate: dict[str, Any] | None) -> float:
    theirs = (candidate or {}).get("silence_waited_ms") or {}
    ours = (logged or {}).get("silence_waited_ms") or {}
    if candidate is None or "p50" not in theirs or "p50" not in ours:
        return 0.0
    return float(theirs["p50"]) - float(ours["p50"])
