"""``TurnTimeline``: stage latencies from the ``ts`` of a turn's events."""

from __future__ import annotations

import schemas as s
from pipeline.workers import TurnTimeline, playback_stalls

SESSION = "sess-1"
AUDIO = b"\x00\x01" * 16


def speech_stopped(ts: int, turn: str = "t1") -> s.Event:
    return s.SpeechStopped(
        session_id=SESSION, turn_id=turn, ts=ts, data=s.SpeechStoppedData(audio_ms=900)
    )


def input_text(ts: int, turn: str = "t1") -> s.Event:
    return s.InputText(session_id=SESSION, turn_id=turn, ts=ts, data=s.InputTextData(text="Hallo"))


def transcript_final(ts: int, turn: str = "t1") -> s.Event:
    return s.TranscriptFinal(
        session_id=SESSION, turn_id=turn, ts=ts, data=s.TranscriptData(text="hello")
    )


def started(ts: int, turn: str = "t1") -> s.Event:
    return s.ResponseStarted(session_id=SESSION, turn_id=turn, ts=ts)


def delta(ts: int, turn: str = "t1", text: str = "Hi") -> s.Event:
    return s.ResponseTextDelta(
        session_id=SESSION, turn_id=turn, ts=ts, data=s.TextDeltaData(delta=text)
    )


def sentence(ts: int, turn: str = "t1", index: int = 0) -> s.Event:
    return s.ResponseSentence(
        session_id=SESSION, turn_id=turn, ts=ts, data=s.SentenceData(index=index, text="Hi.")
    )


def audio_chunk(ts: int, turn: str = "t1", index: int = 0) -> s.Event:
    return s.ResponseAudioChunk(
        session_id=SESSION,
        turn_id=turn,
        ts=ts,
        data=s.AudioChunkData(sample_rate=22050, sentence_index=0, chunk_index=index, audio=AUDIO),
    )


def done(ts: int, turn: str = "t1") -> s.Event:
    return s.ResponseDone(
        session_id=SESSION, turn_id=turn, ts=ts, data=s.ResponseDoneData(text="Hi.")
    )


def cancelled(ts: int, turn: str = "t1") -> s.Event:
    return s.ResponseCancelled(
        session_id=SESSION,
        turn_id=turn,
        ts=ts,
        data=s.ResponseCancelledData(reason="barge_in", text_sent="Hi", chunks_sent=1),
    )


def voice_turn(turn: str = "t1", t0: int = 1_700_000_000_000) -> list[s.Event]:
    return [
        s.SpeechStarted(
            session_id=SESSION, turn_id=turn, ts=t0 - 900, data=s.SpeechBoundaryData(audio_ms=0)
        ),
        speech_stopped(t0, turn),
        s.TranscriptPartial(
            session_id=SESSION, turn_id=turn, ts=t0 + 50, data=s.TranscriptData(text="hel")
        ),
        transcript_final(t0 + 210, turn),
        started(t0 + 215, turn),
        delta(t0 + 530, turn),
        delta(t0 + 545, turn, " there"),
        sentence(t0 + 600, turn),
        audio_chunk(t0 + 790, turn),
        audio_chunk(t0 + 850, turn, index=1),
        sentence(t0 + 900, turn, index=1),
        s.ResponseAudioDone(
            session_id=SESSION,
            turn_id=turn,
            ts=t0 + 1400,
            data=s.AudioDoneData(sentence_count=2, chunk_count=2),
        ),
        done(t0 + 1450, turn),
    ]


VOICE_STAGES = {
    "stt": 210.0,
    "llm_first_token": 320.0,  # from the final transcript, not from the end of speech
    "first_piece_cut": 70.0,
    "tts_first_chunk": 190.0,
    "time_to_first_audio": 790.0,
    "response_done": 1450.0,
}


def test_voice_turn_stages_are_the_gaps_between_first_events() -> None:
    timeline = TurnTimeline.of(voice_turn())
    assert timeline.turn_id == "t1"
    assert timeline.origin == 1_700_000_000_000
    stages = timeline.stages()
    assert stages == VOICE_STAGES
    assert all(isinstance(v, float) for v in stages.values())


def test_text_turn_measures_from_the_typed_text() -> None:
    t0 = 5_000
    events = [
        input_text(t0),
        started(t0 + 5),
        delta(t0 + 400),
        sentence(t0 + 480),
        audio_chunk(t0 + 700),
        done(t0 + 1000),
    ]
    assert TurnTimeline.of(events).stages() == {
        "llm_first_token": 400.0,
        "first_piece_cut": 80.0,
        "tts_first_chunk": 220.0,
        "time_to_first_audio": 700.0,
        "response_done": 1000.0,
    }


