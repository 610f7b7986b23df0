"""``POST /v1/chat/completions``: OpenAI's chat completions, on the Gateway's language model.

So that OpenAI clients and SDKs work against Voxline unchanged: the request and the
answer (``chat.completion``, or ``chat.completion.chunk`` server-sent events ending with
``data: [DONE]``) have OpenAI's shapes. It is stateless, like OpenAI's: no session is
made, nothing is logged; the messages are the whole dialogue. Sampling follows the
request (``max_tokens`` or ``max_completion_tokens``, ``temperature``, ``top_p``,
``stop``, ``seed``); ``model`` is accepted and answered with the model actually loaded
(``/v1/models``), because a client names whatever it was configured with.

A message's ``content`` is a string or an array of text parts (``[{"type": "text",
"text": ...}]``, joined with newlines, as vLLM does); any other part (``image_url``,
``input_audio``, ``file``) is 400 ``unsupported_content``: this model reads text only.

Tools (:mod:`deployments.api._chat_tools`): ``tools``, ``tool_choice`` and
``parallel_tool_calls`` as OpenAI has them; the reply's calls come as
``message.tool_calls`` (``content`` null) or streamed ``delta.tool_calls`` pieces, with
``finish_reason: "tool_calls"``; the client runs them and sends their outputs back as
``role: "tool"`` messages. The CPU default (llama.cpp) makes one call at most a reply,
its arguments always valid against the tool's ``parameters`` (a grammar constrains the
decoding: :mod:`pipeline.engines.llm._llama_grammar`).

Usage: the tokens the engine counted with its own tokenizer (llama.cpp and vLLM report
them, :meth:`pipeline.engines.LanguageModel.generate_with_usage`); an engine that counts
none (a remote server) gets the estimate the history budget uses
(``pipeline/log/history.py``: characters per token), never the number of streamed deltas,
which a replica batches. Limits are the other routes': each message's content is at most
``VOXLINE_API__MAX_TEXT_CHARS`` (413 ``text_too_long``), at most
``VOXLINE_API__MAX_CHAT_MESSAGES`` messages (413), the whole prompt at most
``VOXLINE_API__MAX_PROMPT_TOKENS`` estimated tokens (unset: the LLM's context window),
checked before anything is sent to the LLM (400 ``context_length_exceeded``, OpenAI's code
and wording), and a completion takes one of the replica's ``turns`` places (503
``overloaded`` past capacity). Errors keep Voxline's ``{"error": ErrorPayload}`` body; its
``message`` is what the SDK shows.
"""

from __future__ import annotations

import contextlib
import math
import time
import uuid
from collections.abc import AsyncGenerator
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from deployments.api._chat_request import (
    CompletionRequest,
    bounded_prompt,
    client_error,
    generation_request,
)
from deployments.api._chat_tools import CompletionToolCall, ReplyCalls
from deployments.api._deps import ServicesDep, check_owner, described, model_id
from deployments.api._errors import error_responses
from deployments.api._services import Services
from deployments.api._sse import SSE_HEADERS, sse_data
from pipeline.engines import GenerationItem
from schemas import (
    Citation,
    ErrorCode,
    GenerationRequest,
    GenerationUsage,
    HistorySettings,
    ProtocolError,
    SearchToolConfig,
    ToolCallDelta,
    VoxlineError,
    WarningData,
)

router = APIRouter(prefix="/v1/chat", tags=["openai"])


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[CompletionToolCall] | None = None


