"""Host and Origin checks and security headers through Ray Serve's proxy (the real app).

The harness (tests/api/test_browser_guards.py) covers the rules; here, that they survive the
proxy: Serve hands the app's denial response to the client as the upgrade's answer, so a
page from elsewhere gets ``403 origin_not_allowed`` before any socket exists, and the
page's headers reach the browser.
"""

from __future__ import annotations

import json

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from tests.serve._app import App
from voxline.client import VoxlineClient

pytestmark = [pytest.mark.serve, pytest.mark.models, pytest.mark.redis]

EVIL = "https://evil.example"


async def test_both_sockets_refuse_a_page_from_elsewhere_through_serve(
    app: App, client: VoxlineClient
) -> None:
    session = await client.create_session()
    ws_base = app.url.replace("http", "ws", 1)
    for url in (f"{session.ws_url}?token={session.token}", f"{ws_base}/v1/realtime"):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url, origin=Origin(EVIL)):
                pass
        response = refused.value.response
        assert response.status_code == 403, url
        assert json.loads(response.body or b"{}")["error"]["code"] == "origin_not_allowed"
        async with connect(url, origin=Origin(app.url)) as ws:  # its own page is served
            assert json.loads(await ws.recv())["type"] == "session.created"


async def test_the_page_headers_pass_the_proxy(app: App) -> None:
    async with httpx.AsyncClient(base_url=app.url, timeout=30) as http:
        page = await http.get("/")
        refused = await http.post("/v1/sessions", json={}, headers={"Origin": EVIL})
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["x-frame-options"] == "DENY"
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "origin_not_allowed"


async def test_a_rebound_host_is_refused_through_serve(app: App) -> None:
    """DNS rebinding: the proxy hands the request's own Host to the app, which refuses a
    name it does not answer for before anything runs (421), sockets before the upgrade."""
    port = int(app.url.rsplit(":", 1)[1])
    rebound = f"rebind.attacker.example:{port}"
    async with httpx.AsyncClient(base_url=app.url, timeout=30) as http:
        refused = await http.post("/v1/sessions", json={},
                                  headers={"Host": rebound, "Origin": f"http://{rebound}"})
    assert refused.status_code == 421
    assert refused.json()["error"]["code"] == "host_not_allowed"
    with pytest.raises(InvalidStatus) as upgrade:
        async with connect(f"ws://{rebound}/v1/realtime", host="127.0.0.1", port=port,
                           origin=Origin(f"http://{rebound}")):
            pass
    assert upgrade.value.response.status_code == 421
