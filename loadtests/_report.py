"""Shared helpers for benchmarks: percentiles, the JSON report, and cleaning up Redis."""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

REPORTS = Path(__file__).resolve().parent.parent / "reports"


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


def write_report(name: str, figures: dict[str, Any]) -> Path:
    """Write ``reports/<name>.json`` with the machine it ran on, and return the path."""
    REPORTS.mkdir(exist_ok=True)
    path = REPORTS / f"{name}.json"
    report = {
        "benchmark": name,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
        },
        "figures": figures,
    }
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return path


async def forget_prefix(redis: Any, prefix: str) -> None:
    """Delete a benchmark's keys (``prefix:*``) in batches, and close the client."""
    try:
        keys = [key async for key in redis.scan_iter(match=f"{prefix}:*", count=1000)]
        for i in range(0, len(keys), 500):
            await redis.delete(*keys[i:i + 500])
    finally:
        await redis.aclose()
