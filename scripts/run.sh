#!/usr/bin/env bash
# README command 1, the main job: install what is missing, start Redis if none is
# configured (VOXLINE_REDIS_URL unset), start Ray (no dashboard) and the Voxline app on
# 127.0.0.1:8000 with the CPU profile, hold one voice turn over the WebSocket (a spoken
# question in, the transcript, the reply as it streams, each stage's latency, the spoken
# reply written to voxline-demo-reply.wav), then keep serving until Ctrl-C, which stops
# everything this command started. Options go to `voxline serve` (e.g. --no-demo).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec "${VOXLINE_VENV:-.venv}/bin/voxline" serve "$@"
