"""The liveness check the retrieval tests make (``tests.support.liveness.assert_live``):
it lets a busy machine's odd late ping pass, alone or two in a row, and fails a loop
that work holds, in a row or item after item."""

from __future__ import annotations

import pytest

from tests.support.liveness import FROZEN_MS, PING_BOUND_MS, assert_live


@pytest.mark.parametrize("pings", [
    [50.0] * 232 + [PING_BOUND_MS + 4.0],  # as a CI run saw it
    [50.0] * 179 + [567.0, 201.0],  # two of 181 in a loaded full run
    # three alone, on time between them, on a machine whose host was busy
    [50.0] * 100 + [309.0] + [50.0] * 60 + [210.0] + [50.0] * 60 + [291.0] + [50.0] * 9,
    [50.0] * 10 + [273.0, 50.0, 335.0, 50.0, 290.0] + [50.0] * 16,
])
def test_a_late_ping_or_two_in_a_free_loop_pass(pings: list[float]) -> None:
    assert_live(pings)


@pytest.mark.parametrize("pings", [
    [1.0] * 100 + [FROZEN_MS + 1.0],  # frozen once
    [1.0] * 95 + [PING_BOUND_MS + 50.0] * 5,  # held again and again
    [1.0] * 40 + [PING_BOUND_MS + 50.0] * 3,  # three times in a short run
    [1.0, PING_BOUND_MS + 50.0] * 20,  # held by every item of its work, between items free
    [1.0] * 30 + [PING_BOUND_MS + 50.0, 1.0] * 4,  # four times alone in a short run
    [],  # never answered
])
def test_a_held_loop_fails(pings: list[float]) -> None:
    with pytest.raises(AssertionError):
        assert_live(pings)