def test_events_of_other_turns_are_ignored() -> None:
    mine = voice_turn("t1", t0=10_000)
    other = voice_turn("t2", t0=10_100)  # overlapping and earlier for some stages
    shuffled = [e for pair in zip(mine, other, strict=True) for e in pair]
    session_wide = s.SessionCreated(
        session_id=SESSION, ts=9_000, data=s.SessionCreatedData(settings=s.SessionSettings())
    )
    events = [session_wide, *shuffled]
    assert TurnTimeline.of(events, turn_id="t1").stages() == VOICE_STAGES
    assert TurnTimeline.of(events, turn_id="t2").stages() == VOICE_STAGES
    # early marks of t2 (its deltas come before t1's) never leak into t1
    t2_first = [delta(10_300, "t2"), *mine]
    assert TurnTimeline.of(t2_first, turn_id="t1").stages() == VOICE_STAGES


def test_default_turn_is_the_first_one_with_an_origin() -> None:
    # t0 only has a reply (its origin is outside the window read); t1 starts first.
    events = [
        delta(100, "t0"),
        done(150, "t0"),
        input_text(1_000, "t1"),
        delta(1_250, "t1"),
        input_text(1_100, "t2"),
        delta(1_120, "t2"),
    ]
    timeline = TurnTimeline.of(events)
    assert timeline.turn_id == "t1"
    assert timeline.stages() == {"llm_first_token": 250.0}


def test_unknown_turn_gives_no_stages() -> None:
    timeline = TurnTimeline.of(voice_turn(), turn_id="nope")
    assert timeline.first == {}
    assert timeline.origin is None
    assert timeline.stages() == {}


def test_no_events_give_no_stages() -> None:
    timeline = TurnTimeline.of([])
    assert timeline.turn_id is None
    assert timeline.stages() == {}


def test_missing_stages_are_left_out() -> None:
    # cancelled by barge-in after the first sentence: no audio, no done
    events = [
        speech_stopped(1_000),
        transcript_final(1_300),
        started(1_310),
        delta(1_500),
        sentence(1_560),
        cancelled(1_600),
    ]
    assert TurnTimeline.of(events).stages() == {
        "stt": 300.0,
        "llm_first_token": 200.0,
        "first_piece_cut": 60.0,
    }


def test_without_an_origin_only_inner_stages_remain() -> None:
    # the reading started after the end of speech: origin-relative stages are unknown
    events = [transcript_final(1_300), delta(1_500), sentence(1_560), audio_chunk(1_700)]
    timeline = TurnTimeline.of(events, turn_id="t1")
    assert timeline.origin is None
    assert timeline.stages() == {
        "llm_first_token": 200.0,
        "first_piece_cut": 60.0,
        "tts_first_chunk": 140.0,
    }


def test_first_occurrence_wins() -> None:
    events = [
        speech_stopped(1_000),
        speech_stopped(1_050),  # a second end of speech in the same turn
        transcript_final(1_200),
        transcript_final(1_250),
        delta(1_400),
        delta(1_410),
        sentence(1_500),
        sentence(1_900),
        audio_chunk(1_600),
        audio_chunk(1_650),
        done(2_000),
        done(2_100),
    ]
    timeline = TurnTimeline.of(events)
    assert timeline.first["response.sentence"] == 1_500
    assert timeline.stages() == {
        "stt": 200.0,
        "llm_first_token": 200.0,
        "first_piece_cut": 100.0,
        "tts_first_chunk": 100.0,
        "time_to_first_audio": 600.0,
        "response_done": 1_000.0,
    }


def test_first_occurrence_is_by_log_order_not_by_timestamp() -> None:
    events = [speech_stopped(1_000), delta(1_400), delta(1_300)]
    assert TurnTimeline.of(events).stages() == {"llm_first_token": 400.0}


def test_an_origin_at_timestamp_zero_still_counts() -> None:
    events = [speech_stopped(0), transcript_final(200), delta(500)]
    assert TurnTimeline.of(events).stages() == {"stt": 200.0, "llm_first_token": 300.0}


def test_parts_of_the_time_to_first_audio_add_up_to_it() -> None:
    events = [speech_stopped(1000), transcript_final(1180), started(1185), delta(1400),
              sentence(1460), audio_chunk(1600)]
    parts = TurnTimeline.of(events).parts()
    assert parts is not None
    assert parts.parts == {"stt": 180.0, "handoff": 5.0, "llm_first_token": 215.0,
                           "first_piece": 60.0, "tts_first_chunk": 140.0}
    assert sum(parts.parts.values()) == parts.total_ms == 600.0
    assert parts.head_start_ms == 0
    assert parts.text() == ("first audio 600 ms = stt 180 + handoff 5 + llm_first_token 215"
                            " + first_piece 60 + tts_first_chunk 140")


