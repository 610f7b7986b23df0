"""Every benchmark still runs: each script of ``loadtests/`` in its ``--smoke`` mode.

A benchmark is code nobody runs until the day its figures are wanted, so it rots unnoticed
(one did: its idea of the sentence buffer's first piece fell behind the buffer's). Each
smoke run is ``python -m loadtests.<name> --smoke`` in a process of its own, with a report
folder of its own: it must exit 0 and write a JSON report. The runs are started together
(a few at a time: most of their time is spent waiting on sockets paced like real clients)
and each test waits for its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOADTESTS = ROOT / "loadtests"

#: every script of loadtests/ (a module not starting with "_"), with the reports its smoke
#: run writes (the JSON files' names); the slowest first, so that they overlap the others
SMOKES: dict[str, tuple[str, ...]] = {
    "bench_latency": ("bench_latency",),
    "bench_peers": ("bench_peers",),
    "capacity": ("capacity",),
    "bench_connections": ("bench_connections",),
    "bench_log_scale": ("bench_log_scale",),
    "locustfile": ("locust_smoke",),
    "bench_limits": ("bench_limits_smoke",),
    "log_footprint": ("log_footprint",),
    "bench_retrieval": ("bench_retrieval",),
    "bench_engines": ("bench_engines",),
    "bench_eventlog": ("bench_eventlog",),
    "bench_worker_folds": ("bench_worker_folds",),
    "bench_evaluate": ("bench_evaluate",),
    "bench_answers": ("bench_answers_smoke",),
    "bench_tools": ("bench_tools_smoke",),
    "bench_privacy": ("bench_privacy_smoke",),
    "bench_pipeline": ("bench_pipeline",),
    "bench_smart_turn": ("bench_smart_turn",),
    "bench_replica_acks": ("bench_replica_acks",),
    "bench_llm_parallel": ("bench_llm_parallel",),
    "bench_stt_batch": ("bench_stt_batch",),
    "bench_stt_window": ("bench_stt_window",),
    "bench_threads": ("bench_threads",),
    "bench_vad": ("bench_vad",),
    "bench_turn_taking": ("bench_turn_taking",),
}
PARALLEL = 3
TIMEOUT_S = 240


#: scripts in loadtests/ that measure nothing (a tool over the benchmarks' reports)
NOT_BENCHMARKS = {"figures"}


def scripts() -> set[str]:
    return {p.stem for p in LOADTESTS.glob("*.py")
            if not p.name.startswith("_") and p.stem not in NOT_BENCHMARKS}


def smoke_environment(redis_url: str) -> dict[str, str]:
    """The smoke runs' environment, copied once on the test's own thread: pytest sets and
    deletes ``PYTEST_CURRENT_TEST`` in ``os.environ`` around every test, and a copy made
    meanwhile on a pool thread can find a key gone between listing and reading it
    (``KeyError: 'PYTEST_CURRENT_TEST'`` failed a clean-clone run)."""
    env = {key: value for key, value in os.environ.items() if key != "PYTEST_CURRENT_TEST"}
    env.update({
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
        "VOXLINE_REDIS_URL": redis_url,
        "MPLBACKEND": "Agg",
    })
    return env


def run_smoke(name: str, reports: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", f"loadtests.{name}", "--smoke"], cwd=ROOT,
                          env={**env, "VOXLINE_REPORTS_DIR": str(reports)},
                          capture_output=True, text=True, timeout=TIMEOUT_S)


@pytest.fixture(scope="session")
def smoke_runs(
    request: pytest.FixtureRequest, redis_url: str, tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, tuple[Path, Future[subprocess.CompletedProcess[str]]]]]:
    """The smoke runs of the scripts whose tests this session runs, started at once."""
    selected = {item.callspec.params["name"] for item in request.session.items
                if getattr(item, "originalname", None) == "test_smoke_run"
                and hasattr(item, "callspec")}
    wanted = [name for name in SMOKES if name in selected]
    env = smoke_environment(redis_url)
    with ThreadPoolExecutor(PARALLEL) as pool:
        runs = {}
        for name in wanted:
            reports = tmp_path_factory.mktemp(f"smoke-{name}")
            runs[name] = (reports, pool.submit(run_smoke, name, reports, env))
        yield runs


def test_every_script_has_a_smoke_run() -> None:
    """A new script without a smoke mode (or without an entry here) fails."""
    assert scripts() == set(SMOKES)
    for name in SMOKES:
        source = (LOADTESTS / f"{name}.py").read_text(encoding="utf-8")
        assert "add_smoke_flag(" in source, f"loadtests/{name}.py has no --smoke"


@pytest.mark.parametrize("name", sorted(SMOKES))
def test_smoke_run(
    name: str, smoke_runs: dict[str, tuple[Path, Future[subprocess.CompletedProcess[str]]]],
) -> None:
    reports, future = smoke_runs[name]
    proc = future.result()
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n" \
        f"{proc.stderr[-5000:]}"
    for report in SMOKES[name]:
        written = json.loads((reports / f"{report}.json").read_text(encoding="utf-8"))
        assert written["benchmark"] == report and written["figures"]
    if name == "capacity":  # every phase ran: the idle crowd, its bystander, the calls
        figures = json.loads((reports / "capacity.json").read_text(encoding="utf-8"))["figures"]
        idle = figures["idle_sessions"]
        assert idle is not None and idle["bystander"]["completed_turns"] >= 1
        calls = figures["idle_calls"]
        assert calls is not None and calls["connected"] == 1, calls
        assert calls["media_cpu_percent_per_call"] is not None