Finish = Literal["stop", "length", "tool_calls"]


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Finish
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
    body: CompletionRequest, http: Request, services: ServicesDep
) -> Any:
    request = generation_request(body, services)
    citations: list[Citation] | None = None
    warnings: list[WarningData] | None = None
    if body.search_tool_config is not None:
        request, citations, warnings = await _grounded(body.search_tool_config, request,
                                                       http, services)
    info = await described(services, "llm")
    model = model_id(info) if info is not None else "unknown"
    prompt_tokens = bounded_prompt(request, services, info)
    services.admission.check("turns")  # past capacity: 503 before anything streams
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        stream = _chunks(services, request, completion_id, model, prompt_tokens,
                         include_usage, citations, warnings)
        return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)
    reply = _Reply(request, prompt_tokens, services.settings.history)
    with services.admission.admit("turns"):
        try:
            async with contextlib.aclosing(
                    services.engines.llm.generate_with_usage(request)) as items:
                async for item in items:
                    reply.add(item)
        except VoxlineError as exc:
            raise client_error(exc) from None
    calls = reply.calls.calls() or None
    return Completion(
        id=completion_id, created=int(time.time()), model=model,
        choices=[Choice(message=AssistantMessage(content=reply.text or (None if calls else ""),
                                                 tool_calls=calls),
                        finish_reason=reply.finish())],
        usage=reply.usage(), citations=citations, warnings=warnings,
    )


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
    question = next((m for m in reversed(request.messages) if m.role == "user"), None)
    if question is None:
        raise ProtocolError("search_tool_config needs a user message to search for")
    grounded = await grounder.prompt(None, config, question.content)
    messages = grounded.before_question(request.messages)
    return (request.model_copy(update={"messages": messages}), list(grounded.citations.citations),
            list(grounded.warnings))


class _Reply:
    """A reply as it streams: its text, and its usage once the engine has counted it."""

    def __init__(
        self, request: GenerationRequest, prompt_tokens: int, history: HistorySettings
    ) -> None:
        self.request = request
        self.prompt_tokens = prompt_tokens
        self.history = history
        self.parts: list[str] = []
        self.calls = ReplyCalls()
        self.counted: GenerationUsage | None = None

    def add(self, item: GenerationItem | GenerationUsage) -> dict[str, Any] | None:
        """Take one item of the stream; the chunk's ``delta`` it makes, if any."""
        match item:
            case GenerationUsage():
                self.counted = item
                return None
            case ToolCallDelta():
                return {"tool_calls": [self.calls.add(item)]}
            case str():
                self.parts.append(item)
                return {"content": item}

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def usage(self) -> Usage:
        counted = self.counted
        prompt = self.prompt_tokens
        if counted is not None and counted.prompt_tokens is not None:
            prompt = counted.prompt_tokens
        if counted is not None:
            completion = counted.completion_tokens
        else:  # an engine that counts nothing: estimated as the prompt is
            completion = math.ceil(len(self.text) / self.history.chars_per_token)
        return Usage(prompt_tokens=prompt, completion_tokens=completion,
                     total_tokens=prompt + completion)

    def finish(self) -> Finish:
        """The engine's reason; else ``tool_calls`` when it called, ``length`` when the
        reply took its whole budget."""
        if self.counted is not None and self.counted.finish_reason is not None:
            return self.counted.finish_reason
        if self.calls:
            return "tool_calls"
        spent = self.usage().completion_tokens
        return "length" if spent >= self.request.sampling.max_tokens else "stop"


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

    def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
        return sse_data({**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                              "finish_reason": finish}]})

    reply = _Reply(request, prompt_tokens, services.settings.history)
    try:
        # taken here, not before the response: a client gone before the first byte
        # never starts this generator, and a permit taken outside would never return
        with services.admission.admit("turns"):
            yield chunk({"role": "assistant", "content": ""}, None)
            async with contextlib.aclosing(
                    services.engines.llm.generate_with_usage(request)) as items:
                async for item in items:
                    if (delta := reply.add(item)) is not None:
                        yield chunk(delta, None)
    except VoxlineError as exc:
        error = client_error(exc)
        payload = error.to_payload()
        if error.http_status >= 500:  # the engine's text may hold internals (as _errors does)
            payload = payload.model_copy(update={"message": "the language model stage failed"
                                                 if error.code is ErrorCode.LLM_FAILED
                                                 else "the reply failed; try again"})
        yield sse_data({"error": payload.model_dump(mode="json")})
        return
    if citations is None:
        yield chunk({}, reply.finish())
    else:  # Voxline's extras ride on the last chunk
        yield sse_data({**base, "choices": [{"index": 0, "delta": {}, "logprobs": None,
                                             "finish_reason": reply.finish()}],
                        "citations": [c.model_dump(mode="json") for c in citations],
                        "warnings": [w.model_dump(mode="json") for w in warnings or ()]})
    if include_usage:
        yield sse_data({**base, "choices": [], "usage": reply.usage().model_dump()})
    yield sse_data("[DONE]")
