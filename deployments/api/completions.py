"""``POST /v1/chat/completions``: OpenAI's chat completions, on the Gateway's language model.

So that OpenAI clients and SDKs work against Voxline unchanged: the request and the
answer (``chat.completion``, or ``chat.completion.chunk`` server-sent events ending with
``data: [DONE]``) have OpenAI's shapes. It is stateless, like OpenAI's: no session is
made, nothing is logged; the messages are the whole dialogue. Sampling follows the
request (``max_tokens`` or ``max_completion_tokens``, ``temperature``, ``top_p``,
``stop``, ``seed``); ``model`` is accepted and answered with the model actually loaded
(``/v1/models``), because a client names whatever it was configured with.

Usage: completion tokens are the deltas the engine yielded (engines stream a token or a
few per delta, so this is a close lower bound); prompt tokens are estimated from
characters the way the history budget does (``pipeline/log/history.py``), because the
engine may be remote and reports none. Limits are the other routes': each message's
content is at most ``VOXLINE_API__MAX_TEXT_CHARS`` (413 ``text_too_long``), at most
``VOXLINE_API__MAX_CHAT_MESSAGES`` messages (413), and a completion takes one of the
replica's ``turns`` places (503 ``overloaded`` past capacity). Errors keep Voxline's
``{"error": ErrorPayload}`` body; its ``message`` is what the SDK shows.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import AsyncGenerator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from deployments.api._errors import error_responses
from deployments.api._services import Services, get_services
from deployments.api._sse import SSE_HEADERS
from deployments.api.collections import check_owner
from deployments.api.models import llm_model_id
from pipeline.log import message_tokens
from schemas import (
    ChatMessage,
    Citation,
    ErrorCode,
    GenerationRequest,
    InputTooLargeError,
    ProtocolError,
    SamplingSettings,
    SearchToolConfig,
    VoxlineError,
    WarningData,
)

router = APIRouter(prefix="/v1/chat", tags=["openai"])



class CompletionMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "developer"]
    content: str = Field(description="text (parts and tool calls are not supported)")


class StreamOptions(BaseModel):
    include_usage: StrictBool = False


class CompletionRequest(BaseModel):
    """OpenAI's request; fields Voxline does not act on (``n`` above 1, tools, logprobs,
    ...) are refused or ignored rather than half-served."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(default="", description="answered with the loaded model's id")
    messages: list[CompletionMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=4096)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: str | list[str] | None = Field(
        default=None, description="sequences that end the reply (as the session settings')")
    seed: int | None = None
    n: Literal[1] = 1
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    # Voxline's extra (issue 16): ground the reply in a collection; the request shows the
    # collection's token (X-Voxline-Token, or as the api_key when the server has no keys)
    search_tool_config: SearchToolConfig | None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class Completion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    # Voxline's extras with search_tool_config: what the reply was grounded in
    citations: list[Citation] | None = None
    warnings: list[WarningData] | None = None


_CHUNKS: dict[str, Any] = {"text/event-stream": {}}


@router.post(
    "/completions",
    response_model=Completion,
    responses={200: {"content": _CHUNKS, "description": "a chat.completion, or with "
                     "`stream`: chat.completion.chunk events, then `data: [DONE]`"},
               **error_responses(400, 401, 403, 404, 413, 422, 502, 503)},
)
async def chat_completions(
    body: CompletionRequest, http: Request, services: Annotated[Services, Depends(get_services)]
) -> Any:
    request = _generation_request(body, services)
    citations: list[Citation] | None = None
    warnings: list[WarningData] | None = None
    if body.search_tool_config is not None:
        request, citations, warnings = await _grounded(body.search_tool_config, request,
                                                       http, services)
    history = services.settings.history  # estimated as the history budget is
    prompt_tokens = sum(message_tokens(m.content, history) for m in request.messages)
    model = await llm_model_id(services)
    services.admission.check("turns")  # past capacity: 503 before anything streams
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        stream = _chunks(services, request, completion_id, model, prompt_tokens,
                         include_usage, citations, warnings)
        return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)
    with services.admission.admit("turns"):
        async with contextlib.aclosing(services.engines.llm.generate(request)) as reply:
            deltas = [delta async for delta in reply]
    return Completion(
        id=completion_id, created=int(time.time()), model=model,
        choices=[Choice(message=AssistantMessage(content="".join(deltas)),
                        finish_reason=_finish(len(deltas), request))],
        usage=_usage(prompt_tokens, len(deltas)),
        citations=citations, warnings=warnings,
    )


