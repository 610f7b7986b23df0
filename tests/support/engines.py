"""Engine fakes for the tests: the one place a test takes a stand-in engine from.

The scripted LLM, TTS and detector are shared with the benchmarks
(:mod:`loadtests._scripted`) and re-exported here; the fakes below are what
only the tests need.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator

from loadtests._scripted import (
    EnergyVAD,
    RoundsLLM,
    ScriptedLLM,
    ScriptedTTS,
    StreamRecord,
    outcome_of,
    scripted_audio,
    tokenize,
)
from pipeline.engines import TextTurnDetector, Transcriber, TurnDetector
from schemas import (
    EngineError,
    ErrorCode,
    GenerationRequest,
    TranscriptionRequest,
    TranscriptSegment,
)

__all__ = [
    "EnergyVAD",
    "RecordingLLM",
    "RoundsLLM",
    "ScriptedLLM",
    "ScriptedSTT",
    "ScriptedTTS",
    "ScriptedTextTurn",
    "ScriptedTurn",
    "StreamRecord",
    "outcome_of",
    "scripted_audio",
    "tokenize",
]


class ScriptedSTT(Transcriber):
    """Hears what the test scripts: ``texts[k]`` on its k-th call (the last one from then on),
    as one segment of 0-1 s.

    * ``only_sound``: silence (all-zero audio) is heard as nothing, and the segment spans
      the audio, as a real transcriber's would.
    * ``gated``: every call waits at :attr:`gate` until the test sets it.
    * ``error``: raised on every call, after ``error_after`` segments.

    It keeps every request (:attr:`requests`), the length of the audio of each
    (:attr:`heard`) and how many calls began (:attr:`entered`). A test whose transcriber
    says something else (segments made from the audio, word timings) subclasses it and
    overrides :meth:`segments`.
    """

    name = "scripted-stt"

    def __init__(self, *texts: str, only_sound: bool = False, gated: bool = False,
                 error: Exception | None = None, error_after: int = 0) -> None:
        super().__init__()
        self.texts = texts or ("What is the capital of France?",)
        self.only_sound = only_sound
        self.gate = asyncio.Event()
        if not gated:
            self.gate.set()
        self.error = error
        self.error_after = error_after
        self.requests: list[TranscriptionRequest] = []
        self.heard: list[int] = []
        self.entered = 0

    def segments(self, request: TranscriptionRequest, call: int) -> list[TranscriptSegment]:
        """What call ``call`` (from 0) hears."""
        text = self.texts[min(call, len(self.texts) - 1)]
        if not self.only_sound:
            return [TranscriptSegment(text=text, start_s=0, end_s=1)]
        if not any(request.audio):
            return []
        seconds = len(request.audio) / 2 / request.sample_rate
        return [TranscriptSegment(text=text, start_s=0.0, end_s=seconds)]

    async def transcribe(
        self, request: TranscriptionRequest
    ) -> AsyncGenerator[TranscriptSegment, None]:
        call = self.entered
        self.entered += 1
        self.requests.append(request)
        self.heard.append(len(request.audio))
        await self.gate.wait()
        if self.error is not None and self.error_after == 0:
            raise self.error
        for index, segment in enumerate(self.segments(request, call)):
            if self.error is not None and index == self.error_after:
                raise self.error
            yield segment
        if self.error is not None:
            raise self.error


class RecordingLLM(ScriptedLLM):
    """A scripted LLM that keeps the requests it was given."""

    def __init__(self, tokens: list[str], **options: object) -> None:
        super().__init__(tokens, **options)  # type: ignore[arg-type]
        self.requests: list[GenerationRequest] = []

    async def generate(self, request: GenerationRequest) -> AsyncIterator[str]:
        self.requests.append(request)
        async for token in super().generate(request):
            yield token


class HeardAudio:
    """A transcribe function (audio, sample rate -> words) that answers ``words`` and keeps
    every audio it is given (``heard``): what a pause's judge or speculation asked for."""

    def __init__(self, words: str = "") -> None:
        self.words = words
        self.heard: list[bytes] = []

    async def __call__(self, audio: bytes, sample_rate: int) -> str:
        self.heard.append(audio)
        return self.words


class ScriptedTextTurn(TextTurnDetector):
    """A text end-of-turn model that says ``verdicts[k]`` on its k-th transcript (the last
    one from then on); ``None`` in the script fails that call. It keeps each transcript."""

    name = "scripted-text-turn"

    def __init__(self, *verdicts: float | None) -> None:
        super().__init__()
        self.verdicts = verdicts or (0.9,)
        self.read: list[str] = []

    async def completion(self, text: str, language: str = "en") -> float:
        self.read.append(text)
        return _scripted_verdict(self.verdicts, len(self.read) - 1, self.stage)


class ScriptedTurn(TurnDetector):
    """An end-of-turn model that says ``verdicts[k]`` on its k-th pause (the last one from
    then on); ``None`` in the script fails that call. It keeps the audio of each call."""

    name = "scripted-turn"

    def __init__(self, *verdicts: float | None) -> None:
        super().__init__()
        self.verdicts = verdicts or (0.9,)
        self.heard: list[bytes] = []

    async def completion(self, audio: bytes) -> float:
        self.heard.append(audio)
        return _scripted_verdict(self.verdicts, len(self.heard) - 1, self.stage)


def _scripted_verdict(verdicts: tuple[float | None, ...], call: int, stage: str) -> float:
    """The scripted end-of-turn models' answer to their ``call``-th question (0-based):
    ``verdicts[call]``, the last one from then on; ``None`` fails it."""
    verdict = verdicts[min(call, len(verdicts) - 1)]
    if verdict is None:
        raise EngineError("scripted failure", code=ErrorCode.TURN_DETECTION_FAILED,
                          stage=stage)
    return verdict
