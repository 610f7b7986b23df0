"""The engine seams: one abstract base per model stage.

Each stage has a core method that is an async generator, so a caller consumes results as
they come and can stop at any time. The contract every implementation keeps:

* **What is yielded** is documented on each method below.
* **The end of the stream** is the end of the result; an implementation never yields a
  sentinel.
* **Errors** surface as :class:`schemas.EngineError` (with the stage's code) raised from
  the generator; a missing model is :class:`schemas.ModelMissingError`, raised from
  :meth:`Engine.load` so a deployment fails at start-up, not on the first request.
* **Cancellation** (the consumer's task is cancelled, or it calls ``aclose()``) aborts the
  work behind the stream: the engine stops its model call, releases what it holds in a
  ``finally`` block, and lets ``CancelledError``/``GeneratorExit`` propagate.

An engine around a blocking library runs it on a worker thread and streams through the
one bridge, :func:`pipeline.aio.iterate_in_thread` (engines hold it as a
:class:`~pipeline.engines._worker.ModelWorker`): its model code is a plain generator on
that thread, and cancelling the stream closes that generator there.

Everything a caller reads from an engine is declared here: :attr:`Engine.name`,
:attr:`Engine.options` (validated against the engine's ``Options`` model),
:attr:`Engine.ready`, :meth:`Engine.describe`, :attr:`Synthesizer.sample_rate` and
:attr:`Synthesizer.voices`. Adding an engine is one module with one such class, plus one
line in :data:`pipeline.engines.registry.ENGINES`.

Engines are plain classes: Ray Serve deployments wrap them (``deployments/``), tests drive
them directly. Heavy imports (onnxruntime, llama_cpp, torch ...) happen inside
:meth:`Engine.load`, never at module import, so the ingress can import this package.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from schemas import (
    AudioChunk,
    ConfigurationError,
    GenerationRequest,
    GenerationUsage,
    SynthesisRequest,
    ToolCallDelta,
    TranscriptionRequest,
    TranscriptSegment,
)

#: what a language model streams: text deltas, and pieces of the tool calls it makes
GenerationItem = str | ToolCallDelta


def coalesced(batch: Iterable[GenerationItem | GenerationUsage]
              ) -> list[GenerationItem | GenerationUsage]:
    """A batch of a language model's stream with each run of text deltas joined into one
    delta, everything else kept where it was (what a replica sends as one item)."""
    out: list[GenerationItem | GenerationUsage] = []
    for item in batch:
        if isinstance(item, str) and out and isinstance(out[-1], str):
            out[-1] += item
        elif not isinstance(item, str) or item:
            out.append(item)
    return out


async def windowed(
    items: AsyncIterator[GenerationItem | GenerationUsage], *, max_items: int,
    max_wait_s: float, eager_items: int,
) -> AsyncGenerator[GenerationItem | GenerationUsage, None]:
    """A language model's stream with its text deltas joined over short windows: the first
    ``eager_items`` alone, then what came within ``max_wait_s`` (at most ``max_items``) as
    one delta (:func:`pipeline.aio.batched`, :func:`coalesced`). Each item a reply's reader
    takes costs its loop a step (the sentence buffer, the log, the socket); a token's
    worth of text each time is work that says nothing new. A stage replica sends its
    stream so, and so does a stage in the caller's process."""
    from pipeline.aio import batched

    async with contextlib.aclosing(batched(items, max_items=max_items, max_wait_s=max_wait_s,
                                           eager_items=eager_items)) as batches:
        async for batch in batches:
            for item in coalesced(batch):
                yield item


