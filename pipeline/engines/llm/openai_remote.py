"""A language model behind any OpenAI-compatible ``/v1/chat/completions`` endpoint.

One engine covers a vLLM server, Ollama, llama.cpp's ``llama-server`` and hosted APIs: all
of them stream chat completions as server-sent events, one JSON chunk per ``data:`` line
and a final ``data: [DONE]``. The engine turns that stream into the text deltas of
:meth:`pipeline.engines.base.LanguageModel.generate`.

Errors, by cause (all ``EngineError(code=llm_failed, stage="llm")``)::

    cannot connect / timed out / connection dropped mid-stream   transient
    HTTP 429, 5xx                                                transient, details.status
    other HTTP 4xx (bad key, unknown model, bad request)         permanent, details.status
    an error object inside the stream, unparsable chunk          permanent
    stream ended without [DONE] or a finish reason               transient (truncated)

Cancelling the consumer leaves the ``async with`` around the HTTP stream, which closes the
response before it was read to the end; httpx then drops the connection instead of
returning it to the pool, so the server sees the client go away and (vLLM, Ollama) aborts
the request.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from pipeline.engines.base import LanguageModel
from schemas import (
    ChatMessage,
    EngineError,
    ErrorCode,
    GenerationRequest,
    ToolCallDelta,
)

logger = logging.getLogger(__name__)

__all__ = ["OpenAICompatibleLanguageModel", "OpenAICompatibleOptions"]

#: How much of an error response body is kept in the error's message.
_ERROR_BODY_CHARS = 500


class OpenAICompatibleOptions(BaseModel):
    """Options of the ``openai`` LLM engine (``VOXLINE_LLM__OPTIONS__*``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = Field(
        default="http://127.0.0.1:8000/v1",
        description="API root including /v1, as in the OpenAI SDK; /chat/completions is added",
    )
    model: str = Field(min_length=1, description="model name the server knows")
    api_key: SecretStr | None = Field(default=None, description="sent as a Bearer token")
    timeout_s: float = Field(
        default=60.0, gt=0, description="longest wait for the response or for the next chunk"
    )
    connect_timeout_s: float = Field(default=5.0, gt=0)
    max_connections: int = Field(default=64, ge=1, description="concurrent streams per replica")
    extra_body: dict[str, Any] = Field(
        default_factory=dict,
        description="server-specific fields merged into each request (e.g. vLLM's top_k)",
    )


class OpenAICompatibleLanguageModel(LanguageModel):
    """Streams replies from a remote OpenAI-compatible chat completions endpoint.

    Unlike the local engines this one runs many requests at once: the server batches
    them, so the only limit is ``max_connections``. One ``httpx.AsyncClient`` is shared
    by all requests for connection reuse; it belongs to the event loop that created it.
    """

    name = "openai"
    Options = OpenAICompatibleOptions
    options: OpenAICompatibleOptions

    def __init__(self, options: OpenAICompatibleOptions | None = None, **fields: Any) -> None:
        super().__init__(options, **fields)
        self._client: httpx.AsyncClient | None = None
        #: ``finish_reason`` of the latest finished stream ("stop", "length", ...);
        #: "cancelled" when the consumer stopped early, None on errors.
        self.last_finish_reason: str | None = None

    @property
    def url(self) -> str:
        return self.options.base_url.rstrip("/") + "/chat/completions"

    async def load(self) -> None:
        """Create the HTTP client; nothing is contacted until the first request."""
        if self._client is None:
            cfg = self.options
            headers = {"Accept": "text/event-stream"}
            if cfg.api_key is not None:
                headers["Authorization"] = f"Bearer {cfg.api_key.get_secret_value()}"
            self._client = httpx.AsyncClient(
                headers=headers,
                timeout=httpx.Timeout(cfg.timeout_s, connect=cfg.connect_timeout_s),
                limits=httpx.Limits(max_connections=cfg.max_connections),
            )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def request_body(self, request: GenerationRequest) -> dict[str, Any]:
        """The JSON body for ``request``: only fields that are set, so strict servers
        do not reject ``null`` values they do not know."""
        sampling = request.sampling
        body: dict[str, Any] = {
            **self.options.extra_body,
            "model": self.options.model,
            "messages": [_message(m) for m in request.messages],
            "stream": True,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
        }
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if request.tools:  # passed through: the server's model calls them (or not)
            body["tools"] = [{"type": "function", "function": tool.model_dump()}
                             for tool in request.tools]
            choice = request.tool_choice
            body["tool_choice"] = (choice.mode if choice.mode != "function" else
                                   {"type": "function", "function": {"name": choice.name}})
        return body

    async def generate(
        self, request: GenerationRequest
    ) -> AsyncGenerator[str | ToolCallDelta, None]:
        """Yield the content deltas and tool-call pieces of one streamed chat completion
        (see the base class)."""
        await self.load()
        assert self._client is not None
        self.last_finish_reason = None
        finished = False
        try:
            async with self._client.stream(
                "POST", self.url, json=self.request_body(request)
            ) as response:
                if response.status_code >= 400:
                    raise await self._status_error(response)
                events = _sse_data(response.aiter_lines())
                async for data in events:
                    if data == "[DONE]":
                        finished = True
                        break
                    delta, calls, reason = _parse_chunk(data)
                    if reason is not None:
                        self.last_finish_reason = reason
                    if delta:
                        yield delta
                    for call in calls:
                        yield call
            if not finished and self.last_finish_reason is None:
                raise EngineError(
                    "the LLM server ended the stream before the reply was finished",
                    code=ErrorCode.LLM_FAILED,
                    stage="llm",
                    transient=True,
                    url=self.url,
                )
        except (GeneratorExit, asyncio.CancelledError):
            self.last_finish_reason = "cancelled"
            raise
        except EngineError:
            raise
        except Exception as exc:
            raise self._translate(exc) from exc

    async def _status_error(self, response: httpx.Response) -> EngineError:
        body = ""
        async for piece in response.aiter_text():
            body += piece
            if len(body) >= _ERROR_BODY_CHARS:
                break
        status = response.status_code
        message = _error_message(body) or response.reason_phrase or "error"
        details: dict[str, Any] = {"status": status, "url": self.url}
        retry_after = response.headers.get("retry-after", "")
        if retry_after.isdigit():  # rate limits say when to come back
            details["retry_after_s"] = int(retry_after)
        return EngineError(
            f"the LLM server answered HTTP {status}: {message[:_ERROR_BODY_CHARS]}",
            code=ErrorCode.LLM_FAILED,
            stage="llm",
            transient=status == 429 or status >= 500,
            **details,
        )

    def _translate(self, exc: Exception) -> EngineError:
        """Map transport failures onto ``EngineError``; where the server is and what the
        transport said go to the server's log, not to the client."""
        logger.warning("the LLM server at %s failed: %r", self.url, exc)
        if isinstance(exc, httpx.ConnectError):
            message = "cannot connect to the LLM server"
        elif isinstance(exc, httpx.TimeoutException):
            message = "the LLM server timed out"
        elif isinstance(exc, httpx.TransportError):
            message = "the connection to the LLM server failed"
        else:
            return EngineError("unexpected failure talking to the LLM server",
                               code=ErrorCode.LLM_FAILED, stage="llm", transient=False)
        return EngineError(message, code=ErrorCode.LLM_FAILED, stage="llm", transient=True)


async def _sse_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """Yield the ``data`` of each server-sent event.

    Follows the SSE rules that matter for chat streams: an event ends at a blank line,
    several ``data:`` lines of one event are joined with newlines, lines starting with
    ``:`` are comments (keep-alives) and other fields (``event:``, ``id:``) are ignored.
    A last event without its blank line is still delivered.
    """
    buffer: list[str] = []
    async for line in lines:
        if not line:
            if buffer:
                yield "\n".join(buffer)
                buffer.clear()
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if field == "data":
            buffer.append(value[1:] if value.startswith(" ") else value)
    if buffer:
        yield "\n".join(buffer)


def _message(message: ChatMessage) -> dict[str, Any]:
    """A message of the dialogue in OpenAI's shape (with its calls, or the call it
    answers)."""
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [{"id": call.id, "type": "function", "function": {
            "name": call.name, "arguments": call.arguments}} for call in message.tool_calls]
        out["content"] = message.content or None
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    return out


def _tool_calls(delta: dict[str, Any]) -> list[ToolCallDelta]:
    """The ``delta.tool_calls`` pieces of a chunk; a piece in another shape is skipped."""
    pieces: list[ToolCallDelta] = []
    for piece in delta.get("tool_calls") or []:
        if not isinstance(piece, dict):
            continue
        function = piece.get("function")
        if not isinstance(function, dict):
            function = {}
        try:
            pieces.append(ToolCallDelta(index=piece.get("index", 0), id=piece.get("id"),
                                        name=function.get("name"),
                                        arguments=function.get("arguments") or ""))
        except ValueError:
            logger.warning("the LLM server sent a tool call piece in an unknown shape")
    return pieces


def _parse_chunk(data: str) -> tuple[str, list[ToolCallDelta], str | None]:
    """The content delta, tool-call pieces and finish reason of one
    ``chat.completion.chunk``."""
    try:
        chunk = json.loads(data)
    except json.JSONDecodeError:
        raise EngineError(
            f"the LLM server sent a chunk that is not JSON: {data[:200]!r}",
            code=ErrorCode.LLM_FAILED,
            stage="llm",
            transient=False,
        ) from None
    if not isinstance(chunk, dict):
        return "", [], None
    if "error" in chunk:
        raise EngineError(
            f"the LLM server reported an error mid-stream: {_error_message(data) or data[:200]}",
            code=ErrorCode.LLM_FAILED,
            stage="llm",
            transient=False,
        )
    choices = chunk.get("choices") or []
    if not choices or not isinstance(choices[0], dict):
        return "", [], None  # e.g. a usage-only chunk
    choice = choices[0]
    delta = choice.get("delta") or {}
    content = delta.get("content") if isinstance(delta, dict) else None
    reason = choice.get("finish_reason")
    calls = _tool_calls(delta) if isinstance(delta, dict) else []
    return (content if isinstance(content, str) else ""), calls, (
        reason if isinstance(reason, str) else None
    )


def _error_message(body: str) -> str:
    """The ``error.message`` of an OpenAI-style error body, else the body itself."""
    try:
        parsed = json.loads(body)
    except (json.JSONDecodeError, ValueError):
        return body.strip()
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if isinstance(parsed.get("message"), str):
            return str(parsed["message"])
    return body.strip()
