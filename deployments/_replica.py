"""A name for this replica that is unique in the cluster and says what it is."""

from __future__ import annotations

import asyncio
import os
import uuid
from concurrent.futures import ThreadPoolExecutor

from ray import serve

from pipeline.aio import name_os_thread


def replica_name(kind: str) -> str:
    """``<kind>-<Serve's replica id>`` (outside a replica, in tests: a random suffix)."""
    try:
        return f"{kind}-{serve.get_replica_context().replica_id.unique_id}"
    except Exception:
        return f"{kind}-{uuid.uuid4().hex[:8]}"


def name_replica_threads(kind: str) -> None:
    """Name, where the operating system sees them, the thread this runs on (the replica's
    event loop) ``<kind>-loop`` and the loop's default executor's threads (``to_thread``:
    VAD and end-of-turn model calls, decoding) ``<kind>-pool``: a replica's CPU is then split
    by thread between its loop, its pool, its engines' named threads and Ray's own
    (``loadtests._cpu_attribution``). Call it on the loop, once."""
    name_os_thread(f"{kind}-loop")
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(
        max_workers=min(32, (os.cpu_count() or 1) + 4),  # the default executor's own size
        thread_name_prefix=f"{kind}-pool",
        initializer=name_os_thread, initargs=(f"{kind}-pool",)))
