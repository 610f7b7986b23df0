"""A turn whose end the log will not take: its socket is closed to resume, never left waiting.

The log takes the reply's start, then refuses every append of the session (as a Redis
whose primary is gone past ``outage_grace_s`` does): the reply's deltas, its
``response.done`` and the ``error`` that would say the turn failed are all lost. A client
reading the log would wait for that end forever; it is closed with 4503
``event_log_unavailable`` instead, and the log, back, is read again from its last event.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from pipeline.log import AppendResult
from schemas import EventBase, EventLogError, EventLogSettings, parse_event
from tests.support.api_harness import serve_api
from tests.support.engines import ScriptedLLM, ScriptedTTS

pytestmark = pytest.mark.redis


async def test_a_turn_whose_end_cannot_be_logged_closes_its_socket_to_resume(
    redis_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    llm = ScriptedLLM(["Once ", "upon ", "a ", "time."], delay=0.01)
    async with serve_api(redis_url, EventLogSettings(key_prefix=key_prefix), llm=llm,
                         tts=ScriptedTTS()) as harness:
        log = harness.services.log
        append = log.append_batch
        down = asyncio.Event()

        async def append_until_down(events: Sequence[EventBase]) -> AppendResult:
            if any(e.type == "response.text.delta" for e in events):
                down.set()  # the reply started: from its first word on, nothing lands
            if down.is_set():
                raise EventLogError("the primary is gone")
            return await append(events)

        monkeypatch.setattr(log, "append_batch", append_until_down)
        session = await harness.client.create_session()
        seen = []
        async with connect(f"{session.ws_url}?token={session.token}") as ws:
            await ws.send(json.dumps({"type": "input.text", "text": "Tell me a story."}))
            with pytest.raises(ConnectionClosed) as closed:
                async with asyncio.timeout(30):  # a bound only: the close comes at once
                    async for frame in ws:
                        seen.append(parse_event(json.loads(frame)))
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
            4503, "event_log_unavailable")
        assert [e.type for e in seen if e.id is not None] == ["input.text", "response.started"]
        error = seen[-1]  # the refusal frame: not in the log, so no id
        assert error.type == "error" and error.id is None
        assert error.data.code.value == "event_log_unavailable"  # type: ignore[union-attr]
        assert down.is_set()
