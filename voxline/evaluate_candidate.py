"""One candidate of ``voxline evaluate``, measured in a process of its own.

Each candidate loads its own models (a transcriber, a language model, a voice) and runs
them on every session: in the evaluation's process, a model that takes the machine's
memory, hangs or crashes takes the whole report with it, and what one candidate loaded
stays loaded for the next. So :func:`measured_apart` runs :func:`candidate_measures` in a
child process (``python -m voxline.evaluate_candidate``) and waits for it at most until
the evaluation's budget, plus the time its models take to load: a child that fails or
runs past that is killed and its candidate reported with the reason, and the others go
on. The sessions' events go to the child through its standard input, never through a
file: they hold what the users said. The child reads nothing from the log and writes
nothing anywhere; what it prints on its standard error is its progress.

:func:`candidate_measures` is the same work in the calling process (``--in-process``:
quicker for a small evaluation, no isolation).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pipeline.datasets import References
from schemas import EVENT_ADAPTER, Event, Settings
from voxline.candidates import Candidate
from voxline.evaluate import evaluate_sessions
from voxline.evaluate_answers import answer_measures, asked_turns
from voxline.evaluate_speech import speech_measures
from voxline.evaluate_transcripts import transcript_measures

__all__ = ["LOAD_GRACE_S", "candidate_measures", "events_in", "measured_apart"]

#: what a child may take beyond the budget: starting, loading its models, answering
LOAD_GRACE_S = 120.0
#: the server settings a candidate's work reads (the engines and the history window);
#: nothing else (no keys, no addresses) goes to the child
_ENGINE_SETTINGS = ("stt", "llm", "tts", "vad", "turn", "turn_text", "history")


async def candidate_measures(
    read: dict[str, Sequence[Event]], candidate: Candidate, settings: Settings,
    references: References, deadline: float, say: Callable[[str], None],
) -> dict[str, Any]:
    """The candidate's figures: turn-taking (its patch; None without one: as logged),
    the speech over replies where its transcriber judges it again (``overlaps``; None:
    as its turn-taking says), transcripts, answers and speech, and whether all of it ran
    before ``deadline``."""
    turn_taking = None
    if candidate.turn_patch:
        turns = await evaluate_sessions(list(read), [candidate.turn_key], settings,
                                        events_of=events_in(read), with_logged=False)
        turn_taking = turns.measures.get(candidate.turn_key)
    transcripts, heard_all, overlaps = await transcript_measures(
        read, candidate, settings, references, deadline)
    say(f"{candidate.name}: {transcripts['utterances']} utterance(s) transcribed")
    asked = [turn for session_id, events in read.items()
             for turn in asked_turns(session_id, events, settings.history)]
    answers, answered_all = await answer_measures(asked, [candidate], settings, deadline, say)
    speech, spoken_all = await speech_measures(asked, [candidate], settings, deadline, say)
    return {"turn_taking": turn_taking, "overlaps": overlaps, "transcripts": transcripts,
            "answers": answers.get(candidate.name), "speech": speech.get(candidate.name),
            "complete": heard_all and answered_all and spoken_all}


def events_in(read: dict[str, Sequence[Event]]) -> Callable[[str], Awaitable[Sequence[Event]]]:
    """The sessions' events already read, as :func:`voxline.evaluate.evaluate_sessions`
    asks for them."""
    async def events_of(session_id: str) -> Sequence[Event]:
        return read[session_id]
    return events_of


async def measured_apart(
    read: dict[str, Sequence[Event]], candidate: Candidate, settings: Settings,
    references: References, budget_s: float, say: Callable[[str], None],
) -> dict[str, Any]:
    """:func:`candidate_measures` in a child process (see the module docstring); a child
    that fails or runs past ``budget_s`` + :data:`LOAD_GRACE_S` gives ``{"error": ...}``."""
    header = {"candidate": candidate.to_json(), "budget_s": budget_s,
              "settings": settings.model_dump(mode="json", include=set(_ENGINE_SETTINGS)),
              "references": [[s, t, text] for (s, t), text in references.items()]}
    lines = [json.dumps(header)] + [
        json.dumps({"session_id": session_id, "event": event.model_dump(mode="json")})
        for session_id, events in read.items() for event in events]
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voxline.evaluate_candidate", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(
            child.communicate(("\n".join(lines) + "\n").encode()), budget_s + LOAD_GRACE_S)
    except TimeoutError:
        child.kill()
        await child.wait()
        return {"error": f"its process ran past the budget ({budget_s:.0f} s + "
                         f"{LOAD_GRACE_S:.0f} s to load) and was stopped", "complete": False}
    for line in err.decode(errors="replace").splitlines():
        say(f"  {line}")
    if child.returncode != 0 or not out.strip():
        tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        return {"error": f"its process failed (exit {child.returncode}): {tail[0]}",
                "complete": False}
    measures: dict[str, Any] = json.loads(out)
    return measures


async def _child() -> dict[str, Any]:
    """The child's side: read the job from standard input, measure, return the figures."""
    stdin = sys.stdin
    header = json.loads(stdin.readline())
    events: dict[str, list[Event]] = {}
    for line in stdin:
        row = json.loads(line)
        events.setdefault(row["session_id"], []).append(
            EVENT_ADAPTER.validate_python(row["event"]))
    read: dict[str, Sequence[Event]] = dict(events)
    settings = Settings(**header["settings"])
    references = {(s, t): text for s, t, text in header["references"]}
    return await candidate_measures(
        read, Candidate.from_json(header["candidate"]), settings, references,
        time.monotonic() + float(header["budget_s"]),
        lambda text: print(text, file=sys.stderr, flush=True))


def main() -> None:
    print(json.dumps(asyncio.run(_child())), flush=True)


if __name__ == "__main__":
    main()
