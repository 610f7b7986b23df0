"""Ray's log monitor of the app's node looks for new log files every 2 s, not ten times a
second (:data:`voxline.server.QUIET_LOG_MONITOR`: idle, 1.28 % of a core before, 0.53 %
after)."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest

from tests.serve._app import App
from tests.support.processes import descendants
from voxline.server import QUIET_LOG_MONITOR

pytestmark = [pytest.mark.serve, pytest.mark.models, pytest.mark.redis]


def test_the_apps_log_monitor_runs_with_the_quiet_settings(app: App) -> None:
    monitors = []
    for pid in descendants(os.getpid()):  # this test's own app only
        try:
            if any(arg.endswith("log_monitor.py") for arg in psutil.Process(pid).cmdline()):
                monitors.append(pid)
        except psutil.Error:
            continue
    assert monitors, "no Ray log monitor among this process's descendants"
    for pid in monitors:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        settings = dict(entry.decode().split("=", 1) for entry in environ if b"=" in entry)
        assert {name: settings.get(name) for name in QUIET_LOG_MONITOR} == QUIET_LOG_MONITOR
