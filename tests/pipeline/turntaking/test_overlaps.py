"""Speech over a reply read back from real logs (a live session with a loudness "VAD" and
a scripted transcriber, as in ``tests/pipeline/session/test_backchannel.py``), then
judged again under other settings."""

from __future__ import annotations

import pytest

from pipeline.log import EventLog
from pipeline.turntaking.overlaps import (
    Overlap,
    judge_overlap,
    logged_overlaps,
    overlap_measures,
)
from schemas import (
    Event,
    ResponseCancelled,
    ResponseHeldData,
    ResponsePaused,
    ResponseResumed,
    SessionSettings,
    SpeechBoundaryData,
    SpeechStarted,
    SpeechStopped,
    SpeechStoppedData,
)
from tests.support.audio_fixtures import tone
from tests.support.sessions import spoken_over_reply

pytestmark = pytest.mark.redis
CONFIRMED = SessionSettings(interruptions="confirmed")


async def _spoken_over(log: EventLog, name: str, heard: str, audio: bytes,
                       settings: SessionSettings = CONFIRMED, until: str = "transcript.final",
                       *, written: bool = False) -> list[Event]:
    return await spoken_over_reply(log, name, heard, audio, settings, until, written=written)


async def test_a_backchannel_and_a_barge_in_are_read_back_as_logged(event_log: EventLog) -> None:
    nod = await _spoken_over(event_log, "ov-nod", "Mm-hmm.",
                             tone(0.4, True) + tone(0.8, False), until="input.speech_stopped")
    [overlap] = logged_overlaps(nod)
    assert overlap.outcome == "backchannel" and overlap.transcript == "Mm-hmm."
    assert overlap.turn_id is None and not overlap.audio  # no turn: its audio is not kept
    assert 300 <= overlap.duration_ms <= 500  # 0.4 s of speech, to a VAD frame or so

    cut = await _spoken_over(event_log, "ov-cut", "Wait, what about Rome?",
                             tone(0.4, True) + tone(0.8, False))
    [overlap] = logged_overlaps(cut)
    assert overlap.outcome == "barge_in" and overlap.transcript == "Wait, what about Rome?"
    assert overlap.turn_id is not None and overlap.audio  # the next turn, its audio kept
    cancelled = next(e for e in cut if e.type == "response.cancelled")
    assert overlap.reply_turn_id == cancelled.turn_id  # the reply it cut
    assert overlap_measures([overlap]) == {"overlaps": 1, "backchannels": 0, "barge_ins": 1,
                                           "overlaps_changed": 0}


async def test_speech_going_on_after_a_resume_is_one_overlap(event_log: EventLog) -> None:
    """ "Yeah …" (resumed at its pause) "… yeah" (paused again, resumed at its end)."""
    again = await _spoken_over(
        event_log, "ov-again", "Yeah.",
        tone(0.35, True) + tone(0.25, False) + tone(0.35, True) + tone(0.8, False),
        until="input.speech_stopped")
    [overlap] = logged_overlaps(again)
    assert overlap.outcome == "backchannel"
    assert overlap.duration_ms >= 800  # both halves and the gap between


async def test_an_immediate_barge_in_is_read_back(event_log: EventLog) -> None:
    """``immediate``: the cancel comes before the speech it was for."""
    events = await _spoken_over(event_log, "ov-now", "Mm-hmm.",
                                tone(0.4, True) + tone(0.8, False),
                                SessionSettings(interruptions="immediate"))
    types = [e.type for e in events]
    assert types.index("response.cancelled") < types.index("input.speech_started")
    [overlap] = logged_overlaps(events)
    assert overlap.outcome == "barge_in" and overlap.transcript == "Mm-hmm."
    assert 300 <= overlap.duration_ms <= 500
    # confirmed, that hum would have let the reply play on
    assert await judge_overlap(overlap, CONFIRMED) == "backchannel"


