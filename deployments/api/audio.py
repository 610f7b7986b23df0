"""OpenAI-style audio endpoints: transcribe an uploaded file, speak a text.

``POST /v1/audio/transcriptions`` takes the same multipart form as OpenAI's (``file``,
``model``, ``language``, ``prompt``, ``temperature``, ``response_format`` json | text |
verbose_json | srt | vtt, ``timestamp_granularities[]``, ``stream``) and any common audio
format (FFmpeg decodes it); it runs the STT deployment's engine, which on a GPU cluster is
WhisperX, the high-quality batch path. ``model`` is accepted for compatibility; the
engine is chosen by the server's configuration. ``language`` is ISO 639-1 or a BCP-47 tag
(``en-US`` is ``en``); left out, the engine detects it and ``verbose_json`` reports it.
``prompt`` is Whisper's initial prompt and ``temperature`` its sampling temperature
(faster-whisper; WhisperX fixes both when it loads). Word timestamps
(``timestamp_granularities[]=word``) come in ``verbose_json``'s ``words``. ``stream=true``
answers with SSE, one ``transcript.text.delta`` per segment, then ``transcript.text.done``.
Uploads are bounded before they are decoded: ``VOXLINE_API__MAX_UPLOAD_BYTES`` (413
``message_too_large``), the file's own sample rate (``MIN_/MAX_UPLOAD_SAMPLE_RATE``, 415
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

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from deployments.api._deps import ServicesDep, engine_choices
from deployments.api._errors import error_response, error_responses
from deployments.api._services import Services
from deployments.api._sse import sse_data
from pipeline.audio import content_type, decode_audio, to_srt, to_vtt
from pipeline.engines import Synthesizer, Transcriber, engine_voice, transcript_text
from pipeline.reply import AudioOutput, pieces_of, speak, synthesizer_for
from pipeline.session import Permit, merge_settings
from schemas import (
    MAX_PROMPT_CHARS,
    AudioChunkData,
    AudioFormat,
    EngineError,
    ErrorCode,
    InputTooLargeError,
    ProtocolError,
    SessionSettings,
    TranscriptionRequest,
    TranscriptSegment,
    VoxlineError,
    primary_language,
)

router = APIRouter(prefix="/v1/audio", tags=["audio"])

STT_RATE = 16000
SPEECH_RATE = 24000
_FORMATS = {"wav": AudioFormat.WAV, "pcm": AudioFormat.PCM16, "mp3": AudioFormat.MP3,
            "opus": AudioFormat.OPUS, "flac": AudioFormat.FLAC, "aac": AudioFormat.AAC}


class Word(BaseModel):
    word: str
    start: float
    end: float


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
    words: list[Word] | None = None


_SUBTITLES = {"srt": to_srt, "vtt": to_vtt}
_TEXT_TYPES = {"text": "text/plain", "srt": "application/x-subrip", "vtt": "text/vtt"}
ResponseFormat = Literal["json", "text", "verbose_json", "srt", "vtt"]
Granularity = Literal["word", "segment"]


@router.post(
    "/transcriptions",
    response_model=VerboseTranscription | Transcription,
    responses={200: {"content": {**{t: {"schema": {"type": "string"}}
                                    for t in _TEXT_TYPES.values()},
                                 "text/event-stream": {}}},
               **error_responses(400, 413, 415, 422, 502, 503)},
)
async def transcriptions(
    services: ServicesDep,
    file: Annotated[UploadFile, File(description="WAV, MP3, FLAC, OGG, M4A, WebM ...")],
    model: Annotated[str, Form(description="accepted for compatibility")] = "whisper-1",
    language: Annotated[str | None, Form(
        pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$",
        description="ISO 639-1 or a BCP-47 tag (en-US: en); left out: detected")] = None,
    response_format: Annotated[ResponseFormat, Form()] = "json",
    timestamp_granularities: Annotated[
        list[Granularity] | None, Form(alias="timestamp_granularities[]")] = None,
    stream: Annotated[bool, Form(description="SSE transcript.text.delta / .done")] = False,
    prompt: Annotated[str | None, Form(max_length=MAX_PROMPT_CHARS)] = None,
    temperature: Annotated[float, Form(ge=0.0, le=1.0)] = 0.0,
) -> Response:
    stt = services.engines.stt
    if stt is None:
        raise _missing("stt")
    permit = services.admission.acquire("transcriptions")  # past capacity: 503, not a queue
    try:
        request = await _request(services, file, language, prompt, temperature,
                                 words="word" in (timestamp_granularities or ()))
        segments = _segments(stt, request)
        if stream:
            return await _streamed(segments, permit)
        with permit:
            found = [s async for s in segments]
    except BaseException:
        permit.release()
        raise
    return _answer(found, request, response_format)


async def _request(
    services: Services, file: UploadFile, language: str | None, prompt: str | None,
    temperature: float, *, words: bool,
) -> TranscriptionRequest:
    """The upload, bounded and decoded, as the engine's request."""
    limits = services.settings.api
    limit = limits.max_upload_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise InputTooLargeError(f"the upload is over the limit of {limit} bytes", limit=limit)
    pcm = await asyncio.to_thread(
        decode_audio, data, sample_rate=STT_RATE, max_seconds=limits.max_upload_seconds,
        source_rates=(limits.min_upload_sample_rate, limits.max_upload_sample_rate))
    del data
    return TranscriptionRequest(
        audio=pcm, sample_rate=STT_RATE, word_timestamps=words, prompt=prompt or None,
        temperature=temperature, language=primary_language(language) if language else None)


