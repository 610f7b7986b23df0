"""What a browser is allowed and told (plain uvicorn, scripted engines).

* ``Origin``: a WebSocket upgrade on either socket, or a request that changes something,
  from a page elsewhere is refused 403 ``origin_not_allowed`` before the upgrade (a
  sessionless ``/v1/realtime`` creates nothing); the server's own page, loopback pages,
  configured origins and clients that send no ``Origin`` (SDKs, curl) are served.
* Headers: ``nosniff`` and ``X-Frame-Options: DENY`` on every answer; the page and the
  documentation pages send a ``Content-Security-Policy`` that keeps everything to this
  origin and lets no one frame them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from deployments.api import create_api
from deployments.api._headers import script_hashes
from deployments.api._origin import origin_allowed
from schemas import ApiSettings, EventLogSettings, Settings
from tests.support.api_harness import Harness, serve_api
from tests.support.engines import ScriptedLLM, ScriptedTTS
from voxline.client import FINAL_TYPES

EVIL = "https://evil.example"

# ---- the allow-list, as a function ---------------------------------------------------------


@pytest.mark.parametrize(("origin", "host", "allowed"), [
    (None, "voxline.example", True),  # not a browser
    ("http://voxline.example:8000", "voxline.example:8000", True),  # its own page
    ("https://voxline.example", "voxline.example", True),  # behind a TLS terminator
    ("http://voxline.example", "voxline.example:8000", False),  # another port
    ("http://voxline.example:8000", "voxline.example", False),
    ("http://localhost:5173", "voxline.example", True),  # loopback pages, any port
    ("https://127.0.0.1", "voxline.example", True),
    ("http://127.0.0.2:9", "voxline.example", True),
    ("http://[::1]:3000", "voxline.example", True),
    ("http://app.localhost", "voxline.example", True),
    ("https://evil.example", "voxline.example", False),
    ("https://localhost.evil.example", "voxline.example", False),
    ("http://voxline.example.evil.example", "voxline.example", False),
    ("null", "voxline.example", False),  # sandboxed frames, file: pages
    ("file://", "voxline.example", False),
    ("not a url", "voxline.example", False),
    ("https://evil.example", None, False),
])
def test_the_default_allow_list(origin: str | None, host: str | None, allowed: bool) -> None:
    assert origin_allowed(origin, host) is allowed


def test_configured_origins_and_the_public_url_are_allowed() -> None:
    assert origin_allowed("https://app.example", "10.0.0.5:8000", ["https://app.example:443"])
    assert origin_allowed("https://APP.example/", "10.0.0.5:8000", ["https://app.example"])
    assert not origin_allowed("http://app.example", "10.0.0.5:8000", ["https://app.example"])
    assert origin_allowed(EVIL, "10.0.0.5:8000", ["*"])
    assert origin_allowed("null", "10.0.0.5:8000", ["null"])
    public = "https://voice.example/base"
    assert origin_allowed("https://voice.example", "10.0.0.5:8000", public_url=public)
    assert not origin_allowed(EVIL, "10.0.0.5:8000", public_url=public)


def test_the_setting_is_a_json_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXLINE_API__ALLOWED_ORIGINS", json.dumps(["https://app.example"]))
    assert Settings().api.allowed_origins == ("https://app.example",)
    assert ApiSettings().allowed_origins == ()  # default: own origin and loopback only


# ---- through the API ---------------------------------------------------------------------


@pytest.fixture
async def harness(redis_url: str, key_prefix: str) -> AsyncIterator[Harness]:
    api = ApiSettings(allowed_origins=("https://app.example",))
    async with serve_api(redis_url, EventLogSettings(key_prefix=key_prefix),
                         llm=ScriptedLLM(["Hi", "!"]), tts=ScriptedTTS(), api=api) as harness:
        yield harness


def ws_base(harness: Harness) -> str:
    return harness.url.replace("http", "ws", 1)


async def refused_upgrade(url: str, origin: str) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, origin=Origin(origin)):
            pass
    return refused.value


@pytest.mark.redis
async def test_both_sockets_refuse_a_page_from_elsewhere_before_the_upgrade(
    harness: Harness,
) -> None:
    session = await harness.client.create_session()
    native = f"{session.ws_url}?token={session.token}"
    for url in (native, f"{ws_base(harness)}/v1/realtime", f"{ws_base(harness)}/v1/nowhere"):
        refusal = await refused_upgrade(url, EVIL)
        assert refusal.response.status_code == 403, url
        error = json.loads(refusal.response.body or b"{}")["error"]
        assert error["code"] == "origin_not_allowed" and error["details"]["origin"] == EVIL
        assert refusal.response.headers["x-content-type-options"] == "nosniff"
    # the sessionless /v1/realtime made no session: nothing was admitted
    assert harness.services.admission.in_use("sessions") == 0
    assert not harness.services.connections.live


@pytest.mark.redis
async def test_own_loopback_configured_and_originless_clients_are_served(
    harness: Harness,
) -> None:
    session = await harness.client.create_session(realtime_tts=False)
    native = f"{session.ws_url}?token={session.token}"
    port = harness.url.rsplit(":", 1)[1]
    for origin in (None, harness.url, f"http://localhost:{port}", "http://localhost:5173",
                   "https://app.example"):
        async with connect(native, origin=Origin(origin) if origin else None) as ws:
            await ws.send(json.dumps({"type": "input.text", "text": "hello"}))
            types = []
            while not FINAL_TYPES & set(types):
                types.append(json.loads(await ws.recv())["type"])
            assert "response.done" in types, (origin, types)
    async with connect(f"{ws_base(harness)}/v1/realtime",
                       origin=Origin("http://127.0.0.1:3000")) as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"


@pytest.mark.redis
async def test_requests_that_change_something_from_elsewhere_are_refused(
    harness: Harness,
) -> None:
    async with httpx.AsyncClient(base_url=harness.url) as http:
        refused = await http.post("/v1/sessions", json={}, headers={"Origin": EVIL})
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "origin_not_allowed"
        chat = await http.post("/v1/chat/completions", headers={"Origin": EVIL},
                               json={"model": "x", "messages": [{"role": "user", "content": "a"}]})
        assert chat.status_code == 403
        # reading stays open (a page elsewhere cannot read the answer: no CORS)
        assert (await http.get("/healthz", headers={"Origin": EVIL})).status_code == 200
        assert (await http.get("/v1/models", headers={"Origin": EVIL})).status_code == 200
        own = await http.post("/v1/sessions", json={}, headers={"Origin": harness.url})
        assert own.status_code == 201
        assert "access-control-allow-origin" not in own.headers


# ---- headers -----------------------------------------------------------------------------


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_api())
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        yield client


def directives(policy: str) -> dict[str, list[str]]:
    parts = (part.split() for part in policy.split(";") if part.strip())
    return {name: sources for name, *sources in parts}


@pytest.mark.parametrize("path", ["/", "/docs", "/redoc", "/docs/protocol"])
async def test_pages_send_a_policy_and_frame_protection(
    http: httpx.AsyncClient, path: str
) -> None:
    response = await http.get(path)
    assert response.status_code == 200
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    policy = directives(response.headers["content-security-policy"])
    assert policy["default-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["object-src"] == ["'none'"]
    assert not any("'unsafe-eval'" in sources for sources in policy.values())
    assert policy["connect-src"] == ["'self'", "ws://localhost", "wss://localhost"]
    scripts = policy["script-src"]
    assert "'unsafe-inline'" not in scripts
    if path == "/docs":  # Swagger UI's one inline start script, by hash
        assert scripts[1:] == script_hashes(response.text) and len(scripts) == 2
        assert "validator.swagger.io" not in response.text
    else:
        assert scripts == ["'self'"]


async def test_every_answer_is_nosniff_and_unframable(http: httpx.AsyncClient) -> None:
    for path in ("/openapi.json", "/asyncapi.json", "/static/app.js", "/nowhere"):
        response = await http.get(path)
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["x-frame-options"] == "DENY", path
    api = await http.get("/openapi.json")
    assert api.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    # the page's modules carry no policy of their own (a worker's would be theirs)
    assert "content-security-policy" not in (await http.get("/static/app.js")).headers


async def test_a_host_header_cannot_write_into_the_policy(http: httpx.AsyncClient) -> None:
    # no page is served to a host that is no host name (test_host_guard), and the refusal's
    # own policy is the API's, which names no host
    response = await http.get("/", headers={"Host": "x; script-src *"})
    assert response.status_code == 421
    policy = directives(response.headers["content-security-policy"])
    assert policy == {"default-src": ["'none'"], "frame-ancestors": ["'none'"]}

