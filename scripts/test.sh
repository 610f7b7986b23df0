#!/usr/bin/env bash
# Run Voxline's checks and test suite on a fresh or prepared machine.
# Installs what is missing first (scripts/setup.sh), then: ruff, lint-imports, mypy, the
# documentation site (mkdocs --strict), pytest
# (with coverage, failing under its floor).
# Any failure, and pytest collecting no tests, exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VOXLINE_VENV:-.venv}"
# Cache bytecode (__pycache__, ignored by git) even where the environment says not to
# (PYTHONDONTWRITEBYTECODE=1 on this project's machines): the suite starts hundreds of Python
# processes (three pytest workers, every Ray worker of every app, every smoke run and CLI
# child), and without the cache each compiled Voxline's modules afresh and each pytest
# worker rewrote every test module's asserts anew (collecting took 47 s a worker, 29 s
# with the cache)
unset PYTHONDONTWRITEBYTECODE

scripts/setup.sh
echo "[test] ruff"
"$VENV/bin/ruff" check .
echo "[test] lint-imports (layers, façades, forbidden imports: pyproject.toml)"
"$VENV/bin/lint-imports" --no-cache  # a cached graph can keep a module that was renamed
echo "[test] mypy (strict on schemas/ and pipeline/)"
"$VENV/bin/mypy"
echo "[test] the documentation site (mkdocs build --strict: every page, link and anchor)"
site_dir="$(mktemp -d)"
NO_MKDOCS_2_WARNING=1 "$VENV/bin/mkdocs" build --strict --quiet -d "$site_dir"
rm -rf "$site_dir"
echo "[test] JavaScript unit tests (the browser page's pure modules)"
if command -v node >/dev/null; then
  node --test tests/js/
else
  echo "[test] node is not installed: skipping tests/js (the browser page's JS unit tests)"
fi
echo "[test] pytest, with line and branch coverage (pyproject.toml: [tool.coverage.*])"
# The coverage floor (fail_under) holds for the whole suite; a run of some tests only
# (arguments given) prints its coverage without failing under the floor.
coverage=(--cov --cov-report=term)
if [ "$#" -gt 0 ]; then
  coverage+=(--cov-fail-under=0)
fi
set +e
# Three workers (pytest-xdist): much of the suite waits on sockets, servers and
# subprocesses, so three keep two cores busy (measured on a clean clone, 2026-11-28:
# 17:21 of pytest with two workers; 14:48 with three, the cores 94 % busy throughout);
# tests/conftest.py shares them out module by module, every module that starts the Serve
# app on one worker. VOXLINE_TEST_WORKERS=N for another count, 0 for one process.
workers=(-n "${VOXLINE_TEST_WORKERS:-3}")
"$VENV/bin/python" -m pytest "${workers[@]}" "${coverage[@]}" --durations=15 "$@"  # the slowest: where the minutes go
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "[test] pytest collected no tests: failing" >&2
  exit 1
fi
exit "$status"
