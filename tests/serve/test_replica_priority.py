"""The app's replicas run at the priority of the process that started Ray (not Ray's nice
15 for workers): beside two busy processes at the usual priority a socket took 166-181 ms
to open instead of 4 (:data:`voxline.server.WORKER_PRIORITY`)."""

from __future__ import annotations

import os

import pytest

from tests.serve._app import App
from tests.support.processes import replica_pids

pytestmark = [pytest.mark.serve, pytest.mark.models, pytest.mark.redis]


# The CPU profile's one replica: it runs the model stages too (IN_PROCESS_STAGES); every
# Ray worker gets its niceness from the same variable.
@pytest.mark.parametrize("deployment", ["Gateway"])
def test_replicas_run_at_the_priority_of_the_process_that_started_them(
        app: App, deployment: str) -> None:
    pids = replica_pids(os.getpid(), deployment)  # this test's own app only
    assert pids, f"no {deployment} replica among this process's descendants"
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    assert {os.getpriority(os.PRIO_PROCESS, pid) for pid in pids} == {ours}