async def _segments(
    stt: Transcriber, request: TranscriptionRequest
) -> AsyncGenerator[TranscriptSegment, None]:
    """The engine's segments; a language it does not know is 400 ``unsupported_language``."""
    try:
        async for segment in stt.transcribe(request):
            yield segment
    except EngineError as exc:
        if exc.code not in _LANGUAGE_CODES:
            raise
        raise ProtocolError(
            f"the transcriber cannot transcribe the language {request.language!r}",
            code=ErrorCode.UNSUPPORTED_LANGUAGE, language=request.language) from None


def _answer(
    segments: list[TranscriptSegment], request: TranscriptionRequest, response_format: str
) -> Response:
    text = transcript_text(segments)
    if response_format in _SUBTITLES:
        return PlainTextResponse(_SUBTITLES[response_format](segments),
                                 media_type=_TEXT_TYPES[response_format])
    if response_format == "text":
        return PlainTextResponse(text)
    if response_format == "json":
        return JSONResponse(Transcription(text=text).model_dump())
    detected = next((s.language for s in segments if s.language), None)
    verbose = VerboseTranscription(
        text=text,
        language=detected or request.language or "en",
        duration=round(len(request.audio) / 2 / STT_RATE, 3),
        segments=[Segment(id=i, start=s.start_s, end=s.end_s, text=s.text.strip())
                  for i, s in enumerate(segments)],
        words=[Word(word=w, start=a, end=b) for s in segments for w, a, b in s.words]
        if request.word_timestamps else None,
    )
    return JSONResponse(verbose.model_dump(exclude_none=True))


async def _streamed(
    segments: AsyncGenerator[TranscriptSegment, None], permit: Permit
) -> StreamingResponse:
    """OpenAI's transcription SSE. The first segment decides the status (a bad language is
    a 400, not a cut stream); the permit is held until the last event."""
    try:
        first = await anext(segments, None)
    except BaseException:
        await segments.aclose()
        raise

    async def events() -> AsyncIterator[bytes]:
        texts: list[str] = []
        try:
            segment = first
            while segment is not None:
                delta = (" " if texts else "") + segment.text.strip()
                texts.append(segment.text.strip())
                yield sse_data({"type": "transcript.text.delta", "delta": delta})
                segment = await anext(segments, None)
            yield sse_data({"type": "transcript.text.done", "text": " ".join(texts)})
        except VoxlineError as exc:  # the status went out: the failure is the last event
            yield _failure(exc)
        finally:
            try:
                await segments.aclose()
            finally:
                permit.release()

    return StreamingResponse(events(), media_type="text/event-stream")


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


async def _speech_events(audio: AsyncGenerator[bytes, None]) -> AsyncIterator[bytes]:
    """OpenAI's speech SSE: each encoded chunk base64 in ``speech.audio.delta``, then done."""
    async with contextlib.aclosing(audio):
        try:
            async for data in audio:
                if data:
                    yield sse_data({"type": "speech.audio.delta",
                                    "audio": base64.b64encode(data).decode()})
        except VoxlineError as exc:  # the status went out: the failure is the last event
            yield _failure(exc)
            return
    yield sse_data({"type": "speech.audio.done"})


def _failure(error: VoxlineError) -> bytes:
    """An ``error`` event with the same payload an HTTP error body carries."""
    body = json.loads(bytes(error_response(error).body))
    return sse_data({"type": "error", "error": body["error"]})


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
