#!/usr/bin/env bash
# Runs every fuzz target (or those named) for a while under libFuzzer with
# ASan and UBSan, and prints each target's exec count. Builds the `fuzz`
# preset first (clang). New corpus entries go to <build>/corpus/<target>, so
# the seeds in fuzz/corpus stay as checked in; crashing inputs go to
# <build>/artifacts/. Exit status 1 when any target found a bug.
#
#   fuzz/run.sh [-t SECONDS] [-s SEED] [-b BUILD_DIR] [-j JOBS] [target...]
#   (defaults: 20 seconds each, a random seed, build/fuzz, one build job;
#   CI passes a fixed seed so that a run can be repeated)
set -uo pipefail
cd "$(dirname "$0")/.."

seconds=20
seed=0
build=build/fuzz
jobs=1
while getopts "t:s:b:j:" opt; do
  case $opt in
    t) seconds=$OPTARG ;;
    s) seed=$OPTARG ;;
    b) build=$OPTARG ;;
    j) jobs=$OPTARG ;;
    *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for dir in fuzz/corpus/*/; do targets+=("$(basename "$dir")"); done
fi

if [ ! -f "$build/build.ninja" ]; then
  cmake --preset fuzz -B "$build" >/dev/null || exit 1
fi
cmake --build "$build" --target fuzz_targets -j "$jobs" || exit 1

mkdir -p "$build/artifacts" "$build/logs"
failed=0
printf '%-22s %12s %10s %s\n' target execs seconds result
for t in "${targets[@]}"; do
  mkdir -p "$build/corpus/$t"
  log="$build/logs/$t.log"
  "$build/fuzz/$t" -max_total_time="$seconds" -seed="$seed" -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$build/artifacts/$t-" "$build/corpus/$t" "fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  result=ok
  if [ $rc -ne 0 ]; then
    result="FAILED (rc $rc, see $log)"
    failed=1
  fi
  printf '%-22s %12s %10s %s\n' "$t" "${execs:-?}" "$seconds" "$result"
done
exit $failed
