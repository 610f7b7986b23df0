"""``voxline evaluate``: candidate configurations tried on logged conversations.

The sessions come from the log (each read recorded in the audit) or from a dataset
``voxline export`` wrote; their logged input is replayed offline through each candidate
(:mod:`voxline.candidates`) and compared with what was logged, nothing is sent to anyone
and nothing is written to any log:

* **turn-taking**: the turns, the silence waited and the continuations (turn ends more
  speech followed: the likely cut-offs), replayed through the VAD and end-of-turn model as
  ``voxline replay --evaluate`` does (:func:`voxline.evaluate.evaluate_sessions`);
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
* **latency as logged**: each stage's p50/p95 from the sessions' own events, beside.

Bounded: at most ``max_sessions`` sessions, and a time budget after which the sessions
left are not started (the report says ``complete: false`` and how many it evaluated).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pipeline.datasets import References
from pipeline.engines import Transcriber, create_engine
from pipeline.log import fold
from pipeline.turntaking import transcribe_in
from pipeline.workers import STAGES, scan_session
from schemas import Event, InputAudio, SessionError, Settings
from voxline.candidates import Candidate
from voxline.evaluate import evaluate_sessions, spread
from voxline.evaluate_answers import answer_measures, asked_turns
from voxline.evaluate_speech import speech_measures
from voxline.inspect import read_session
from voxline.word_errors import normalize, word_errors

__all__ = ["run_evaluation"]

EventsOf = Callable[[str], Awaitable[Sequence[Event]]]


async def run_evaluation(
    session_ids: Sequence[str], candidates: Sequence[Candidate], settings: Settings, *,
    events_of: EventsOf | None = None, max_sessions: int = 50, budget_s: float = 600.0,
    references: References | None = None, say: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Every candidate on the sessions; the report (see the module docstring)."""
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

    async def cached(session_id: str) -> Sequence[Event]:
        return read[session_id]

    patches = list(dict.fromkeys(c.turn_key for c in candidates if c.turn_patch))
    say(f"turn-taking: {len(read)} session(s), {len(patches)} setting(s) besides the logged")
    turns = await evaluate_sessions(list(read), patches, settings, events_of=cached)
    skipped.update(turns.skipped)
    references = references or {}
    transcripts, complete = await _transcripts(read, candidates, settings, references,
                                               started + budget_s, say)
    asked = [turn for session_id, events in read.items()
             for turn in asked_turns(session_id, events, settings.history)]
    answers, answered_all = await answer_measures(asked, candidates, settings,
                                                  started + budget_s, say)
    speech, spoken_all = await speech_measures(asked, candidates, settings,
                                               started + budget_s, say)
    complete = complete and answered_all and spoken_all
    return {
        "sessions": list(read), "skipped": skipped, "complete": complete,
        "elapsed_s": round(time.monotonic() - started, 1),
        "logged": {"turn_taking": turns.measures.get("as logged"),
                   "transcripts": _logged_vs_reference(read, references),
                   "answers": {"turns": len(asked),
                               "calls": sum(len(turn.logged_calls) for turn in asked)},
                   "latency_ms": _logged_latency(read)},
        "candidates": {c.name: {"spec": c.describe(),
                                "turn_taking": turns.measures.get(c.turn_key),
                                "transcripts": transcripts[c.name],
                                "answers": answers.get(c.name),
                                "speech": speech.get(c.name)} for c in candidates},
    }


async def _transcripts(
    read: dict[str, Sequence[Event]], candidates: Sequence[Candidate], settings: Settings,
    references: References, deadline: float, say: Callable[[str], None],
) -> tuple[dict[str, dict[str, Any]], bool]:
    """Per candidate, the utterances heard again by its transcriber against the log."""
    found: dict[str, dict[str, Any]] = {}
    complete = True
    spoken = {session_id: _utterances(session_id, events) for session_id, events in read.items()}
    loaded: dict[str, Transcriber] = {}  # one per transcriber, shared by its candidates
    try:
        for candidate in candidates:
            choice = candidate.stt or settings.stt
            key = json.dumps([choice.engine, choice.engine_options()], sort_keys=True)
            if key not in loaded:
                engine = create_engine("stt", choice.engine, choice.engine_options())
                await engine.load()
                assert isinstance(engine, Transcriber)
                loaded[key] = engine
            heard, took, finished = await _heard(spoken, loaded[key], deadline)
            complete = complete and finished
            found[candidate.name] = _word_measures(heard, took, references)
            say(f"{candidate.name}: {len(heard)} utterance(s) transcribed")
    finally:
        for engine in loaded.values():
            await engine.close()
    return found, complete


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


def _wer(pairs: Sequence[tuple[str, str]]) -> float | None:
    """The word error rate of the second of each pair against the first, over all."""
    errors = sum(word_errors(truth, said)[0] for truth, said in pairs)
    words = sum(len(normalize(truth)) for truth, _ in pairs)
    return round(errors / words, 4) if words else None


def _word_measures(heard: list[Heard], took: list[float],
                   references: References) -> dict[str, Any]:
    checked = [(references[where], text) for where, _, text in heard if where in references]
    changed = [(logged, text) for _, logged, text in heard
               if normalize(logged) != normalize(text)]
    return {
        "utterances": len(heard),
        "wer_vs_logged": _wer([(logged, text) for _, logged, text in heard]),
        "with_reference": len(checked),
        "wer_vs_reference": _wer(checked),
        "changed": len(changed),
        "changed_rate": round(len(changed) / len(heard), 4) if heard else None,
        "stt_ms": spread(took),
        "examples": [{"logged": logged, "heard": text} for logged, text in changed][:5],
    }


def _logged_vs_reference(read: dict[str, Sequence[Event]],
                         references: References) -> dict[str, Any]:
    """The logged transcripts against the references: what a candidate should beat."""
    checked = [(references[(session_id, utterance.turn_id or "")], logged)
               for session_id, events in read.items()
               for utterance, logged in _utterances(session_id, events)[1]
               if (session_id, utterance.turn_id or "") in references]
    return {"with_reference": len(checked), "wer_vs_reference": _wer(checked)}


def _logged_latency(read: dict[str, Sequence[Event]]) -> dict[str, dict[str, float] | None]:
    """Each stage's p50/p95 over the sessions' turns, as their events measure them."""
    values: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for events in read.values():
        for turn in scan_session(events, closed=True).turns:
            for stage, ms in turn.stages.items():
                values.setdefault(stage, []).append(ms)
    return {stage: spread(found) for stage, found in values.items()}