def test_a_typed_turn_has_no_stt_part_and_marks_out_of_order_count_zero() -> None:
    events = [input_text(0), started(3), sentence(90), delta(100), audio_chunk(250)]
    parts = TurnTimeline.of(events).parts()
    assert parts is not None and "stt" not in parts.parts
    # the sentence logged before the delta: its part is 0, the time goes to the next
    assert parts.parts == {"handoff": 3.0, "llm_first_token": 97.0, "first_piece": 0.0,
                           "tts_first_chunk": 150.0}
    assert sum(parts.parts.values()) == parts.total_ms == 250.0
    assert TurnTimeline.of([input_text(0), started(3)]).parts() is None  # no audio


def test_a_preemptive_reply_shows_its_head_start_beside_the_sum() -> None:
    prepared = s.ResponseStarted(session_id=SESSION, turn_id="t1", ts=1004,
                                 data=s.ResponseStartedData(prepared_ms=420))
    events = [speech_stopped(1000), transcript_final(1002), prepared, delta(1004),
              sentence(1004), audio_chunk(1005)]
    parts = TurnTimeline.of(events).parts()
    assert parts is not None and parts.total_ms == 5.0 == sum(parts.parts.values())
    assert parts.head_start_ms == 420.0
    assert parts.text().endswith("(prepared 420 ms ahead)")


def test_a_turns_wait_for_a_place_is_a_part_of_its_own_first() -> None:
    """A voice turn that waited for a place (every reply slot of the replica taken) is
    transcribed or has its prepared reply taken up only after it: the wait is ``queued``,
    not STT's; a typed turn's comes out of its handoff."""
    waited = s.ResponseStarted(session_id=SESSION, turn_id="t1", ts=1510,
                               data=s.ResponseStartedData(prepared_ms=900, waited_ms=480))
    events = [speech_stopped(1000), transcript_final(1500), waited, delta(1510),
              sentence(1510), audio_chunk(1520)]
    parts = TurnTimeline.of(events).parts()
    assert parts is not None
    assert parts.parts == {"queued": 480.0, "stt": 20.0, "handoff": 10.0,
                           "llm_first_token": 0.0, "first_piece": 0.0,
                           "tts_first_chunk": 10.0}
    assert sum(parts.parts.values()) == parts.total_ms == 520.0
    typed = s.ResponseStarted(session_id=SESSION, turn_id="t1", ts=300,
                              data=s.ResponseStartedData(waited_ms=9_000))
    parts = TurnTimeline.of([input_text(0), typed, delta(310), audio_chunk(400)]).parts()
    assert parts is not None  # never more than the part it fell in
    assert parts.parts == {"queued": 300.0, "handoff": 0.0, "llm_first_token": 10.0,
                           "first_piece": 0.0, "tts_first_chunk": 90.0}


def timed_chunk(ts: int, end_ms: int | None, turn: str = "t1", index: int = 0) -> s.Event:
    return s.ResponseAudioChunk(
        session_id=SESSION, turn_id=turn, ts=ts,
        data=s.AudioChunkData(sample_rate=24000, sentence_index=0, chunk_index=index,
                              audio=AUDIO, end_ms=end_ms),
    )


def test_audio_logged_ahead_of_playback_has_no_stall() -> None:
    # 900 ms of audio at once, the next 1,000 ms logged while the first still plays
    events = [timed_chunk(1_000, 900), timed_chunk(1_850, 1_900, index=1)]
    assert playback_stalls(events) == []


def test_a_chunk_logged_after_the_audio_before_it_has_played_is_a_wait() -> None:
    # the first piece plays 1,000-1,900; the second is logged at 2,000: 100 ms of silence,
    # so the third is due at 2,600 (not 2,500), and logged at 2,650 it waits 50 more
    events = [timed_chunk(1_000, 900), timed_chunk(2_000, 1_500, index=1),
              timed_chunk(2_650, 2_000, index=2), timed_chunk(2_700, 2_400, index=3)]
    assert playback_stalls(events) == [100.0, 50.0]


def test_stalls_are_of_one_turn_and_need_end_ms() -> None:
    other = [timed_chunk(5_000, 100, turn="t2"), timed_chunk(9_000, 200, turn="t2", index=1)]
    events = [delta(900), timed_chunk(1_000, 900), *other, timed_chunk(2_000, 1_500, index=1)]
    assert playback_stalls(events) == [100.0]
    assert playback_stalls(events, "t2") == [3_900.0]
    assert playback_stalls([timed_chunk(1_000, None), timed_chunk(3_000, None, index=1)]) == []
    assert playback_stalls([delta(900)]) == []
