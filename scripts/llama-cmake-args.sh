#!/usr/bin/env sh
# Prints the CMAKE_ARGS used to build llama-cpp-python for this CPU.
# GGML_NATIVE=ON would compile AMX kernels on CPUs that advertise AMX, and AMX raises SIGILL in many
# virtual machines; so native detection is off and each SIMD level is enabled only when /proc/cpuinfo
# lists it. A CMAKE_ARGS already set by the user wins.
if [ -n "${CMAKE_ARGS:-}" ]; then
  printf '%s\n' "$CMAKE_ARGS"
  exit 0
fi
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
has() { printf '%s' "$flags" | grep -qw "$1"; }
onoff() { if has "$1"; then echo ON; else echo OFF; fi; }
case "$(uname -m)" in
  x86_64|amd64)
    avx512=OFF
    if has avx512f && has avx512bw && has avx512vl; then avx512=ON; fi
    printf '%s\n' "-DGGML_NATIVE=OFF -DGGML_AVX=$(onoff avx) -DGGML_AVX2=$(onoff avx2) -DGGML_FMA=$(onoff fma) -DGGML_F16C=$(onoff f16c) -DGGML_AVX512=$avx512 -DGGML_AVX512_VNNI=$(onoff avx512_vnni) -DGGML_AVX512_BF16=$(onoff avx512_bf16) -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
    ;;
  *)
    # Other architectures: llama.cpp's native detection is safe there.
    printf '%s\n' "-DGGML_NATIVE=ON"
    ;;
esac
