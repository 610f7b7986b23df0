"""A spoken turn's events at known times (ms), for the tracing tests."""

from __future__ import annotations

import schemas as s

SID = "sess_trace"


def voice_turn(turn: str = "t1", at: int = 1_000_000) -> list[s.EventBase]:
    """A spoken turn whose events happen at known times (ms)."""
    def ev(event: s.EventBase, ms: int) -> s.EventBase:
        return event.model_copy(update={"ts": at + ms})

    def chunk(sentence: int, index: int, end_ms: int) -> s.ResponseAudioChunk:
        return s.ResponseAudioChunk(session_id=SID, turn_id=turn, data=s.AudioChunkData(
            sample_rate=16000, sentence_index=sentence, chunk_index=index, end_ms=end_ms,
            audio=b"\0\0"))

    return [
        ev(s.SpeechStarted(session_id=SID, turn_id=turn,
                           data=s.SpeechBoundaryData(audio_ms=0)), -1200),
        ev(s.SpeechStopped(session_id=SID, turn_id=turn,
                           data=s.SpeechStoppedData(audio_ms=1200)), 0),
        ev(s.TranscriptFinal(session_id=SID, turn_id=turn, data=s.TranscriptData(
            text="hello")), 180),
        ev(s.ResponseStarted(session_id=SID, turn_id=turn), 185),
        ev(s.ResponseTextDelta(session_id=SID, turn_id=turn,
                               data=s.TextDeltaData(delta="Hi")), 400),
        ev(s.ResponseTextDelta(session_id=SID, turn_id=turn,
                               data=s.TextDeltaData(delta=" there.")), 450),
        ev(s.ResponseSentence(session_id=SID, turn_id=turn,
                              data=s.SentenceData(index=0, text="Hi there.")), 460),
        ev(chunk(0, 0, 300), 600),
        ev(chunk(0, 1, 600), 700),
        ev(s.ResponseSentence(session_id=SID, turn_id=turn,
                              data=s.SentenceData(index=1, text="Bye.")), 720),
        ev(chunk(1, 2, 900), 800),
        ev(s.ResponseDone(session_id=SID, turn_id=turn,
                          data=s.ResponseDoneData(text="Hi there. Bye.")), 810),
    ]
