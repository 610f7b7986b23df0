"""Asyncio helpers every part of the pipeline shares.

The guard against a cancel that CPython 3.11 loses inside a timed read, the one way to
close a stream early, the one bridge from a blocking library (a model running on a
worker thread) to an async generator, :func:`batched`, which groups a fast stream
(an LLM's tokens crossing a process boundary) into fewer items, and :class:`Batcher`,
which gathers the items of many sessions into one model call; :class:`Places`, a bound
on work running at once with a bounded line for it; and :func:`freeze_startup_heap`,
which keeps a process's start-up objects out of the collections that would pause its
loop.
"""

from pipeline.aio._batcher import Batcher, BatcherStats
from pipeline.aio._batching import batched
from pipeline.aio._heap import SERVING_YOUNG_THRESHOLD, freeze_startup_heap
from pipeline.aio._lost_cancel import reraise_lost_cancel
from pipeline.aio._places import Places
from pipeline.aio._streams import aclose_stream
from pipeline.aio._thread_names import name_os_thread
from pipeline.aio._threads import ThreadStream, iterate_in_thread

__all__ = [
    "SERVING_YOUNG_THRESHOLD",
    "Batcher",
    "BatcherStats",
    "Places",
    "ThreadStream",
    "aclose_stream",
    "batched",
    "freeze_startup_heap",
    "iterate_in_thread",
    "name_os_thread",
    "reraise_lost_cancel",
]
