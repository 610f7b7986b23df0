"""The speech of ``voxline evaluate``: each completed turn's logged reply spoken again by a
candidate's voice, timed, and heard back.

A candidate changes the speech with ``voice`` and ``speech_speed`` (over each session's
own) or ``tts_model`` (and ``tts_engine``). The reply is cut into pieces as a live turn
cuts it (:func:`pipeline.split_text`), each piece synthesized in order, and measured:

* **first chunk**: the time from asking for the first piece to its first audio, what a
  listener waits for once the text is there (the live stage ``tts_first_chunk``);
* **real-time factor**: synthesis time over the audio's length (below 1: faster than it
  plays);
* **heard back**: the spoken reply transcribed by the server's transcriber and its word
  error rate against the reply's text, whether the words survive the voice (a
  transcriber's own errors count too: compare candidates with each other, not with 0);
* **audio length**, which a speed or a voice changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline import split_text
from pipeline.audio import resample_pcm16
from pipeline.engines import Synthesizer, Transcriber
from pipeline.turntaking import transcribe_in
from schemas import EngineError, EngineSettings, SessionSettings, Settings, SynthesisRequest
from voxline.candidates import Candidate, resolved
from voxline.evaluate import loaded_engine, spread
from voxline.evaluate_answers import Asked
from voxline.evaluate_latency import by_turn_ms
from voxline.word_errors import normalize, reported_wer

__all__ = ["speech_measures"]

#: what a spoken reply is heard back at (the transcribers' rate)
_HEARD_RATE = 16000


@dataclass(frozen=True)
class _Spoken:
    where: tuple[str, str]  # (session id, turn id)
    first_chunk_ms: float | None
    synth_s: float
    audio_s: float
    heard: str
    text: str
    error: str | None = None


async def speech_measures(
    asked: Sequence[Asked], candidates: Sequence[Candidate], settings: Settings,
    deadline: float, say: Callable[[str], None],
) -> tuple[dict[str, dict[str, Any]], bool]:
    """Per candidate that changes the speech (:attr:`Candidate.tries_speech`), its
    measures; and whether every reply was spoken before ``deadline``."""
    trying = [candidate for candidate in candidates if candidate.tries_speech]
    if not trying:
        return {}, True
    found: dict[str, dict[str, Any]] = {}
    complete = True
    stt = await loaded_engine("stt", settings.stt, Transcriber)
    try:
        for candidate in trying:
            tts = await _load(candidate.tts, settings)
            try:
                rows, finished = await _speak_all(tts, stt, candidate, asked, deadline)
            finally:
                await tts.close()
            complete = complete and finished
            found[candidate.name] = _measures(rows)
            say(f"{candidate.name}: {len(rows)} reply(ies) spoken again")
    finally:
        await stt.close()
    return found, complete


async def _load(choice: EngineSettings | None, settings: Settings) -> Synthesizer:
    return await loaded_engine("tts", resolved(choice, settings.tts), Synthesizer)


async def _speak_all(tts: Synthesizer, stt: Transcriber, candidate: Candidate,
                     asked: Sequence[Asked], deadline: float) -> tuple[list[_Spoken], bool]:
    rows: list[_Spoken] = []
    for turn in asked:
        if time.monotonic() > deadline:
            return rows, False
        if not turn.logged.strip():
            continue
        settings = turn.settings.merged(candidate.speech_patch)
        try:
            rows.append(await _speak(tts, stt, settings, turn))
        except EngineError as exc:  # an unknown voice, say: said, and the next turn
            rows.append(_Spoken((turn.session_id, turn.turn_id), None, 0.0, 0.0, "",
                                turn.logged, f"{exc.code}: {exc}"))
    return rows, True


async def _speak(tts: Synthesizer, stt: Transcriber, settings: SessionSettings,
                 turn: Asked) -> _Spoken:
    text = turn.logged
    pcm, first, began = bytearray(), None, time.perf_counter()
    for piece in split_text(text):
        request = SynthesisRequest(text=piece, language=settings.language,
                                   voice=settings.voice, speed=settings.speech_speed)
        asked_at = time.perf_counter()
        async for chunk in tts.synthesize(request):
            if first is None:
                first = (time.perf_counter() - asked_at) * 1000
            pcm += resample_pcm16(bytes(chunk.audio), chunk.sample_rate, _HEARD_RATE)
    synth_s = time.perf_counter() - began
    heard = await transcribe_in(stt, bytes(pcm), _HEARD_RATE, settings.language) if pcm else ""
    return _Spoken((turn.session_id, turn.turn_id), first, synth_s,
                   len(pcm) / 2 / _HEARD_RATE, heard, text)


def _measures(rows: list[_Spoken]) -> dict[str, Any]:
    spoken = [row for row in rows if row.error is None]
    audio_s = sum(row.audio_s for row in spoken)
    return {
        "replies": len(spoken),
        "failed": [row.error for row in rows if row.error is not None][:5],
        "first_chunk_ms": spread([row.first_chunk_ms for row in spoken
                                  if row.first_chunk_ms is not None]),
        "real_time_factor": round(sum(row.synth_s for row in spoken) / audio_s, 4)
        if audio_s else None,
        "audio_s": round(audio_s, 2),
        "by_turn_ms": by_turn_ms((row.where, row.first_chunk_ms) for row in spoken),
        "heard_back_wer": reported_wer([(row.text, row.heard) for row in spoken]),
        "examples": [{"text": row.text, "heard": row.heard} for row in spoken
                     if normalize(row.text) != normalize(row.heard)][:5],
    }
