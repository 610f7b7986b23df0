"""The endpointing state machine and the frame assembler, driven by made-up probabilities.

No model here: each frame's probability is chosen by the test, so every rule (start,
hysteresis, stop, padding, forced cut, flush) is checked exactly. Frames carry their own
sample index as content, so the test can tell precisely which audio an utterance holds.
The async streams over the endpointer are ``tests/pipeline/audio/test_segmenting.py``'s.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pipeline.audio import (
    EndpointConfig,
    Endpointer,
    EndpointEvent,
    FrameAssembler,
    SpeechEnd,
    SpeechOnset,
    SpeechOnsetDropped,
    SpeechPause,
    SpeechStart,
)
from schemas import InvalidAudioError
from tests.support.frames import CONFIG, FRAME, MS, frame_at, stream_slice


def run(probabilities: list[float], config: EndpointConfig) -> list[EndpointEvent]:
    endpointer = Endpointer(config)
    events: list[EndpointEvent] = []
    for index, probability in enumerate(probabilities):
        events += endpointer.push(frame_at(index), probability)
    return events + endpointer.flush()


def test_speech_starts_after_min_speech_and_reports_the_onset() -> None:
    probs = [0.0] * 10 + [0.9] * 20 + [0.0] * 10
    events = run(probs, CONFIG)
    assert isinstance(events[0], SpeechStart)
    assert events[0].audio_ms == 10 * MS  # the onset, not the moment it was confirmed


def test_a_blip_shorter_than_min_speech_is_ignored() -> None:
    assert run([0.0] * 5 + [0.9, 0.9] + [0.0] * 10, CONFIG) == []


def test_onsets_report_the_first_frame_that_may_be_speech_and_drop_a_blip() -> None:
    onsets = CONFIG.model_copy(update={"onsets": True})
    blip = run([0.0] * 5 + [0.9, 0.9] + [0.0] * 10, onsets)
    assert blip == [SpeechOnset(audio_ms=5 * MS), SpeechOnsetDropped(audio_ms=5 * MS)]
    speech = run([0.0] * 10 + [0.9] * 20 + [0.0] * 10, onsets)
    assert speech[:2] == [SpeechOnset(audio_ms=10 * MS), SpeechStart(audio_ms=10 * MS)]
    assert isinstance(speech[-1], SpeechEnd) and len(speech) == 3
    # a run the stream's end cuts short is dropped too (nothing is left held)
    assert run([0.0] * 3 + [0.9], onsets) == [SpeechOnset(audio_ms=3 * MS),
                                              SpeechOnsetDropped(audio_ms=3 * MS)]
    # off by default: the same blip says nothing
    assert run([0.0] * 5 + [0.9, 0.9] + [0.0] * 10, CONFIG) == []


def test_hysteresis_keeps_a_wobbling_start_alive() -> None:
    # 0.4 is below the threshold (0.5) but above the silence threshold (0.35).
    events = run([0.0] * 3 + [0.9, 0.4, 0.4, 0.9] + [0.0] * 10, CONFIG)
    assert [type(e) for e in events] == [SpeechStart, SpeechEnd]
    assert events[0].audio_ms == 3 * MS


def test_speech_ends_after_min_silence_with_padding() -> None:
    probs = [0.0] * 10 + [0.9] * 20 + [0.1] * 10
    start, end = run(probs, CONFIG)
    assert isinstance(start, SpeechStart) and isinstance(end, SpeechEnd)
    assert end.audio_ms == 30 * MS  # where the silence began
    assert end.reason == "silence"
    assert end.start_ms == 8 * MS  # onset minus 2 frames of pre-padding
    assert end.audio == stream_slice(8 * FRAME, (20 + 2 + 1) * FRAME)  # + 1 frame post-padding
    assert end.duration_s == pytest.approx(23 * FRAME / 16000)


def test_a_short_pause_inside_speech_does_not_end_it() -> None:
    probs = [0.9] * 10 + [0.1] * 4 + [0.9] * 10 + [0.0] * 10
    events = run(probs, CONFIG)
    assert [type(e) for e in events] == [SpeechStart, SpeechEnd]


def test_probabilities_between_thresholds_do_not_reset_silence() -> None:
    # Silence opens at 0.1; 0.4 (between thresholds) neither closes nor restarts it.
    probs = [0.9] * 10 + [0.1, 0.4, 0.4, 0.4, 0.4] + [0.4] * 5
    events = run(probs, CONFIG)
    end = events[1]
    assert isinstance(end, SpeechEnd) and end.reason == "silence"
    assert end.audio_ms == 10 * MS


def test_max_length_cuts_and_starts_again_while_speaking() -> None:
    config = CONFIG.model_copy(update={"max_utterance_s": 10 * MS / 1000})
    events = run([0.9] * 25 + [0.0] * 10, config)
    kinds = [(type(e).__name__, getattr(e, "reason", None)) for e in events]
    assert kinds == [
        ("SpeechStart", None),
        ("SpeechEnd", "max_length"),
        ("SpeechStart", None),
        ("SpeechEnd", "max_length"),
        ("SpeechStart", None),
        ("SpeechEnd", "silence"),
    ]
    # Together the pieces are the speech, without gaps or overlaps.
    pieces = [e for e in events if isinstance(e, SpeechEnd)]
    assert b"".join(p.audio for p in pieces) == stream_slice(0, 26 * FRAME)


def test_flush_closes_an_open_utterance() -> None:
    events = run([0.0] * 3 + [0.9] * 6, CONFIG)
    end = events[-1]
    assert isinstance(end, SpeechEnd) and end.reason == "flush"
    assert end.audio == stream_slice(1 * FRAME, 8 * FRAME)


def _pause_frames(endpointer: Endpointer, silent_frames: int) -> int | None:
    """Speech, then ``silent_frames`` of silence: the silent frame (1-based) at which a
    pause came, if one did."""
    for index in range(10):
        endpointer.push(frame_at(index), 0.9)
    for n in range(1, silent_frames + 1):
        if any(isinstance(e, SpeechPause) for e in endpointer.push(frame_at(10 + n), 0.0)):
            return n
    return None


def test_a_pause_can_be_asked_sooner_for_a_while_and_back() -> None:
    config = CONFIG.model_copy(update={"min_silence_ms": 10 * MS, "pause_ms": 4 * MS})
    assert _pause_frames(Endpointer(config), 9) == 4
    sooner = Endpointer(config)
    sooner.pause_after(2 * MS)
    assert _pause_frames(sooner, 9) == 2
    sooner.reset()
    sooner.pause_after(None)  # the config's again
    assert _pause_frames(sooner, 9) == 4
    none = Endpointer(CONFIG)  # no pauses configured: asked for, they come
    none.pause_after(2 * MS)
    assert _pause_frames(none, 4) == 2
    too_long = Endpointer(config)
    too_long.pause_after(10 * MS)  # not shorter than the silence that ends speech: none
    assert _pause_frames(too_long, 9) is None


def test_a_pause_asked_sooner_mid_silence_comes_at_the_next_frame_once() -> None:
    config = CONFIG.model_copy(update={"min_silence_ms": 10 * MS, "pause_ms": 6 * MS})
    endpointer = Endpointer(config)
    for index in range(10):
        endpointer.push(frame_at(index), 0.9)
    for index in range(10, 13):  # three silent frames: no pause yet
        assert not endpointer.push(frame_at(index), 0.0)
    endpointer.pause_after(2 * MS)
    [pause] = endpointer.push(frame_at(13), 0.0)
    assert isinstance(pause, SpeechPause)
    assert pause.audio_ms == 10 * MS  # where the silence began
    assert not endpointer.push(frame_at(14), 0.0)  # one pause per silence


def test_odd_frame_and_bad_probability_are_refused() -> None:
    endpointer = Endpointer(CONFIG)
    with pytest.raises(InvalidAudioError):
        endpointer.push(b"\x00" * 3, 0.5)
    with pytest.raises(ValueError):
        endpointer.push(b"\x00" * 4, 1.5)


def test_config_is_validated() -> None:
    with pytest.raises(ValidationError):
        EndpointConfig(threshold=0.3, neg_threshold=0.5)
    with pytest.raises(ValidationError):
        EndpointConfig(min_silence_ms=100, post_padding_ms=200)
    with pytest.raises(ValidationError):
        EndpointConfig(unknown=1)  # type: ignore[call-arg]
    assert EndpointConfig(threshold=0.5).silence_threshold == pytest.approx(0.35)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([0.0, 0.2, 0.4, 0.6, 0.95]), min_size=1, max_size=120))
def test_utterances_are_exact_slices_of_the_stream(probs: list[float]) -> None:
    """Whatever the probabilities: events alternate, and each utterance is the input's
    own audio from its start, never reordered, duplicated or invented."""
    config = CONFIG.model_copy(update={"max_utterance_s": 20 * MS / 1000})
    events = run(probs, config)
    expected_start = True
    for event in events:
        assert isinstance(event, SpeechStart) is expected_start
        expected_start = not expected_start
        if isinstance(event, SpeechEnd):
            first = event.start_ms * 16
            assert event.audio == stream_slice(first, len(event.audio) // 2)
            assert event.start_ms <= event.audio_ms
            assert len(event.audio) // 2 <= 20 * FRAME + 2 * FRAME
    assert expected_start  # every start has its end (flush closes the last)


def test_frame_assembler_cuts_any_chunking_into_exact_frames() -> None:
    data = stream_slice(0, 5 * FRAME + 100)
    assembler = FrameAssembler(FRAME)
    frames: list[bytes] = []
    for size in (1, 3, 700, 1, 2000, 999, 1500, 10_000):
        chunk, data = data[:size], data[size:]
        frames += assembler.push(chunk)
    assert frames == [frame_at(i) for i in range(5)]
    last = assembler.flush()  # the 200 bytes left, padded to a frame
    assert last is not None and len(last) == FRAME * 2
    assert last[:200] == stream_slice(5 * FRAME, 100) and set(last[200:]) == {0}
    assert assembler.flush() is None
