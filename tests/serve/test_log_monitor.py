"""The app's Ray head runs none of the processes the one-machine app never uses
(:data:`voxline.server.UNUSED_RAY_PROCESSES`: idle, 0.51 % of a core together), and Ray's
log monitor only where the driver shows the workers' output, then with the quiet settings
(:data:`voxline.server.QUIET_LOG_MONITOR`: 1.28 % of a core before, 0.53 % after)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.serve._app import App
from tests.support.processes import program_pids, script_pids
from voxline.server import QUIET_LOG_MONITOR

pytestmark = [pytest.mark.serve, pytest.mark.models, pytest.mark.redis]

#: the Python files Ray runs the unused processes from (Ray 2.60)
UNUSED_SCRIPTS = ("log_monitor.py", "monitor.py", "dashboard.py")


def test_the_app_runs_no_process_it_never_uses(app: App) -> None:
    here = os.getpid()  # this test's own app only: its Ray head is this process's child
    assert program_pids(here, "raylet")  # the head is looked at
    assert {script: script_pids(here, script) for script in UNUSED_SCRIPTS} == {
        script: [] for script in UNUSED_SCRIPTS}


#: a driver that shows its workers' output (``voxline serve --verbose``): Ray's head, then
#: which of the scripts its arguments name run, each with the log monitor's settings, as JSON
_VERBOSE_DRIVER = textwrap.dedent("""
    import json, sys
    import psutil
    from voxline.server import QUIET_LOG_MONITOR, start_ray
    start_ray(1, log_to_driver=True)
    import ray
    found = {}
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.status() == "zombie":
                continue
            for arg in proc.cmdline()[1:]:
                name = arg.rsplit("/", 1)[-1]
                if name in sys.argv[1:]:  # UNUSED_SCRIPTS
                    environ = proc.environ()
                    found[name] = {k: environ.get(k) for k in QUIET_LOG_MONITOR}
        except psutil.Error:
            continue
    ray.shutdown()
    print(json.dumps(found))
""")


def test_a_driver_that_shows_the_logs_keeps_a_quiet_log_monitor() -> None:
    """...in a head of its own, whatever cluster ``RAY_ADDRESS`` names (nothing listens
    on that port: a driver that went there would fail)."""
    env = {**os.environ, "RAY_ADDRESS": "127.0.0.1:1"}
    done = subprocess.run([sys.executable, "-c", _VERBOSE_DRIVER, *UNUSED_SCRIPTS],
                          capture_output=True, text=True, timeout=120, env=env, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {"log_monitor.py": QUIET_LOG_MONITOR}
