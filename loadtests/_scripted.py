"""Scripted engines for tests and benchmarks (never part of the product).

They live beside the benchmarks, not in ``tests/``, so that a benchmark's smoke mode and the
tests share one set of fakes without a benchmark importing a test module.

They behave like real engines as far as the turn orchestrator can tell (async generators,
``EngineError`` on failure, cancellation through ``CancelledError`` or ``aclose()``), but
their output, delays and failures are fixed by the test, and they record how every stream
ended, so a test can assert that a cancel reached them:

* :class:`ScriptedLLM` yields a fixed list of tokens; optional delay per token, a failure
  before token *n*, a gate before token *n* that the test opens, a callback per token.
* :class:`ScriptedSTT` hears one fixed transcript in any audio with a sound in it.
* :class:`ScriptedTTS` yields ``chunks_per_piece`` chunks of deterministic audio per piece
  (:func:`scripted_audio`, a function of the text, so two runs can be compared byte for
  byte); optional delay per chunk, failure on call *k* (after some chunks), a gate.

Each stream leaves a :class:`StreamRecord`: its outcome (``running`` until it ends, then
``completed``, ``failed``, ``cancelled`` for ``CancelledError`` or ``closed`` for
``GeneratorExit``) and ``perf_counter`` stamps. A delay of 0 means no ``await`` at all, which
is what the benchmarks call *instant* engines.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from pipeline.engines import (
    GenerationItem,
    LanguageModel,
    Synthesizer,
    Transcriber,
    VoiceActivityDetector,
)
from schemas import (
    AudioChunk,
    EngineError,
    ErrorCode,
    GenerationRequest,
    GenerationUsage,
    SynthesisRequest,
    ToolCallDelta,
    TranscriptionRequest,
    TranscriptSegment,
)

Outcome = Literal["running", "completed", "failed", "cancelled", "closed"]

clock = time.perf_counter


def tokenize(text: str) -> list[str]:
    """Split text the way LLMs stream it: words with their leading whitespace."""
    return re.findall(r"\s*\S+", text)


def scripted_audio(text: str, chunk: int, size: int = 64) -> bytes:
    """Deterministic PCM16 bytes for chunk ``chunk`` of ``text`` (``size`` even)."""
    digest = hashlib.sha256(f"{text}\x00{chunk}".encode()).digest()
    return (digest * (size // len(digest) + 1))[:size]


@dataclass
class StreamRecord:
    """How one engine stream went."""

    call: int
    label: str
    started_at: float = field(default_factory=clock)
    outcome: Outcome = "running"
    ended_at: float | None = None
    items: int = 0

    @property
    def interrupted(self) -> bool:
        """The stream saw ``CancelledError`` or ``aclose()``."""
        return self.outcome in ("cancelled", "closed")


@contextlib.contextmanager
def outcome_of(report: Callable[[Outcome], None]) -> Iterator[None]:
    """Report how the stream inside the block ended; exceptions pass through."""
    try:
        yield
    except asyncio.CancelledError:
        report("cancelled")
        raise
    except GeneratorExit:
        report("closed")
        raise
    except Exception:
        report("failed")
        raise
    report("completed")


class _Recorded:
    def __init__(self) -> None:
        self.records: list[StreamRecord] = []
        self.active = 0
        self.max_active = 0

    def _open(self, label: str) -> StreamRecord:
        record = StreamRecord(call=len(self.records), label=label)
        self.records.append(record)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        return record

    def _end(self, record: StreamRecord, outcome: Outcome) -> None:
        record.outcome = outcome
        record.ended_at = clock()
        self.active -= 1

    def _tracking(self, record: StreamRecord) -> contextlib.AbstractContextManager[None]:
        """Record how the stream inside the block ended; exceptions pass through."""
        return outcome_of(lambda outcome: self._end(record, outcome))

    @property
    def running(self) -> list[StreamRecord]:
        return [r for r in self.records if r.outcome == "running"]

    @property
    def interrupted(self) -> list[StreamRecord]:
        return [r for r in self.records if r.interrupted]

    @property
    def completed(self) -> int:
        return sum(r.outcome == "completed" for r in self.records)


async def _wait(delay: float) -> None:
    if delay > 0:
        await asyncio.sleep(delay)


class RoundsLLM(LanguageModel):
    """A language model that answers each call with the next scripted round: text deltas
    and tool-call pieces, as a model streams them (pure logic: which round the turn is in,
    what it was asked)."""

    name = "rounds"

    def __init__(self, rounds: list[list[str | ToolCallDelta]]) -> None:
        super().__init__()
        self.rounds = list(rounds)
        self.requests: list[GenerationRequest] = []
        #: when set, each round waits for it first (a model slow to answer)
        self.gate: asyncio.Event | None = None

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationItem]:
        self.requests.append(request)
        items = self.rounds.pop(0) if self.rounds else ["(no more rounds)"]
        if self.gate is not None:
            await self.gate.wait()
        for item in items:
            await asyncio.sleep(0)
            yield item


class ScriptedLLM(LanguageModel, _Recorded):
    """Yields ``tokens`` for every request; with usage, it counts each item one token
    (``counts=False``: an engine that counts nothing, as a remote server)."""

    name = "scripted-llm"

    def __init__(
        self,
        tokens: Sequence[str],
        *,
        delay: float | Callable[[int], float] = 0.0,
        fail_at: int | None = None,
        gate_at: int | None = None,
        on_token: Callable[[int], None] | None = None,
        counts: bool = True,
    ) -> None:
        LanguageModel.__init__(self)  # takes no options
        self.counts = counts
        _Recorded.__init__(self)
        self.tokens = list(tokens)
        self._delay = delay if callable(delay) else (lambda _i, d=delay: d)
        self.fail_at = fail_at
        self.gate_at = gate_at
        #: opened by the test; the stream waits for it before token ``gate_at``
        self.gate = asyncio.Event()
        self.on_token = on_token
        #: perf_counter when each token was handed over (the last request's)
        self.yield_times: list[float] = []

    async def generate(self, request: GenerationRequest) -> AsyncIterator[str]:
        record = self._open(request.request_id)
        self.yield_times = []
        with self._tracking(record):
            for i, token in enumerate(self.tokens):
                if i == self.gate_at:
                    await self.gate.wait()
                if i == self.fail_at:
                    raise EngineError("scripted LLM failure", code=ErrorCode.LLM_FAILED)
                await _wait(self._delay(i))
                if self.on_token is not None:
                    self.on_token(i)
                record.items += 1
                self.yield_times.append(clock())
                yield token
            if self.fail_at == len(self.tokens):
                raise EngineError("scripted LLM failure", code=ErrorCode.LLM_FAILED)

    async def generate_with_usage(
        self, request: GenerationRequest
    ) -> AsyncGenerator[str | GenerationUsage, None]:
        count = 0
        async with contextlib.aclosing(self.generate(request)) as deltas:
            async for delta in deltas:
                count += 1
                yield delta
        if self.counts:
            yield GenerationUsage(completion_tokens=count)


class ScriptedTTS(Synthesizer, _Recorded):
    """Yields ``chunks_per_piece`` chunks of :func:`scripted_audio` per request."""

    name = "scripted-tts"

    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        chunks_per_piece: int = 2,
        chunk_bytes: int = 64,
        delay: float | Callable[[int, int], float] = 0.0,
        fail_on: Collection[int] = (),
        fail_after_chunks: int = 0,
        error: Exception | None = None,
        gated: bool = False,
    ) -> None:
        Synthesizer.__init__(self)
        _Recorded.__init__(self)
        self.sample_rate = sample_rate
        self.chunks_per_piece = chunks_per_piece
        self.chunk_bytes = chunk_bytes
        self._delay = delay if callable(delay) else (lambda _c, _k, d=delay: d)
        self.fail_on = set(fail_on)
        self.fail_after_chunks = fail_after_chunks
        self.error = error
        #: when ``gated``, every synthesis takes one permit before it starts
        self.gate: asyncio.Semaphore | None = asyncio.Semaphore(0) if gated else None
        #: perf_counter when each synthesis started, in call order
        self.call_times: list[float] = []

    async def synthesize(self, request: SynthesisRequest) -> AsyncIterator[AudioChunk]:
        record = self._open(request.text)
        self.call_times.append(record.started_at)
        with self._tracking(record):
            if self.gate is not None:
                await self.gate.acquire()
            for k in range(self.chunks_per_piece):
                if record.call in self.fail_on and k == self.fail_after_chunks:
                    raise self.error or EngineError(
                        "scripted TTS failure", code=ErrorCode.TTS_FAILED)
                await _wait(self._delay(record.call, k))
                record.items += 1
                yield AudioChunk(audio=scripted_audio(request.text, k, self.chunk_bytes),
                                 sample_rate=self.sample_rate)


class EnergyVAD(VoiceActivityDetector):
    """Speech is any frame louder than a floor: deterministic, for tests only."""

    name = "energy"

    async def probabilities(self, frames: AsyncIterator[bytes]) -> AsyncGenerator[float, None]:
        async for frame in frames:
            samples = np.frombuffer(frame, dtype="<i2").astype(np.float32)
            yield 0.95 if float(np.abs(samples).mean()) > 500 else 0.0


class ScriptedSTT(Transcriber):
    """Hears ``text`` in any audio with a sound in it (silence: nothing)."""

    name = "scripted-stt"

    def __init__(self, text: str = "scripted transcript") -> None:
        super().__init__()
        self.text = text

    async def transcribe(self, request: TranscriptionRequest) -> AsyncIterator[TranscriptSegment]:
        if any(request.audio):
            seconds = len(request.audio) / 2 / request.sample_rate
            yield TranscriptSegment(text=self.text, start_s=0.0, end_s=seconds)
