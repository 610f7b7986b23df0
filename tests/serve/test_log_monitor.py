"""Ray's log monitor of the app's node looks for new log files every 2 s, not ten times a
second (:data:`voxline.server.QUIET_LOG_MONITOR`: idle, 1.28 % of a core before, 0.53 %
after)."""

from __future__ import annotations

import os

import psutil
import pytest

from tests.serve._app import App
from tests.support.processes import script_pids
from voxline.server import QUIET_LOG_MONITOR

pytestmark = [pytest.mark.serve, pytest.mark.models, pytest.mark.redis]


def test_the_apps_log_monitor_runs_with_the_quiet_settings(app: App) -> None:
    monitors = script_pids(os.getpid(), "log_monitor.py")  # this test's own app only
    assert monitors, "no Ray log monitor among this process's descendants"
    for pid in monitors:
        environ = psutil.Process(pid).environ()
        assert {name: environ.get(name) for name in QUIET_LOG_MONITOR} == QUIET_LOG_MONITOR
