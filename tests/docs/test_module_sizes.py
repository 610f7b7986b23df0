"""Small modules with one job: no module of the product over 400 lines. The benchmark
drivers that were already longer may not grow (a ratchet, to be split in turn); a new
one keeps to the rule."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("pipeline", "deployments", "schemas", "voxline")
LIMIT = 400
#: benchmark drivers over the limit when it was first enforced (2026-11-27), at most this
OVERSIZE_BENCHMARKS = {
    "loadtests/bench_latency.py": 960,
    "loadtests/capacity.py": 609,
    "loadtests/bench_log_scale.py": 527,
    "loadtests/bench_limits.py": 489,
    "loadtests/locustfile.py": 469,
    "loadtests/bench_stt_batch.py": 418,
}


def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


@pytest.mark.parametrize("package", PRODUCT)
def test_no_module_of_the_product_is_over_the_limit(package: str) -> None:
    sizes = {str(p.relative_to(ROOT)): _lines(p) for p in (ROOT / package).rglob("*.py")}
    over = {name: lines for name, lines in sizes.items() if lines > LIMIT}
    assert not over, f"split these modules (at most {LIMIT} lines each): {over}"


def test_benchmark_drivers_keep_to_the_limit_or_do_not_grow() -> None:
    grown = {}
    for path in (ROOT / "loadtests").rglob("*.py"):
        name, lines = str(path.relative_to(ROOT)), _lines(path)
        if lines > OVERSIZE_BENCHMARKS.get(name, LIMIT):
            grown[name] = lines
    assert not grown, f"over {LIMIT} lines, or longer than when the limit came: {grown}"
