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

Engines are plain classes: Ray Serve deployments wrap them (``deployments/``), tests drive
them directly. Heavy imports (onnxruntime, llama_cpp, torch ...) happen inside
:meth:`Engine.load`, never at module import, so the ingress can import this package.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from schemas import (
    AudioChunk,
    ConfigurationError,
    GenerationRequest,
    SynthesisRequest,
    TranscriptionRequest,
    TranscriptSegment,
)

C = TypeVar("C", bound=BaseModel)


def engine_config(
    model: type[C], config: C | None, options: dict[str, Any], *, engine: str, stage: str
) -> C:
    """An engine's validated options: ``config`` as given, or built from keyword options.

    Every engine takes its options this way, so a bad option fails the same way
    everywhere: :class:`ConfigurationError` naming the engine and the setting.
    """
    if config is not None:
        if options:
            raise TypeError("pass either config or keyword options, not both")
        return config
    try:
        return model(**options)
    except ValidationError as exc:
        raise ConfigurationError(
            f"invalid options for the {engine} {stage.upper()} engine: {exc}",
            setting=f"VOXLINE_{stage.upper()}__OPTIONS",
        ) from exc


class Engine(abc.ABC):  # noqa: B024 - the stages below add the abstract methods
    """Lifecycle shared by every engine."""

    #: Short name used in settings and errors ("faster-whisper", "piper", ...).
    name: str = "engine"

    async def load(self) -> None:  # noqa: B027 - optional hook
        """Load the model once. Raise ``ModelMissingError`` naming the setting and package."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model and any threads."""

    @property
    def ready(self) -> bool:
        return True


class Transcriber(Engine):
    """Speech to text."""

    @abc.abstractmethod
    def transcribe(self, request: TranscriptionRequest) -> AsyncGenerator[TranscriptSegment, None]:
        """Yield the transcript of ``request.audio`` segment by segment, in time order.

        Silence yields nothing. ``request.partial`` asks for a cheap interim result that the
        caller may drop. Bad audio raises ``InvalidAudioError``; a model failure raises
        ``EngineError(code=stt_failed)``.
        """


class LanguageModel(Engine):
    """A streaming text generator."""

    @abc.abstractmethod
    def generate(self, request: GenerationRequest) -> AsyncGenerator[str, None]:
        """Yield text deltas as the model writes them; the concatenation is the reply.

        Deltas may be whole tokens or several tokens; never empty strings. The stream ends
        at a stop sequence, at ``sampling.max_tokens`` or at the end of the model's reply.
        Cancelling the consumer aborts the request in the engine. Failures raise
        ``EngineError(code=llm_failed)``.
        """


class Synthesizer(Engine):
    """Text to speech, one piece of text at a time."""

    #: Sample rate of the audio this synthesizer yields.
    sample_rate: int = 22050

    @abc.abstractmethod
    def synthesize(self, request: SynthesisRequest) -> AsyncGenerator[AudioChunk, None]:
        """Yield PCM16 mono audio for ``request.text`` in playback order.

        One request may yield one chunk (whole-piece models) or many (streaming models);
        every chunk carries its sample rate. Text with nothing speakable yields nothing.
        Failures raise ``EngineError(code=tts_failed)``.
        """


class VoiceActivityDetector(Engine):
    """Speech probability per fixed-size audio frame."""

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
