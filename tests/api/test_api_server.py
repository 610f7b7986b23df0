"""``deployments.api.ApiServer``: the server the Gateway runs on its port on one machine
(and tests and benchmarks run the API on). The API through it is tried everywhere the
harness is used; these are the server's own promises."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import signal
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from deployments.api import ApiServer
from deployments.api._server import api_config
from voxline.redis_server import free_port


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    @app.websocket("/echo")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await websocket.send_text(await websocket.receive_text())

    return app


@pytest.fixture
async def server() -> AsyncIterator[ApiServer]:
    server = ApiServer(_app(), "127.0.0.1", free_port())
    await server.start()
    yield server
    await server.stop()


async def test_it_serves_http_and_websockets_until_stopped(server: ApiServer) -> None:
    url = f"127.0.0.1:{server.port}"
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"http://{url}/ping")).json() == {"pong": "yes"}
    async with connect(f"ws://{url}/echo") as ws:
        await ws.send("hi")
        assert await ws.recv() == "hi"
    assert server.serving
    await server.stop()
    assert not server.serving  # the Gateway's health check says so
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as client:
            await client.get(f"http://{url}/ping")


async def test_a_socket_still_open_is_closed_when_it_stops(server: ApiServer) -> None:
    """A client that never closes does not hold the stop: uvicorn closes its socket with
    1012 (service restart: resume elsewhere)."""
    async with connect(f"ws://127.0.0.1:{server.port}/echo") as ws:
        await asyncio.wait_for(server.stop(timeout_s=5), 30)  # a hang guard
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012


async def test_a_successor_binds_while_its_predecessors_connections_are_in_time_wait(
    server: ApiServer,
) -> None:
    """A Gateway restarted a moment after the last one stopped takes the port at once:
    the server side closed first, so the old connection sits in TIME_WAIT on it."""
    async with connect(f"ws://127.0.0.1:{server.port}/echo") as ws:
        await ws.send("hi")
        await ws.recv()
        await server.stop()
    successor = ApiServer(_app(), "127.0.0.1", server.port)
    await successor.start()
    try:
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{server.port}/ping")).status_code == 200
    finally:
        await successor.stop()


async def test_a_port_another_server_listens_on_is_an_os_error(server: ApiServer) -> None:
    with pytest.raises(OSError) as caught:
        await ApiServer(_app(), "127.0.0.1", server.port).start()
    assert caught.value.errno == errno.EADDRINUSE


async def test_it_waits_for_a_port_its_predecessor_gives_up() -> None:
    with socket.socket() as predecessor:
        predecessor.bind(("127.0.0.1", 0))
        predecessor.listen()
        port = predecessor.getsockname()[1]
        successor = ApiServer(_app(), "127.0.0.1", port, bind_wait_s=60)
        starting = asyncio.create_task(successor.start())
        await asyncio.sleep(0.5)
        assert not starting.done()  # still waiting for the port
    await asyncio.wait_for(starting, 30)  # a hang guard
    try:
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{port}/ping")).status_code == 200
    finally:
        await successor.stop()


async def test_a_request_past_the_connection_limit_is_refused_with_503() -> None:
    """Open sockets count; a request that would pass the limit is answered at once
    (uvicorn lets WebSocket upgrades through: the app bounds sessions itself)."""
    server = ApiServer(_app(), "127.0.0.1", free_port(), limit_concurrency=2)
    await server.start()
    try:
        async with connect(f"ws://127.0.0.1:{server.port}/echo"), \
                connect(f"ws://127.0.0.1:{server.port}/echo"), httpx.AsyncClient() as client:
            refused = await client.get(f"http://127.0.0.1:{server.port}/ping")
            assert refused.status_code == 503
        async with httpx.AsyncClient() as client:  # the sockets gone, it answers again
            assert (await client.get(f"http://127.0.0.1:{server.port}/ping")).status_code == 200
    finally:
        await server.stop()


async def test_the_processes_signals_stay_its_owners() -> None:
    """uvicorn takes SIGINT and SIGTERM for itself when it serves on the main thread (as
    here); the run command's drain, and a Serve replica's Ray, own them."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    server = ApiServer(_app(), "127.0.0.1", free_port())
    await server.start()
    try:
        await asyncio.sleep(0.1)
        assert {sig: signal.getsignal(sig) for sig in before} == before
    finally:
        await server.stop()


def test_idle_connections_outlast_the_clients_own_expiry() -> None:
    """The client must be the one to drop an idle connection: when both sides give up
    at the same moment, a request sent on it as the server closes it fails (CI saw an
    ``httpx.ReadError`` so). HTTPX's expiry is the shortest common one."""
    config = api_config(_app(), "127.0.0.1", 0)
    client_expiry = httpx.Limits().keepalive_expiry
    assert client_expiry is not None
    assert config.timeout_keep_alive > 2 * client_expiry
