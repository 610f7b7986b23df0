"""The streaming turn: LLM tokens → sentence buffer → TTS per piece → ordered audio.

:class:`TurnOrchestrator` runs one response as an async generator of events; the sentence
buffer (:mod:`~pipeline.turn.sentences`) cuts speakable pieces out of the token stream;
the speaker (:mod:`~pipeline.turn.speaker`) synthesizes pieces concurrently and hands
their audio on in order; :class:`AudioOutput` numbers and encodes it in the client's
format. The live turn, auto-play narration and ``/v1/audio/speech`` all turn text into
audio this way (:func:`speak`, :func:`synthesizer_for`, :func:`pieces_of`).
Cancellation (:class:`CancelToken`) reaches every engine of the turn at once. The model's
tool calls run through a :class:`ResponseTools` the caller hands in (:mod:`~pipeline.turn.tools`).
"""

from pipeline.turn.cancel import CancelReason, CancelToken
from pipeline.turn.config import TurnConfig, TurnMode, TurnStats
from pipeline.turn.events import ended_event, error_payload
from pipeline.turn.orchestrator import TurnOrchestrator
from pipeline.turn.output import AudioOutput
from pipeline.turn.sentences import SentenceBuffer, SentenceBufferConfig, split_stream, split_text
from pipeline.turn.text_to_audio import pieces_of, speak, synthesizer_for
from pipeline.turn.tools import CallGatherer, ResponseTools, RunsOn, StartedCall, ToolOutcome

__all__ = [
    "AudioOutput",
    "CallGatherer",
    "CancelReason",
    "CancelToken",
    "ResponseTools",
    "RunsOn",
    "SentenceBuffer",
    "SentenceBufferConfig",
    "StartedCall",
    "ToolOutcome",
    "TurnConfig",
    "TurnMode",
    "TurnOrchestrator",
    "TurnStats",
    "ended_event",
    "error_payload",
    "pieces_of",
    "speak",
    "split_stream",
    "split_text",
    "synthesizer_for",
]
