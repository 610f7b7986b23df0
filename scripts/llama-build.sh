# Sourced by scripts/setup.sh and scripts/setup-peers.sh: which llama-cpp-python is built,
# for which of this CPU's vector extensions, and where its wheel is kept, so that Voxline and
# the peer benchmark's llama.cpp server load the same build.
#
#   VOXLINE_WHEEL_CACHE     where built wheels are kept (default: ~/.cache/voxline/wheels)
#   VOXLINE_LLAMA_FEATURES  the x86 extensions to build for, e.g. "AVX AVX2 FMA F16C" for
#                           a wheel other machines will share (default: this CPU's own)
#
# llama.cpp's own native build (-march=native) also compiles its AMX code, which some VMs
# report but do not enable: it crashed at load. So the build names each extension itself,
# those /proc/cpuinfo lists, never AMX. AVX-512 where the CPU has it: on a 2-core AVX-512
# EPYC the LLM's prompt evaluation took 24 % less time than with AVX2 alone, and eight
# voice sessions' p95 fell by 13 % (docs/measurements.md, "llama.cpp built for the CPU").
# Each build has a folder of its own in the cache, named after its extensions, so a cache
# shared by different machines never hands one a wheel its CPU cannot run.

LLAMA_VERSION="0.3.36"
WHEELS="${VOXLINE_WHEEL_CACHE:-$HOME/.cache/voxline/wheels}"

# /proc/cpuinfo's flag -> llama.cpp's GGML_<name> CMake option
LLAMA_X86_EXTENSIONS=(avx:AVX avx2:AVX2 fma:FMA f16c:F16C avx512f:AVX512
                      avx512vbmi:AVX512_VBMI avx512_vnni:AVX512_VNNI
                      avx512_bf16:AVX512_BF16 avx_vnni:AVX_VNNI)

# The GGML_* extensions to build for, one line: VOXLINE_LLAMA_FEATURES, else this CPU's;
# "native" off x86 (no AMX there), where llama.cpp's own detection is used.
llama_features() {
  if [ -n "${VOXLINE_LLAMA_FEATURES:-}" ]; then
    echo "$VOXLINE_LLAMA_FEATURES"
  elif [ "$(uname -m)" != x86_64 ]; then
    echo native
  else
    local flags pair found=()
    flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
    for pair in "${LLAMA_X86_EXTENSIONS[@]}"; do
      [[ "$flags" == *" ${pair%%:*} "* ]] && found+=("${pair#*:}")
    done
    echo "${found[*]:-}"
  fi
}

llama_cmake_args() {
  local features feature args="-DGGML_NATIVE=OFF"
  features="$(llama_features)"
  if [ "$features" = native ]; then echo "-DGGML_NATIVE=ON"; return; fi
  for feature in $features; do args+=" -DGGML_${feature}=ON"; done
  echo "$args"
}

# The cache folder of this build's wheel, named after the version and the extensions.
llama_wheel_dir() {
  local features
  features="$(llama_features)"
  features="${features// /-}"
  echo "$WHEELS/llama-cpp-python-$LLAMA_VERSION-${features:-generic}"
}
