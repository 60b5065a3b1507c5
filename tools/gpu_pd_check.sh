#!/usr/bin/env bash
# P/D over GPU memory and the CUDA IPC KV transport, in two halves like
# tools/gpu_check.sh:
#
#   tools/gpu_pd_check.sh --stage [BUILD_DIR]   (here, after
#       `ninja -C BUILD_DIR baton cuda_ipc_peer cuda_ipc_transport_cuda_test
#       kv_transfer_gpu_bench pd_cuda_ipc_cuda_test`, default build-cuda)
#       copies the binaries, stripped, into .carry/ipc2/stage (gitignored);
#   tools/gpu_pd_check.sh   (on the GPU machine, carry [".carry/ipc2"])
#       runs the transport's tests, the P/D test (decode on GPU 1 when there
#       are two GPUs) and, with two GPUs, kv_transfer_gpu_bench --sm 0;
#       logs under $OUT (default /tmp/gpu_pd_check).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
S=.carry/ipc2/stage

if [[ "${1:-}" == "--stage" ]]; then
  build=${2:-build-cuda}
  mkdir -p "$S"
  rm -f "$S"/*
  for t in cli/baton kvtransfer/cuda_ipc/cuda_ipc_peer kvtransfer/cuda_ipc/cuda_ipc_transport_cuda_test \
           bench/kv_transfer_gpu_bench cli/pd_cuda_ipc_cuda_test; do
    strip -o "$S/$(basename "$t")" "$build/$t" || exit 1
  done
  # The P/D test starts the `baton` of the build directory compiled into it.
  echo "$root/$build" > .carry/ipc2/build_dir
  ls -la "$S"
  exit 0
fi

out=${OUT:-/tmp/gpu_pd_check}
mkdir -p "$out"
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader
ngpu=$(nvidia-smi -L | wc -l)
cublas=$(find /usr/local/cuda/lib64 /usr/local/cuda/targets /opt /usr/lib /usr/local/lib \
  -name 'libcublas.so.13' 2>/dev/null | head -1)
if [[ -n "$cublas" ]]; then
  libdir=$(dirname "$cublas")
  lt=$(find "$(dirname "$libdir")" /usr/local/cuda /opt /usr/local/lib -name 'libcublasLt.so.13' \
    2>/dev/null | head -1)
  export LD_LIBRARY_PATH="$libdir:$(dirname "${lt:-$cublas}")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
ldd "$S/baton" | grep 'not found'
# Paths compiled into the tests: the source folder (fixtures) and the build
# folder's baton.
build_dir=$(cat .carry/ipc2/build_dir)
src_dir=$(dirname "$build_dir")
if [[ "$src_dir" != "$root" && ! -e "$src_dir" ]]; then
  mkdir -p "$(dirname "$src_dir")" && ln -s "$root" "$src_dir"
fi
mkdir -p "$build_dir/cli" && cp "$S/baton" "$build_dir/cli/baton"
status=0
echo "== cuda_ipc_transport_cuda_test"
timeout 60 "$S/cuda_ipc_transport_cuda_test" --gtest_repeat=2 --gtest_shuffle --gtest_brief=1 \
  > "$out/cuda_ipc.log" 2>&1 || status=1
tail -n 8 "$out/cuda_ipc.log"
echo "== pd_cuda_ipc_cuda_test"
timeout 150 "$S/pd_cuda_ipc_cuda_test" > "$out/pd.log" 2>&1 || status=1
grep -E '^\[ *(OK|FAILED|PASSED|SKIPPED) ' "$out/pd.log"
grep -B2 -A12 'Failure' "$out/pd.log" | head -60
if [[ $ngpu -ge 2 ]]; then
  echo "== kv_transfer_gpu_bench --sm 0"
  timeout 70 "$S/kv_transfer_gpu_bench" --sm 0 2>&1 | tee "$out/bench.log" | tail -n 25
fi
exit $status
