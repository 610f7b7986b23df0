"""A live session under the replica's turn limit: a typed turn past it is refused with an
``overloaded`` error event before anything of the turn is appended, and so is a spoken one
when it may not wait (``voice_turn_wait_ms`` 0, or the queue full); a spoken turn that may
wait is answered once a place is free, or fails ``overloaded`` after its wait; the
session goes on, a barge-in reuses the place of the reply it interrupts, and a reply that
has ended has given its place back (a client answering ``response.done`` at once is not
refused)."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.log import EventLog
from pipeline.session import Admission, LiveSession, Permit
from schemas import AdmissionSettings, ErrorCode, OverloadedError, SessionSettings
from tests.support.audio_fixtures import tone
from tests.support.engines import ScriptedLLM
from tests.support.sessions import engines
from tests.support.waiting import until

pytestmark = pytest.mark.redis

TOKENS = ["Hello ", "there. ", "How ", "are ", "you? "]


async def speak(session: LiveSession) -> None:
    utterance = tone(0.64, True) + tone(0.832, False)
    for start in range(0, len(utterance), 640):
        await session.push_audio(utterance[start : start + 640])
    await session.commit_audio()


async def test_a_spoken_turn_past_the_limit_is_an_overloaded_event(event_log: EventLog) -> None:
    admission = Admission(AdmissionSettings(max_turns=1, retry_after_ms=700,
                                            voice_turn_wait_ms=0))
    busy = admission.acquire("turns")  # another session holds the only place
    session = await LiveSession.open("voice", event_log, engines(), create=SessionSettings(),
                                     admission=admission)
    await speak(session)
    log = await event_log.read_all("voice")
    types = [e.type for e in log]
    assert "input.audio" not in types and "response.started" not in types
    [error] = [e for e in log if e.type == "error"]
    assert error.data.code is ErrorCode.OVERLOADED  # type: ignore[union-attr]
    assert error.data.details["retry_after_ms"] == 700  # type: ignore[union-attr]
    busy.release()
    await session.submit_text("And now?")  # the place is free: the session goes on
    await session.wait_response()
    assert admission.in_use("turns") == 0
    log = await event_log.read_all("voice")
    assert log[-1].type == "response.done"
    [started] = [e for e in log if e.type == "response.started"]
    assert started.data.waited_ms is None  # type: ignore[union-attr]  # it did not wait
    await session.close()


async def spoken_past_the_limit(event_log: EventLog, session_id: str, wait_ms: int,
                                ) -> tuple[Admission, Permit, LiveSession]:
    """A session whose spoken turn finds the only place taken (``busy``, returned)."""
    admission = Admission(AdmissionSettings(max_turns=1, voice_turn_wait_ms=wait_ms))
    busy = admission.acquire("turns")
    session = await LiveSession.open(session_id, event_log, engines(),
                                     create=SessionSettings(), admission=admission)
    await speak(session)
    return admission, busy, session


async def test_a_spoken_turn_waits_for_a_place_and_is_answered(event_log: EventLog) -> None:
    admission, busy, session = await spoken_past_the_limit(event_log, "patient", 30_000)
    await until(lambda: admission.waiting("turns") == 1, "the turn waits")
    types = [e.type for e in await event_log.read_all("patient")]
    assert "input.audio" in types and "response.started" not in types and "error" not in types
    await asyncio.sleep(0.05)
    busy.release()  # the place passes to the waiting turn
    await session.wait_response()
    log = await event_log.read_all("patient")
    assert log[-1].type == "response.done" and "error" not in [e.type for e in log]
    # the reply says how long its turn waited (the runner's timeline books it apart)
    [started] = [e for e in log if e.type == "response.started"]
    assert started.data.waited_ms >= 50  # type: ignore[union-attr,operator]
    assert admission.in_use("turns") == 0 and admission.waiting("turns") == 0
    assert admission.refused["turns"] == 0
    await session.close()


async def test_a_spoken_turn_that_waited_too_long_fails_overloaded(event_log: EventLog) -> None:
    admission, busy, session = await spoken_past_the_limit(event_log, "late", 50)
    await session.wait_response()
    log = await event_log.read_all("late")
    [audio] = [e for e in log if e.type == "input.audio"]
    [error] = [e for e in log if e.type == "error"]
    assert error.data.code is ErrorCode.OVERLOADED  # type: ignore[union-attr]
    assert error.turn_id == audio.turn_id and "response.started" not in [e.type for e in log]
    assert admission.in_use("turns") == 1 and admission.waiting("turns") == 0
    assert admission.refused["turns"] == 1
    busy.release()
    await session.submit_text("And now?")  # the session goes on
    await session.wait_response()
    assert (await event_log.read_all("late"))[-1].type == "response.done"
    await session.close()


async def test_closing_a_session_gives_up_its_turns_wait(event_log: EventLog) -> None:
    admission, busy, session = await spoken_past_the_limit(event_log, "gone", 30_000)
    await until(lambda: admission.waiting("turns") == 1, "the turn waits")
    await asyncio.wait_for(session.close(), 5)  # does not wait out the 30 s
    assert admission.waiting("turns") == 0 and admission.in_use("turns") == 1
    log = await event_log.read_all("gone")
    [discarded] = [e for e in log if e.type == "speculation.discarded"]  # its prepared reply
    assert discarded.data.reason == "closed"  # type: ignore[union-attr]
    assert not [e for e in log if e.type.startswith("response.") or e.type == "error"]
    busy.release()
    assert admission.in_use("turns") == 0  # no waiter took the place


async def test_a_barge_in_takes_the_place_of_the_reply_it_cancels(event_log: EventLog) -> None:
    admission = Admission(AdmissionSettings(max_turns=1))
    llm = ScriptedLLM(TOKENS, gate_at=1)
    session = await LiveSession.open("barge", event_log, engines(llm=llm),
                                     create=SessionSettings(), admission=admission)
    await session.submit_text("Tell me a story.")
    assert admission.in_use("turns") == 1
    llm.gate.set()
    await session.submit_text("Stop, another question.")  # cancels the first, not refused
    await session.wait_response()
    assert admission.in_use("turns") == 0
    other = await LiveSession.open("other", event_log, engines(llm=llm),
                                   create=SessionSettings(), admission=admission)
    llm.gate.clear()
    await session.submit_text("One more.")
    with pytest.raises(OverloadedError):
        await other.submit_text("Me too.")
    assert [e.type for e in await event_log.read_all("other")] == ["session.created"]
    llm.gate.set()
    await session.wait_response()
    await session.close()
    await other.close()


async def test_a_turn_sent_the_moment_the_reply_ended_is_not_refused(
        event_log: EventLog) -> None:
    # The place went back in a done-callback of the reply's task, which the loop runs one
    # step after the task ends: a client's next turn handled in that step (it had read
    # response.done already) was refused with ``overloaded`` under max_turns=1, and a
    # client waiting for that turn's reply waited forever.
    admission = Admission(AdmissionSettings(max_turns=1))
    session = await LiveSession.open("next", event_log, engines(llm=ScriptedLLM(TOKENS)),
                                     create=SessionSettings(), admission=admission)
    await session.submit_text("Hello?")
    # one loop step at a time: this task wakes in the step the reply's task ends, or in
    # the next, before the callbacks that step scheduled
    while session.responding:  # noqa: ASYNC110 (stepping the loop is the point)
        await asyncio.sleep(0)
    assert admission.in_use("turns") == 0
    await session.submit_text("And then?")  # not refused
    await session.wait_response()
    log = await event_log.read_all("next")
    assert [e.type for e in log].count("response.done") == 2
    assert "error" not in [e.type for e in log]
    await session.close()
