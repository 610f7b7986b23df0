"""Engines are chosen in settings, not in code: a name maps to a class, imported lazily.

Lazy import keeps heavy libraries (onnxruntime, llama_cpp, torch) out of processes that
never run the engine, such as the ingress. ``options`` are validated by the engine's own
``Options`` model (:class:`~pipeline.engines.base.Engine`), so a typo in a setting fails at
start-up with the field's name. Adding an engine is one module, in its stage's
sub-package (``pipeline.engines.tts`` ...), plus one line here.
"""

from __future__ import annotations

import importlib
from typing import Any, TypeVar

from pipeline.engines.base import (
    Engine,
    LanguageModel,
    Synthesizer,
    TextTurnDetector,
    Transcriber,
    TurnDetector,
    VoiceActivityDetector,
)
from schemas import ConfigurationError

E = TypeVar("E", bound=Engine)

#: stage -> engine name -> "module:Class"
ENGINES: dict[str, dict[str, str]] = {
    "stt": {
        "faster-whisper": "pipeline.engines.stt.faster_whisper:FasterWhisperTranscriber",
        "whisperx": "pipeline.engines.stt.whisperx:WhisperXTranscriber",
        "language-router": "pipeline.engines.stt.routing:LanguageRoutingTranscriber",
    },
    "llm": {
        "llama-cpp": "pipeline.engines.llm.llama_cpp:LlamaCppLanguageModel",
        "openai": "pipeline.engines.llm.openai_remote:OpenAICompatibleLanguageModel",
        "vllm": "pipeline.engines.llm.vllm:VllmLanguageModel",
    },
    "tts": {
        "piper": "pipeline.engines.tts.piper:PiperSynthesizer",
        "espeak": "pipeline.engines.tts.espeak:EspeakSynthesizer",
        "coqui": "pipeline.engines.tts.coqui:CoquiSynthesizer",
        "language-router": "pipeline.engines.tts.routing:LanguageRoutingSynthesizer",
    },
    "vad": {
        "silero": "pipeline.engines.vad.silero:SileroVoiceActivityDetector",
    },
    "turn": {
        "smart-turn": "pipeline.engines.turn_detection.smart_turn:SmartTurnDetector",
    },
    "turn_text": {
        "llama-cpp": "pipeline.engines.turn_detection.llama_turn:LlamaTextTurnDetector",
    },
}

_BASES: dict[str, type[Engine]] = {
    "stt": Transcriber,
    "llm": LanguageModel,
    "tts": Synthesizer,
    "vad": VoiceActivityDetector,
    "turn": TurnDetector,
    "turn_text": TextTurnDetector,
}


def engine_class(stage: str, name: str) -> type[Engine]:
    """Resolve an engine class by stage and name; a clear error for unknown names."""
    try:
        target = ENGINES[stage][name]
    except KeyError:
        known = ", ".join(sorted(ENGINES.get(stage, {}))) or "none"
        raise ConfigurationError(
            f"unknown {stage} engine {name!r}; known: {known}",
            setting=f"VOXLINE_{stage.upper()}__ENGINE",
        ) from None
    module_name, _, class_name = target.partition(":")
    module = importlib.import_module(module_name)
    cls: type[Engine] = getattr(module, class_name)
    if not issubclass(cls, _BASES[stage]):
        raise ConfigurationError(f"{target} is not a {_BASES[stage].__name__}")
    return cls


def create_engine(stage: str, name: str, options: dict[str, Any] | None = None) -> Engine:
    """Build (not load) an engine; ``options`` go to the engine's constructor."""
    return engine_class(stage, name)(**(options or {}))
