"""One valid sample of every event type, for round trips through the log and JSON."""

from __future__ import annotations

import schemas as s

SETTINGS = s.SessionSettings()


def typed_text(session_id: str, text: str, turn_id: str = "t") -> s.InputText:
    """A typed-text event: the plainest thing to append when a test is about the log."""
    return s.InputText(session_id=session_id, turn_id=turn_id, data=s.InputTextData(text=text))


def sample_events(session_id: str, turn_id: str = "t1") -> list[s.EventBase]:
    audio = bytes(range(256)) * 4  # every byte value, so binary safety is tested
    return [
        s.SessionCreated(session_id=session_id, data=s.SessionCreatedData(settings=SETTINGS)),
        s.SessionUpdated(
            session_id=session_id,
            data=s.SessionUpdatedData(settings=SETTINGS, changed=("voice",)),
        ),
        s.SpeechStarted(
            session_id=session_id, turn_id=turn_id, data=s.SpeechBoundaryData(audio_ms=10)
        ),
        s.SpeechStopped(
            session_id=session_id, turn_id=turn_id, data=s.SpeechStoppedData(audio_ms=900)
        ),
        s.InputAudio(
            session_id=session_id,
            turn_id=turn_id,
            data=s.InputAudioData(sample_rate=16000, duration_ms=32, audio=audio),
        ),
        s.InputText(
            session_id=session_id, turn_id=turn_id, data=s.InputTextData(text="Grüß Gott 👋")
        ),
        s.TranscriptPartial(
            session_id=session_id, turn_id=turn_id, data=s.TranscriptData(text="hel")
        ),
        s.TranscriptFinal(
            session_id=session_id,
            turn_id=turn_id,
            data=s.TranscriptData(text="hello", language="en"),
        ),
        s.TranscriptRefined(
            session_id=session_id,
            turn_id=turn_id,
            data=s.TranscriptRefinedData(text="Hello.", source_event_id="1-0"),
        ),
        s.ResponseStarted(session_id=session_id, turn_id=turn_id),
        s.ResponseTextDelta(
            session_id=session_id, turn_id=turn_id, data=s.TextDeltaData(delta="Hi")
        ),
        s.ResponseSentence(
            session_id=session_id, turn_id=turn_id, data=s.SentenceData(index=0, text="Hi there.")
        ),
        s.ResponseAudioChunk(
            session_id=session_id,
            turn_id=turn_id,
            data=s.AudioChunkData(sample_rate=22050, sentence_index=0, chunk_index=0, end_ms=400,
                                  audio=audio),
        ),
        s.ResponseAudioDone(
            session_id=session_id,
            turn_id=turn_id,
            data=s.AudioDoneData(sentence_count=1, chunk_count=1),
        ),
        s.ResponseDone(
            session_id=session_id, turn_id=turn_id, data=s.ResponseDoneData(text="Hi there.")
        ),
        s.ResponseCancelled(
            session_id=session_id,
            turn_id=turn_id,
            data=s.ResponseCancelledData(reason="barge_in", text_sent="Hi", chunks_sent=1),
        ),
        s.ResponsePaused(session_id=session_id, turn_id=turn_id,
                         data=s.ResponseHeldData(audio_ms=900)),
        s.ResponseResumed(session_id=session_id, turn_id=turn_id,
                          data=s.ResponseHeldData(audio_ms=1300, transcript="mm-hm")),
        s.ResponseTruncated(
            session_id=session_id,
            turn_id=turn_id,
            data=s.ResponseTruncatedData(audio_end_ms=120, audio_ms=400, text_heard="Hi"),
        ),
        s.NarrationReady(
            session_id=session_id, turn_id=turn_id, data=s.NarrationReadyData(chunk_count=3)
        ),
        s.SessionResyncRequired(
            session_id=session_id, data=s.ResyncRequiredData(horizon="5-0", message="trimmed")
        ),
        s.ErrorEvent(
            session_id=session_id,
            turn_id=turn_id,
            data=s.ErrorPayload(code=s.ErrorCode.TTS_FAILED, message="boom", stage="tts"),
        ),
        s.SessionClosed(session_id=session_id),
    ]
