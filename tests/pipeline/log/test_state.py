"""The session state fold."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

import schemas as s
from pipeline.log import EventLog, fold
from tests.support.event_samples import sample_events


def turn_events(session: str) -> list[s.EventBase]:
    return [
        s.SessionCreated(
            session_id=session, data=s.SessionCreatedData(settings=s.SessionSettings())
        ),
        s.InputText(session_id=session, turn_id="t1", data=s.InputTextData(text="Hi")),
        s.ResponseStarted(session_id=session, turn_id="t1"),
        s.ResponseTextDelta(session_id=session, turn_id="t1", data=s.TextDeltaData(delta="Hello ")),
        s.ResponseTextDelta(session_id=session, turn_id="t1", data=s.TextDeltaData(delta="there.")),
        s.ResponseDone(
            session_id=session, turn_id="t1", data=s.ResponseDoneData(text="Hello there.")
        ),
        s.InputText(session_id=session, turn_id="t2", data=s.InputTextData(text="Tell me more")),
        s.ResponseStarted(session_id=session, turn_id="t2"),
        s.ResponseTextDelta(
            session_id=session, turn_id="t2", data=s.TextDeltaData(delta="Once upon")
        ),
        s.ResponseCancelled(
            session_id=session, turn_id="t2", data=s.ResponseCancelledData(text_sent="Once")
        ),
        s.InputText(session_id=session, turn_id="t3", data=s.InputTextData(text="Stop")),
    ]


def test_history_uses_what_was_heard() -> None:
    state = fold("h", turn_events("h"))  # type: ignore[arg-type]
    assert [(m.role, m.content) for m in state.history()] == [
        ("system", s.SessionSettings().system_prompt),
        ("user", "Hi"),
        ("assistant", "Hello there."),
        ("user", "Tell me more"),
        ("assistant", "Once"),
    ]
    assert state.open_turn is not None and state.open_turn.turn_id == "t3"
    assert state.turns["t2"].status == "cancelled"


def many_turns(session: str, n: int) -> list[s.EventBase]:
    """``n`` answered turns, an unanswered one (an empty transcript) among them, and an
    open one at the end."""
    events: list[s.EventBase] = [s.SessionCreated(
        session_id=session, data=s.SessionCreatedData(settings=s.SessionSettings()))]
    for i in range(n):
        turn = f"t{i}"
        events.append(s.InputText(session_id=session, turn_id=turn,
                                  data=s.InputTextData(text=f"question {i}")))
        if i == n - 3:
            continue  # never answered: stays open
        events.append(s.ResponseStarted(session_id=session, turn_id=turn))
        events.append(s.ResponseDone(session_id=session, turn_id=turn,
                                     data=s.ResponseDoneData(text=f"answer {i}")))
    events.append(s.InputText(session_id=session, turn_id="last",
                              data=s.InputTextData(text="and now?")))
    return events


@pytest.mark.parametrize("keep", [0, 1, 3, 20])
def test_forgetting_turns_keeps_the_history_and_the_open_turn(keep: int) -> None:
    window = s.HistorySettings(max_turns=keep)
    full = fold("f", many_turns("f", 12))  # type: ignore[arg-type]
    state = fold("f", many_turns("f", 12))  # type: ignore[arg-type]
    state.forget_turns(window)
    assert state.history(window) == full.history(window)
    assert state.open_turn == full.open_turn and state.open_turn is not None
    shown = (len(full.history(window)) - 1) // 2
    assert shown <= keep
    assert len(state.turns) == shown + 1
    assert list(state.turns) == [t for t in full.turns if t in state.turns]  # in order


def test_forgetting_turns_keeps_a_turn_still_responding() -> None:
    events = many_turns("r", 6)
    events.insert(2, s.ResponseStarted(session_id="r", turn_id="t0"))  # t0 again responding
    events = [e for e in events if not (e.turn_id == "t0" and e.type == "response.done")]
    state = fold("r", events)  # type: ignore[arg-type]
    state.forget_turns(s.HistorySettings(max_turns=1))
    assert set(state.turns) == {"t0", "t5", "last"}


def test_a_refined_transcript_replaces_the_heard_one_unless_empty() -> None:
    def refined(text: str) -> s.EventBase:
        data = s.TranscriptRefinedData(text=text, source_event_id="1-0")
        return s.TranscriptRefined(session_id="r", turn_id="t1", data=data)

    events = turn_events("r")
    state = fold("r", [*events, refined("Hi!")])  # type: ignore[list-item]
    assert state.turns["t1"].user_text == "Hi!"
    state = fold("r", [*events, refined("  ")])  # type: ignore[list-item]
    assert state.turns["t1"].user_text == "Hi"


@pytest.mark.redis
async def test_fold_is_the_same_twice_and_in_a_fresh_process(
    event_log: EventLog, redis_url: str
) -> None:
    await event_log.append_batch(turn_events("fold") + sample_events("fold", turn_id="t9"))
    events = await event_log.read_all("fold")
    first = fold("fold", events).model_dump_json()
    assert fold("fold", await event_log.read_all("fold")).model_dump_json() == first
    code = (
        "import asyncio, sys\n"
        "from pipeline.log.eventlog import EventLog\n"
        "from pipeline.log.redis_client import create_redis\n"
        "from pipeline.log.state import fold\n"
        "from schemas import EventLogSettings\n"
        "async def main():\n"
        f"    r = create_redis({redis_url!r})\n"
        f"    log = EventLog(r, EventLogSettings(key_prefix={event_log.settings.key_prefix!r}))\n"
        "    print(fold('fold', await log.read_all('fold')).model_dump_json())\n"
        "    await r.aclose()\n"
        "asyncio.run(main())\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE
    )
    stdout, _ = await proc.communicate()
    assert proc.returncode == 0
    assert json.loads(stdout) == json.loads(first)
