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

What serving makes is walked still: a Gateway with 2,000 sockets holds ~250,000 objects
of its own, and a full collection of them took 146-171 ms, about every 18 s (issue 49's
live phase). Full collections come when enough objects have reached the oldest
generation since the last, and a reply's objects, alive for a few seconds, got there by
surviving two young collections (at CPython 3.11's 700 net allocations each, several a
second). So the Gateway, once frozen, collects its youngest generation only every
:data:`SERVING_YOUNG_THRESHOLD` net allocations (``young_threshold``): a reply's objects
then die young, freed by reference counting before any collection sees them. Not the
model replicas: there a cycle of garbage may hold a tensor's memory, and their few
allocations would leave it uncollected for minutes. Measured on the same live phase, in
two pairs each way: 36-52 collections per Gateway in 18 s taking 188-215 ms, one of them
full, became 1-2 taking 9-20 ms, none full; the Gateways' CPU per event did not change
beyond the runs' spread (0.415-0.477 ms against 0.420-0.470).
"""

from __future__ import annotations

import gc
import logging

__all__ = ["SERVING_YOUNG_THRESHOLD", "freeze_startup_heap"]

logger = logging.getLogger(__name__)

#: net allocations between young collections in a Gateway once its start-up heap is
#: frozen
SERVING_YOUNG_THRESHOLD = 10_000


def freeze_startup_heap(*, young_threshold: int | None = None) -> int:
    """Collect once, then freeze what is left; return how many objects are frozen.

    Call it when a process has built what it keeps: a replica when it has loaded, and
    again after a reload (what the new model made is start-up too). ``young_threshold``:
    from then on collect the youngest generation only every this many net allocations
    (:data:`SERVING_YOUNG_THRESHOLD` for the Gateway; a lower threshold the process set
    is raised, a higher one, or 0 with collection off, is kept)."""
    gc.collect()
    gc.freeze()
    young, middle, oldest = gc.get_threshold()
    if young_threshold is not None and young:
        gc.set_threshold(max(young, young_threshold), middle, oldest)
    frozen = gc.get_freeze_count()
    logger.info("start-up heap frozen: %d objects out of the collector's walks", frozen)
    return frozen
