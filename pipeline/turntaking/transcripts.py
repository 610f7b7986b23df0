"""How a session's speech is transcribed, in one place for the live session and the replay.

Live sessions (their replies, their pauses' judgements) and the replay evaluation all
ask through :func:`transcribe_in`, so a replay hears a pause as the live session did.
"""

from __future__ import annotations

from pipeline.engines import Transcriber, transcribed_text
from schemas import TranscriptionRequest, primary_language

__all__ = ["transcribe_in"]


async def transcribe_in(stt: Transcriber, audio: bytes, sample_rate: int, language: str, *,
                       quick: bool = False, prompt: str | None = None) -> str:
    """The transcript of ``audio`` in a session's ``language`` (its primary subtag: Whisper
    knows "de", not "de-AT"); nothing is appended. ``quick``: a judgement of a few words,
    wanted fast (``TranscriptionRequest.quick``); ``prompt``: Whisper's initial prompt
    (spellings to expect). Live sessions and the replay evaluation both ask through this,
    so a replay hears a pause as the live session did."""
    request = TranscriptionRequest(audio=audio, sample_rate=sample_rate,
                                   language=primary_language(language), quick=quick, prompt=prompt)
    return await transcribed_text(stt, request)
