"""The API on plain uvicorn with scripted engines: in this event loop, or in a child process.

The Serve app loads real models and takes minutes to start; the same FastAPI application
(``deployments.api.create_api``) served by uvicorn on scripted engines
(:mod:`loadtests._scripted`) starts in about a second. The tests use :func:`serve_api` to try
protocol behaviour many times; the benchmarks use :func:`child_gateway` to measure the
Gateway's own costs (its process is not theirs, so its RSS and sockets are its own) and, in
their smoke modes, to drive their real code against an app that answers at once. It is
served as the Gateway serves it on one machine (``deployments.api.ApiServer``).

    python -m loadtests._gateway REDIS_URL KEY_PREFIX [--max-turns N] [--max-sessions N]
        [--tokens N --first-token-ms MS --token-ms MS --tts-chunk-ms MS] [--partitions N]

prints the URL it serves, and serves until its stdin closes. By default its engines answer
almost at once (24 tokens at 1 ms); :class:`Pacing` gives them service times like real
ones, for benchmarks that measure what the Gateway and the log cost under a realistic load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import select
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from redis.cluster import ClusterNode
from redis.sentinel import Sentinel

from deployments.api import ApiServer, Services, create_api
from deployments.api._services import start_services
from loadtests._open_files import raise_file_limit
from loadtests._replica_loop import replica_loop
from loadtests._scripted import EnergyVAD, ScriptedLLM, ScriptedSTT, ScriptedTTS
from pipeline.aio import SERVING_YOUNG_THRESHOLD, freeze_startup_heap
from pipeline.engines import (
    LanguageModel,
    Synthesizer,
    TextTurnDetector,
    Transcriber,
    TurnDetector,
    VoiceActivityDetector,
)
from pipeline.log.redis_client import cluster_nodes, sentinel_url
from pipeline.retrieval import Reranker
from schemas import (
    AdmissionSettings,
    ApiSettings,
    EventLogSettings,
    RetrievalSettings,
    Settings,
    TelephonySettings,
    ToolSettings,
    WebRtcSettings,
)
from schemas._settings import TurnEngineSettings, TurnTextEngineSettings
from voxline.client import VoxlineClient
from voxline.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent
#: the child's LLM: 24 tokens at 1 ms, three sentences
TOKENS = [f"word{i} " if i % 8 else f"Sentence {i}. " for i in range(1, 25)]
#: the child's speech: 0.2 s chunks at 24 kHz, two a piece (long enough for the endpointer's
#: minimum speech, so a client may speak the server's own speech back to it)
SPEECH_RATE = 24000
CHUNK_BYTES = 2 * SPEECH_RATE // 5


@dataclass(frozen=True)
class Pacing:
    """The child's engines' service times: an LLM that streams ``tokens`` tokens, the first
    after ``first_token_ms`` and the next every ``token_ms``; a TTS whose chunks (0.2 s of
    speech each) take ``tts_chunk_ms``. The default is the child's own quick engines."""

    tokens: int = len(TOKENS)
    first_token_ms: float = 1.0
    token_ms: float = 1.0
    tts_chunk_ms: float = 0.0

    def args(self) -> list[str]:
        return ["--tokens", str(self.tokens), "--first-token-ms", str(self.first_token_ms),
                "--token-ms", str(self.token_ms), "--tts-chunk-ms", str(self.tts_chunk_ms)]

    def engines(self) -> tuple[ScriptedLLM, ScriptedTTS]:
        tokens = [f"word{i} " if i % 8 else f"Sentence {i}. " for i in range(1, self.tokens + 1)]
        first, later = self.first_token_ms / 1000, self.token_ms / 1000
        llm = ScriptedLLM(tokens, delay=lambda i: first if i == 0 else later)
        tts = ScriptedTTS(sample_rate=SPEECH_RATE, chunks_per_piece=2, chunk_bytes=CHUNK_BYTES,
                          delay=self.tts_chunk_ms / 1000)
        return llm, tts


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
    vad: VoiceActivityDetector | None = None,
    turn: TurnDetector | None = None,
    turn_text: TextTurnDetector | None = None,
    admission: AdmissionSettings | None = None,
    retrieval: RetrievalSettings | None = None,
    reranker: Reranker | None = None,
    telephony: TelephonySettings | None = None,
    webrtc: WebRtcSettings | None = None,
    tools: ToolSettings | None = None,
) -> AsyncIterator[Harness]:
    """The API on these engines, served in this event loop (``vad``: the settings' own;
    no end-of-turn model unless ``turn`` is given: turns end on silence, as scripted; no
    text one unless ``turn_text`` is)."""
    settings = Settings(redis_url=redis_url, log=log, api=api or ApiSettings(),
                        admission=admission or AdmissionSettings(),
                        retrieval=retrieval or RetrievalSettings(),
                        telephony=telephony or TelephonySettings(),
                        webrtc=webrtc or WebRtcSettings(),
                        tools=tools or ToolSettings(),
                        turn=TurnEngineSettings(engine="none"),
                        turn_text=TurnTextEngineSettings(engine="none"))
    services = await start_services(settings, llm=llm, tts=tts, stt=stt, vad=vad, turn=turn,
                                    turn_text=turn_text, reranker=reranker)
    port = free_port()
    server = ApiServer(create_api(services), "127.0.0.1", port)
    await server.start()
    client = VoxlineClient(f"http://127.0.0.1:{port}", timeout=30)
    try:
        yield Harness(f"http://127.0.0.1:{port}", services, client)
    finally:
        await client.aclose()
        await server.stop()
        await services.aclose()


