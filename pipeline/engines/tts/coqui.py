"""Coqui TTS (the ``coqui-tts`` package, import ``TTS``): the GPU text-to-speech engine.

Any Coqui model that loads from a checkpoint and its ``config.json`` on local disk: VITS
voices (one checkpoint file) and XTTS-v2 (a checkpoint folder with ``vocab.json`` and,
for its built-in voices, ``speakers_xtts.pth``). Weights are never downloaded: Coqui's
model manager, which fetches by name, is not used at all.

How one piece runs:

* **One worker thread.** Torch models are not reentrant (a VITS speed change is a model
  attribute), and on a GPU the calls would serialize anyway; replicas scale by count.
  The worker hands audio to the event loop through :func:`pipeline.aio.iterate_in_thread`.
* **Whole pieces** (VITS and every other model): Coqui's ``Synthesizer.tts`` speaks the
  piece (the sentence buffer already cut it, so Coqui's own sentence splitting is off)
  and the engine yields one chunk.
* **Streaming** (XTTS): ``Xtts.inference_stream`` yields audio every ``stream_chunk_size``
  GPT tokens, so the first sound comes out before the piece is finished; each chunk is
  yielded as it is computed. The voice's conditioning latents are computed once per voice
  (a built-in speaker's are stored; a reference recording's are computed at first use).
* **Cancellation.** Closing the stream stops the worker before its next chunk; the
  consumer does not wait for the model call in progress, whose output is dropped.
  :meth:`CoquiSynthesizer.close` ends running streams with a transient error.

Audio is PCM16 mono at the model's own output rate (:attr:`CoquiSynthesizer.sample_rate`,
known after :meth:`~CoquiSynthesizer.load`: 22050 Hz for most VITS voices, 24000 Hz for
XTTS); resampling for the client happens at the edge, like for every other engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import time
from collections.abc import AsyncGenerator, Generator, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline.audio import float_to_pcm16
from pipeline.engines._worker import ModelWorker
from pipeline.engines.base import Synthesizer
from schemas import (
    AudioChunk,
    EngineError,
    ErrorCode,
    ModelMissingError,
    ProtocolError,
    SynthesisRequest,
    primary_language,
)

__all__ = ["MODEL_PATH_SETTING", "CoquiOptions", "CoquiSynthesizer"]

logger = logging.getLogger(__name__)

#: The setting that names the checkpoint (a file, or XTTS's folder).
MODEL_PATH_SETTING = "VOXLINE_TTS__OPTIONS__MODEL_PATH"
_PACKAGE = "coqui-tts"


class CoquiOptions(BaseModel):
    """Options of the ``coqui`` TTS engine (``VOXLINE_TTS__OPTIONS__*``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_path: Path | None = Field(
        default=None, description="a checkpoint file (VITS ...) or XTTS's checkpoint folder"
    )
    config_path: Path | None = Field(
        default=None, description="the model's config.json; unset: next to the checkpoint"
    )
    device: str = Field(default="cuda", description="cuda or cpu")
    voice: str | None = Field(
        default=None, description="default speaker of a multi-speaker model (unset: the first)"
    )
    speaker_wav: Path | None = Field(
        default=None, description="XTTS: a reference recording (>3 s) to clone as the voice"
    )
    streaming: Literal["auto", "off"] = Field(
        default="auto", description="auto: stream where the model has inference_stream (XTTS)"
    )
    stream_chunk_size: int = Field(
        default=20, ge=1, le=200, description="XTTS: GPT tokens per streamed chunk"
    )
    torch_threads: int | None = Field(
        default=None, ge=1, le=64, description="CPU only: torch intra-op threads (process-wide)"
    )


class CoquiSynthesizer(Synthesizer):
    """The ``coqui`` TTS engine; construct with :class:`CoquiOptions` fields."""

    name = "coqui"
    Options = CoquiOptions
    options: CoquiOptions

    def __init__(self, options: CoquiOptions | None = None, **fields: Any) -> None:
        super().__init__(options, **fields)
        self._synth: Any = None  # TTS.utils.synthesizer.Synthesizer
        self._worker = ModelWorker(self.name, self.stage, thread_name="voxline-coqui")
        self._latents: dict[str, tuple[Any, Any]] = {}
        self._load_lock = asyncio.Lock()
        #: Seconds the latest load() took.
        self.load_seconds: float | None = None

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._synth is not None

    @property
    def streaming(self) -> bool:
        """True when pieces are streamed in chunks (XTTS) rather than spoken whole."""
        model = self._require().tts_model
        return self.options.streaming == "auto" and hasattr(model, "inference_stream")

    @property
    def speakers(self) -> list[str]:
        """Speaker names the model knows (empty for single-speaker models)."""
        manager = getattr(self._require().tts_model, "speaker_manager", None)
        names = getattr(manager, "speaker_names", None) if manager is not None else None
        return list(names or [])

    @property
    def languages(self) -> list[str]:
        """Languages of a multilingual model (empty: the model speaks one)."""
        model = self._require().tts_model
        config_languages = getattr(getattr(model, "config", None), "languages", None)
        if hasattr(model, "inference_stream") and config_languages:  # XTTS
            return list(config_languages)
        manager = getattr(model, "language_manager", None)
        names = getattr(manager, "language_names", None) if manager is not None else None
        return list(names or []) if names and len(names) > 1 else []

    async def load(self) -> None:
        """Load the model on the worker thread; idempotent."""
        async with self._load_lock:
            if self._synth is not None:
                return
            started = time.perf_counter()
            self._worker.start()
            try:
                self._synth = await self._worker.call(self._load_blocking)
            except BaseException:
                await self._worker.close(wait=False)
                raise
            self.sample_rate = int(self._synth.output_sample_rate)
            self.voices = tuple(self.speakers)
            self.load_seconds = time.perf_counter() - started

    def _load_blocking(self) -> Any:
        checkpoint, config = self._paths()
        try:
            # torch through importlib: it has no stubs in the core environment's mypy run.
            torch = importlib.import_module("torch")
            from TTS.utils.synthesizer import Synthesizer as CoquiEngine
        except ImportError as exc:
            raise ModelMissingError(
                f"the coqui TTS engine needs its package: pip install 'voxline[coqui]' ({exc})",
                stage="tts",
                recoverable=False,
                setting="VOXLINE_TTS__ENGINE",
                package=_PACKAGE,
            ) from exc
        use_cuda = self.options.device.startswith("cuda")
        if use_cuda and not torch.cuda.is_available():
            raise EngineError(
                "device=cuda but torch sees no GPU; set VOXLINE_TTS__OPTIONS__DEVICE=cpu",
                code=ErrorCode.CONFIGURATION_ERROR,
                stage="tts",
                recoverable=False,
            )
        if not use_cuda and self.options.torch_threads:
            torch.set_num_threads(self.options.torch_threads)
        try:
            synth = CoquiEngine(
                tts_checkpoint=str(checkpoint), tts_config_path=str(config), use_cuda=use_cuda
            )
        except Exception as exc:  # Coqui raises whatever torch or its config loader raises
            raise EngineError(
                f"Coqui TTS could not load {checkpoint}: {exc}",
                code=ErrorCode.TTS_FAILED,
                stage="tts",
                recoverable=False,
                setting=MODEL_PATH_SETTING,
                path=str(checkpoint),
            ) from exc
        return synth

    def _paths(self) -> tuple[Path, Path]:
        model = self.options.model_path
        if model is None or not model.exists():
            where = f"nothing at {model}" if model is not None else "no model configured"
            raise ModelMissingError(
                f"{where}: set {MODEL_PATH_SETTING} to a Coqui checkpoint (a VITS .pth file "
                f"or an XTTS-v2 folder) on local disk; Coqui models are never downloaded here",
                stage="tts",
                recoverable=False,
                setting=MODEL_PATH_SETTING,
                package=_PACKAGE,
            )
        model = model.expanduser()
        folder = model if model.is_dir() else model.parent
        config = (self.options.config_path or folder / "config.json").expanduser()
        if not config.is_file():
            raise ModelMissingError(
                f"no Coqui config at {config}: set VOXLINE_TTS__OPTIONS__CONFIG_PATH",
                stage="tts",
                recoverable=False,
                setting="VOXLINE_TTS__OPTIONS__CONFIG_PATH",
                package=_PACKAGE,
            )
        return model, config

    async def close(self) -> None:
        """End running streams with a transient error, let the worker finish its call,
        free the model."""
        self._synth = None
        self._latents.clear()
        self.voices = ()
        await self._worker.close()

    # -- the stream ---------------------------------------------------------------------

    async def synthesize(self, request: SynthesisRequest) -> AsyncGenerator[AudioChunk, None]:
        """Yield PCM16 audio for ``request.text`` (see the base class and module docs)."""
        self._require()
        if not any(ch.isalnum() for ch in request.text):
            return  # nothing speakable: Coqui would fail on an empty token sequence
        speaker, language = self._voice(request)
        # Unbounded on purpose: one piece of text bounds its chunks (a whole piece is one),
        # and a slow reader must not hold the one model thread.
        stream = self._worker.stream(
            lambda: self._pcm(request, speaker, language), buffer=None
        )
        async with contextlib.aclosing(stream):
            async for pcm in stream:
                yield AudioChunk(audio=pcm, sample_rate=self.sample_rate)

    def _voice(self, request: SynthesisRequest) -> tuple[str | None, str | None]:
        """The speaker and language to pass to the model; unknown ones are client errors."""
        speakers = self.speakers
        speaker = request.voice or self.options.voice
        if speaker is not None and speakers and speaker not in speakers:
            raise ProtocolError(
                f"unknown voice {speaker!r}; this model has {', '.join(speakers[:20])}",
                code=ErrorCode.INVALID_SETTINGS,
                stage="tts",
            )
        if speaker is None and speakers and self.options.speaker_wav is None:
            speaker = speakers[0]
        if not speakers:
            speaker = None
        languages = self.languages
        language: str | None = None
        if languages:
            wanted = request.language.lower()
            base = primary_language(wanted)
            language = next((lang for lang in (wanted, base) if lang in languages), None)
            if language is None:
                raise ProtocolError(
                    f"this model does not speak {request.language!r}; it speaks "
                    f"{', '.join(languages)}",
                    code=ErrorCode.INVALID_SETTINGS,
                    stage="tts",
                )
        return speaker, language

    # -- worker-thread side -------------------------------------------------------------

    def _pcm(
        self, request: SynthesisRequest, speaker: str | None, language: str | None
    ) -> Iterator[bytes]:
        """The worker: the model's audio as PCM16, chunk by chunk (worker thread)."""
        try:
            pieces = (
                self._stream_pieces(request, speaker, language)
                if self.streaming
                else self._whole_piece(request, speaker, language)
            )
            with contextlib.closing(pieces):
                for samples in pieces:
                    if samples.size:
                        yield float_to_pcm16(samples)
        except Exception as exc:
            logger.exception("Coqui TTS failed")
            raise EngineError(
                "Coqui TTS failed", code=ErrorCode.TTS_FAILED, stage="tts"
            ) from exc

    def _whole_piece(
        self, request: SynthesisRequest, speaker: str | None, language: str | None
    ) -> Generator[np.ndarray[Any, Any]]:
        synth = self._require()
        model = synth.tts_model
        length_scale = getattr(model, "length_scale", None)
        if length_scale is not None and request.speed != 1.0:  # VITS: speed is a model knob
            model.length_scale = length_scale / request.speed
        try:
            wav = synth.tts(
                text=request.text,
                speaker_name=speaker,
                language_name=language,
                split_sentences=False,
            )
        finally:
            if length_scale is not None:
                model.length_scale = length_scale
        yield np.asarray(wav, dtype=np.float32).reshape(-1)

    def _stream_pieces(
        self, request: SynthesisRequest, speaker: str | None, language: str | None
    ) -> Generator[np.ndarray[Any, Any]]:
        model = self._require().tts_model
        gpt_cond_latent, speaker_embedding = self._conditioning(speaker)
        chunks = model.inference_stream(
            request.text,
            language or "en",
            gpt_cond_latent,
            speaker_embedding,
            stream_chunk_size=self.options.stream_chunk_size,
            speed=request.speed,
            enable_text_splitting=False,
        )
        try:
            for chunk in chunks:
                yield chunk.detach().float().cpu().numpy().reshape(-1)
        finally:
            chunks.close()

    def _conditioning(self, speaker: str | None) -> tuple[Any, Any]:
        """XTTS's voice: a built-in speaker's stored latents, or the reference recording's."""
        key = speaker or f"wav:{self.options.speaker_wav}"
        cached = self._latents.get(key)
        if cached is not None:
            return cached
        model = self._require().tts_model
        manager = getattr(model, "speaker_manager", None)
        if speaker is not None and manager is not None and speaker in manager.speakers:
            stored = manager.speakers[speaker]
            latents = (stored["gpt_cond_latent"], stored["speaker_embedding"])
        elif self.options.speaker_wav is not None:
            wav = str(self.options.speaker_wav)
            latents = tuple(model.get_conditioning_latents(audio_path=[wav]))
        else:
            raise EngineError(
                "this XTTS model has no built-in speakers: set VOXLINE_TTS__OPTIONS__SPEAKER_WAV "
                "to a reference recording",
                code=ErrorCode.CONFIGURATION_ERROR,
                stage="tts",
                recoverable=False,
            )
        self._latents[key] = (latents[0], latents[1])
        return latents[0], latents[1]

    def _require(self) -> Any:
        if self._synth is None:
            raise EngineError(
                "the coqui engine is not loaded", code=ErrorCode.TTS_FAILED, stage="tts"
            )
        return self._synth
