"""Engine seams and their implementations; see :mod:`pipeline.engines.base`."""

from pipeline.engines.base import (
    Engine,
    LanguageModel,
    Synthesizer,
    Transcriber,
    VoiceActivityDetector,
)
from pipeline.engines.registry import ENGINES, create_engine, engine_class

__all__ = [
    "ENGINES",
    "Engine",
    "LanguageModel",
    "Synthesizer",
    "Transcriber",
    "VoiceActivityDetector",
    "create_engine",
    "engine_class",
]
