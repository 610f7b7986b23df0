"""Shared helpers for benchmarks: percentiles, the JSON report, smoke mode, cleaning up Redis.

Every benchmark has a ``--smoke`` mode: tiny sizes, a few seconds, scripted engines where the
real ones would take minutes, its reports in a temporary folder. It runs the benchmark's own
measuring and reporting code, so the test command (``tests/test_loadtests_smoke.py``)
catches a benchmark that no longer runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.workers import LatencyParts

#: where reports go: ``reports/`` of the checkout, or ``VOXLINE_REPORTS_DIR``
REPORTS_ENV = "VOXLINE_REPORTS_DIR"
DEFAULT_REPORTS = Path(__file__).resolve().parent.parent / "reports"


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p95/p99/max of ``values`` (same unit as given)."""
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "max": float("nan")}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "p50": statistics.median(ordered),
        "p95": pick(0.95),
        "p99": pick(0.99),
        "max": ordered[-1],
    }


def percentiles_ms(values: list[float]) -> dict[str, float] | None:
    """:func:`percentiles` rounded to 0.1; None when nothing was measured (no NaN in the
    JSON)."""
    return {k: round(v, 1) for k, v in percentiles(values).items()} if values else None


def reports_dir() -> Path:
    """The folder reports are written to (read at each call: smoke mode sets it)."""
    return Path(os.environ.get(REPORTS_ENV) or DEFAULT_REPORTS)


def add_smoke_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--smoke", action="store_true",
        help="a few seconds on tiny sizes (scripted engines where the real ones are slow), "
        f"reports in a temporary folder (or ${REPORTS_ENV}): checks the benchmark runs")


def add_settings_flag(parser: argparse.ArgumentParser, whose: str) -> None:
    """``--settings``: more session settings of ``whose`` sessions, as a JSON object."""
    parser.add_argument(
        "--settings", type=json.loads, default={},
        help=f"more session settings of {whose}, as JSON (e.g. '{{\"turn_judge\": \"text\"}}')")


def smoke_reports() -> Path:
    """Smoke mode's report folder: ``$VOXLINE_REPORTS_DIR`` if set (child processes inherit
    it), else a new temporary one; never ``reports/``, whose figures are real runs'."""
    if not os.environ.get(REPORTS_ENV):
        os.environ[REPORTS_ENV] = tempfile.mkdtemp(prefix="voxline-smoke-")
    return reports_dir()


def write_report(name: str, figures: dict[str, Any]) -> Path:
    """Write ``<reports>/<name>.json`` with the machine it ran on, and return the path."""
    folder = reports_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    report = {
        "benchmark": name,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
        },
        "figures": _json_numbers(figures),
    }
    path.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


def _json_numbers(value: Any) -> Any:
    """``value`` with NaN and infinities as ``null``: JSON has no such numbers, and a
    report with ``NaN`` in it (the percentiles of nothing) is not JSON to a strict reader."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_numbers(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_numbers(item) for item in value]
    return value


async def forget_prefix(redis: Any, prefix: str) -> None:
    """Delete a benchmark's keys (``prefix:*``) in batches, and close the client."""
    try:
        keys = [key async for key in redis.scan_iter(match=f"{prefix}:*", count=1000)]
        for i in range(0, len(keys), 500):
            await redis.delete(*keys[i:i + 500])
    finally:
        await redis.aclose()


#: the parts before STT's: the end of speech heard (capacity's), the wait for a place
_LEADING_PARTS = ("endpoint", "queued")


def mean_parts(turns: list[LatencyParts], *, slowest: float | None = None,
               ) -> dict[str, Any] | None:
    """The turns' latency parts (``LatencyParts``), as means (means add up as the parts
    do: their sum is the mean total), and the mean head start of preemptive replies.

    ``slowest`` (a fraction, e.g. 0.1) adds ``slowest``: the same means over that share
    of the turns with the longest totals, so a report shows which part makes its tail
    (percentiles of the parts would not add up to the tail's total)."""
    if not turns:
        return None
    named = list(dict.fromkeys(name for t in turns for name in t.parts))
    # the parts in the order they happen, whichever turn first had one (few turns wait)
    names = [*(n for n in _LEADING_PARTS if n in named),
             *(n for n in named if n not in _LEADING_PARTS)]
    means = {
        "turns": len(turns),
        "parts_mean_ms": {n: round(statistics.fmean(t.parts.get(n, 0.0) for t in turns), 1)
                          for n in names},
        "total_mean_ms": round(statistics.fmean(t.total_ms for t in turns), 1),
        "head_start_mean_ms": round(statistics.fmean(t.head_start_ms for t in turns), 1),
    }
    if slowest is not None:
        tail = sorted(turns, key=lambda t: t.total_ms)[-max(1, math.ceil(slowest * len(turns))):]
        means["slowest"] = {"share": slowest, **(mean_parts(tail) or {})}
    return means
