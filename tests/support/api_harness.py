"""The API served by plain uvicorn in the test's own event loop, on scripted engines.

The Serve tests run the real app with real models; this harness runs the same FastAPI
application without Ray, so protocol behaviour such as resume can be tried many times in
seconds. :func:`serve_api` and :func:`forget_keys` live in :mod:`loadtests._gateway`, shared
with the benchmarks.
"""

from __future__ import annotations

import asyncio

from websockets.asyncio.client import ClientConnection, connect

from loadtests._gateway import Harness, forget_keys, serve_api

__all__ = ["Harness", "connect_all", "forget_keys", "serve_api"]


async def connect_all(urls: list[str]) -> list[ClientConnection]:
    """Open every socket; if one fails, close those that opened (an unclosed transport is
    reported, as an error, in whichever later test the collector happens to run) and raise."""
    opened = await asyncio.gather(*(connect(url) for url in urls), return_exceptions=True)
    sockets = [ws for ws in opened if isinstance(ws, ClientConnection)]
    failed = [exc for exc in opened if isinstance(exc, BaseException)]
    if failed:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        raise failed[0]
    return sockets
