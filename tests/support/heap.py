"""The test process's own heap kept out of the collector's way while a timed thing runs.

Code under test that runs inside the pytest process shares its heap with everything the
session made so far: a full garbage collection its allocations trigger scans millions of
objects (~0.5 s with 4 million, measured), which is the harness's pause, not the code's.
What exists before is frozen out of collection (:func:`pipeline.aio.freeze_startup_heap`,
as a replica freezes its start-up) for the block; what the code allocates meanwhile is
still collected, and still counts."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

from pipeline.aio import freeze_startup_heap


@contextlib.contextmanager
def harness_heap_frozen() -> Iterator[None]:
    freeze_startup_heap()
    try:
        yield
    finally:
        gc.unfreeze()
