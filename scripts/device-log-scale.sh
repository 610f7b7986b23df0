#!/usr/bin/env bash
# loadtests/bench_log_scale.py on a lent 16-core machine (the device tool), which has
# Python 3.12 and no package registry. What it needs comes with the working tree,
# prepared here first (docs/operations.md, "The log on 16 cores", says how):
#
#   .whl/   cp312 wheels of what the phase imports that the machine lacks; installed into
#           /tmp/site, which stays there for the next call while the machine is warm (so a
#           second call can carry the Gateway's wheels in a .whl2/ of its own)
#   .dev/   Debian's redis-server (.dev/bin) and the libraries it links that the machine
#           lacks (.dev/lib: liblzf, libjemalloc, libatomic)
#
# The wheels: for each distribution the phase imports that the machine lacks (compare the
# modules `python -X importtime -m loadtests.bench_log_scale --help` loads with the device
# tool's list of installed packages), the version this venv has, fetched for Python 3.12:
#
#   .venv/bin/pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
#     -d .whl pydantic==X pydantic_core==Y redis==Z ...
#
#   scripts/device-log-scale.sh WHEELS_DIR [bench_log_scale arguments...]
#
# The report and plot land in $OUT (the device tool brings them back).
set -uo pipefail
cd "$(dirname "$0")/.."
wheels="$1"; shift
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site "$wheels"/*.whl || exit 1
export PYTHONPATH=/tmp/site PATH="$PWD/.dev/bin:$PATH" LD_LIBRARY_PATH="$PWD/.dev/lib"
export PYTHONUNBUFFERED=1 VOXLINE_REPORTS_DIR="${OUT:-reports}"
echo "cores: $(nproc); $(python3 --version); $(redis-server --version | cut -c1-40)"
python3 -m loadtests.bench_log_scale "$@"
