"""A replica's event loop and its ``to_thread`` pool are named where the operating system
shows threads, so the capacity runner can split a replica's CPU between them."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from deployments._replica import name_replica_threads


def os_name() -> str:
    return Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip()


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads Linux's /proc")
def test_the_loop_and_its_pool_are_named_after_the_replica() -> None:
    seen: dict[str, str] = {}

    async def replica() -> None:  # its own loop, in a thread of its own, as a replica's
        name_replica_threads("gateway")
        seen["loop"] = os_name()
        seen["pool"] = await asyncio.to_thread(os_name)

    thread = threading.Thread(target=lambda: asyncio.run(replica()))
    thread.start()
    thread.join()
    assert seen == {"loop": "gateway-loop", "pool": "gateway-pool"}
