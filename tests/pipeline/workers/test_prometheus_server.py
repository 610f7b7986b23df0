"""The metrics endpoint scraped by a real Prometheus (Debian's ``prometheus``, started here
on loopback with its own port and data directory): every alert rule of
``cluster/prometheus-alerts.yml`` evaluates without error and its expression (its
threshold aside) returns data, and so does every query of the Grafana dashboard, once a
few rounds of turns and replica reports were recorded (``tests/support/metrics_feeder.py``)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.api_harness import forget_keys
from tests.support.prometheus import (
    ROOT,
    THRESHOLD,
    alert_rules,
    dashboard_queries,
    prometheus_server,
    stop,
    until_all_answer,
)
from voxline.redis_server import free_port

WAIT_S = 90.0


@pytest.fixture
def prometheus(tmp_path: Path, redis_url: str) -> Iterator[str]:
    """A Prometheus scraping a fed metrics endpoint every second, with the alert rules;
    its URL. Both processes are this test's, stopped after it."""
    metrics_port, prefix = free_port(), f"voxprom:{uuid.uuid4().hex[:8]}"
    with prometheus_server([f"127.0.0.1:{metrics_port}"], tmp_path) as url:
        feeder = subprocess.Popen([sys.executable, "-m", "tests.support.metrics_feeder",
                                   str(metrics_port), redis_url, prefix], cwd=ROOT)
        try:
            yield url
        finally:
            stop(feeder)
            forget_keys(redis_url, prefix)


def test_a_real_prometheus_evaluates_every_alert_rule_and_dashboard_query(
    prometheus: str
) -> None:
    up = until_all_answer(prometheus, ['up{job="voxline-metrics"} == 1'], WAIT_S)
    assert not up, f"the endpoint was never scraped: {up}"
    dashboard = dashboard_queries()
    assert len(dashboard) >= 10
    missing = until_all_answer(prometheus, dashboard, WAIT_S)
    assert not missing, f"dashboard queries without data: {missing}"
    rules = alert_rules(prometheus)
    assert {r["name"] for r in rules} >= {
        "VoxlineMetricsDown", "VoxlineVoiceToVoiceSlow", "VoxlineTurnsFailing",
        "VoxlineErrors", "VoxlineAdmissionRefusing", "VoxlineStageRefusing",
        "VoxlineLogAppendSlow", "VoxlineReadersLagging", "VoxlineFeedGroupBehind"}
    for rule in rules:
        assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))
    # each rule's expression, its threshold aside, reads series that exist
    sides = [THRESHOLD.sub("", rule["query"]) for rule in rules]
    assert all(side != rule["query"] for side, rule in zip(sides, rules, strict=True))
    missing = until_all_answer(prometheus, sides, WAIT_S)
    assert not missing, f"alert expressions without data: {missing}"

