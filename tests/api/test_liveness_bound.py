"""The liveness check the retrieval tests make (``tests.support.liveness.assert_live``):
it lets a busy machine's odd late ping pass and fails a loop that work holds."""

from __future__ import annotations

import pytest

from tests.support.liveness import FROZEN_MS, PING_BOUND_MS, assert_live


def test_one_late_ping_in_a_free_loop_passes() -> None:
    assert_live([50.0] * 232 + [PING_BOUND_MS + 4.0])  # as a CI run saw it


@pytest.mark.parametrize("pings", [
    [1.0] * 100 + [FROZEN_MS + 1.0],  # frozen once
    [1.0] * 95 + [PING_BOUND_MS + 50.0] * 5,  # held again and again
    [],  # never answered
])
def test_a_held_loop_fails(pings: list[float]) -> None:
    with pytest.raises(AssertionError):
        assert_live(pings)
