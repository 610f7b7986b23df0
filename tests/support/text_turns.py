"""A finished text turn's events as the log holds them: the feed workers' tests' input."""

from __future__ import annotations

import schemas as s


def text_turn_events(session_id: str, text: str, *, turn_id: str = "t1",
                     ending: str = "completed", with_audio: bool = False,
                     rate: int = 16000) -> list[s.EventBase]:
    """A typed question and its reply ``text``, ending ``completed``, ``failed`` or
    ``cancelled``; ``with_audio``: the reply was spoken (one chunk and its audio's end)."""
    kw = {"session_id": session_id, "turn_id": turn_id}
    events: list[s.EventBase] = [
        s.InputText(**kw, data=s.InputTextData(text="How is the weather?")),
        s.ResponseStarted(**kw, data=s.ResponseStartedData(
            mode="streaming" if with_audio else "text")),
        s.ResponseTextDelta(**kw, data=s.TextDeltaData(delta=text)),
    ]
    if with_audio:
        chunk = s.AudioChunkData(sample_rate=rate, sentence_index=0, chunk_index=0,
                                 audio=b"\0\0")
        events += [
            s.ResponseAudioChunk(**kw, data=chunk),
            s.ResponseAudioDone(**kw, data=s.AudioDoneData(sentence_count=1, chunk_count=1)),
        ]
    if ending == "cancelled":
        events.append(s.ResponseCancelled(**kw, data=s.ResponseCancelledData(
            text_sent=text[:10])))
    else:
        events.append(s.ResponseDone(**kw, data=s.ResponseDoneData(text=text, status=ending)))
    return events
