"""The metrics endpoint scraped by a real Prometheus (Debian's ``prometheus``, started here
on loopback with its own port and data directory): every alert rule of
``cluster/prometheus-alerts.yml`` evaluates without error and its expression (its
threshold aside) returns data, and so does every query of the Grafana dashboard, once a
few rounds of turns were recorded (``tests/support/metrics_feeder.py``)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from voxline.redis_server import free_port

ROOT = Path(__file__).resolve().parents[3]
ALERTS = ROOT / "cluster" / "prometheus-alerts.yml"
DASHBOARD = ROOT / "cluster" / "grafana-dashboard.json"
#: Grafana's variables, as a person would pick them
VARIABLES = {"$mode": ".*", "$__rate_interval": "1m"}
WAIT_S = 90.0
_THRESHOLD = re.compile(r"\s*(==|!=|>=|<=|>|<)\s*[0-9.]+\s*$")


def _dashboard_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    queries = []
    for target in (t for p in panels for t in p.get("targets", ())):
        expr = target["expr"]
        for name, value in VARIABLES.items():
            expr = expr.replace(name, value)
        queries.append(expr)
    return queries


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[str]:
    """A Prometheus scraping a fed metrics endpoint every second, with the alert rules;
    its URL. Both processes are this test's, stopped after it."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("Debian's prometheus is not installed (scripts/setup.sh installs it "
                    "with the dev extra: apt-get install prometheus)")
    metrics_port, web_port = free_port(), free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [{"job_name": "voxline-metrics",
                            "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}],
    }
    (tmp_path / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    feeder = subprocess.Popen([sys.executable, "-m", "tests.support.metrics_feeder",
                               str(metrics_port)], cwd=ROOT)
    server = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{web_port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield f"http://127.0.0.1:{web_port}"
    finally:
        for process in (server, feeder):
            process.terminate()
        for process in (server, feeder):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if server.stderr is not None:
            server.stderr.close()


def _query(url: str, expr: str) -> list[dict[str, Any]] | str:
    """The instant query's result, or the error Prometheus gave."""
    try:
        answer = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=5).json()
    except (httpx.HTTPError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    if answer.get("status") != "success":
        return str(answer.get("error"))
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def _until_all_answer(url: str, queries: list[str]) -> dict[str, str]:
    """Wait (bounded) until every query returns data; what each still lacks, if not."""
    deadline = time.monotonic() + WAIT_S
    missing: dict[str, str] = {}
    while time.monotonic() < deadline:
        missing = {}
        for expr in queries:
            result = _query(url, expr)
            if isinstance(result, str) or not result:
                missing[expr] = result or "no data"
        if not missing:
            return {}
        time.sleep(1.0)
    return missing


def test_a_real_prometheus_evaluates_every_alert_rule_and_dashboard_query(
    prometheus: str
) -> None:
    up = _until_all_answer(prometheus, ['up{job="voxline-metrics"} == 1'])
    assert not up, f"the endpoint was never scraped: {up}"
    dashboard = _dashboard_queries()
    assert len(dashboard) >= 10
    missing = _until_all_answer(prometheus, dashboard)
    assert not missing, f"dashboard queries without data: {missing}"
    groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert {r["name"] for r in rules} >= {"VoxlineMetricsDown", "VoxlineVoiceToVoiceSlow",
                                          "VoxlineTurnsFailing", "VoxlineErrors"}
    for rule in rules:
        assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))
    # each rule's expression, its threshold aside, reads series that exist
    sides = [_THRESHOLD.sub("", rule["query"]) for rule in rules]
    assert all(side != rule["query"] for side, rule in zip(sides, rules, strict=True))
    missing = _until_all_answer(prometheus, sides)
    assert not missing, f"alert expressions without data: {missing}"
