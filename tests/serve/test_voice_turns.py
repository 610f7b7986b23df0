"""Voice and text turns through the real Serve app, over the real socket."""

from __future__ import annotations

import asyncio

import pytest

from voxline.client import VoxlineClient
from voxline.demo import RATE, text_turn, voice_turn, with_pauses

pytestmark = [pytest.mark.serve, pytest.mark.models, pytest.mark.redis]

QUESTION = "What is the capital of France?"
GREEDY = {"temperature": 0.0, "max_tokens": 40, "seed": 1}


def _types(events: list) -> list[str]:
    return [e.type for e in events]


async def test_voice_in_voice_out_over_the_socket(client: VoxlineClient,
                                                   spoken_question: bytes) -> None:
    audio = with_pauses(spoken_question, RATE)
    result = await voice_turn(client, audio, speech_end_s=0.5, realtime=False, sampling=GREEDY)
    types = _types(result.events)
    assert types.index("input.speech_started") < types.index("input.speech_stopped")
    assert types.index("input.audio") < types.index("transcript.final")
    assert "capital" in result.transcript.lower() and "france" in result.transcript.lower()
    assert result.reply.strip()
    assert types[-1] == "response.done"
    assert result.events[-1].data.status == "completed"  # type: ignore[union-attr]
    chunks = [e for e in result.events if e.type == "response.audio.chunk"]
    assert chunks and len(result.audio) > RATE // 2  # more than a quarter second of speech
    assert [c.data.chunk_index for c in chunks] == list(range(len(chunks)))  # type: ignore[union-attr]
    assert all(c.data.sample_rate == RATE for c in chunks)  # type: ignore[union-attr]

    # What the client saw is the log: same ids, same order.
    session = result.session
    logged = await _log_ids(client, session.session_id, session.token)
    seen = [e.id for e in result.events if e.id is not None]  # the greeting is not logged
    assert logged[logged.index(seen[0]):][: len(seen)] == seen


async def test_text_in_voice_out(client: VoxlineClient) -> None:
    result = await text_turn(client, QUESTION, sampling=GREEDY)
    types = _types(result.events)
    assert types[0] == "input.text"
    assert "response.text.delta" in types and "response.audio.done" in types
    assert "paris" in result.reply.lower()
    assert len(result.audio) > RATE // 2


async def test_sequential_mode_speaks_after_the_whole_reply(client: VoxlineClient) -> None:
    result = await text_turn(client, QUESTION, sampling=GREEDY, speech_mode="sequential")
    types = _types(result.events)
    started = next(e for e in result.events if e.type == "response.started")
    assert started.data.mode == "sequential"  # type: ignore[union-attr]
    assert max(i for i, t in enumerate(types) if t == "response.text.delta") < types.index(
        "response.audio.chunk")


async def test_four_sessions_at_once(client: VoxlineClient) -> None:
    questions = ["What is the capital of France?", "What is the capital of Italy?",
                 "What is the capital of Spain?", "What is the capital of Germany?"]
    results = await asyncio.gather(*(text_turn(client, q, sampling=GREEDY) for q in questions))
    assert len({r.session.session_id for r in results}) == 4
    for result in results:
        assert result.events[-1].type == "response.done"
        assert result.events[-1].data.status == "completed"  # type: ignore[union-attr]
        assert {e.session_id for e in result.events} == {result.session.session_id}
        assert result.audio


async def test_cancel_mid_response_then_go_on(client: VoxlineClient) -> None:
    session = await client.create_session(sampling={"temperature": 0.7, "max_tokens": 300,
                                                    "seed": 3})
    async with client.connect(session) as conn:
        await conn.send_text("Tell me a long story about a dragon and a knight.")
        seen = []
        async for event in conn.until_done():
            seen.append(event)
            if event.type == "response.text.delta" and "response.text.delta" not in _types(
                    seen[:-1]):
                await conn.cancel()
        assert seen[-1].type == "response.cancelled"
        assert seen[-1].data.reason == "client"  # type: ignore[union-attr]
        await conn.send_text(QUESTION)
        after = [e async for e in conn.until_done()]
        assert after[-1].type == "response.done"


async def _log_ids(client: VoxlineClient, session_id: str, token: str) -> list[str]:
    response = await client.http.get(f"/v1/sessions/{session_id}/events",
                                     params={"follow": "false", "token": token})
    assert response.status_code == 200
    return [line[4:] for line in response.text.splitlines() if line.startswith("id: ")]
