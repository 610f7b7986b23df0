#!/usr/bin/env bash
# The peer frameworks loadtests/bench_peers.py measures Voxline against, each in a
# virtualenv of its own OUTSIDE the checkout (as the GPU engines have theirs): their
# dependencies (Pipecat pins protobuf < 7, its own onnxruntime, ...) never touch Voxline's.
#
#   VOXLINE_PEERS_DIR    where the peers' venvs live (default: ~/.cache/voxline/peers)
#   VOXLINE_WHEEL_CACHE  the llama-cpp-python wheel scripts/setup.sh built for this CPU
#                        (reused here: scripts/llama-build.sh names it)
#
# Pipecat has no llama.cpp service: its docs point local models at an OpenAI-compatible
# server, so the same Gemma GGUF is served by llama-cpp-python's own server (the same
# llama.cpp build Voxline loads in-process) and Pipecat's OpenAI LLM service talks to it.
# No weights are installed here: the benchmark passes the files Voxline's venv holds.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

PEERS="${VOXLINE_PEERS_DIR:-$HOME/.cache/voxline/peers}"
VENV="$PEERS/pipecat-venv"
PY="${PYTHON:-python3.11}"
# Pipecat 1.14.0 as released; its extras for local Whisper (faster-whisper), Piper and the
# FastAPI WebSocket transport. Silero VAD and the OpenAI client are in its core.
PIPECAT="pipecat-ai[whisper,piper,websocket]==1.14.0"
# the engines at the versions Voxline's cpu extra pins (pyproject.toml)
ENGINES=("faster-whisper==1.2.1" "piper-tts==1.8.0")
source scripts/llama-build.sh  # LLAMA_VERSION, llama_wheel: as scripts/setup.sh
SERVER_DEPS=("uvicorn>=0.30" "fastapi>=0.115" "sse-starlette>=1.6" "starlette-context>=0.3.6"
             "pydantic-settings>=2.0" "PyYAML>=5.1")

say() { printf '\033[1m[setup-peers]\033[0m %s\n' "$*"; }

wheel="$(llama_wheel)"
if [ -z "$wheel" ]; then
  echo "no llama-cpp-python $LLAMA_VERSION wheel in $(llama_wheel_dir): run scripts/setup.sh first" >&2
  exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  mkdir -p "$PEERS"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
fi

stamp="$VENV/.voxline-peers-installed"
want="$(cat scripts/setup-peers.sh scripts/llama-build.sh | sha256sum | cut -d' ' -f1) $wheel"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing $PIPECAT, ${ENGINES[*]}, llama-cpp-python $LLAMA_VERSION (server)"
  # the same version of another build (an older setup's) would count as installed
  "$VENV/bin/pip" uninstall -q -y llama-cpp-python 2>/dev/null || true
  "$VENV/bin/pip" install -q "$PIPECAT" "${ENGINES[@]}" "$wheel" "${SERVER_DEPS[@]}"
  "$VENV/bin/python" -c "import pipecat, faster_whisper, piper, llama_cpp.server"
  "$VENV/bin/pip" freeze > "$VENV/requirements.lock"
  echo "$want" > "$stamp"
  say "installed (resolved versions: $VENV/requirements.lock)"
else
  say "up to date ($VENV)"
fi
