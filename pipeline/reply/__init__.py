"""The streaming reply, one response of a turn: LLM tokens → sentence buffer → TTS per
piece → ordered audio. ("Turn" itself means turn-taking: :mod:`pipeline.turntaking`.)

:class:`ReplyOrchestrator` runs one response as an async generator of events; the sentence
buffer (:mod:`~pipeline.reply.sentences`) cuts speakable pieces out of the token stream;
the speaker (:mod:`~pipeline.reply.speaker`) synthesizes pieces concurrently and hands
their audio on in order; :class:`AudioOutput` numbers and encodes it in the client's
format. The live reply, auto-play narration and ``/v1/audio/speech`` all turn text into
audio this way (:func:`speak`, :func:`synthesizer_for`, :func:`pieces_of`).
Cancellation (:class:`CancelToken`) reaches every engine of the reply at once. The model's
tool calls run through a :class:`ResponseTools` the caller hands in (:mod:`~pipeline.reply.tools`).
"""

from pipeline.reply.cancel import CancelReason, CancelToken
from pipeline.reply.config import ReplyConfig, ReplyMode, ReplyStats
from pipeline.reply.events import ended_event, error_payload
from pipeline.reply.orchestrator import ReplyOrchestrator
from pipeline.reply.output import AudioOutput
from pipeline.reply.sentences import SentenceBuffer, SentenceBufferConfig, split_stream, split_text
from pipeline.reply.text_to_audio import pieces_of, speak, synthesizer_for
from pipeline.reply.tools import CallGatherer, ResponseTools, RunsOn, StartedCall, ToolOutcome

__all__ = [
    "AudioOutput",
    "CallGatherer",
    "CancelReason",
    "CancelToken",
    "ReplyConfig",
    "ReplyMode",
    "ReplyOrchestrator",
    "ReplyStats",
    "ResponseTools",
    "RunsOn",
    "SentenceBuffer",
    "SentenceBufferConfig",
    "StartedCall",
    "ToolOutcome",
    "ended_event",
    "error_payload",
    "pieces_of",
    "speak",
    "split_stream",
    "split_text",
    "synthesizer_for",
]