class NoOptions(BaseModel):
    """The options of an engine that takes none: any option is a mistake."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Engine(abc.ABC):
    """Lifecycle, options and description shared by every engine.

    An engine declares its options as a pydantic model (``Options``, named
    ``<Engine>Options``: frozen, unknown fields forbidden) and gets them validated here,
    once, as :attr:`options`: ``PiperSynthesizer(intra_op_threads=2)`` and
    ``PiperSynthesizer(PiperOptions(intra_op_threads=2))`` are the same engine, and a bad
    option fails the same way for every engine: :class:`ConfigurationError` naming the
    engine and the setting (``VOXLINE_<STAGE>__OPTIONS``).
    """

    #: Short name used in settings and errors ("faster-whisper", "piper", ...).
    name: str = "engine"
    #: The stage this engine serves: "stt", "llm", "tts" or "vad" (set by each base).
    stage: ClassVar[str] = "engine"
    #: The engine's options model.
    Options: ClassVar[type[BaseModel]] = NoOptions
    #: The validated options (subclasses narrow the type to their ``Options``).
    options: BaseModel

    def __init__(self, options: BaseModel | None = None, **fields: Any) -> None:
        self.options = self.validate_options(options, fields)

    @classmethod
    def validate_options(
        cls, options: BaseModel | None = None, fields: Mapping[str, Any] | None = None
    ) -> BaseModel:
        """``options`` as given, or ``Options`` built from keyword ``fields``."""
        if options is not None:
            if fields:
                raise TypeError("pass either an options object or option fields, not both")
            if not isinstance(options, cls.Options):
                raise TypeError(
                    f"{cls.__name__} takes {cls.Options.__name__}, not {type(options).__name__}"
                )
            return options
        try:
            return cls.Options(**(fields or {}))
        except ValidationError as exc:
            raise ConfigurationError(
                f"invalid options for the {cls.name} {cls.stage.upper()} engine: {exc}",
                setting=f"VOXLINE_{cls.stage.upper()}__OPTIONS",
            ) from exc

    async def load(self) -> None:  # noqa: B027 - optional hook
        """Load the model once. Raise ``ModelMissingError`` naming the setting and package."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model and any threads; a stream still running ends with an error."""

    @property
    def ready(self) -> bool:
        return True

    @property
    def model_name(self) -> str | None:
        """The model this engine runs, as a client would name it (``/v1/models`` lists it):
        the ``model`` option, else the stem of ``model_path``; engines with a packaged
        default name it. ``None``: the engine has no model to name."""
        model = getattr(self.options, "model", None)
        if isinstance(model, str) and model:
            return model
        path = getattr(self.options, "model_path", None)
        return Path(path).stem if path else None

    async def describe(self) -> dict[str, Any]:
        """What this engine is, for ``/readyz``, ``/v1/models`` and the stage replicas.

        Its name, model (where it has one to name) and readiness; a stage adds the facts
        its callers need (a synthesizer its sample rate). An engine in another
        deployment asks its replica.
        """
        info: dict[str, Any] = {"engine": self.name, "ready": self.ready}
        if (model := self.model_name) is not None:
            info["model"] = model
        return info


class Transcriber(Engine):
    """Speech to text."""

    stage = "stt"

    @abc.abstractmethod
    def transcribe(self, request: TranscriptionRequest) -> AsyncGenerator[TranscriptSegment, None]:
        """Yield the transcript of ``request.audio`` segment by segment, in time order.

        Silence yields nothing. Bad audio raises ``InvalidAudioError``; a model failure
        raises ``EngineError(code=stt_failed)``.
        """


def transcript_text(segments: Iterable[TranscriptSegment]) -> str:
    """A transcription as one text: its segments' texts, trimmed, one space apart (what a
    turn, a refinement and ``/v1/audio/transcriptions`` all call the transcript)."""
    return " ".join(s.text.strip() for s in segments).strip()


async def transcribed_text(stt: Transcriber, request: TranscriptionRequest) -> str:
    """``request`` transcribed by ``stt``, as one text (:func:`transcript_text`)."""
    return transcript_text([s async for s in stt.transcribe(request)])


class LanguageModel(Engine):
    """A streaming text generator."""

    stage = "llm"

    @abc.abstractmethod
    def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationItem, None]:
        """Yield the reply as the model writes it: text deltas (``str``), whose
        concatenation is the reply's text, and, for a request with ``tools`` the model
        calls, :class:`schemas.ToolCallDelta` items (a call's ``id`` and ``name`` on its
        first item, fragments of its ``arguments`` JSON after; ``index`` tells calls apart).

        Deltas may be whole tokens or several tokens; never empty strings. The stream ends
        at a stop sequence, at ``sampling.max_tokens``, at the end of the model's reply
        or after its calls. Cancelling the consumer aborts the request in the engine.
        Failures raise ``EngineError(code=llm_failed)``. An engine that cannot call tools
        answers a request with tools in words.
        """

    async def generate_with_usage(
        self, request: GenerationRequest
    ) -> AsyncGenerator[GenerationItem | GenerationUsage, None]:
        """:meth:`generate`'s deltas, then, from an engine that counts its tokens, one
        :class:`schemas.GenerationUsage` as the last item (a caller that reports usage
        reads it; one that gets none estimates). The same contract otherwise: the
        default counts nothing and yields only the deltas."""
        async with contextlib.aclosing(self.generate(request)) as deltas:
            async for delta in deltas:
                yield delta

    @property
    def context_tokens(self) -> int | None:
        """The model's context window in tokens (prompt and reply), where the engine knows
        it; callers bound a prompt by it before sending it (:meth:`describe` says it)."""
        return None

    async def describe(self) -> dict[str, Any]:
        """Name, model and readiness, and ``context_tokens`` where the window is known."""
        info = await super().describe()
        if (window := self.context_tokens) is not None:
            info["context_tokens"] = window
        return info


