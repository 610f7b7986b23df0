"""The public surface of schemas, pipeline and each of pipeline's packages is deliberate:
pin it. Code outside a package imports only its façade (lint-imports checks that), so a
name added to or dropped from a façade is a change of the package's API, made on purpose.
"""

from __future__ import annotations

import importlib
import pathlib

import pytest

import pipeline
import schemas
from tests.support.import_check import loaded_after


def test_pipeline_exports() -> None:
    assert sorted(pipeline.__all__) == [
        "AppendResult", "CancelToken", "Delivery", "ENGINES", "EndpointConfig", "Endpointer",
        "Engine", "EventLog", "FrameAssembler", "GroupReader", "LanguageModel", "LiveSession",
        "LogPage", "ReplyConfig", "ReplyOrchestrator", "ReplyStats", "SentenceBuffer",
        "SentenceBufferConfig", "SessionEngines", "SessionState", "SpeechEnd", "SpeechStart",
        "StreamId", "Synthesizer", "Transcriber", "TurnState", "VoiceActivityDetector",
        "create_engine", "create_redis", "engine_class", "fold", "run_worker", "split_stream",
        "split_text",
    ]  # fmt: skip
    for name in pipeline.__all__:
        assert getattr(pipeline, name) is not None


FACADES = {
    "pipeline.aio": [
        "Batcher", "BatcherStats", "ThreadStream", "aclose_stream", "batched", "iterate_in_thread",
        "name_os_thread", "reraise_lost_cancel",
        # work running at once, with a bounded line for it (a stage in the Gateway, readers)
        "Places",
        # a long-lived process's start-up objects out of the collections that pause its loop,
        # and the Gateway's young collections fewer
        "freeze_startup_heap", "SERVING_YOUNG_THRESHOLD",
    ],
    "pipeline.log": [
        "AppendResult", "CallLeases", "DEFAULT_FEED_TYPES", "Delivery", "EventLog", "FeedReader",
        "GroupReader",
        "LogFanout",
        "LogPage", "SessionState", "StreamId", "ToolCallRecord", "TurnState", "create_redis",
        "feed_groups", "fold", "erase_from_log", "erased_receipt", "audit_entries",
        "record_read",
        "is_cluster", "message_tokens", "run_worker",
        # every session the log holds, with when it began (retention, --since), and the
        # tags it was created with (--tag)
        "LoggedSession", "created_tags", "logged_sessions",
    ],
    "pipeline.meters": [
        "AdmissionCounts", "FAST_BUCKETS_MS", "FeedGroupLag", "GatewayMeters", "Histogram",
        "HistogramData", "ReplicaBoard", "ReplicaCollector", "ReplicaReport", "StageCalls",
        "StageCounts",
    ],
    "pipeline.audio": [
        "AudioEncoder", "CONTENT_TYPES", "Commit", "EndpointConfig", "EndpointEvent",
        "Endpointer", "FloatAudio", "FrameAssembler", "FrameDetector", "Judge", "PcmResampler",
        "SpeechEnd", "SpeechOnset", "SpeechOnsetDropped", "SpeechPause", "SpeechResume",
        "SpeechStart", "check_pcm16",
        "check_sample_rate", "content_type",
        "decode_audio", "decode_frames", "duration_s", "encode_audio", "endpoint_stream",
        "float_to_pcm16", "is_digital_silence",
        # the input's resampling quality: no hold-back where there is nothing to filter
        "listening_quality",
        "pcm16_to_float", "resample", "resample_pcm16", "rms_dbfs", "segment_speech",
        "to_srt", "to_vtt",
    ],
    "pipeline.engines": [
        "ENGINES", "Engine", "LanguageModel", "ModelStatus", "Synthesizer", "TextTurnDetector",
        "Transcriber", "TurnDetector", "VoiceActivityDetector", "create_engine", "engine_class",
        "list_models", "prepare_model", "OPENAI_VOICES", "engine_voice", "transcribed_text",
        "transcript_text",
        # what a language model streams, a replica's batch of it and its stream window
        "GenerationItem", "coalesced", "windowed",
        # a stage called in the caller's process, with its deployment's bounds
        "StageBound", "bounded_stage", "describe_stage",
        # a tool call's id, where a model gave it none; why arguments miss their schema
        "new_call_id", "schema_problem",
    ],
    # a stage's engines, each imported by the registry when created: nothing to export
    "pipeline.engines.llm": [],
    "pipeline.engines.stt": [],
    "pipeline.engines.tts": [],
    "pipeline.engines.turn_detection": [],
    "pipeline.engines.vad": [],
    "pipeline.engines.weights": [
        "GEMMA_MODEL_NAME", "GEMMA_PACKAGE", "MODEL_PATH_SETTING", "ModelStatus",
        "PackagedModel", "PrepareContext", "ProgressCallback", "find", "gemma_gguf_prepared",
        "gemma_license_files", "get_model", "join_parts", "list_models", "locate_gemma_gguf",
        "models_cache_dir", "package_file", "prepare", "register", "unregister",
        "verify_joined",
    ],
    "pipeline.reply": [
        "AudioOutput", "CancelReason", "CancelToken", "SentenceBuffer", "SentenceBufferConfig",
        "ReplyConfig", "ReplyMode", "ReplyOrchestrator", "ReplyStats", "error_payload",
        "pieces_of", "speak", "split_stream", "split_text", "synthesizer_for",
        # the tools of a response, as the orchestrator sees them
        "CallGatherer", "ResponseTools", "RunsOn", "StartedCall", "ToolOutcome", "ended_event",
    ],
    "pipeline.datasets": ["DATASET_FORMAT", "DatasetSession", "DatasetSummary", "DatasetWriter",
                          "read_dataset", "write_dataset",
                          # reference transcripts for an evaluation against the truth
                          "References", "dataset_references", "read_references"],
    "pipeline.privacy": ["ENTITIES", "Entity", "Redacted", "redact", "redacted_for",
                         "region_of"],
    "pipeline.tools": ["SEARCH_DOCUMENTS", "CallContext", "CallScope", "SearchDocuments",
                       "ServerTool", "SessionTools", "ToolRunner", "Toolbox"],
    "pipeline.session": [
        "Admission", "EngineChoices", "FRAME_QUEUE", "LiveSession", "Permit", "RateLimiter",
        "SessionEngines",
        "SessionTokens", "SpeechInput", "TURN_ENDS", "Tenant", "authorize", "create_session",
        "endpoint_config", "ends_turn", "check_cursor", "closed_error", "follow_turn",
        "erase_session", "expire_sessions", "sweep_forever", "known_or_erased",
        "merge_settings", "new_session_id", "parse_event_id",
        # the replay evaluation (voxline replay --evaluate)
        "LoggedInput", "Replay", "TurnEnd", "logged_input", "quick_transcriber", "replay_turn_ends",
        "score_against_truth", "turn_measures", "sounds_unfinished", "turn_detection",
        "judged_by",
    ],
    "pipeline.turntaking": [
        "FRAME_QUEUE", "SpeechInput", "endpoint_config", "session_endpoint", "utterance_events",
        "TurnPolicy", "SilencePolicy", "AudioModelPolicy", "TextJudgePolicy", "SmartPolicy",
        "turn_policy", "judged_by", "turn_detection", "sounds_unfinished", "backchannel_prompt",
        "is_backchannel", "heard_backchannel", "transcribe_in",
        # the replay evaluation (voxline replay --evaluate)
        "LoggedInput", "Replay", "TurnEnd", "logged_input", "quick_transcriber", "replay_turn_ends",
        "score_against_truth", "turn_measures", "missed_ends", "quantiles",
        "Outcome", "Overlap", "judge_overlap", "logged_overlaps", "overlap_measures",
    ],
    "pipeline.workers": [
        "BUCKETS_MS", "FeedEntry", "FeedWorker", "Job", "Lease", "LeaseBusy", "LeaseLost",
        "LatencyParts", "METRICS_FEED_TYPES", "MetricsConsumer", "NarrationWorker", "PARTS",
        "RefineWorker", "ReplicaMetrics", "STAGES",
        "SessionScan", "TurnMeasure", "TurnMetrics", "TurnTimeline", "narration_pieces",
        "otlp_metrics", "playback_stalls", "prometheus_endpoint", "scan_session", "turn_metrics",
        "vad_tail_ms",
    ],
    "pipeline.openai_realtime": [
        "BETA_NAMES", "ClientActions", "ClientEvent", "ClientTranslator", "Frame",
        "SUPPORTED_CLIENT_EVENTS", "ServerTranslator", "SessionConfig", "error_frame",
        "local_id", "log_id_before", "parse_resume_id", "retrieved_item", "session_object",
    ],
    "pipeline.telephony": [
        "CALL_AUDIO", "CallTranslator", "Connected", "Dtmf", "Mark", "Media", "Start", "Stop",
        "TwilioMessage", "media_audio", "parse_message",
    ],
    "pipeline.tracing": [
        "Appended", "DeliverySpans", "DerivedIds", "Span", "TurnSpans", "TurnTrace", "adopt",
        "bind_session", "call_span", "carrier", "install_log_context", "otlp_configured",
        "otlp_json", "otlp_tracing", "record_trace", "trace_id", "turn_context",
        "turn_root_context", "turn_trace", "turn_traces",
    ],
    "pipeline.webrtc": [
        "CALL_RATE", "EVENTS_CHANNEL", "InOrderBuffer", "ReplyTrack", "WebRtcCall",
        "hold_packets", "listen_in_order", "microphone", "use_host_addresses",
        # the caller's offer, bounded before aiortc parses it; ICE's first check
        "Offer", "OfferLimits", "bound_offer", "on_first_check",
        # the events channel, served by the API's connection skeleton
        "EventsChannel", "ChannelClosedError", "MAX_PENDING",
    ],
    "deployments.api": ["WS_PROTOCOL", "ApiServer", "Services", "create_api", "get_services",
                        "start_services"],
    "pipeline.retrieval": [
        "BM25Index", "BM25Retriever", "CONTEXT_HEADER", "CollectionStore", "DOCUMENT_FORMATS",
        "DocumentReaders", "FOLD_EVERY", "GroundedPrompt", "Grounder", "Grounding", "IndexStore",
        "LoadedIndex", "MODEL_PACKAGE",
        "MiniLMReranker", "Passage", "RERANKER_HINT", "ReadDocument", "ReadLimits", "Reranker",
        "Retriever", "Segment", "TwoStageRetriever", "chunk_text", "context_message",
        "document_text", "read_document", "tokenize",
    ],
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(FACADES))
def test_each_facade_exports_what_it_says(name: str) -> None:
    facade = importlib.import_module(name)
    assert sorted(facade.__all__) == sorted(FACADES[name])
    assert facade.__doc__, f"{name} has no docstring saying what lives there"
    for member in facade.__all__:
        assert getattr(facade, member) is not None


def test_every_pipeline_package_has_a_pinned_facade() -> None:
    root = pathlib.Path(pipeline.__file__).parent
    packages = {
        ".".join(("pipeline", *init.parent.relative_to(root).parts))
        for init in root.rglob("__init__.py") if init.parent != root
    }
    assert packages <= set(FACADES)


def test_schemas_exports_resolve() -> None:
    for name in schemas.__all__:
        assert getattr(schemas, name) is not None


def test_importing_pipeline_loads_no_model_runtime_nor_framework() -> None:
    heavy = {"torch", "ray", "fastapi", "starlette", "onnxruntime", "llama_cpp",
             "faster_whisper", "ctranslate2", "piper", "av", "soxr"}
    assert loaded_after("pipeline, schemas", heavy) == []
