"""Replicas built here as plain classes freeze the heap when their engine loads
(pipeline/aio/_heap.py), which in a replica is the point and in pytest's process would
keep every test's garbage cycles to the end of the run: each test ends with none frozen."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _no_frozen_heap_left() -> Iterator[None]:
    yield
    gc.unfreeze()
