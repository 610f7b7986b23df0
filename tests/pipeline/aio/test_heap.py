"""The start-up heap frozen, and the Gateway's young generation collected less often."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from pipeline.aio import SERVING_YOUNG_THRESHOLD, freeze_startup_heap


@pytest.fixture(autouse=True)
def collector() -> Iterator[None]:
    """The test process's collector as it was, afterwards."""
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_what_exists_is_frozen_and_the_thresholds_left_alone_by_default() -> None:
    gc.set_threshold(700, 10, 10)
    # (pytest's own heap; the count moves as frozen objects are freed or others run)
    assert freeze_startup_heap() > 0 and gc.get_freeze_count() > 0
    assert gc.get_threshold() == (700, 10, 10)  # a model replica's: cycles found soon


def test_a_gateway_collects_its_young_less_often() -> None:
    gc.set_threshold(700, 10, 10)
    freeze_startup_heap(young_threshold=SERVING_YOUNG_THRESHOLD)
    assert gc.get_threshold() == (SERVING_YOUNG_THRESHOLD, 10, 10)


@pytest.mark.parametrize("young", [0, SERVING_YOUNG_THRESHOLD * 5])
def test_a_threshold_the_process_chose_is_kept(young: int) -> None:
    # 0: collection turned off; a higher one: the operator's
    gc.set_threshold(young, 7, 9)
    freeze_startup_heap(young_threshold=SERVING_YOUNG_THRESHOLD)
    assert gc.get_threshold() == (young, 7, 9)
