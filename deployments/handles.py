"""Engines that live in another deployment, behind the engine bases the pipeline expects.

The ingress runs :class:`pipeline.LiveSession` and the turn orchestrator unchanged: it
hands them these adapters instead of local engines. Each call is a streaming handle call
(``.options(stream=True)``); leaving the stream early (cancel, barge-in, ``aclose``)
cancels the request in the replica, where the engine aborts its model call.

Each call carries the caller's session and turn (:func:`pipeline.tracing.carrier`), which
the replica adopts for the call: its log records say whom the work was for.

Errors keep their meaning across the boundary: a :class:`schemas.VoxlineError` raised in
a replica is re-raised here as itself (same code, same message); a replica that died or
a transient :class:`schemas.EngineError`; a deployment past its ``max_queued_requests``
(Serve's back-pressure) refuses at once, and that reaches the client as
:class:`schemas.OverloadedError` (``overloaded``, with a retry hint), like the Gateway's own
admission control, with the same retry hint (``VOXLINE_ADMISSION__RETRY_AFTER_MS``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Any, ClassVar, NoReturn

from pipeline.engines import GenerationItem, LanguageModel, Synthesizer, Transcriber
from pipeline.meters import StageCalls
from pipeline.retrieval import Reranker
from pipeline.tracing import carrier
from schemas import (
    AudioChunk,
    EngineError,
    ErrorCode,
    GenerationRequest,
    GenerationUsage,
    OverloadedError,
    SynthesisRequest,
    TranscriptionRequest,
    TranscriptSegment,
    VoxlineError,
    get_settings,
)

_STAGE_CODES = {"stt": ErrorCode.STT_FAILED, "llm": ErrorCode.LLM_FAILED,
                "tts": ErrorCode.TTS_FAILED, "retrieval": ErrorCode.RETRIEVAL_FAILED}


def remote_error(exc: BaseException, stage: str) -> BaseException:
    """The error to raise for a failed remote call (see the module docstring)."""
    from ray.exceptions import RayActorError, RayTaskError

    cause = exc.cause if isinstance(exc, RayTaskError) else exc
    if isinstance(cause, VoxlineError):
        if isinstance(exc, RayTaskError):  # a fresh instance: Ray's wrapper loses fields
            return _rebuild(cause)
        return cause
    if refused(exc):
        return OverloadedError(f"the {stage} stage is at capacity, try again shortly",
                               retry_after_ms=get_settings().admission.retry_after_ms,
                               stage=stage)
    if isinstance(exc, RayActorError):
        return EngineError(f"the {stage} replica died", code=_STAGE_CODES[stage],
                           transient=True, stage=stage)
    return EngineError(f"{stage} stage failed: {type(cause).__name__}: {cause}",
                       code=_STAGE_CODES[stage], stage=stage)


def refused(exc: BaseException) -> bool:
    """The call was refused at once: the deployment's queue was full."""
    from ray.serve.exceptions import BackPressureError

    return isinstance(exc, BackPressureError)


def _rebuild(error: VoxlineError) -> VoxlineError:
    rebuilt = type(error).__new__(type(error))
    rebuilt.__dict__.update(error.__dict__)
    Exception.__init__(rebuilt, error.message)
    return rebuilt


class _RemoteStage:
    """A streaming method of one deployment, cancelled when its consumer leaves early."""

    stage: ClassVar[str]
    #: the deployment's streaming method
    method: ClassVar[str]

    def __init__(self, handle: Any, calls: StageCalls | None = None) -> None:
        super().__init__()  # no options: the replica has them
        self._handle = handle.options(stream=True)
        self._plain = handle
        #: the replica's count of calls in flight and refused, per stage (its metrics)
        self._calls = calls or StageCalls()

    async def _stream(self, request: Any, method: str | None = None) -> AsyncGenerator[Any, None]:
        # the session and turn go along: the replica's log records say whom it worked for
        response = getattr(self._handle, method or self.method).remote(request, carrier())
        finished = False
        with self._calls.call(self.stage):
            try:
                try:
                    async for item in response:
                        yield item
                except Exception as exc:
                    # Over already. Cancelling a response that failed raises its error
                    # again (a refused one's BackPressureError), which would replace ours.
                    finished = True
                    if refused(exc):
                        self._calls.refused(self.stage)
                    self._reraise(exc)
                finished = True
            finally:
                if not finished:  # the consumer left early: stop the replica's work
                    response.cancel()

    async def describe(self) -> dict[str, Any]:
        """What the replica runs (its engine's :meth:`~pipeline.engines.Engine.describe`,
        with the stage and model): asked of the replica, not known here."""
        try:
            info: dict[str, Any] = await self._plain.describe.remote()
        except Exception as exc:
            self._reraise(exc)
        return info

    def _reraise(self, exc: Exception) -> NoReturn:
        """Ray's wrappers, turned back into ours (ours raised as they are)."""
        error = remote_error(exc, self.stage)
        if error is exc:
            raise exc
        raise error from exc


class RemoteTranscriber(_RemoteStage, Transcriber):
    name = "remote-stt"
    stage = "stt"
    method = "transcribe"

    def transcribe(self, request: TranscriptionRequest) -> AsyncGenerator[TranscriptSegment, None]:
        return self._stream(request)


class RemoteLanguageModel(_RemoteStage, LanguageModel):
    name = "remote-llm"
    stage = "llm"
    method = "generate"

    def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationItem, None]:
        return self._stream(request)

    def generate_with_usage(
        self, request: GenerationRequest
    ) -> AsyncGenerator[GenerationItem | GenerationUsage, None]:
        return self._stream(request, "generate_with_usage")


class RemoteSynthesizer(_RemoteStage, Synthesizer):
    name = "remote-tts"
    stage = "tts"
    method = "synthesize"

    async def load(self) -> None:
        """Learn the remote engine's sample rate (chunks carry theirs too)."""
        info = await self.describe()
        self.sample_rate = int(info.get("sample_rate", self.sample_rate))

    def synthesize(self, request: SynthesisRequest) -> AsyncGenerator[AudioChunk, None]:
        return self._stream(request)


class RemoteReranker(Reranker):
    """The Reranker deployment (retrieval's second stage); one plain call per search."""

    name = "remote-reranker"

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    async def score(self, query: str, texts: Sequence[str]) -> list[float]:
        try:
            scores: list[float] = await self._handle.score.remote(query, list(texts))
        except Exception as exc:
            error = remote_error(exc, "retrieval")
            if error is exc:
                raise
            raise error from exc
        return scores

    async def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = await self._handle.describe.remote()
        return info
