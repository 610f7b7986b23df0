"""Optional API keys (``VOXLINE_API__KEYS``): with keys set, every endpoint but the probes
needs ``Authorization: Bearer <key>`` (what the OpenAI SDK sends), and a session's token
moves to ``X-Voxline-Token`` or ``?token=``; without keys everything is open (the other
harness tests)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import openai
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from schemas import ApiSettings, EventLogSettings, Settings
from tests.support.api_harness import Harness, serve_api
from tests.support.engines import ScriptedLLM, ScriptedTTS

pytestmark = pytest.mark.redis

KEY = "sk-voxline-test"
OTHER = "sk-voxline-other"


@pytest.fixture
async def harness(redis_url: str, key_prefix: str) -> AsyncIterator[Harness]:
    api = ApiSettings(keys=(KEY, OTHER))  # type: ignore[arg-type]
    async with serve_api(redis_url, EventLogSettings(key_prefix=key_prefix),
                         llm=ScriptedLLM(["Hi", "!"]), tts=ScriptedTTS(), api=api) as harness:
        yield harness


def sdk(harness: Harness, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=harness.url + "/v1", api_key=key, max_retries=0)


def test_keys_come_from_a_json_list_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXLINE_API__KEYS", json.dumps([KEY, OTHER]))
    keys = Settings().api.keys
    assert [k.get_secret_value() for k in keys] == [KEY, OTHER]
    assert KEY not in repr(keys)  # secrets stay out of logs


async def test_the_sdk_with_a_key_is_served_and_without_one_is_refused(harness: Harness) -> None:
    for key in (KEY, OTHER):
        async with sdk(harness, key) as client:
            completion = await client.chat.completions.create(
                model="any", messages=[{"role": "user", "content": "Hi"}])
            assert completion.choices[0].message.content == "Hi!"
            assert (await client.models.list()).data
    async with sdk(harness, "sk-wrong") as client:
        with pytest.raises(openai.AuthenticationError, match="API key is not valid"):
            await client.chat.completions.create(
                model="any", messages=[{"role": "user", "content": "Hi"}])
        with pytest.raises(openai.AuthenticationError):
            await client.models.list()


async def test_probes_stay_open_and_the_rest_needs_the_key(harness: Harness) -> None:
    async with httpx.AsyncClient(base_url=harness.url) as http:
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/readyz")).status_code in (200, 503)
        refused = await http.post("/v1/sessions", json={})
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthorized"
        assert "Authorization: Bearer" in refused.json()["error"]["message"]
        streamed = await http.post("/v1/chat/stream", json={"message": "Hi"})
        assert streamed.status_code == 401
        # refused before the body is read: a stranger learns only that a key is needed
        garbled = await http.post("/v1/sessions", content=b"\x00{", headers={
            "content-type": "application/json"})
        assert garbled.status_code == 401
        for public in ("/openapi.json", "/docs", "/", "/static/app.js"):  # page and docs: open
            assert (await http.get(public)).status_code == 200, public


async def test_a_session_call_shows_the_key_and_its_token_apart(harness: Harness) -> None:
    key = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=harness.url) as http:
        created = await http.post("/v1/sessions", json={}, headers=key)
        assert created.status_code == 201
        session_id, token = created.json()["session_id"], created.json()["token"]
        path = f"/v1/sessions/{session_id}"
        assert (await http.get(path, headers={**key, "X-Voxline-Token": token})).status_code \
            == 200
        assert (await http.get(path, headers=key, params={"token": token})).status_code == 200
        # the key alone is no session's token; the token alone is no key
        assert (await http.get(path, headers=key)).status_code == 401
        as_bearer = await http.get(path, headers={"Authorization": f"Bearer {token}"})
        assert as_bearer.status_code == 401


async def test_the_socket_needs_the_key_too(harness: Harness) -> None:
    key = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=harness.url) as http:
        body = (await http.post("/v1/sessions", json={}, headers=key)).json()
    url = f"{body['ws_url']}?token={body['token']}"
    async with connect(url) as ws:
        frame = json.loads(await ws.recv())
        assert frame["type"] == "error" and frame["data"]["code"] == "unauthorized"
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    async with connect(url, additional_headers=key) as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"


def protocols(*names: str) -> list[Subprotocol]:
    return [Subprotocol(name) for name in names]


async def test_a_browser_socket_shows_its_key_as_a_subprotocol(harness: Harness) -> None:
    """A browser cannot set headers on a WebSocket: the key comes as the subprotocol
    ``openai-insecure-api-key.<key>`` beside a protocol name, which the server accepts
    with (never the key's)."""
    async with httpx.AsyncClient(base_url=harness.url) as http:
        body = (await http.post("/v1/sessions", json={},
                                headers={"Authorization": f"Bearer {KEY}"})).json()
    native = f"{body['ws_url']}?token={body['token']}"
    offered = protocols("voxline", f"openai-insecure-api-key.{KEY}")
    async with connect(native, subprotocols=offered) as ws:
        assert ws.subprotocol == "voxline"
        assert json.loads(await ws.recv())["type"] == "session.created"
    openai_url = harness.url.replace("http", "ws", 1) + "/v1/realtime"
    async with connect(openai_url, subprotocols=protocols(
            "realtime", f"openai-insecure-api-key.{OTHER}")) as ws:
        assert ws.subprotocol == "realtime"
        assert json.loads(await ws.recv())["type"] == "session.created"
    wrong = protocols("voxline", "openai-insecure-api-key.sk-wrong")
    async with connect(native, subprotocols=wrong) as ws:
        frame = json.loads(await ws.recv())
        assert frame["type"] == "error" and frame["data"]["code"] == "unauthorized"
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


@pytest.mark.browser
async def test_the_page_asks_for_the_key_then_talks_with_it(harness: Harness) -> None:
    """The browser page on a server with keys: its first call is refused, so it opens
    the key field and says why; with the key typed in, a typed turn is answered and
    played (HTTP with the Bearer header, the socket with the key subprotocol)."""
    from tests.support.browser_harness import browser_page, chromium_path, snapshot, wait_for

    chromium_path()

    def drive() -> tuple[dict[str, object], list[str], bool]:
        with browser_page(harness.url) as page:
            page.wait_for_function("() => document.getElementById('key-box').open")
            asked = "API key" in str(snapshot(page)["status"])
            page.get_by_label("API key (servers that require one)").fill(KEY)
            message = page.get_by_label("Type a message")
            message.fill("Hello?")
            message.press("Enter")
            wait_for(page, "s.turns.some(t => t.status === 'completed' && t.chunks > 0 "
                           "&& t.played === t.chunks)")
            return snapshot(page), list(page.errors), asked

    state, errors, asked = await asyncio.to_thread(drive)
    assert asked
    [turn] = state["turns"]  # type: ignore[misc]
    assert turn["user"] == "Hello?" and turn["reply"] == "Hi!"
    assert not errors
