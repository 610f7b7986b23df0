"""The liveness check the retrieval tests make (``tests.support.liveness.assert_live``):
it lets a busy machine's odd late ping pass and fails a loop that work holds."""

from __future__ import annotations

import pytest

from tests.support.liveness import FROZEN_MS, PING_BOUND_MS, assert_live


@pytest.mark.parametrize("pings", [
    [50.0] * 232 + [PING_BOUND_MS + 4.0],  # as a CI run saw it
    [50.0] * 179 + [567.0, 201.0],  # two of 181 in a loaded full run
])
def test_a_late_ping_or_two_in_a_free_loop_pass(pings: list[float]) -> None:
    assert_live(pings)


@pytest.mark.parametrize("pings", [
    [1.0] * 100 + [FROZEN_MS + 1.0],  # frozen once
    [1.0] * 95 + [PING_BOUND_MS + 50.0] * 5,  # held again and again
    [1.0] * 40 + [PING_BOUND_MS + 50.0] * 3,  # three times in a short run
    [],  # never answered
])
def test_a_held_loop_fails(pings: list[float]) -> None:
    with pytest.raises(AssertionError):
        assert_live(pings)
