"""A process's start-up heap, kept out of the garbage collector's way.

CPython's cyclic collector walks every tracked object on a full (oldest-generation)
collection, on the thread whose allocation crossed the threshold: in the Gateway, mostly
its event loop.
What a replica makes while it starts (Ray, FastAPI, pydantic's models, our modules, a
model's Python side) lives as long as the process, yet each full collection walks it
again: 148,000-157,000 objects in each replica of the CPU profile, and a walk of 88-263 ms
(the Gateway's 163 ms; measured in the replicas as they started on the 2-core machine), a
pause for every socket of the replica where the design allows a few milliseconds. Frozen,
the same collection took 0.01 ms. :func:`freeze_startup_heap` moves what exists into the
permanent generation (``gc.freeze``), so later collections walk only what serving made.
Reference counting still frees frozen objects that are dropped; only a cycle among them
would stay, and start-up builds no such garbage on purpose.

Any long-lived process with an event loop wants it once it has built what it keeps (the
Serve replicas, the background workers, the log benchmark's writers and readers, which
stand in for Gateways: unfrozen, a writer's full collection of 50-85 ms at 5,200 events/s
left every session with an append in flight, against 5 ms frozen).
"""

from __future__ import annotations

import gc
import logging

__all__ = ["freeze_startup_heap"]

logger = logging.getLogger(__name__)


def freeze_startup_heap() -> int:
    """Collect once, then freeze what is left; return how many objects are frozen.

    Call it when a process has built what it keeps: a replica when it has loaded, and
    again after a reload (what the new model made is start-up too)."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    logger.info("start-up heap frozen: %d objects out of the collector's walks", frozen)
    return frozen
