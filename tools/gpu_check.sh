#!/usr/bin/env bash
# Baton's CUDA tests and GPU benchmarks, in two halves:
#
#   tools/gpu_check.sh --stage [BUILD_DIR]   (here, after building BUILD_DIR,
#                                            default build-gpu, with CUDA)
#       copies the cuda-labelled test binaries and the GPU benchmark, stripped,
#       into .carry/bin (gitignored), ready to travel to a GPU machine.
#   tools/gpu_check.sh [--tests-only | --bench-only]   (on the GPU machine)
#       builds nothing: runs every .carry/bin/*_cuda_test, then
#       engine_gpu_bench with $BENCH_ARGS, writing logs under $OUT
#       (default /tmp/gpu_check) and a summary at the end of its output.
#       GPU_TESTS="engine_cuda_test ..." runs only the tests it names.
#
# The binaries link cuBLAS dynamically; the script finds libcublas.so.13 on
# the machine (CUDA toolkit or the Python wheels) and puts it on the path.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if [[ "${1:-}" == "--stage" ]]; then
  build=${2:-build-gpu}
  mkdir -p .carry/bin
  rm -f .carry/bin/*
  for f in "$build"/kernels/cuda/*_cuda_test "$build"/engine/*_cuda_test \
           "$build"/kvtransfer/cuda_ipc/*_cuda_test "$build"/kvtransfer/cuda_ipc/cuda_ipc_peer \
           "$build"/bench/engine_gpu_bench; do
    [[ -x "$f" ]] || continue
    strip -o ".carry/bin/$(basename "$f")" "$f"
  done
  # Tests read fixtures from the source directory compiled into them.
  echo "$root" > .carry/source_dir
  ls -la .carry/bin
  du -sh .carry
  exit 0
fi

mode=${1:-all}
out=${OUT:-/tmp/gpu_check}
mkdir -p "$out"
summary=()

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"

cublas=$(find /usr/local/cuda/lib64 /usr/local/cuda/targets /opt /usr/lib -name 'libcublas.so.13' \
  2>/dev/null | head -1)
if [[ -n "$cublas" ]]; then
  libdir=$(dirname "$cublas")
  lt=$(find "$(dirname "$libdir")" /usr/local/cuda /opt -name 'libcublasLt.so.13' 2>/dev/null | head -1)
  export LD_LIBRARY_PATH="$libdir:$(dirname "${lt:-$cublas}")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
missing=$(ldd .carry/bin/* 2>/dev/null | grep 'not found' | sort -u)
[[ -n "$missing" ]] && echo "missing libraries: $missing"

# The fixtures' path compiled into the tests: make it resolve here.
src=$(cat .carry/source_dir 2>/dev/null || echo "$root")
if [[ "$src" != "$root" && ! -e "$src" ]]; then
  mkdir -p "$(dirname "$src")" && ln -s "$root" "$src"
fi

if [[ "$mode" != "--bench-only" ]]; then
  for t in .carry/bin/*_cuda_test; do
    name=$(basename "$t")
    [[ -z "${GPU_TESTS:-}" || " $GPU_TESTS " == *" $name "* ]] || continue
    "$t" --gtest_brief=1 > "$out/$name.log" 2>&1
    rc=$?
    tail -n 25 "$out/$name.log"
    summary+=("$name: $([[ $rc == 0 ]] && echo PASS || echo "FAIL ($rc)")")
  done
fi

if [[ "$mode" != "--tests-only" && -x .carry/bin/engine_gpu_bench ]]; then
  # shellcheck disable=SC2086
  .carry/bin/engine_gpu_bench ${BENCH_ARGS:-} 2>&1 | tee "$out/engine_gpu_bench.log"
  summary+=("engine_gpu_bench: rc ${PIPESTATUS[0]}")
fi

echo
echo "== gpu_check summary =="
printf '%s\n' "${summary[@]}"
