"""The browser page at ``/``, and the API documentation, all served from packages.

Nothing here is loaded from the internet: the page's ES modules live in
``deployments/api/static/`` (package data), Swagger UI and ReDoc come from the
``fastapi-offline`` package's assets (MIT; Swagger UI is Apache-2.0, ReDoc MIT), and the
WebSocket protocol is documented from the same JSON Schema as ``docs/protocol.schema.json``
(``/v1/protocol.schema.json``), as an AsyncAPI 3.0 document (``/asyncapi.json``) and a
page that renders it (``/docs/protocol``). None of these routes is in the OpenAPI spec:
they are documentation and the client, not the API.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from deployments.api._asyncapi import asyncapi_document
from deployments.api._headers import page_policy, script_hashes
from schemas import protocol_json_schema

STATIC = Path(__file__).resolve().parent / "static"
STATIC_URL = "/static"
VENDOR_URL = "/static/vendor"
#: no-cache: the browser revalidates (ETag) so a new release's modules are picked up
_HEADERS = {"Cache-Control": "no-cache"}

router = APIRouter(include_in_schema=False)


def vendor_assets() -> Path | None:
    """The folder of Swagger UI and ReDoc assets that ``fastapi-offline`` ships, found
    without importing it (its code is not used, only its files)."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "static"
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def _page(name: str, request: Request) -> FileResponse:
    """A packaged page with its policy: modules, the worklet, fetch and the socket, all
    from this origin (``deployments.api._headers``)."""
    policy = page_policy(request.headers.get("host"))
    return FileResponse(STATIC / name, headers={**_HEADERS, "Content-Security-Policy": policy})


@router.get("/")
async def page(request: Request) -> FileResponse:
    return _page("index.html", request)


@router.get("/docs/protocol")
async def protocol_page(request: Request) -> FileResponse:
    return _page("protocol.html", request)


@router.get("/v1/protocol.schema.json")
async def protocol_schema() -> JSONResponse:
    return JSONResponse(protocol_json_schema())


@router.get("/asyncapi.json")
async def asyncapi() -> JSONResponse:
    return JSONResponse(asyncapi_document())


def install(app: FastAPI) -> list[str]:
    """The page, its static files and the documentation routes (create the app with
    ``docs_url=None, redoc_url=None``: FastAPI's own load their assets from a CDN).

    Returns the paths it serves (``/static/*``: everything under ``/static/``): they need
    no API key, being the page and the documentation, not the API."""
    openapi_url = app.openapi_url or "/openapi.json"
    title = f"{app.title} API"
    vendor = vendor_assets()
    if vendor is not None:
        app.mount(VENDOR_URL, StaticFiles(directory=vendor), name="vendor")
    app.mount(STATIC_URL, StaticFiles(directory=STATIC), name="static")

    async def swagger(request: Request) -> HTMLResponse:
        html = get_swagger_ui_html(
            openapi_url=openapi_url, title=title,
            swagger_js_url=f"{VENDOR_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{VENDOR_URL}/swagger-ui.css",
            swagger_favicon_url=f"{VENDOR_URL}/favicon.png",
            # no badge from the online validator: nothing is loaded from elsewhere
            swagger_ui_parameters={"validatorUrl": None},
        )
        # its one inline script (the UI's start) is allowed by hash, nothing else inline
        html.headers["Content-Security-Policy"] = page_policy(
            request.headers.get("host"), scripts=script_hashes(bytes(html.body).decode()),
            inline_styles=True)
        return html

    async def redoc(request: Request) -> HTMLResponse:
        html = get_redoc_html(
            openapi_url=openapi_url, title=title,
            redoc_js_url=f"{VENDOR_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{VENDOR_URL}/favicon.png", with_google_fonts=False,
        )
        # images from here only (ReDoc's sidebar would show a logo from its CDN);
        # its styles are inline and its search runs in a blob: worker
        html.headers["Content-Security-Policy"] = page_policy(
            request.headers.get("host"), inline_styles=True, blob_workers=True)
        return html

    async def missing() -> HTMLResponse:
        return HTMLResponse(
            "<p>The API documentation needs the <code>fastapi-offline</code> package "
            f"(its assets). The spec itself is at <a href='{openapi_url}'>{openapi_url}</a>.</p>",
            status_code=503)

    docs_routes: dict[str, Any] = {"/docs": swagger, "/redoc": redoc}
    for path, endpoint in docs_routes.items():
        app.add_api_route(path, endpoint if vendor is not None else missing,
                          methods=["GET"], include_in_schema=False)
    app.include_router(router)
    return [f"{STATIC_URL}/*", *docs_routes,
            *(route.path for route in router.routes if isinstance(route, APIRoute))]
