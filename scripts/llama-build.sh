# Sourced by scripts/setup.sh and scripts/setup-peers.sh: which llama-cpp-python is built,
# for which of this CPU's vector extensions, and where its wheel is kept, so that Voxline and
# the peer benchmark's llama.cpp server load the same build.
#
#   VOXLINE_WHEEL_CACHE     where built wheels are kept (default: ~/.cache/voxline/wheels)
#   VOXLINE_LLAMA_FEATURES  the x86 extensions to build for: unset, AVX2's (AVX AVX2 FMA
#                           F16C, those this CPU has); "cpu", every one this CPU has
#                           (AVX-512 too); or a list, e.g. "AVX AVX2 FMA F16C AVX512"
#
# llama.cpp's own native build (-march=native) also compiles its AMX code, which some VMs
# report but do not enable: it crashed at load. So the build names each extension itself,
# from those /proc/cpuinfo lists, never AMX. AVX-512 is asked for, not the default: on a
# 2-core AVX-512 EPYC it cut the LLM's prompt evaluation by 24 % and eight voice sessions'
# p95 by ~13 %, but its other order of summing changes some greedy replies, and the answer
# sheet's score fell from 29 to 28 of 36, under its goal (docs/measurements.md, "llama.cpp
# built for the CPU"). Each build has a folder of its own in the cache, named after its
# extensions, so a cache shared by different machines never hands one a wheel its CPU
# cannot run.

LLAMA_VERSION="0.3.36"
WHEELS="${VOXLINE_WHEEL_CACHE:-$HOME/.cache/voxline/wheels}"

# /proc/cpuinfo's flag -> llama.cpp's GGML_<name> CMake option; the first four are AVX2's
LLAMA_X86_EXTENSIONS=(avx:AVX avx2:AVX2 fma:FMA f16c:F16C avx512f:AVX512
                      avx512vbmi:AVX512_VBMI avx512_vnni:AVX512_VNNI
                      avx512_bf16:AVX512_BF16 avx_vnni:AVX_VNNI)

# The GGML_* extensions to build for, on one line (VOXLINE_LLAMA_FEATURES above); "native"
# off x86 (no AMX there), where llama.cpp's own detection is used.
llama_features() {
  local wanted="${VOXLINE_LLAMA_FEATURES:-}" known=("${LLAMA_X86_EXTENSIONS[@]:0:4}")
  if [ -n "$wanted" ] && [ "$wanted" != cpu ]; then
    echo "$wanted"
  elif [ "$(uname -m)" != x86_64 ]; then
    echo native
  else
    [ "$wanted" = cpu ] && known=("${LLAMA_X86_EXTENSIONS[@]}")
    local flags pair found=()
    flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
    for pair in "${known[@]}"; do
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

# This build's wheel in its cache folder; nothing when it was not built yet.
llama_wheel() {
  ls "$(llama_wheel_dir)"/llama_cpp_python-"$LLAMA_VERSION"-*.whl 2>/dev/null | head -1 || true
}
