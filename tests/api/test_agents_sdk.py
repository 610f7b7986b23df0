"""The stock OpenAI Agents SDK for JavaScript (``@openai/agents-realtime``, from the npm
registry) on the API harness (scripted engines, real Redis): on Node against
``WS /v1/realtime`` (``tests/js/agents_sdk/realtime_session.mjs``), and in Debian's
Chromium over WebRTC (``POST /v1/realtime/calls``, its browser bundle and
``tests/js/agents_sdk/realtime_webrtc.js``, a WAV file as the microphone). Each makes a
spoken turn, a typed turn, an interrupted reply and a new connection, as an app would,
and reports what the SDK showed (replies, audio, its history)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.api_harness import Harness, call_api
from tests.support.audio_fixtures import tone
from tests.support.browser_harness import CHROMIUM_ARGS, TIMEOUT_MS, chromium_path, write_wav

pytestmark = pytest.mark.redis

AGENTS_SDK = "@openai/agents-realtime@0.20.0"
SCRIPT = Path(__file__).parents[1] / "js" / "agents_sdk" / "realtime_session.mjs"
BROWSER_SCRIPT = SCRIPT.with_name("realtime_webrtc.js")


@pytest.fixture(scope="session")
def agents_sdk() -> Path:
    """The SDK installed once per machine (npm's registry), beside a copy of the script
    (Node resolves packages from the script's folder)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    home = cache / "voxline" / "npm" / AGENTS_SDK.replace("/", "_").replace("@", "")
    if not (home / "node_modules" / "@openai" / "agents-realtime").is_dir():
        home.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent",
                        "--prefix", str(home), AGENTS_SDK], check=True, timeout=600)
    shutil.copy(SCRIPT, home / SCRIPT.name)
    return home


@pytest.fixture
async def harness(redis_url: str, key_prefix: str) -> AsyncIterator[Harness]:
    async with call_api(redis_url, key_prefix, words=30, delay=0.02) as harness:
        yield harness


async def test_the_agents_sdk_talks_types_is_interrupted_and_reconnects(
    harness: Harness, agents_sdk: Path, tmp_path: Path
) -> None:
    speech = tmp_path / "speech.pcm"  # 24 kHz, what the SDK sends
    speech.write_bytes(tone(0.5, False, 24000) + tone(0.6, True, 24000)
                       + tone(1.0, False, 24000))
    url = "ws" + harness.url.removeprefix("http") + "/v1/realtime?model=voxline"
    node = await asyncio.create_subprocess_exec(
        "node", str(agents_sdk / SCRIPT.name), url, str(speech), cwd=agents_sdk,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(node.communicate(), 180)
    finally:
        if node.returncode is None:
            node.kill()
            await node.wait()
    assert node.returncode == 0, err.decode()[-3000:]
    shown = json.loads(out.decode().strip().splitlines()[-1])
    assert shown["typed"]["text"].startswith("Word1") and shown["typed"]["audio"] > 0
    assert shown["spoken"]["text"].startswith("Word1") and shown["spoken"]["audio"] > 0
    # interrupted at its first audio: the server logs what the SDK had played
    assert "conversation.item.truncated" in shown["interrupted"]["events"], shown["errors"]
    assert [m["role"] for m in shown["history"]] == ["user", "assistant"] * 3
    assert [m["text"] for m in shown["history"] if m["role"] == "user"] == [
        "Hi", "Hello there", "Tell me a long story"]
    assert shown["errors"] == []  # conversation.item.retrieve after the truncation too
    assert shown["reconnected"]["text"].startswith("Word1")


@pytest.mark.browser
async def test_the_agents_sdk_in_a_browser_talks_over_webrtc(
    harness: Harness, agents_sdk: Path, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright

    bundle = (agents_sdk / "node_modules" / "@openai" / "agents-realtime" / "dist" / "bundle"
              / "openai-realtime-agents.umd.js")
    microphone = write_wav(tmp_path / "question.wav",
                           tone(1.5, False) + tone(0.6, True) + tone(1.0, False), 16000)
    args = [*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={microphone}%noloop"]
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium_path(), args=args,
                                                   headless=True)
        try:
            # a page of the server's origin (the SDK posts its offer there); the bundle
            # and the script are the test's, put in past the server's own policy
            context = await browser.new_context(bypass_csp=True)
            context.set_default_timeout(TIMEOUT_MS)
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(f"{harness.url}/healthz")
            await page.add_script_tag(path=str(bundle))
            await page.add_script_tag(path=str(BROWSER_SCRIPT))
            shown = await page.evaluate("(base) => window.runAgentsSdk(base)", harness.url)
        finally:
            await browser.close()
    assert shown["callId"] and shown["callId"].startswith("rtc_")
    assert shown["spoken"]["text"].startswith("Word1")
    assert shown["typed"]["text"].startswith("Word1")
    assert shown["remoteTracks"] == 1  # the reply played on the call's track
    # interrupt(): response.cancel and output_audio_buffer.clear, both understood
    assert "output_audio_buffer.cleared" in shown["interrupted"]["events"]
    assert "response.done" in shown["interrupted"]["events"]
    assert [m["role"] for m in shown["history"]] == ["user", "assistant"] * 3
    assert [m["text"] for m in shown["history"] if m["role"] == "user"] == [
        "Hello there", "Hi", "Tell me a long story"]
    assert shown["history"][-1]["status"] == "incomplete"
    assert shown["errors"] == []  # every event the SDK sent was understood
    assert shown["reconnected"]["text"].startswith("Word1")
    assert not errors
