"""The public surface of schemas and pipeline is deliberate: pin it."""

from __future__ import annotations

import pipeline
import schemas
from tests.import_check import loaded_after


def test_pipeline_exports() -> None:
    assert sorted(pipeline.__all__) == [
        "AppendResult", "CancelToken", "Delivery", "ENGINES", "EndpointConfig", "Endpointer",
        "Engine", "EventLog", "FrameAssembler", "GroupReader", "LanguageModel", "LiveSession",
        "LogPage", "SentenceBuffer", "SentenceBufferConfig", "SessionEngines", "SessionState",
        "SpeechEnd", "SpeechStart",
        "StreamId", "Synthesizer", "Transcriber", "TurnConfig", "TurnOrchestrator",
        "TurnState", "TurnStats", "VoiceActivityDetector", "create_engine", "create_redis",
        "engine_class", "fold", "run_worker", "split_stream", "split_text",
    ]  # fmt: skip
    for name in pipeline.__all__:
        assert getattr(pipeline, name) is not None


def test_schemas_exports_resolve() -> None:
    for name in schemas.__all__:
        assert getattr(schemas, name) is not None


def test_importing_pipeline_loads_no_model_runtime_nor_framework() -> None:
    heavy = {"torch", "ray", "fastapi", "starlette", "onnxruntime", "llama_cpp",
             "faster_whisper", "ctranslate2", "piper", "av", "soxr"}
    assert loaded_after("pipeline, schemas", heavy) == []
