"""The page at ``/``, its static files and the documentation routes, without Ray.

The page's behaviour is tested in a browser (tests/serve/test_browser_page.py) and its
pure JS modules by ``node --test tests/js``; here: what the Gateway serves, and that
none of it points at the internet.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from deployments.api import create_api
from deployments.api.web import STATIC
from schemas import CLIENT_MESSAGE_TYPES, EVENT_TYPES, protocol_json_schema


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_api())
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        yield client


def _external(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)=["'](?:https?:)?//[^"']+""", html)


async def test_the_page_is_served_at_the_root(http: httpx.AsyncClient) -> None:
    response = await http.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/static/app.js">' in response.text
    assert _external(response.text) == []
    # every module and style sheet in the folder, so a new module cannot go unserved
    assets = sorted(p.name for p in STATIC.iterdir() if p.suffix in (".js", ".css"))
    assert {"app.js", "events.js", "session.js", "transcript.js", "style.css"} <= set(assets)
    for module in assets:
        asset = await http.get(f"/static/{module}")
        assert asset.status_code == 200, module
        if module.endswith(".js"):
            assert "javascript" in asset.headers["content-type"], module
            imports = re.findall(r"""from\s+["']([^"']+)["']""", asset.text)
            assert all(path.startswith("./") for path in imports), (module, imports)


@pytest.mark.parametrize(("path", "assets"), [
    ("/docs", ("/static/vendor/swagger-ui-bundle.js", "/static/vendor/swagger-ui.css")),
    ("/redoc", ("/static/vendor/redoc.standalone.js",)),
])
async def test_api_docs_use_packaged_assets(
    http: httpx.AsyncClient, path: str, assets: tuple[str, ...]
) -> None:
    response = await http.get(path)
    assert response.status_code == 200
    for asset in assets:
        assert asset in response.text
        assert (await http.get(asset)).status_code == 200
    assert "cdn" not in response.text.lower()
    assert "fonts.googleapis" not in response.text


async def test_the_protocol_is_documented(http: httpx.AsyncClient) -> None:
    assert (await http.get("/v1/protocol.schema.json")).json() == protocol_json_schema()
    page = await http.get("/docs/protocol")
    assert page.status_code == 200 and "/static/protocol.js" in page.text
    spec = (await http.get("/asyncapi.json")).json()
    assert spec["asyncapi"].startswith("3.")
    names = {m["name"] for m in spec["components"]["messages"].values()}
    assert set(CLIENT_MESSAGE_TYPES) <= names
    assert set(EVENT_TYPES) <= names
    refs = re.findall(r'"\$ref": "([^"]+)"', str(spec).replace("'", '"'))
    assert refs and not [r for r in refs if r.startswith("#/$defs/")]


async def test_page_routes_stay_out_of_the_openapi_spec(http: httpx.AsyncClient) -> None:
    paths = (await http.get("/openapi.json")).json()["paths"]
    assert not {"/", "/docs", "/redoc", "/docs/protocol", "/asyncapi.json"} & set(paths)
