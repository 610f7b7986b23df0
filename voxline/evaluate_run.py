"""``voxline evaluate``: candidate configurations tried on logged conversations.

The sessions come from the log (each read recorded in the audit) or from a dataset
``voxline export`` wrote; their logged input is replayed offline through each candidate
(:mod:`voxline.candidates`) and compared with what was logged, nothing is sent to anyone
and nothing is written to any log:

* **turn-taking**: the turns, the silence waited, the continuations (turn ends more
  speech followed: the likely cut-offs) and the missed ends, replayed through the VAD and
  end-of-turn model as ``voxline replay --evaluate`` does
  (:func:`voxline.evaluate.evaluate_sessions`); and the speech over replies, backchannels
  and barge-ins, judged again by the candidate's settings and its transcriber
  (:mod:`pipeline.turntaking.overlaps`);
* **transcripts**: each utterance transcribed by the candidate's transcriber, its word
  error rate against the logged transcript and, where a reference transcript is given
  (:func:`pipeline.datasets.read_references`), against the reference (the logged
  transcripts too, beside: did the candidate beat what ran), how many changed, and the
  time each took;
* **answers** (candidates that change the reply: its prompt, sampling or model): each
  completed turn asked again with the dialogue as it stood, compared with the logged
  reply (:mod:`voxline.evaluate_answers`);
* **speech** (candidates that change the voice, its speed or the synthesizer): each
  completed turn's logged reply spoken again, timed and heard back
  (:mod:`voxline.evaluate_speech`);
* **latency**: each stage's p50/p95 from the sessions' own events, beside the stages a
  candidate ran again, and its voice-to-voice estimated turn by turn
  (:mod:`voxline.evaluate_latency`).

Bounded and apart: at most ``max_sessions`` sessions; a time budget after which the work
left is not started (the report says ``complete: false`` and how many it evaluated); each
candidate in a process of its own, stopped at the budget (:mod:`voxline.evaluate_candidate`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pipeline.datasets import References
from schemas import Event, SessionError, Settings
from voxline.candidates import Candidate
from voxline.evaluate import AS_LOGGED, evaluate_sessions
from voxline.evaluate_answers import asked_turns
from voxline.evaluate_candidate import candidate_measures, events_in, measured_apart
from voxline.evaluate_latency import (
    BASELINE,
    baseline_candidate,
    estimated_voice_to_voice,
    logged_latency,
    logged_turn_stages,
    stt_changes,
)
from voxline.evaluate_transcripts import logged_vs_reference
from voxline.inspect import read_session

__all__ = ["run_evaluation"]

EventsOf = Callable[[str], Awaitable[Sequence[Event]]]


async def run_evaluation(
    session_ids: Sequence[str], candidates: Sequence[Candidate], settings: Settings, *,
    events_of: EventsOf | None = None, max_sessions: int = 50, budget_s: float = 600.0,
    references: References | None = None, in_process: bool = False,
    say: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Every candidate on the sessions, each in a process of its own unless
    ``in_process`` (:mod:`voxline.evaluate_candidate`); the report (see the module
    docstring)."""
    started = time.monotonic()
    read: dict[str, Sequence[Event]] = {}
    skipped: dict[str, str] = {}
    wanted = list(dict.fromkeys(session_ids))
    for session_id in wanted[:max_sessions]:
        try:
            read[session_id] = (await events_of(session_id) if events_of is not None
                                else (await read_session(session_id, settings,
                                                         action="voxline evaluate")).events)
        except SessionError as exc:
            skipped[session_id] = f"{exc.code.value}: {exc.message}"
    for session_id in wanted[max_sessions:]:
        skipped[session_id] = f"past --max-sessions {max_sessions}"

    say(f"turn-taking as logged: {len(read)} session(s)")
    turns = await evaluate_sessions(list(read), [], settings, events_of=events_in(read))
    skipped.update(turns.skipped)
    references = references or {}
    asked = [turn for session_id, events in read.items()
             for turn in asked_turns(session_id, events, settings.history)]
    measured: dict[str, dict[str, Any]] = {}
    baseline = baseline_candidate(candidates, settings)
    for candidate in [*candidates, *([baseline] if baseline is not None else [])]:
        left = max(started + budget_s - time.monotonic(), 0.0)
        say(f"{candidate.name}: {'here' if in_process else 'in its own process'}")
        measured[candidate.name] = (
            await candidate_measures(read, candidate, settings, references,
                                     time.monotonic() + left, say) if in_process
            else await measured_apart(read, candidate, settings, references, left, say))
    logged = turns.measures.get(AS_LOGGED)
    complete = all(m.get("complete") for m in measured.values())  # the baseline's with them
    offline = measured.pop(BASELINE, None)
    stages = logged_turn_stages(read)
    for candidate in candidates:
        found = measured[candidate.name]
        if "error" not in found:
            found["voice_to_voice_estimate"] = estimated_voice_to_voice(
                stages, found, offline, changes_stt=stt_changes(candidate.stt, settings),
                logged_turn_taking=logged,
                turn_taking=found.get("turn_taking") if candidate.turn_patch else None)
    return {
        "sessions": list(read), "skipped": skipped,
        "complete": complete,
        "elapsed_s": round(time.monotonic() - started, 1),
        "logged": {"turn_taking": logged,
                   "transcripts": logged_vs_reference(read, references),
                   "answers": {"turns": len(asked),
                               "calls": sum(len(turn.logged_calls) for turn in asked)},
                   "latency_ms": logged_latency(stages),
                   # the logged configuration's stages run again offline: the baseline
                   # of the estimates (None: no candidate changes a stage)
                   "offline": None if offline is None else {
                       key: value for key, value in offline.items()
                       if key not in ("complete", "turn_taking")}},
        "candidates": {c.name: {"spec": c.describe(),
                                **{key: value for key, value in measured[c.name].items()
                                   if key not in ("complete", "overlaps")},
                                "turn_taking": _turn_taking(c, measured[c.name], logged)}
                       for c in candidates},
    }


def _turn_taking(candidate: Candidate, measured: dict[str, Any],
                 logged: dict[str, Any] | None) -> dict[str, Any] | None:
    """A candidate's turn-taking: its own replay where it changes turn-taking, else as
    logged; the speech over replies as its transcriber judged it again, where it has one
    of its own."""
    if "error" in measured:
        return None
    own = measured.get("turn_taking") if candidate.turn_patch else logged
    overlaps = measured.get("overlaps")
    return own if own is None or overlaps is None else {**own, **overlaps}
