"""Audio in and out: PCM16 helpers, codecs, and endpointing of incoming speech.

:mod:`~pipeline.audio.pcm` converts and resamples raw samples (numpy, soxr);
:mod:`~pipeline.audio.codec` decodes uploads and encodes replies (PyAV, imported lazily);
:mod:`~pipeline.audio.endpointing` turns per-frame speech probabilities into utterances,
reported as the records of :mod:`~pipeline.audio.speech_events`;
:mod:`~pipeline.audio.segmenting` runs it, with a detector, over async audio streams;
:mod:`~pipeline.audio.subtitles` writes transcripts as SRT or WebVTT.
Nothing here knows about sessions, turns or engines.
"""

from pipeline.audio.codec import (
    CONTENT_TYPES,
    AudioEncoder,
    content_type,
    decode_audio,
    decode_frames,
    encode_audio,
)
from pipeline.audio.endpointing import EndpointConfig, Endpointer
from pipeline.audio.framing import FrameAssembler
from pipeline.audio.pcm import (
    FloatAudio,
    check_pcm16,
    check_sample_rate,
    duration_s,
    float_to_pcm16,
    is_digital_silence,
    pcm16_to_float,
    resample,
    resample_pcm16,
    rms_dbfs,
)
from pipeline.audio.resampler import PcmResampler, listening_quality
from pipeline.audio.segmenting import (
    Commit,
    FrameDetector,
    Judge,
    endpoint_stream,
    segment_speech,
)
from pipeline.audio.speech_events import (
    EndpointEvent,
    SpeechEnd,
    SpeechOnset,
    SpeechOnsetDropped,
    SpeechPause,
    SpeechResume,
    SpeechStart,
)
from pipeline.audio.subtitles import to_srt, to_vtt

__all__ = [
    "CONTENT_TYPES",
    "AudioEncoder",
    "Commit",
    "EndpointConfig",
    "EndpointEvent",
    "Endpointer",
    "FloatAudio",
    "FrameAssembler",
    "FrameDetector",
    "Judge",
    "PcmResampler",
    "SpeechEnd",
    "SpeechOnset",
    "SpeechOnsetDropped",
    "SpeechPause",
    "SpeechResume",
    "SpeechStart",
    "check_pcm16",
    "check_sample_rate",
    "content_type",
    "decode_audio",
    "decode_frames",
    "duration_s",
    "encode_audio",
    "endpoint_stream",
    "float_to_pcm16",
    "is_digital_silence",
    "listening_quality",
    "pcm16_to_float",
    "resample",
    "resample_pcm16",
    "rms_dbfs",
    "segment_speech",
    "to_srt",
    "to_vtt",
]
