"""The answers of ``voxline evaluate``: each logged turn asked again of a candidate's
language model, with the dialogue as it stood then, and compared with the logged reply.

A turn is asked again when its reply completed (not cancelled, failed or cut short by
the user) and it has words from the user. The request is the one the live session made:
the system prompt, the finished turns before it as the history window shows them (the
server's ``history`` settings), then the user's words as logged (redacted as they were),
with the candidate's ``system_prompt``, sampling, ``tools`` and ``tool_choice`` over the
session's. Function tools are offered (the session's, or the candidate's own); server and
MCP tools are not: an evaluation runs nothing, so its model sees only what a client would
answer.

What the model answers (its first generation: its words, and the calls it makes) is
compared with what was logged (the words the reply said before any calls, or all of them;
the calls the turn made):

* **changed**: the words differ once normalised (case, punctuation);
* **similarity**: the F1 of their words (1: the same words, in any order; 0: none in
  common), a plain measure anyone can recompute;
* **calls**: each call made (session, turn, name, arguments) and the turns whose called
  tool names differ from the logged ones;
* **time**: to the model's first item and to its last.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.engines import LanguageModel
from pipeline.log import SessionState, fold
from pipeline.tools import CallScope, SessionTools, Toolbox
from schemas import (
    ChatMessage,
    EngineSettings,
    Event,
    GenerationRequest,
    HistorySettings,
    ResponseStarted,
    SessionSettings,
    Settings,
    ToolCallDelta,
)
from voxline.candidates import Candidate, reply_settings, resolved
from voxline.evaluate import loaded_engine, spread
from voxline.evaluate_latency import by_turn_ms
from voxline.word_errors import normalize

__all__ = ["Asked", "answer_measures", "asked_turns", "word_f1"]


@dataclass(frozen=True)
class Asked:
    """One logged turn to ask again: where it is, what was asked (with the session's own
    settings), and what the log says was answered."""

    session_id: str
    turn_id: str
    settings: SessionSettings
    messages: tuple[ChatMessage, ...]
    logged: str
    logged_calls: tuple[str, ...]


def asked_turns(session_id: str, events: Sequence[Event],
                window: HistorySettings) -> list[Asked]:
    """The session's turns whose replies completed, each with the dialogue before it."""
    final = fold(session_id, events)
    state = SessionState(session_id=session_id)
    found: list[Asked] = []
    seen: set[str] = set()
    for event in events:
        turn_id = event.turn_id or ""
        if isinstance(event, ResponseStarted) and turn_id not in seen:
            seen.add(turn_id)
            turn = final.turns.get(turn_id)
            asked = state.turns.get(turn_id)
            if turn is not None and asked is not None and turn.status == "completed" \
                    and asked.user_text and turn.played_ms is None:
                words = turn.assistant_text[:turn.said_before_calls] if turn.tool_calls \
                    else turn.assistant_text
                found.append(Asked(
                    session_id, turn_id, state.settings,
                    (*state.history(window), ChatMessage(role="user", content=asked.user_text)),
                    words, tuple(call.name for call in turn.tool_calls.values())))
        state.apply(event)
    return found


def word_f1(logged: str, answered: str) -> float:
    """The F1 of two texts' words (normalised), as a bag: 1.0 when both are empty."""
    ours, theirs = Counter(normalize(logged)), Counter(normalize(answered))
    if not ours and not theirs:
        return 1.0
    common = sum((ours & theirs).values())
    if not common:
        return 0.0
    precision, recall = common / sum(theirs.values()), common / sum(ours.values())
    return 2 * precision * recall / (precision + recall)


async def answer_measures(
    asked: Sequence[Asked], candidates: Sequence[Candidate], settings: Settings,
    deadline: float, say: Callable[[str], None],
) -> tuple[dict[str, dict[str, Any]], bool]:
    """Per candidate that changes the answers (:attr:`Candidate.tries_answers`), its
    measures; and whether every turn was asked before ``deadline``."""
    found: dict[str, dict[str, Any]] = {}
    complete = True
    for candidate in candidates:
        if not candidate.tries_answers:
            continue
        llm = await _load(candidate.llm, settings)
        try:
            rows, finished = await _ask(llm, candidate, asked, deadline)
        finally:
            await llm.close()
        complete = complete and finished
        found[candidate.name] = _measures(rows)
        say(f"{candidate.name}: {len(rows)} turn(s) answered again")
    return found, complete


async def _load(choice: EngineSettings | None, settings: Settings) -> LanguageModel:
    return await loaded_engine("llm", resolved(choice, settings.llm), LanguageModel)


@dataclass(frozen=True)
class _Answer:
    asked: Asked
    words: str
    calls: tuple[tuple[str, str], ...]
    first_ms: float | None
    total_ms: float


async def _ask(llm: LanguageModel, candidate: Candidate, asked: Sequence[Asked],
               deadline: float) -> tuple[list[_Answer], bool]:
    rows: list[_Answer] = []
    for turn in asked:
        if time.monotonic() > deadline:
            return rows, False
        settings = turn.settings.merged(reply_settings(candidate.reply_patch))
        tools = SessionTools(Toolbox(), settings, CallScope(turn.session_id, turn.turn_id))
        messages = (ChatMessage(role="system", content=settings.system_prompt),
                    *turn.messages[1:])  # the history's first message is the system prompt
        request = GenerationRequest(
            request_id=f"evaluate:{turn.session_id}:{turn.turn_id}", messages=messages,
            sampling=settings.sampling, tools=tools.functions, tool_choice=tools.choice)
        words: list[str] = []
        calls: dict[int, list[str]] = {}
        began, first = time.perf_counter(), None
        async for item in llm.generate(request):
            first = first if first is not None else (time.perf_counter() - began) * 1000
            if isinstance(item, ToolCallDelta):
                name, arguments = calls.setdefault(item.index, ["", ""])
                calls[item.index] = [item.name or name, arguments + item.arguments]
            else:
                words.append(item)
        rows.append(_Answer(turn, "".join(words),
                            tuple((name, arguments) for name, arguments in calls.values()),
                            first, (time.perf_counter() - began) * 1000))
    return rows, True


def _measures(rows: list[_Answer]) -> dict[str, Any]:
    scores = [word_f1(row.asked.logged, row.words) for row in rows]
    changed = [row for row in rows if normalize(row.asked.logged) != normalize(row.words)]
    calls_changed = [row for row in rows if sorted(name for name, _ in row.calls)
                     != sorted(row.asked.logged_calls)]
    return {
        "turns": len(rows),
        "changed": len(changed),
        "changed_rate": round(len(changed) / len(rows), 4) if rows else None,
        "similarity": round(sum(scores) / len(scores), 4) if scores else None,
        "calls_made": sum(len(row.calls) for row in rows),
        "calls_logged": sum(len(row.asked.logged_calls) for row in rows),
        "calls_changed": len(calls_changed),
        "calls": [{"session_id": row.asked.session_id, "turn_id": row.asked.turn_id,
                   "name": name, "arguments": arguments}
                  for row in rows for name, arguments in row.calls][:20],
        "first_item_ms": spread([row.first_ms for row in rows if row.first_ms is not None]),
        "answer_ms": spread([row.total_ms for row in rows]),
        "by_turn_ms": by_turn_ms(((row.asked.session_id, row.asked.turn_id), row.first_ms)
                                 for row in rows),
        "examples": [{"session_id": row.asked.session_id, "turn_id": row.asked.turn_id,
                      "logged": row.asked.logged, "answered": row.words,
                      "similarity": round(word_f1(row.asked.logged, row.words), 4)}
                     for row in changed][:5],
    }
