#!/usr/bin/env bash
# The sanitizer runs of CI (issue 12; docs/reliability.md, "Sanitizers"):
#   * ASan + UBSan: the unit tests of common/ and protocol/ — the HTTP server
#     and its limits, the OpenAI and P/D request parsers, SSE, config, metrics,
#     queues and the thread pool: every parser that reads a peer's bytes;
#   * TSan: the concurrency primitives, the HTTP server and the KV transport.
# Each builds only its test binaries (the `asan` / `tsan` presets) and runs
# them directly; any sanitizer report fails the run. The full runs are
# `make test-asan` and `make test-tsan`.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${JOBS:-$(nproc)}

asan_tests=(bounded_queue_test clock_test config_test logging_test metrics_test status_test
  thread_pool_test http_server_limits_test http_server_reuse_port_test http_server_test
  openai_chat_request_test openai_error_test openai_request_test openai_response_test pd_test
  sse_test)
tsan_tests=(thread_pool_test bounded_queue_test tcp_transport_test wire_test http_server_test)

run_preset() {
  local preset=$1
  shift
  local dir=build/$preset
  [[ -f $dir/build.ninja ]] || cmake --preset "$preset" > /dev/null
  cmake --build "$dir" -j "$jobs" --target "$@"
  local failed=0
  for t in "$@"; do
    local bin
    bin=$(find "$dir" -name "$t" -type f -perm -u+x | head -1)
    echo "== $preset: $t"
    if ! "$bin" --gtest_brief=1; then
      echo "FAILED under $preset: $t"
      failed=1
    fi
  done
  return $failed
}

status=0
ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  run_preset asan "${asan_tests[@]}" || status=1
TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
  run_preset tsan "${tsan_tests[@]}" || status=1
exit $status
