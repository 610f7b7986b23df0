"""One real Voxline app of the fault tests' own, in a child process with its own Ray.

A child process (``voxline serve --no-demo``), not the in-process app of tests/serve: its
replicas are killed here, and Ray allows one cluster per process. Replicas are found among
the child's descendants only (other Ray clusters on the machine are not ours). CPU profile
(a module names another: ``child_profile``), Whisper tiny.en, the test Redis under a key
prefix of its own; stopped (SIGTERM, then the process group) at the end of the module that
uses it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from pipeline.log import EventLog, create_redis
from schemas import EventLogSettings
from tests.faults._processes import ROOT, ChildApp, stop_child
from tests.support.api_harness import forget_keys
from voxline.client import VoxlineClient
from voxline.redis_server import free_port
from voxline.server import wait_ready


@pytest.fixture(scope="module")
def child_env() -> dict[str, str]:
    """Settings of the module's child app beyond the defaults (a module overrides this)."""
    return {}


@pytest.fixture(scope="module")
def child_profile() -> str:
    """The profile of the module's child app (a module overrides this)."""
    return "cpu"


@pytest.fixture(scope="module")  # its module only: no third app beside tests/serve's later
def child_app(redis_url: str, child_env: dict[str, str], child_profile: str,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChildApp]:
    port = free_port()
    prefix = f"voxfault:{uuid.uuid4().hex[:8]}"
    log_path = tmp_path_factory.mktemp("child-app") / "serve.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VOXLINE_REDIS_URL": redis_url,
           "VOXLINE_LOG__KEY_PREFIX": prefix, "VOXLINE_STT__MODEL": "whisper-tiny.en",
           "VOXLINE_METRICS_PORT": str(free_port()), "VOXLINE_HOST": "127.0.0.1",
           "VOXLINE_PORT": str(port), "RAY_USAGE_STATS_ENABLED": "0", **child_env}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", "from voxline.cli import main; main()", "serve",
             "--no-demo", "--host", "127.0.0.1", "--port", str(port),
             "--profile", child_profile],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, 600, lambda _: None)
        yield ChildApp(url, process.pid, redis_url, prefix)
    except TimeoutError:
        raise RuntimeError(log_path.read_text(errors="replace")[-3000:]) from None
    finally:
        stop_child(process)
        forget_keys(redis_url, prefix)


@pytest.fixture
async def child_client(child_app: ChildApp) -> AsyncIterator[VoxlineClient]:
    async with VoxlineClient(child_app.url, timeout=180) as client:
        yield client


@pytest.fixture
async def child_log(child_app: ChildApp) -> AsyncIterator[EventLog]:
    redis = create_redis(child_app.redis_url)
    try:
        yield EventLog(redis, EventLogSettings(key_prefix=child_app.key_prefix))
    finally:
        await redis.aclose()
