"""Voxline's framework-free streaming logic.

Everything that decides *what* happens lives here and runs without Ray or FastAPI: the
event log and its consumer groups, the session state fold, the sentence buffer, the turn
orchestrator, VAD endpointing, audio conversion and the engines. ``deployments/`` only
decides *where* it runs. Engines are imported lazily (``create_engine``), so importing
this package never loads a model runtime.
"""

from pipeline.cancel import CancelToken
from pipeline.consumer import Delivery, GroupReader, run_worker
from pipeline.endpointing import (
    EndpointConfig,
    Endpointer,
    FrameAssembler,
    SpeechEnd,
    SpeechStart,
)
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
from pipeline.eventlog import AppendResult, EventLog, LogPage, StreamId
from pipeline.redis_client import create_redis
from pipeline.sentences import SentenceBuffer, SentenceBufferConfig, split_stream, split_text
from pipeline.session import LiveSession, SessionEngines
from pipeline.state import SessionState, TurnState, fold
from pipeline.turn import TurnConfig, TurnOrchestrator, TurnStats

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
    "SentenceBuffer",
    "SentenceBufferConfig",
    "SessionEngines",
    "SessionState",
    "SpeechEnd",
    "SpeechStart",
    "StreamId",
    "Synthesizer",
    "Transcriber",
    "TurnConfig",
    "TurnOrchestrator",
    "TurnState",
    "TurnStats",
    "VoiceActivityDetector",
    "create_engine",
    "create_redis",
    "engine_class",
    "fold",
    "run_worker",
    "split_stream",
    "split_text",
]