# ---- the child process ---------------------------------------------------------------------


async def _serve_child(redis_url: str, prefix: str, max_turns: int | None,
                       max_sessions: int | None, pacing: Pacing,
                       partitions: int | None = None) -> None:
    """Run the API on scripted engines; print the URL; run until stdin closes."""
    llm, tts = pacing.engines()
    limits = {name: value for name, value in (("max_turns", max_turns),
                                              ("max_sessions", max_sessions))
              if value is not None}
    admission = AdmissionSettings(**limits)
    log = EventLogSettings(key_prefix=prefix, **(
        {"partitions": partitions} if partitions is not None else {}))
    async with serve_api(redis_url, log, llm=llm, tts=tts,
                         stt=ScriptedSTT("What is the capital of France?"), vad=EnergyVAD(),
                         admission=admission) as harness:
        # as the Gateway replica does once it has started
        freeze_startup_heap(young_threshold=SERVING_YOUNG_THRESHOLD)
        print(harness.url, flush=True)
        stdin = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
        while not stdin.at_eof():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stdin.read(1), 1.0)
            llm.records.clear()  # the scripted engines' own bookkeeping, not the Gateway's
            tts.records.clear()


@contextlib.contextmanager
def child_gateway(redis_url: str, *, max_turns: int | None = None,
                  max_sessions: int | None = None, pacing: Pacing | None = None,
                  prefix: str | None = None, partitions: int | None = None,
                  ) -> Iterator[tuple[str, int]]:
    """(URL, pid) of the API on scripted engines in a child process; its keys go after.

    Blocking (a second or two to start and to stop), so that both asyncio benchmarks and
    Locust's gevent can hold it. Children given the same ``prefix`` share one log (Gateway
    replicas of one deployment); each forgets the prefix's keys when it stops.
    """
    prefix = prefix or f"voxbench:{uuid.uuid4().hex[:8]}"
    extra = [] if max_turns is None else ["--max-turns", str(max_turns)]
    if max_sessions is not None:
        extra += ["--max-sessions", str(max_sessions)]
    if pacing is not None:
        extra += pacing.args()
    if partitions is not None:
        extra += ["--partitions", str(partitions)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadtests._gateway", redis_url, prefix, *extra],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT, env=_child_env())
    assert proc.stdout is not None and proc.stdin is not None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        line = proc.stdout.readline() if ready else b""
        if not line:
            raise RuntimeError("the Gateway did not start")
        yield line.decode().strip(), proc.pid
    finally:
        proc.stdin.close()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        forget_keys(redis_url, prefix)


#: every call a benchmark makes comes from its one runner's address: a server it starts
#: takes more than a client's default 30 offers a minute (capacity holds up to 64 calls)
RUNNER_SETTINGS = {"VOXLINE_WEBRTC__OFFERS_PER_MINUTE": "100000"}


def runner_environment() -> None:
    """:data:`RUNNER_SETTINGS` in this process's environment, where not set already (the
    server a benchmark starts, and its replicas, read it)."""
    for name, value in RUNNER_SETTINGS.items():
        os.environ.setdefault(name, value)


@contextlib.contextmanager
def local_app(say: Callable[[str], None] = print, *, profile: str = "cpu",
              ready_timeout_s: float = 600, **update: Any) -> Iterator[Any]:
    """The whole app started in this process for a benchmark (Redis of its own unless
    ``VOXLINE_REDIS_URL``; :data:`RUNNER_SETTINGS`), on 127.0.0.1 and ports of its own, so a
    server the user runs (8000, 9464) is never touched; ``update`` overrides settings. Yields
    the :class:`voxline.server.RunningServer`; everything it started stops on exit."""
    from schemas import Settings
    from voxline.redis_server import free_port
    from voxline.server import running_server

    runner_environment()
    settings = Settings().model_copy(update={"host": "127.0.0.1", "port": free_port(),
                                             "metrics_port": free_port(), **update})
    with running_server(settings, profile=profile, say=say,
                        ready_timeout_s=ready_timeout_s) as server:
        yield server


def _child_env() -> dict[str, str]:
    """This checkout first on the child's path, whatever directory the caller ran in."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**RUNNER_SETTINGS, **os.environ, "PYTHONPATH": path}


def forget_keys(redis_url: str, prefix: str) -> None:
    """Delete what an app wrote under its prefix (blocking: for teardowns)."""
    nodes = cluster_nodes(redis_url)
    if nodes is not None:  # every primary's keys, one by one (they live in many slots)
        cluster = redis.RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in nodes])
        try:
            for key in list(cluster.scan_iter(match=f"{prefix}:*", count=1000)):
                cluster.delete(key)
        finally:
            cluster.close()
        return
    client, others = _standalone_client(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i:i + 500])
    finally:
        for opened in (client, *others):
            opened.close()


def _standalone_client(redis_url: str) -> tuple[redis.Redis, list[redis.Redis]]:
    """A blocking client of the server; behind Sentinel, of the master they name, with
    the clients that asked them (to close as well)."""
    sentinel = sentinel_url(redis_url)
    if sentinel is None:
        return redis.Redis.from_url(redis_url), []
    sentinels = Sentinel(list(sentinel.sentinels), socket_timeout=5)
    master = sentinels.master_for(sentinel.master, db=sentinel.db,
                                  username=sentinel.username, password=sentinel.password)
    return master, list(sentinels.sentinels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("redis_url")
    parser.add_argument("prefix")
    parser.add_argument("--max-turns", type=int, help="the admission's turn limit")
    parser.add_argument("--max-sessions", type=int, help="the admission's session limit")
    parser.add_argument("--partitions", type=int, help="the log's partitions (cluster)")
    default = Pacing()
    parser.add_argument("--tokens", type=int, default=default.tokens)
    parser.add_argument("--first-token-ms", type=float, default=default.first_token_ms)
    parser.add_argument("--token-ms", type=float, default=default.token_ms)
    parser.add_argument("--tts-chunk-ms", type=float, default=default.tts_chunk_ms)
    args = parser.parse_args()
    pacing = Pacing(args.tokens, args.first_token_ms, args.token_ms, args.tts_chunk_ms)
    # a socket and a little more per session it may hold
    raise_file_limit(max(8192, 2 * (args.max_sessions or 0) + 1024))
    with asyncio.Runner(loop_factory=replica_loop()) as runner:
        runner.run(_serve_child(args.redis_url, args.prefix, args.max_turns, args.max_sessions,
                                pacing, args.partitions))


if __name__ == "__main__":
    main()
