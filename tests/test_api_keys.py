"""Optional API keys (``VOXLINE_API__KEYS``): with keys set, every endpoint but the probes
needs ``Authorization: Bearer <key>`` (what the OpenAI SDK sends), and a session's token
moves to ``X-Voxline-Token`` or ``?token=``; without keys everything is open (the other
harness tests)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import openai
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from schemas import ApiSettings, EventLogSettings, Settings
from tests.api_harness import Harness, serve_api
from tests.scripted_engines import ScriptedLLM, ScriptedTTS

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