async def test_each_overlap_is_judged_again_by_other_settings() -> None:
    nod = Overlap("r1", 1000, 1400, "backchannel", "Mm-hmm.")
    long_nod = Overlap("r2", 5000, 6500, "barge_in", "Mm-hmm.", "t2", b"\x01\x00" * 100)
    assert await judge_overlap(nod, CONFIRMED) == "backchannel"
    assert await judge_overlap(nod, SessionSettings(interruptions="immediate")) == "barge_in"
    assert await judge_overlap(nod, CONFIRMED.model_copy(
        update={"backchannel_max_ms": 300})) == "barge_in"
    assert await judge_overlap(long_nod, CONFIRMED) == "barge_in"  # 1.5 s > 1.2 s
    longer = CONFIRMED.model_copy(update={"backchannel_max_ms": 2000})
    assert await judge_overlap(long_nod, longer) == "backchannel"

    asked: list[int] = []

    async def hears_a_question(audio: bytes, sample_rate: int) -> str:
        asked.append(len(audio))
        return "What about Rome?"

    # another transcriber hears the kept audio; a backchannel's words stay the logged ones
    assert await judge_overlap(long_nod, longer, hears_a_question) == "barge_in"
    assert await judge_overlap(nod, CONFIRMED, hears_a_question) == "backchannel"
    assert asked == [200]
    judged = [await judge_overlap(o, longer) for o in (nod, long_nod)]
    assert overlap_measures([nod, long_nod], judged) == {
        "overlaps": 2, "backchannels": 2, "barge_ins": 0, "overlaps_changed": 1}


def test_a_pause_at_an_onset_that_was_no_speech_is_no_overlap() -> None:
    events: list[Event] = [
        ResponsePaused(session_id="s", turn_id="r", data=ResponseHeldData(audio_ms=100)),
        ResponseResumed(session_id="s", turn_id="r", data=ResponseHeldData(audio_ms=132)),
    ]
    assert logged_overlaps(events) == []


async def test_an_interruption_of_a_reply_written_out_is_a_barge_in(event_log: EventLog) -> None:
    """Its reply written in full (its audio still playing), nothing is left to cancel: no
    response.cancelled, only the next turn."""
    events = await _spoken_over(event_log, "ov-played", "Wait, what about Rome?",
                                tone(0.4, True) + tone(0.8, False), written=True)
    assert "response.paused" in [e.type for e in events]
    assert not [e for e in events if isinstance(e, ResponseCancelled)
                and e.data.reason == "barge_in"]  # (the next turn's reply: at the close)
    [overlap] = logged_overlaps(events)
    assert overlap.outcome == "barge_in" and overlap.transcript == "Wait, what about Rome?"
    assert overlap.turn_id is not None and 300 <= overlap.duration_ms <= 500


def test_a_backchannel_judged_at_its_end_stops_where_it_was_resumed() -> None:
    """Judged at its end, the speech's stop is logged before the resume (the turn less
    utterance first): the next utterance's stop is not taken for its own."""
    held = ResponseHeldData
    events: list[Event] = [
        ResponsePaused(session_id="s", turn_id="r", data=held(audio_ms=1000)),
        SpeechStarted(session_id="s", data=SpeechBoundaryData(audio_ms=1000)),
        SpeechStopped(session_id="s", data=SpeechStoppedData(audio_ms=1350)),
        ResponseResumed(session_id="s", turn_id="r", data=held(audio_ms=1350,
                                                               transcript="Yeah.")),
        SpeechStarted(session_id="s", data=SpeechBoundaryData(audio_ms=5000)),
        SpeechStopped(session_id="s", turn_id="t2", data=SpeechStoppedData(audio_ms=6000)),
    ]
    [overlap] = logged_overlaps(events)
    assert (overlap.outcome, overlap.duration_ms, overlap.transcript) == (
        "backchannel", 350, "Yeah.")
    # resumed at a pause, paused again as it went on, and the log ends there: it stands
    # as judged last, a backchannel still speaking
    going_on = [events[0], events[1], ResponseResumed(
        session_id="s", turn_id="r", data=held(audio_ms=1200, transcript="Yeah")),
        ResponsePaused(session_id="s", turn_id="r", data=held(audio_ms=1300))]
    [overlap] = logged_overlaps(going_on)
    assert (overlap.outcome, overlap.stop_ms) == ("backchannel", None)
