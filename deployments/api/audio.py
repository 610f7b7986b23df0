"""OpenAI-style audio endpoints: transcribe an uploaded file, speak a text.

``POST /v1/audio/transcriptions`` takes the same multipart form as OpenAI's (``file``,
``model``, ``language``, ``response_format`` json | text | verbose_json) and any common
audio format (FFmpeg decodes it); it runs the STT deployment's engine, which on a GPU
cluster is WhisperX, the high-quality batch path. ``model`` is accepted for
compatibility; the engine is chosen by the server's configuration.

``POST /v1/audio/speech`` takes OpenAI's JSON (``input``, ``voice``, ``response_format``
wav | pcm | mp3 | opus, ``speed``) and streams the audio while later sentences are still
being synthesized. ``pcm`` is raw 16-bit mono at 24 kHz, as in OpenAI's API.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from deployments.api._errors import error_responses
from deployments.api._services import Services, get_services
from pipeline.audio import content_type, decode_audio
from pipeline.turn import AudioOutput, pieces_of, speak, synthesizer_for
from schemas import (
    AudioChunkData,
    AudioFormat,
    EngineError,
    ErrorCode,
    InputTooLargeError,
    ProtocolError,
    TranscriptionRequest,
    TranscriptSegment,
)

router = APIRouter(prefix="/v1/audio", tags=["audio"])
ServicesDep = Annotated[Services, Depends(get_services)]

STT_RATE = 16000
SPEECH_RATE = 24000
_FORMATS = {"wav": AudioFormat.WAV, "pcm": AudioFormat.PCM16, "mp3": AudioFormat.MP3,
            "opus": AudioFormat.OPUS}


class Segment(BaseModel):
    id: int
    start: float
    end: float
    text: str


class Transcription(BaseModel):
    text: str


class VerboseTranscription(Transcription):
    task: Literal["transcribe"] = "transcribe"
    language: str
    duration: float
    segments: list[Segment]


@router.post(
    "/transcriptions",
    response_model=VerboseTranscription | Transcription,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
               **error_responses(400, 413, 415, 422, 502, 503)},
)
async def transcriptions(
    services: ServicesDep,
    file: Annotated[UploadFile, File(description="WAV, MP3, FLAC, OGG, M4A, WebM ...")],
    model: Annotated[str, Form(description="accepted for compatibility")] = "whisper-1",
    language: Annotated[str, Form(pattern=r"^[a-z]{2,3}$")] = "en",
    response_format: Annotated[Literal["json", "text", "verbose_json"], Form()] = "json",
) -> Response:
    stt = services.engines.stt
    if stt is None:
        raise _missing("stt")
    limit = services.settings.api.max_upload_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise InputTooLargeError(f"the upload is over the limit of {limit} bytes", limit=limit)
    pcm = await asyncio.to_thread(decode_audio, data, sample_rate=STT_RATE)
    request = TranscriptionRequest(audio=pcm, sample_rate=STT_RATE, language=language)
    segments: list[TranscriptSegment] = [s async for s in stt.transcribe(request)]
    text = " ".join(s.text.strip() for s in segments).strip()
    if response_format == "text":
        return PlainTextResponse(text)
    if response_format == "json":
        return JSONResponse(Transcription(text=text).model_dump())
    verbose = VerboseTranscription(
        text=text,
        language=language,
        duration=round(len(pcm) / 2 / STT_RATE, 3),
        segments=[Segment(id=i, start=s.start_s, end=s.end_s, text=s.text.strip())
                  for i, s in enumerate(segments)],
    )
    return JSONResponse(verbose.model_dump())


class SpeechRequest(BaseModel):
    model: str = Field(default="tts-1", description="accepted for compatibility")
    input: str = Field(min_length=1, description="the text to speak")
    voice: str | None = Field(default=None, description="engine-specific voice; default voice")
    response_format: Literal["wav", "pcm", "mp3", "opus"] = "mp3"
    speed: float = Field(default=1.0, ge=0.5, le=2.0)
    language: str = Field(default="en", pattern=r"^[a-z]{2,3}(-[A-Z]{2})?$")


@router.post(
    "/speech",
    response_class=StreamingResponse,
    responses={200: {"content": {"audio/mpeg": {}, "audio/wav": {}, "audio/ogg": {},
                                 "audio/L16": {}}},
               **error_responses(400, 413, 422, 502, 503)},
)
async def speech(body: SpeechRequest, services: ServicesDep) -> StreamingResponse:
    tts = services.engines.tts
    if tts is None:
        raise _missing("tts")
    limit = services.settings.api.max_speech_chars
    if len(body.input) > limit:
        raise InputTooLargeError(f"input of {len(body.input)} characters is over {limit}",
                                 code=ErrorCode.TEXT_TOO_LONG, limit=limit)
    pieces = pieces_of(body.input, body.language)  # cut by the request's language
    if not pieces:
        raise ProtocolError("nothing to speak in the input", code=ErrorCode.EMPTY_INPUT)
    synthesize = synthesizer_for(tts, language=body.language, voice=body.voice, speed=body.speed)
    output = AudioOutput(_FORMATS[body.response_format], SPEECH_RATE)
    chunks = speak(pieces, synthesize, output)
    # The first chunk decides the status: an engine failure is a 502, not a cut stream.
    first = await anext(chunks, None)
    if first is None:
        await chunks.aclose()
        raise ProtocolError("nothing to speak in the input", code=ErrorCode.EMPTY_INPUT)
    media_type = content_type(first.format, first.sample_rate)
    return StreamingResponse(_bytes(first, chunks), media_type=media_type)


async def _bytes(
    first: AudioChunkData, rest: AsyncGenerator[AudioChunkData, None]
) -> AsyncIterator[bytes]:
    try:
        yield first.audio
        async for chunk in rest:
            yield chunk.audio
    finally:
        await rest.aclose()


def _missing(stage: str) -> EngineError:
    return EngineError(f"this server has no {stage} engine", code=ErrorCode.MODEL_MISSING,
                       http_status=503, stage=stage)
