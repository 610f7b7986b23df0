"""The background workers inside the real Serve app: auto-play narration reaches a
connected client live, metrics reach the Prometheus endpoint (and a real Prometheus),
``voxline talk`` works."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from tests.serve._app import App
from tests.support.prometheus import alert_rules, prometheus_server, query, until_all_answer
from voxline.client import VoxlineClient
from voxline.talk import talk

pytestmark = [pytest.mark.serve, pytest.mark.models, pytest.mark.redis]

GREEDY = {"temperature": 0.0, "max_tokens": 40, "seed": 1}


async def test_a_text_reply_is_narrated_for_auto_play(client: VoxlineClient) -> None:
    messages = [m async for m in client.chat_stream(
        "What is the capital of France?", auto_play=True, sampling=GREEDY)]
    thread, token = messages[0][1]["thread_id"], messages[0][1]["token"]
    done = messages[-1][1]
    assert done["status"] == "completed" and not [n for n, _ in messages if n == "audio"]
    # A client following the session's log sees the narration arrive.
    chunks, ready = [], None
    async with asyncio.timeout(120), client.http.stream(
            "GET", f"/v1/sessions/{thread}/events", params={"token": token}) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[6:])
            if event["type"] == "response.audio.chunk":
                chunks.append(event)
            elif event["type"] == "narration.ready":
                ready = event
                break
    assert ready is not None and ready["turn_id"] == done["turn_id"]
    assert ready["data"]["chunk_count"] == len(chunks) > 0
    assert [c["data"]["chunk_index"] for c in chunks] == list(range(len(chunks)))


async def test_metrics_reach_the_prometheus_endpoint(app: App, client: VoxlineClient) -> None:
    [m async for m in client.chat_stream("What is the capital of Spain?", sampling=GREEDY)]
    ready = (await client.http.get("/readyz")).json()
    endpoint = ready["metrics"]["prometheus"]
    assert endpoint == f"http://127.0.0.1:{app.settings.metrics_port}/metrics"
    async with asyncio.timeout(60):
        while True:
            text = (await asyncio.to_thread(httpx.get, endpoint, timeout=5)).text
            if 'stage="llm_first_token"' in text:  # the consumer recorded the turn
                break
            await asyncio.sleep(0.5)
    assert "voxline_turns_total" in text and "voxline_sessions_total" in text


async def test_a_real_prometheus_scrapes_the_apps_metrics(
    app: App, client: VoxlineClient, tmp_path: Path
) -> None:
    """The Metrics deployment's endpoint, scraped by Debian's Prometheus after a turn:
    every alert rule evaluates without error, and the Gateway replica's own series
    (admission, stage calls, log appends and reader lag, feed groups) and the turn
    series have data."""
    [m async for m in client.chat_stream("What is the capital of Peru?", sampling=GREEDY)]
    port = app.settings.metrics_port
    with prometheus_server([f"127.0.0.1:{port}"], tmp_path) as prometheus:
        # polled in a thread: the test's event loop (its client) is not held for it
        missing = await asyncio.to_thread(until_all_answer, prometheus, [
            'up{job="voxline-metrics"} == 1',
            'voxline_admission_limit{kind="turns"}',
            'voxline_admission_in_use{kind="sessions"}',
            'voxline_stage_calls_total{stage="llm"} > 0',
            "voxline_stage_calls_in_flight",
            "voxline_log_append_duration_milliseconds_count > 0",
            "voxline_log_tail_lag_milliseconds_count > 0",
            "voxline_log_tail_readers",
            'voxline_feed_pending_entries{group="metrics"}',
            'voxline_turns_total{source="text"} > 0',
        ], 90)
        assert not missing, missing
        replicas = query(prometheus, "voxline_admission_limit")
        assert isinstance(replicas, list)
        assert all(r["metric"]["replica"].startswith("gateway-") for r in replicas)
        for rule in alert_rules(prometheus):
            assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))


async def test_talk_with_text(app: App, tmp_path: Path) -> None:
    said: list[str] = []
    out = tmp_path / "reply.wav"
    await talk(app.url, text="What is the capital of Italy?", wav=None, out=out,
               say=lambda text, end="\n": said.append(text), sampling=GREEDY)
    assert out.stat().st_size > 10_000
    audio = next(i for i, line in enumerate(said) if line.startswith("reply audio:"))
    assert "".join(said[:audio]).strip()  # the reply streamed to the terminal
    session = next(line for line in said[audio:] if line.startswith("session: "))
    assert session.removeprefix("session: ").startswith("sess_")  # said, to look back at it