@dataclass
class GenerationStats:
    """What happened to one request of a language model: the engine fills it in as the
    reply streams and keeps the latest as ``last_stats``, so tests and benchmarks see why
    a stream ended, and how fast, without parsing text."""

    request_id: str
    #: "stop" (end of turn or stop sequence), "length" (max_tokens or context full),
    #: "cancelled", "error"; None while running.
    finish_reason: str | None = None
    #: None until the prompt was counted
    prompt_tokens: int | None = None
    #: of those, how many a cache already held (not evaluated again); None: not known
    cached_tokens: int | None = None
    completion_tokens: int = 0
    #: seconds from the request's start to its first text, and to its end
    first_text_s: float | None = None
    duration_s: float | None = None
    #: how the prompt was written for the model: "dialogue" (role labels) or "chat" (the
    #: model's own chat template)
    prompt_format: str = "dialogue"
    #: True once the engine's worker thread has left the request (engines that have one)
    worker_done: bool = False


class Synthesizer(Engine):
    """Text to speech, one piece of text at a time."""

    stage = "tts"
    #: Sample rate of the audio this synthesizer yields (an engine that learns it from
    #: its model sets it in :meth:`load`).
    sample_rate: int = 22050
    #: Names ``request.voice`` may take; empty: only the engine's default voice. An
    #: engine that learns them from its model sets them in :meth:`load`.
    voices: tuple[str, ...] = ()

    @abc.abstractmethod
    def synthesize(self, request: SynthesisRequest) -> AsyncGenerator[AudioChunk, None]:
        """Yield PCM16 mono audio for ``request.text`` in playback order.

        One request may yield one chunk (whole-piece models) or many (streaming models);
        every chunk carries its sample rate. Text with nothing speakable yields nothing.
        Failures raise ``EngineError(code=tts_failed)``.
        """

    @property
    def default_voice(self) -> str | None:
        """The voice a request without one speaks with, where that is one fixed voice (an
        engine with a single voice: Piper's voice file); ``None`` where it follows the
        request's language (espeak-ng) or the engine names no voices."""
        return self.voices[0] if len(self.voices) == 1 else None

    def language_tags(self) -> tuple[str, ...]:
        """Language tags this synthesizer speaks, lower case (``de``, ``en-us``): a tag is
        spoken when it or a prefix of it is listed. Empty: not declared, not checked."""
        return ()

    async def describe(self) -> dict[str, Any]:
        """Name and readiness, the sample rate the audio comes at, and what a session may
        choose: ``voices`` (empty: the default voice only), ``default_voice`` and
        ``languages`` (:meth:`language_tags`), so that settings are checked when they are
        made."""
        return {**await super().describe(), "sample_rate": self.sample_rate,
                "voices": list(self.voices), "default_voice": self.default_voice,
                "languages": list(self.language_tags())}


class VoiceActivityDetector(Engine):
    """Speech probability per fixed-size audio frame."""

    stage = "vad"
    #: Samples per frame the model expects (Silero: 512 at 16 kHz, i.e. 32 ms).
    frame_samples: int = 512
    sample_rate: int = 16000

    @abc.abstractmethod
    def probabilities(self, frames: AsyncIterator[bytes]) -> AsyncGenerator[float, None]:
        """Yield one speech probability in [0, 1] per PCM16 frame of ``frame_samples``.

        The detector keeps its recurrent state across frames of one stream; a new call
        starts a fresh state. A frame of the wrong size raises ``InvalidAudioError``.
        """

    def reset(self) -> None:
        """Forget the recurrent state (a new stream starts)."""


class TurnDetector(Engine):
    """Whether a speaker who just paused has finished their turn, judged from the audio.

    Its core method is a coroutine, not a stream: it gives one verdict per pause, on the
    utterance so far, and the endpointer waits for it (see
    :mod:`pipeline.audio.segmenting`'s judged pauses), so there is nothing to stream.
    """

    stage = "turn"
    sample_rate: int = 16000

    @abc.abstractmethod
    async def completion(self, audio: bytes) -> float:
        """The probability in [0, 1] that the turn is over, from PCM16 mono at
        :attr:`sample_rate` ending where the speaker paused (the model may look at its
        last seconds only). Failures are ``EngineError`` (``turn_detection_failed``)."""


class TextTurnDetector(Engine):
    """Whether the words a speaker said before a pause end their turn, judged from a
    transcript of them: what a speaker is likely to add, which the sound of the pause
    may not tell (:mod:`pipeline.engines.turn_detection.llama_turn`).

    A coroutine, as :class:`TurnDetector`'s: one verdict per pause, which the endpointer
    waits for.
    """

    stage = "turn_text"

    @abc.abstractmethod
    async def completion(self, text: str, language: str = "en") -> float:
        """The probability in [0, 1] that ``text`` (the transcript of the turn so far, in
        ``language``) is a whole turn; 0 for no words. Failures are ``EngineError``
        (``turn_detection_failed``)."""
