"""The API served by plain uvicorn in the test's own event loop, on scripted engines.

The Serve tests run the real app with real models; this harness runs the same FastAPI
application (``deployments.api.create_api``) without Ray, so protocol behaviour such as
resume can be tried many times in seconds. Its uvicorn answers a WebSocket upgrade with a
bad head like Serve's proxy does (:mod:`voxline.proxy`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import redis
import uvicorn
from redis.cluster import ClusterNode
from websockets.asyncio.client import ClientConnection, connect

from deployments.api import Services, create_api
from deployments.api._services import start_services
from pipeline.engines import LanguageModel, Synthesizer, Transcriber
from pipeline.log.redis_client import cluster_nodes
from pipeline.retrieval import Reranker
from schemas import AdmissionSettings, ApiSettings, EventLogSettings, RetrievalSettings, Settings
from voxline.client import VoxlineClient
from voxline.proxy import WS_PROTOCOL
from voxline.redis_server import free_port


@dataclass
class Harness:
    url: str
    services: Services
    client: VoxlineClient


@contextlib.asynccontextmanager
async def serve_api(
    redis_url: str,
    log: EventLogSettings,
    *,
    llm: LanguageModel,
    tts: Synthesizer | None,
    api: ApiSettings | None = None,
    stt: Transcriber | None = None,
    admission: AdmissionSettings | None = None,
    retrieval: RetrievalSettings | None = None,
    reranker: Reranker | None = None,
) -> AsyncIterator[Harness]:
    settings = Settings(redis_url=redis_url, log=log, api=api or ApiSettings(),
                        admission=admission or AdmissionSettings(),
                        retrieval=retrieval or RetrievalSettings())
    services = await start_services(settings, llm=llm, tts=tts, stt=stt, reranker=reranker)
    port = free_port()
    config = uvicorn.Config(create_api(services), host="127.0.0.1", port=port,
                            log_level="warning", lifespan="off", ws_max_size=16 << 20,
                            ws=WS_PROTOCOL)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    client = VoxlineClient(f"http://127.0.0.1:{port}", timeout=30)
    try:
        yield Harness(f"http://127.0.0.1:{port}", services, client)
    finally:
        await client.aclose()
        server.should_exit = True
        await task
        await services.aclose()


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


def forget_keys(redis_url: str, prefix: str) -> None:
    """Delete what an app wrote under its test prefix (blocking: for fixtures' teardown)."""
    nodes = cluster_nodes(redis_url)
    if nodes is not None:  # every primary's keys, one by one (they live in many slots)
        cluster = redis.RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in nodes])
        try:
            keys = list(cluster.scan_iter(match=f"{prefix}:*", count=1000))
            for key in keys:
                cluster.delete(key)
        finally:
            cluster.close()
        return
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
