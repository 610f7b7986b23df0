"""One API server on a thread of its own per fuzzing module (:mod:`tests.fuzz._live_api`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.fuzz._live_api import LiveApi, live_api


@pytest.fixture(scope="module")
def api(redis_url: str) -> Iterator[LiveApi]:
    with live_api(redis_url, f"voxfuzz:{uuid.uuid4().hex[:12]}") as live:
        yield live
