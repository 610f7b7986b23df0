"""Speech over a reply with ``interruptions: confirmed``: the reply pauses at once, and
resumes for a backchannel, a cough or a noise, or is cancelled for a real interruption.

The classifier on its own (examples and properties), then a live session with a loudness
"VAD" and a scripted transcriber; the tests wait on the log, never on the clock.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.log import EventLog
from pipeline.session import LiveSession, SessionEngines
from pipeline.session.voice_turns import HELD_PAUSE_MS
from pipeline.turntaking.backchannel import (
    BACKCHANNEL_WORDS,
    MAX_BACKCHANNEL_WORDS,
    backchannel_prompt,
    is_backchannel,
)
from schemas import Event, ResponseAudioChunk, SessionSettings
from tests.support.audio_fixtures import tone
from tests.support.engines import EnergyVAD, ScriptedLLM, ScriptedSTT, ScriptedTTS
from tests.support.sessions import REPLY, collect_until
from tests.support.waiting import until


@pytest.mark.parametrize("text", [
    "Mm-hmm.", "Uh-huh", "yeah, yeah", "Right.", "Okay!", "I see.", "Got it", "Ja, genau.",
    "", "  ...  ",  # no words: a cough or a noise
    "M-M-M.", "Mmmhmm", "hm-hm-hm",  # a hum as Whisper spells one now and then
])
def test_backchannels(text: str) -> None:
    assert is_backchannel(text)


@pytest.mark.parametrize("text", [
    "Wait.", "Stop!", "What about Rome?", "Yeah, but what about Rome?", "No.",
    "yeah yeah yeah yeah yeah",  # more than a listener says in passing
    "Thank you.",  # Whisper's favourite hallucination is not waved through
    "Uh-uh.", "M-M-A", "h",  # "no"; a hum with another letter; not a hum
])
def test_interruptions(text: str) -> None:
    assert not is_backchannel(text)


@pytest.mark.parametrize("language", ["en", "en-US", "de", "DE-at"])
def test_the_prompt_is_made_of_backchannels_of_its_language(language: str) -> None:
    """Whisper's initial prompt steers spelling towards it: it must itself read as a
    backchannel, or it would steer towards interruptions."""
    prompt = backchannel_prompt(language)
    assert prompt
    assert all(is_backchannel(part) for part in prompt.split(". "))
    assert backchannel_prompt("fr") is None  # no prompt rather than another language's


_WORDS = sorted(BACKCHANNEL_WORDS)


@given(st.lists(st.sampled_from(_WORDS), max_size=MAX_BACKCHANNEL_WORDS),
       st.sampled_from([" ", ", ", ". ", "! ", "? "]))
def test_any_few_backchannel_words_are_a_backchannel(words: list[str], sep: str) -> None:
    assert is_backchannel(sep.join(w.capitalize() for w in words))


@given(st.lists(st.sampled_from(_WORDS), max_size=MAX_BACKCHANNEL_WORDS - 1),
       st.text(alphabet="bcdfqvxz", min_size=2, max_size=8), st.integers(0, 3))
def test_one_other_word_makes_it_an_interruption(words: list[str], other: str, at: int) -> None:
    words.insert(min(at, len(words)), other)
    assert not is_backchannel(" ".join(words))


pytestmark = pytest.mark.redis
CONFIRMED = SessionSettings(interruptions="confirmed")
HELD = ("response.paused", "input.speech_started", "input.speech_stopped", "response.resumed")


def _engines(llm: ScriptedLLM, stt: ScriptedSTT, tts: ScriptedTTS | None = None) -> SessionEngines:
    return SessionEngines(llm=llm, tts=tts or ScriptedTTS(sample_rate=16000), stt=stt,
                          vad=EnergyVAD())


async def _push(session: LiveSession, audio: bytes) -> None:
    """``audio`` in 20 ms frames, as a client sends them."""
    for start in range(0, len(audio), 640):
        await session.push_audio(audio[start : start + 640])


async def _speak(session: LiveSession, seconds: float) -> None:
    """Speech of ``seconds``, then the silence that ends it (end_of_speech_ms 500)."""
    audio = tone(seconds, True) + tone(0.8, False)
    await _push(session, audio)


def _stalling() -> tuple[ScriptedLLM, asyncio.Event]:
    """An LLM whose reply stalls after three tokens, and the event set when it has."""
    written = asyncio.Event()
    llm = ScriptedLLM(REPLY, gate_at=3, on_token=lambda i: i == 2 and written.set())
    return llm, written


async def _writing(written: asyncio.Event) -> None:
    """Wait until the reply stalls at its gate (still being written)."""
    async with asyncio.timeout(10):
        await written.wait()


def _chunks(seen: list[Event]) -> list[int]:
    return [e.data.chunk_index for e in seen if isinstance(e, ResponseAudioChunk)]


async def test_a_backchannel_pauses_the_reply_and_it_resumes(event_log: EventLog) -> None:
    (llm, written), stt = _stalling(), ScriptedSTT("Mm-hmm.")
    session = await LiveSession.open("bc", event_log, _engines(llm, stt), create=CONFIRMED)
    turn = await session.submit_text("Tell me about Paris")
    await _writing(written)
    await _speak(session, 0.4)
    seen = await collect_until(session, "input.speech_stopped")
    types = [e.type for e in seen]
    held = [e for e in seen if e.type in HELD]  # the reply's own events come between
    # resumed at the speech's first pause, without waiting for the end of its turn
    assert [e.type for e in held] == ["response.paused", "input.speech_started",
                                      "response.resumed", "input.speech_stopped"]
    assert held[0].turn_id == held[2].turn_id == turn
    assert held[2].data.transcript == "Mm-hmm."  # type: ignore[union-attr]
    assert held[3].turn_id is None  # the backchannel is no turn
    assert "response.cancelled" not in types and session.responding
    llm.gate.set()
    seen += await collect_until(session, "response.done")
    # every chunk once, in order: the reply went on being written while it was paused
    assert _chunks(seen) == list(range(len(_chunks(seen))))
    assert seen[-1].data.status == "completed"  # type: ignore[union-attr]
    assert len(stt.requests) == 1  # the backchannel's transcript only: no turn was made
    assert stt.requests[0].quick  # a judgement: the reply is silent until it is done
    assert stt.requests[0].prompt == backchannel_prompt("en")  # hums heard as hums
    assert list(session.state.turns) == [turn]
    await session.close()


async def test_speech_over_a_held_reply_is_judged_at_a_shorter_pause(
    event_log: EventLog,
) -> None:
    """The held reply is silent until the speech's first pause is judged, so that pause
    comes after HELD_PAUSE_MS of silence (two 32 ms frames), not preemptive_pause_ms."""
    (llm, written), stt = _stalling(), ScriptedSTT("Mm-hmm.")
    settings = CONFIRMED.model_copy(update={"preemptive_pause_ms": 200})
    session = await LiveSession.open("bc-soon", event_log, _engines(llm, stt), create=settings)
    await session.submit_text("Tell me about Paris")
    await _writing(written)
    audio = tone(0.4, True) + tone(HELD_PAUSE_MS / 1000 + 0.016, False)  # and no more
    await _push(session, audio)
    async with asyncio.timeout(10):  # a hang guard: without the shorter pause, none came
        seen = await collect_until(session, "response.resumed")
    assert seen[-1].data.transcript == "Mm-hmm."  # type: ignore[union-attr]
    assert [r.quick for r in stt.requests] == [True]
    await session.close()


@pytest.mark.parametrize("auto_response", [False, True])
async def test_only_a_response_that_replies_is_a_reply_to_hold(
    event_log: EventLog, auto_response: bool
) -> None:
    """auto_response off, a turn being transcribed gets no reply until response.create:
    speech then holds nothing ("Yes." is the next turn, not a backchannel to a reply
    that is not coming). Once response.create asks for the reply, or with auto_response
    on, the turn in transcription is a reply on its way."""
    stt = ScriptedSTT("Yes.", gated=True)
    settings = CONFIRMED.model_copy(update={"auto_response": auto_response})
    session = await LiveSession.open(f"bc-auto-{auto_response}", event_log,
                                     _engines(ScriptedLLM(REPLY), stt), create=settings)
    await _speak(session, 0.4)
    # with auto_response on, the pause before the end may already have entered the gate (a
    # preemptive reply, no response yet): the turn's end then takes that transcription over
    await until(lambda: stt.entered == 1 and session.responding,
                "the turn transcribed, at the gate")
    assert stt.entered == 1
    assert session.responder.replying is auto_response
    if not auto_response:
        await session.create_response()  # asked for while it is transcribed
        assert session.responder.replying
    stt.gate.set()
    await session.wait_response()
    assert not session.responder.replying
    await session.close()


async def test_speech_going_on_after_a_resume_pauses_the_reply_again(
    event_log: EventLog,
) -> None:
    """"Yeah …" (resumed at the pause) "… yeah": paused again, judged again at its end."""
    (llm, written), stt = _stalling(), ScriptedSTT("Yeah.")
    session = await LiveSession.open("bc-again", event_log, _engines(llm, stt), create=CONFIRMED)
    turn = await session.submit_text("Tell me about Paris")
    await _writing(written)
    audio = tone(0.35, True) + tone(0.25, False) + tone(0.35, True) + tone(0.8, False)
    await _push(session, audio)
    seen = await collect_until(session, "input.speech_stopped")
    held = [e for e in seen if e.type in HELD]
    assert [e.type for e in held] == [
        "response.paused", "input.speech_started", "response.resumed", "response.paused",
        "response.resumed", "input.speech_stopped"]
    assert {e.turn_id for e in held if e.type.startswith("response.")} == {turn}
    assert session.responding
    assert len(stt.requests) == 2  # each pause judged; no turn transcribed
    await session.close()


async def test_a_real_interruption_cancels_the_reply_and_is_the_next_turn(
    event_log: EventLog,
) -> None:
    (llm, written), stt = _stalling(), ScriptedSTT("Wait, what about Rome?")
    session = await LiveSession.open("bc-int", event_log, _engines(llm, stt), create=CONFIRMED)
    turn = await session.submit_text("Tell me about Paris")
    await _writing(written)
    await _speak(session, 0.4)
    seen = await collect_until(session, "transcript.final")
    types = [e.type for e in seen]
    assert "response.resumed" not in types
    cancelled = next(e for e in seen if e.type == "response.cancelled")
    assert cancelled.turn_id == turn and cancelled.data.reason == "barge_in"  # type: ignore[union-attr]
    assert types.index("response.cancelled") < types.index("input.audio")
    assert seen[-1].data.text == "Wait, what about Rome?"  # type: ignore[union-attr]
    assert llm.records[0].outcome in ("cancelled", "closed")  # the LLM's work stopped
    await session.close()


async def test_an_interruption_is_known_at_its_first_pause_and_its_reply_prepared_there(
    event_log: EventLog,
) -> None:
    """Words that are no backchannel at the speech's first pause cancel the reply there,
    before the speech ends, and that pause prepares the new turn's reply (a preemptive
    turn), which the end of the speech adopts: no transcription waits for the end."""
    (llm, written), stt = _stalling(), ScriptedSTT("Wait, what about Rome?")
    session = await LiveSession.open("bc-early", event_log, _engines(llm, stt),
                                     create=CONFIRMED)
    turn = await session.submit_text("Tell me about Paris")
    await _writing(written)
    await _speak(session, 0.4)
    seen = await collect_until(session, "transcript.final")
    types = [e.type for e in seen]
    cancelled = types.index("response.cancelled")
    assert seen[cancelled].turn_id == turn
    assert cancelled < types.index("input.speech_stopped")  # known before the speech ended
    assert seen[-1].data.text == "Wait, what about Rome?"  # type: ignore[union-attr]
    # the pause judged (quick), the pause's turn prepared (its transcript is the turn's);
    # confirmed only at the end, the end was judged and the turn transcribed again
    assert [r.quick for r in stt.requests] == [True, False]
    await session.close()


async def test_long_speech_interrupts_whatever_it_says(event_log: EventLog) -> None:
    (llm, written), stt = _stalling(), ScriptedSTT("Mm-hmm.")
    settings = CONFIRMED.model_copy(update={"backchannel_max_ms": 600})
    session = await LiveSession.open("bc-long", event_log, _engines(llm, stt), create=settings)
    await session.submit_text("Tell me about Paris")
    await _writing(written)
    await _speak(session, 1.0)
    seen = await collect_until(session, "transcript.final")
    assert "response.cancelled" in [e.type for e in seen]
    assert len(stt.requests) == 1  # not judged by its words: only the turn's transcript
    await session.close()


async def test_a_reply_still_playing_is_paused_too(event_log: EventLog) -> None:
    """Written in full but not yet played (its audio is longer than the time since its
    first chunk): "mm-hm" resumes it; no reply is running, so none is cancelled."""
    llm, stt = ScriptedLLM(REPLY), ScriptedSTT("Uh-huh.")
    tts = ScriptedTTS(sample_rate=16000, chunk_bytes=16000 * 2 * 10)  # 10 s a chunk
    session = await LiveSession.open("bc-play", event_log, _engines(llm, stt, tts),
                                     create=CONFIRMED)
    turn = await session.submit_text("Tell me about Paris")
    await session.wait_response()
    await _speak(session, 0.4)
    seen = await collect_until(session, "input.speech_stopped")
    assert [e.type for e in seen if e.type in HELD] == [
        "response.paused", "input.speech_started", "response.resumed", "input.speech_stopped"]
    assert seen[-1].turn_id is None and list(session.state.turns) == [turn]
    await session.close()


async def test_input_cleared_while_a_reply_is_held_resumes_it(event_log: EventLog) -> None:
    (llm, written), stt = _stalling(), ScriptedSTT("Wait.")
    session = await LiveSession.open("bc-clear", event_log, _engines(llm, stt), create=CONFIRMED)
    turn = await session.submit_text("Tell me about Paris")
    await _writing(written)
    audio = tone(0.4, True)  # speech, and no end to it yet
    await _push(session, audio)
    await collect_until(session, "response.paused")
    await session.clear_audio()
    [resumed] = [e for e in await collect_until(session, "response.resumed")
                 if e.type == "response.resumed"]
    assert resumed.turn_id == turn and session.responding and not stt.requests
    await session.close()


async def test_a_click_pauses_the_reply_for_a_moment_only(event_log: EventLog) -> None:
    """Held at the first loud frame (before VAD could confirm speech); a run too short to
    be speech plays the reply on at once, with no transcription and no turn."""
    (llm, written), stt = _stalling(), ScriptedSTT("Wait.")
    session = await LiveSession.open("bc-click", event_log, _engines(llm, stt), create=CONFIRMED)
    turn = await session.submit_text("Tell me about Paris")
    await _writing(written)
    audio = tone(0.1, True) + tone(0.5, False)  # 100 ms: under min_speech_ms
    await _push(session, audio)
    seen = await collect_until(session, "response.resumed")
    held = [e for e in seen if e.type in HELD]
    assert [e.type for e in held] == ["response.paused", "response.resumed"]
    assert {e.turn_id for e in held} == {turn} and held[1].data.transcript == ""  # type: ignore[union-attr]
    assert not stt.requests and session.responding
    await session.close()


async def test_immediate_is_the_old_rule(event_log: EventLog) -> None:
    (llm, written), stt = _stalling(), ScriptedSTT("Mm-hmm.")
    session = await LiveSession.open("bc-now", event_log, _engines(llm, stt),
                                     create=SessionSettings(interruptions="immediate"))
    await session.submit_text("Tell me about Paris")
    await _writing(written)
    await _speak(session, 0.4)
    seen = await collect_until(session, "input.speech_started")
    assert [e.type for e in seen][-2:] == ["response.cancelled", "input.speech_started"]
    await session.close()


async def test_a_commit_during_an_onset_leaves_no_resume_of_the_reply_it_cancelled(
    event_log: EventLog,
) -> None:
    """Push-to-talk over a reply: the reply pauses at the first loud frame, the commit makes
    that audio a turn and cancels the reply. The commit resets the detector, so VAD's word
    on that onset never comes; a later click, with no reply over it, must not resume the
    cancelled reply (``response.resumed`` after its ``response.cancelled``)."""
    (llm, written), stt = _stalling(), ScriptedSTT("Wait.")
    manual = SessionSettings(interruptions="confirmed", auto_response=False)
    session = await LiveSession.open("bc-ptt", event_log, _engines(llm, stt), create=manual)
    turn = await session.submit_text("Tell me about Paris", respond=True)
    await _writing(written)
    pressed = tone(0.1, True)  # under min_speech_ms: an onset VAD has not confirmed yet
    await _push(session, pressed)
    await collect_until(session, "response.paused")
    await session.commit_audio()
    seen = await collect_until(session, "transcript.final")
    assert [e.turn_id for e in seen if e.type == "response.cancelled"] == [turn]
    click = tone(0.1, True) + tone(0.5, False)  # no reply to hold now: nothing to pause
    await _push(session, click)
    await session.commit_audio()  # returns once every frame before it was endpointed
    after = await collect_until(session, "transcript.final")
    assert [e for e in after if e.type in ("response.resumed", "response.paused")] == []
    await session.close()
