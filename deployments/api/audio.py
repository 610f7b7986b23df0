"""OpenAI-style audio endpoints: transcribe an uploaded file, speak a text.

``POST /v1/audio/transcriptions`` takes the same multipart form as OpenAI's (``file``,
``model``, ``language``, ``response_format`` json | text | verbose_json) and any common
audio format (FFmpeg decodes it); it runs the STT deployment's engine, which on a GPU
cluster is WhisperX, the high-quality batch path. ``model`` is accepted for
compatibility; the engine is chosen by the server's configuration. Uploads are bounded
before they are decoded: ``VOXLINE_API__MAX_UPLOAD_BYTES`` (413 ``message_too_large``),
the file's own sample rate (``MIN_/MAX_UPLOAD_SAMPLE_RATE``, 415
``unsupported_sample_rate``) and its length (``MAX_UPLOAD_SECONDS``, 413
``audio_too_long``, from the header when it declares one, else while decoding); a
language the transcriber does not know is 400 ``unsupported_language``.

``POST /v1/audio/speech`` takes OpenAI's JSON (``input``, ``voice``, ``response_format``
wav | pcm | mp3 | opus | flac | aac, ``speed`` 0.25–4.0) and streams the audio while later
sentences are still being synthesized. ``pcm`` is raw 16-bit mono at 24 kHz and ``aac``
is ADTS, as in OpenAI's API. OpenAI's voice names (``alloy`` ...) go through
``VOXLINE_API__VOICE_MAP`` (left out: the engine's default voice); other names are the
engine's own voices. ``stream_format: "sse"`` sends the audio as ``speech.audio.delta``
events (base64) and ends with ``speech.audio.done`` (no ``usage``: nothing here counts
tokens). ``instructions`` is accepted and not applied: no local engine takes a style prompt.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from deployments.api._errors import error_responses
from deployments.api._services import Services, get_services
from deployments.api.sessions import engine_choices
from pipeline.audio import content_type, decode_audio
from pipeline.engines import Synthesizer, Transcriber
from pipeline.session import Permit, merge_settings
from pipeline.turn import AudioOutput, engine_voice, pieces_of, speak, synthesizer_for
from schemas import (
    AudioChunkData,
    AudioFormat,
    EngineError,
    ErrorCode,
    InputTooLargeError,
    ProtocolError,
    SessionSettings,
    TranscriptionRequest,
    TranscriptSegment,
)

router = APIRouter(prefix="/v1/audio", tags=["audio"])
ServicesDep = Annotated[Services, Depends(get_services)]

STT_RATE = 16000
SPEECH_RATE = 24000
_FORMATS = {"wav": AudioFormat.WAV, "pcm": AudioFormat.PCM16, "mp3": AudioFormat.MP3,
            "opus": AudioFormat.OPUS, "flac": AudioFormat.FLAC, "aac": AudioFormat.AAC}


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
    with services.admission.admit("transcriptions"):  # past capacity: 503, not a queue
        return await _transcribe(services, stt, file, language, response_format)


async def _transcribe(
    services: Services, stt: Transcriber, file: UploadFile, language: str,
    response_format: str,
) -> Response:
    limits = services.settings.api
    limit = limits.max_upload_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise InputTooLargeError(f"the upload is over the limit of {limit} bytes", limit=limit)
    pcm = await asyncio.to_thread(
        decode_audio, data, sample_rate=STT_RATE, max_seconds=limits.max_upload_seconds,
        source_rates=(limits.min_upload_sample_rate, limits.max_upload_sample_rate))
    del data
    request = TranscriptionRequest(audio=pcm, sample_rate=STT_RATE, language=language)
    try:
        segments: list[TranscriptSegment] = [s async for s in stt.transcribe(request)]
    except EngineError as exc:
        if exc.code not in _LANGUAGE_CODES:
            raise
        raise ProtocolError(f"the transcriber cannot transcribe the language {language!r}",
                            code=ErrorCode.UNSUPPORTED_LANGUAGE, language=language) from None
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
    voice: str | None = Field(
        default=None, description="an OpenAI voice name (VOXLINE_API__VOICE_MAP) or an "
        "engine voice; default: the engine's default voice")
    instructions: str | None = Field(
        default=None, max_length=4096, description="accepted for compatibility, not applied")
    response_format: Literal["wav", "pcm", "mp3", "opus", "flac", "aac"] = "mp3"
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    stream_format: Literal["audio", "sse"] = "audio"
    language: str = Field(default="en", pattern=r"^[a-z]{2,3}(-[A-Z]{2})?$")


@router.post(
    "/speech",
    response_class=StreamingResponse,
    responses={200: {"content": {"audio/mpeg": {}, "audio/wav": {}, "audio/ogg": {},
                                 "audio/L16": {}, "audio/flac": {}, "audio/aac": {},
                                 "text/event-stream": {}}},
               **error_responses(400, 413, 422, 502, 503)},
)
async def speech(body: SpeechRequest, services: ServicesDep) -> StreamingResponse:
    tts = services.engines.tts
    if tts is None:
        raise _missing("tts")
    permit = services.admission.acquire("speech")  # past capacity: 503, not a queue
    try:
        return await _speech(body, tts, services, permit)
    except BaseException:
        permit.release()
        raise


async def _speech(
    body: SpeechRequest, tts: Synthesizer, services: Services, permit: Permit
) -> StreamingResponse:
    limit = services.settings.api.max_speech_chars
    if len(body.input) > limit:
        raise InputTooLargeError(f"input of {len(body.input)} characters is over {limit}",
                                 code=ErrorCode.TEXT_TOO_LONG, limit=limit)
    # a voice or language the engines lack is 400 unknown_voice / unsupported_language, as
    # for a session's settings, before anything is synthesized
    voice = engine_voice(body.voice, services.settings.api.voice_map)
    chosen: dict[str, object] = {"language": body.language}
    if voice:
        chosen["voice"] = voice
    merge_settings(SessionSettings(), chosen, await engine_choices(services))
    pieces = pieces_of(body.input, body.language)  # cut by the request's language
    if not pieces:
        raise ProtocolError("nothing to speak in the input", code=ErrorCode.EMPTY_INPUT)
    synthesize = synthesizer_for(tts, language=body.language, voice=voice, speed=body.speed)
    output = AudioOutput(_FORMATS[body.response_format], SPEECH_RATE)
    chunks = speak(pieces, synthesize, output)
    # The first chunk decides the status: an engine failure is a 502, not a cut stream.
    first = await anext(chunks, None)
    if first is None:
        await chunks.aclose()
        raise ProtocolError("nothing to speak in the input", code=ErrorCode.EMPTY_INPUT)
    if body.stream_format == "sse":
        return StreamingResponse(_speech_events(_bytes(first, chunks, permit)),
                                 media_type="text/event-stream")
    media_type = content_type(first.format, first.sample_rate)
    return StreamingResponse(_bytes(first, chunks, permit), media_type=media_type)


async def _speech_events(audio: AsyncGenerator[bytes, None]) -> AsyncIterator[str]:
    """OpenAI's speech SSE: each encoded chunk base64 in ``speech.audio.delta``, then done."""
    async with contextlib.aclosing(audio):
        async for data in audio:
            if data:
                yield _sse({"type": "speech.audio.delta",
                            "audio": base64.b64encode(data).decode()})
    yield _sse({"type": "speech.audio.done"})


def _sse(event: dict[str, object]) -> str:
    return f"data: {json.dumps(event, separators=(',', ':'))}\n\n"


async def _bytes(
    first: AudioChunkData, rest: AsyncGenerator[AudioChunkData, None], permit: Permit
) -> AsyncGenerator[bytes, None]:
    try:
        yield first.audio
        async for chunk in rest:
            yield chunk.audio
    finally:
        try:
            await rest.aclose()
        finally:
            permit.release()  # the request's place, kept until its last byte


#: what a transcriber raises for a language it does not know (a setting it cannot honour)
_LANGUAGE_CODES = (ErrorCode.INVALID_SETTINGS, ErrorCode.UNSUPPORTED_LANGUAGE)


def _missing(stage: str) -> EngineError:
    return EngineError(f"this server has no {stage} engine", code=ErrorCode.MODEL_MISSING,
                       http_status=503, stage=stage)
