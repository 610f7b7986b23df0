"""Voxline's framework-free streaming logic.

Everything that decides *what* happens lives here and runs without Ray or FastAPI;
``deployments/`` only decides *where* it runs. One sub-package per concept, each with a
façade (its ``__init__``) that the rest of the code imports:

============================  =================================================================
``pipeline.log``              the session log on Redis Streams, consumer groups, the state fold
``pipeline.audio``            PCM helpers, codecs, endpointing of incoming speech
``pipeline.engines``          the engine seams, the engines in a sub-package per stage
                              (``stt``, ``llm``, ``tts``, ``vad``, ``turn_detection``), the
                              registry and the packaged weights (``pipeline.engines.weights``)
``pipeline.reply``            the streaming reply: sentence buffer, speaker, audio output, cancel
``pipeline.session``          sessions: creation, authorization, settings merging, and the live
                              side (speech input, typed turns, barge-in; events out by the log)
``pipeline.turntaking``       turn-taking: the speech input, what ends a turn (end-of-turn
                              judges), backchannels, the replay evaluation of its settings
``pipeline.workers``          background consumers: auto-play narration, re-transcription, metrics
``pipeline.openai_realtime``  the OpenAI Realtime API's events, to and from the session's own
``pipeline.webrtc``           WebRTC calls: OpenAI's Realtime API over an aiortc peer connection
``pipeline.telephony``        phone calls: Twilio Media Streams read and written
``pipeline.retrieval``        document collections in Redis, BM25 search, grounding and citations
``pipeline.tools``            tools the server runs (its own and MCP servers'), each call once
``pipeline.privacy``          redaction of personal data before the log and the model see it
``pipeline.datasets``         logged sessions as a dataset on disk (WAV + JSONL) and back
``pipeline.tracing``          turn traces: from the log, live over OTLP
``pipeline.meters``           what a replica counts about itself for the operator's metrics
``pipeline.aio``              asyncio helpers shared by all of them
============================  =================================================================

Engines are imported lazily (:func:`create_engine`), so importing this package never loads
a model runtime.
"""

from pipeline.audio import EndpointConfig, Endpointer, FrameAssembler, SpeechEnd, SpeechStart
from pipeline.engines import (
    ENGINES,
    Engine,
    LanguageModel,
    Synthesizer,
    Transcriber,
    VoiceActivityDetector,
    create_engine,
    engine_class,
)
from pipeline.log import (
    AppendResult,
    Delivery,
    EventLog,
    GroupReader,
    LogPage,
    SessionState,
    StreamId,
    TurnState,
    create_redis,
    fold,
    run_worker,
)
from pipeline.reply import (
    CancelToken,
    ReplyConfig,
    ReplyOrchestrator,
    ReplyStats,
    SentenceBuffer,
    SentenceBufferConfig,
    split_stream,
    split_text,
)
from pipeline.session import LiveSession, SessionEngines

__all__ = [
    "ENGINES",
    "AppendResult",
    "CancelToken",
    "Delivery",
    "EndpointConfig",
    "Endpointer",
    "Engine",
    "EventLog",
    "FrameAssembler",
    "GroupReader",
    "LanguageModel",
    "LiveSession",
    "LogPage",
    "ReplyConfig",
    "ReplyOrchestrator",
    "ReplyStats",
    "SentenceBuffer",
    "SentenceBufferConfig",
    "SessionEngines",
    "SessionState",
    "SpeechEnd",
    "SpeechStart",
    "StreamId",
    "Synthesizer",
    "Transcriber",
    "TurnState",
    "VoiceActivityDetector",
    "create_engine",
    "create_redis",
    "engine_class",
    "fold",
    "run_worker",
    "split_stream",
    "split_text",
]