def _generation_request(body: CompletionRequest, services: Services) -> GenerationRequest:
    limits = services.settings.api
    if len(body.messages) > limits.max_chat_messages:
        raise InputTooLargeError(
            f"{len(body.messages)} messages are over the limit of {limits.max_chat_messages}",
            limit=limits.max_chat_messages)
    for index, message in enumerate(body.messages):
        if len(message.content) > limits.max_text_chars:
            raise InputTooLargeError(
                f"message {index} of {len(message.content)} characters is over the limit "
                f"of {limits.max_text_chars}",
                code=ErrorCode.TEXT_TOO_LONG, limit=limits.max_text_chars, index=index)
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or ())
    chosen = {"temperature": body.temperature, "top_p": body.top_p, "seed": body.seed,
              "max_tokens": body.max_completion_tokens or body.max_tokens}
    try:  # the session settings' bounds (stop sequences' number and length)
        sampling = SamplingSettings(
            stop=tuple(stop), **{k: v for k, v in chosen.items() if v is not None})
    except ValidationError as exc:
        raise ProtocolError(f"invalid sampling: {exc.errors()[0]['msg']}") from None
    # "developer" is OpenAI's newer name for the system message
    messages = tuple(ChatMessage(role="system" if m.role == "developer" else m.role,
                                 content=m.content) for m in body.messages)
    return GenerationRequest(request_id=f"oai-{uuid.uuid4().hex}", messages=messages,
                             sampling=sampling)


async def _grounded(
    config: SearchToolConfig, request: GenerationRequest, http: Request, services: Services
) -> tuple[GenerationRequest, list[Citation], list[WarningData]]:
    """The request with the passages before its last user message (no session: the
    collection's own token authorizes the search)."""
    if config.collection is None:
        raise ProtocolError("search_tool_config.collection is required here (no session)")
    await check_owner(services, config.collection, http)
    grounder = services.grounder
    if grounder is None:
        raise VoxlineError("this server has no retrieval configured",
                           code=ErrorCode.CONFIGURATION_ERROR, http_status=503)
    messages = list(request.messages)
    last = max((i for i, m in enumerate(messages) if m.role == "user"), default=None)
    if last is None:
        raise ProtocolError("search_tool_config needs a user message to search for")
    grounding = await grounder.ground(None, config, messages[last].content)
    context = grounder.context(grounding)
    if context is not None:
        messages.insert(last, context)
    cited = list(grounding.citations(grounder.settings.snippet_chars).citations)
    return (request.model_copy(update={"messages": tuple(messages)}), cited,
            list(grounding.warnings))


def _usage(prompt_tokens: int, completion_tokens: int) -> Usage:
    return Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                 total_tokens=prompt_tokens + completion_tokens)


def _finish(deltas: int, request: GenerationRequest) -> Literal["stop", "length"]:
    """``length`` when the reply took its whole token budget (deltas count tokens)."""
    return "length" if deltas >= request.sampling.max_tokens else "stop"


def _data(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


async def _chunks(
    services: Services, request: GenerationRequest, completion_id: str,
    model: str, prompt_tokens: int, include_usage: bool,
    citations: list[Citation] | None = None, warnings: list[WarningData] | None = None,
) -> AsyncGenerator[bytes, None]:
    """OpenAI's chunk stream; a disconnect closes the engine's stream (cancels the reply).

    An engine failure after the first byte cannot change the status any more: it comes
    as one ``{"error": ...}`` data message, which the SDK raises, before ``[DONE]``.
    """
    base = {"id": completion_id, "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model}

    def chunk(delta: dict[str, str], finish: str | None) -> bytes:
        return _data({**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                           "finish_reason": finish}]})

    count = 0
    try:
        # taken here, not before the response: a client gone before the first byte
        # never starts this generator, and a permit taken outside would never return
        with services.admission.admit("turns"):
            yield chunk({"role": "assistant", "content": ""}, None)
            async with contextlib.aclosing(services.engines.llm.generate(request)) as deltas:
                async for delta in deltas:
                    count += 1
                    yield chunk({"content": delta}, None)
    except VoxlineError as exc:
        payload = exc.to_payload()
        if exc.http_status >= 500:  # the engine's text may hold internals (as _errors does)
            payload = payload.model_copy(update={"message": "the language model stage failed"
                                                 if exc.code is ErrorCode.LLM_FAILED
                                                 else "the reply failed; try again"})
        yield _data({"error": payload.model_dump(mode="json")})
        return
    if citations is None:
        yield chunk({}, _finish(count, request))
    else:  # Voxline's extras ride on the last chunk
        yield _data({**base, "choices": [{"index": 0, "delta": {}, "logprobs": None,
                                          "finish_reason": _finish(count, request)}],
                     "citations": [c.model_dump(mode="json") for c in citations],
                     "warnings": [w.model_dump(mode="json") for w in warnings or ()]})
    if include_usage:
        yield _data({**base, "choices": [],
                     "usage": _usage(prompt_tokens, count).model_dump()})
    yield b"data: [DONE]\n\n"
