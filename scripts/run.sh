#!/usr/bin/env bash
# README command 1, the main job: install what is missing, start Redis if none is
# configured (VOXLINE_REDIS_URL unset), and hold one voice turn end to end on 127.0.0.1:
# a spoken question in, the transcript, the reply as it streams, each stage's latency,
# and the spoken reply written to voxline-demo-reply.wav.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec "${VOXLINE_VENV:-.venv}/bin/voxline" demo "$@"
