"""A benchmark's report is JSON a strict reader takes: the percentiles of nothing are
``null``, not ``NaN``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtests._report import REPORTS_ENV, percentiles, write_report


def test_numbers_json_cannot_hold_are_written_as_null(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(REPORTS_ENV, str(tmp_path))
    path = write_report("empty", {"latency_ms": percentiles([]), "ratio": [1.5, float("inf")],
                                  "nested": {"n": 3}})

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in the report")

    report = json.loads(path.read_text(), parse_constant=refuse)
    assert report["figures"] == {
        "latency_ms": {"p50": None, "p95": None, "p99": None, "max": None},
        "ratio": [1.5, None], "nested": {"n": 3}}
