"""A real Prometheus (Debian's ``prometheus``) for tests: started on loopback with its own
port and data directory, scraping the targets it is given every second with Voxline's
alert rules loaded; queried through its HTTP API."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from voxline.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "cluster" / "prometheus-alerts.yml"
DASHBOARD = ROOT / "cluster" / "grafana-dashboard.json"
#: Grafana's variables, as a person would pick them
VARIABLES = {"$mode": ".*", "$__rate_interval": "1m"}
#: an alert rule's threshold (what is left is the expression that must return data)
THRESHOLD = re.compile(r"\s*(==|!=|>=|<=|>|<)\s*[0-9.]+\s*$")


def dashboard_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    queries = []
    for target in (t for p in panels for t in p.get("targets", ())):
        expr = target["expr"]
        for name, value in VARIABLES.items():
            expr = expr.replace(name, value)
        queries.append(expr)
    return queries


@contextlib.contextmanager
def prometheus_server(targets: list[str], directory: Path) -> Iterator[str]:
    """A Prometheus scraping ``targets`` (``host:port``) as job ``voxline-metrics``; its
    URL. Skips the test where Debian's prometheus is not installed."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("Debian's prometheus is not installed (scripts/setup.sh installs it "
                    "with the dev extra: apt-get install prometheus)")
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [{"job_name": "voxline-metrics",
                            "static_configs": [{"targets": targets}]}],
    }
    (directory / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    server = subprocess.Popen(
        [binary, f"--config.file={directory / 'prometheus.yml'}",
         f"--storage.tsdb.path={directory / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(server)
        if server.stderr is not None:
            server.stderr.close()


def stop(process: subprocess.Popen[Any]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def query(url: str, expr: str) -> list[dict[str, Any]] | str:
    """The instant query's result, or the error Prometheus gave."""
    try:
        answer = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=5).json()
    except (httpx.HTTPError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    if answer.get("status") != "success":
        return str(answer.get("error"))
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def until_all_answer(url: str, queries: list[str], wait_s: float) -> dict[str, str]:
    """Wait (bounded) until every query returns data; what each still lacks, if not."""
    deadline = time.monotonic() + wait_s
    missing: dict[str, str] = {}
    while time.monotonic() < deadline:
        missing = {}
        for expr in queries:
            result = query(url, expr)
            if isinstance(result, str) or not result:
                missing[expr] = result or "no data"
        if not missing:
            return {}
        time.sleep(1.0)
    return missing


def alert_rules(url: str) -> list[dict[str, Any]]:
    groups = httpx.get(f"{url}/api/v1/rules", timeout=5).json()["data"]["groups"]
    return [rule for group in groups for rule in group["rules"]]

