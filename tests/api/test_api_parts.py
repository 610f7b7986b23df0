"""Small parts of the HTTP API: SSE framing and keep-alives, where a request carries its
token (the tokens themselves: ``tests/pipeline/session/test_session_access.py``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import pytest
from starlette.requests import HTTPConnection, Request

from deployments.api._auth import token_of
from deployments.api._sse import KEEPALIVE, SSE_HEADERS, sse, with_keepalive
from pipeline.session import SessionTokens
from tests.support.gated_source import GatedSource, finish

T = TypeVar("T")

HANG = 5.0  # seconds; only reached when the code under test hangs
TINY = 0.01  # a keep-alive interval far shorter than any gate the tests hold closed
KEY = b"k" * 32


def parse_sse(frame: bytes) -> dict[str, Any]:
    """A minimal SSE reader (the WHATWG rules for one message) to read frames back."""
    text = frame.decode()
    assert text.endswith("\n\n"), "a message ends with a blank line"
    fields: dict[str, Any] = {"data": []}
    for line in text[:-2].split("\n"):
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            fields["data"].append(value)
        else:
            assert name not in fields, f"{name} given twice"
            fields[name] = value
    fields["data"] = "\n".join(fields["data"])
    return fields


# --- sse() ------------------------------------------------------------------------------


def test_sse_frames_json_data_with_event_and_id() -> None:
    frame = sse("response.text.delta", {"delta": "Hi", "n": 1}, "1700000000000-0")
    assert frame == (
        b'id: 1700000000000-0\nevent: response.text.delta\ndata: {"delta":"Hi","n":1}\n\n'
    )
    assert parse_sse(frame) == {
        "id": "1700000000000-0",
        "event": "response.text.delta",
        "data": '{"delta":"Hi","n":1}',
    }


def test_sse_without_id_has_no_id_line() -> None:
    frame = sse("error", {"code": "forbidden"})
    assert frame == b'event: error\ndata: {"code":"forbidden"}\n\n'
    assert b"id:" not in frame
    assert sse("error", {}, "") == b"event: error\ndata: {}\n\n"


def test_sse_keeps_encoded_json_strings_as_they_are() -> None:
    encoded = json.dumps({"text": "Grüß Gott 👋"}, ensure_ascii=False)
    frame = sse("response.done", encoded, "2-0")
    assert parse_sse(frame)["data"] == encoded
    assert json.loads(parse_sse(frame)["data"]) == {"text": "Grüß Gott 👋"}


def test_sse_json_with_newlines_in_values_stays_on_one_data_line() -> None:
    frame = sse("response.done", {"text": "line one\nline two"})
    assert frame.count(b"data:") == 1
    assert json.loads(parse_sse(frame)["data"]) == {"text": "line one\nline two"}


def test_sse_splits_multi_line_data_into_data_lines() -> None:
    body = '{\n  "a": 1,\n  "b": [2, 3]\n}'
    frame = sse("state", body, "7-1")
    assert frame == (
        b'id: 7-1\nevent: state\ndata: {\ndata:   "a": 1,\ndata:   "b": [2, 3]\ndata: }\n\n'
    )
    parsed = parse_sse(frame)
    assert parsed["data"] == body
    assert json.loads(parsed["data"]) == {"a": 1, "b": [2, 3]}


def test_sse_constants() -> None:
    assert KEEPALIVE.startswith(b":") and KEEPALIVE.endswith(b"\n\n")
    assert SSE_HEADERS["Cache-Control"] == "no-cache"
    assert SSE_HEADERS["X-Accel-Buffering"] == "no"


# --- with_keepalive() -------------------------------------------------------------------


async def take(stream: AsyncIterator[T]) -> T:
    return await asyncio.wait_for(anext(stream), HANG)


async def test_keepalive_passes_items_through_and_ends_with_the_source() -> None:
    source = GatedSource(["a", "b", "c"])
    out = [x async for x in with_keepalive(source.stream(), interval_s=60)]
    assert out == ["a", "b", "c"]
    assert source.outcome == "completed"


async def test_keepalive_of_an_empty_source_yields_nothing() -> None:
    assert [x async for x in with_keepalive(GatedSource([]).stream(), interval_s=60)] == []


async def test_keepalive_yields_none_while_the_source_is_quiet() -> None:
    source = GatedSource(["a", "b", "c"], gates=(1,))
    stream = with_keepalive(source.stream(), interval_s=TINY)
    assert await take(stream) == "a"
    # the source is held at the gate: only keep-alives can come out
    assert await take(stream) is None
    assert await take(stream) is None
    assert source.waiting.is_set()
    source.gates[1].set()
    rest = await finish(_drain(stream))
    assert [x for x in rest if x is not None] == ["b", "c"]
    assert source.outcome == "completed"


async def test_keepalive_keeps_the_pending_read_across_keepalives() -> None:
    # each keep-alive must not start a new read of the source: nothing is lost or doubled
    source = GatedSource(["a", "b", "c", "d"], gates=(1, 3))
    stream = with_keepalive(source.stream(), interval_s=TINY)
    assert await take(stream) == "a"
    for _ in range(3):
        assert await take(stream) is None
    source.gates[1].set()
    seen: list[str] = []
    while len(seen) < 2:
        item = await take(stream)
        if item is not None:
            seen.append(item)
    assert seen == ["b", "c"]
    assert await take(stream) is None
    source.gates[3].set()
    assert [x for x in await finish(_drain(stream)) if x is not None] == ["d"]


async def _drain(stream: AsyncIterator[T]) -> list[T]:
    return [x async for x in stream]


async def test_keepalive_close_while_waiting_cancels_the_source() -> None:
    before = asyncio.all_tasks()
    source = GatedSource(["a", "b"], gates=(1,))
    stream = with_keepalive(source.stream(), interval_s=TINY)
    assert await take(stream) == "a"
    assert await take(stream) is None  # a read of the source is pending now
    await finish(stream.aclose())
    assert source.outcome in ("cancelled", "closed")
    assert asyncio.all_tasks() == before  # the pending read is gone


async def test_keepalive_close_between_items_closes_the_source() -> None:
    source = GatedSource(["a", "b", "c"])
    stream = with_keepalive(source.stream(), interval_s=60)
    assert await take(stream) == "a"
    await finish(stream.aclose())
    assert source.outcome == "closed"


async def test_keepalive_passes_a_source_error_on() -> None:
    async def failing() -> AsyncIterator[str]:
        yield "a"
        raise RuntimeError("boom")

    stream = with_keepalive(failing(), interval_s=60)
    assert await take(stream) == "a"
    with pytest.raises(RuntimeError, match="boom"):
        await take(stream)


# --- token_of() -------------------------------------------------------------------------


def connection(
    headers: dict[str, str] | None = None, query: bytes = b"", kind: str = "http"
) -> HTTPConnection:
    scope: dict[str, Any] = {
        "type": kind,
        "path": "/v1/sessions/s1",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "query_string": query,
    }
    return Request(scope) if kind == "http" else HTTPConnection(scope)


@pytest.mark.parametrize("kind", ["http", "websocket"])
@pytest.mark.parametrize(
    ("headers", "query", "expected"),
    [
        ({"Authorization": "Bearer tok-1"}, b"", "tok-1"),
        ({"Authorization": "bearer   tok-1  "}, b"", "tok-1"),
        ({"X-Voxline-Token": "tok-2"}, b"", "tok-2"),
        ({}, b"token=tok-3", "tok-3"),
        ({}, b"a=1&token=tok%2B3", "tok+3"),
        # precedence: the places named for a token (the header, then the query), then
        # Bearer, which may hold an API key a client sends to any server
        ({"Authorization": "Bearer tok-1", "X-Voxline-Token": "tok-2"}, b"token=tok-3", "tok-2"),
        ({"Authorization": "Bearer tok-1"}, b"token=tok-3", "tok-3"),
        ({"X-Voxline-Token": "tok-2"}, b"token=tok-3", "tok-2"),
        # another scheme or an empty bearer is no token; the others still count
        ({"Authorization": "Basic dXNlcjpwdw=="}, b"token=tok-3", "tok-3"),
        ({"Authorization": "Bearer "}, b"", None),
        ({"Authorization": "Bearer"}, b"", None),
        ({}, b"", None),
        ({}, b"tokens=tok-3", None),
    ],
)
def test_token_of_reads_every_place(
    headers: dict[str, str], query: bytes, expected: str | None, kind: str
) -> None:
    assert token_of(connection(headers, query, kind)) == expected


def test_token_of_round_trips_an_issued_token_through_the_query() -> None:
    tokens = SessionTokens(KEY)
    token = tokens.issue("sess-1")
    tokens.verify("sess-1", token_of(connection(query=f"token={token}".encode())))
    tokens.verify("sess-1", token_of(connection({"Authorization": f"Bearer {token}"})))
