#!/usr/bin/env bash
# Dynamic P/D ratio against every static ratio on the same instances, by
# goodput under SLO (issue 8's benchmark).
#
# For N instances it starts, one at a time, `baton up` with every static
# split (1P(N-1)D ... (N-1)P1D, the controller advising only: --no-ratio)
# and one with the controller's ratio policy on (starting at N/2 prefill),
# runs the same workload against each with `baton bench compare --launch`, a
# workload whose request shape shifts from short prompts / long outputs to
# long prompts / short outputs (--phase), and prints one table: goodput per
# phase and overall for every configuration, and dynamic / best static and
# dynamic / worst static per column. The controller's SLO and the bench's
# goodput SLO are the same numbers.
#
# Usage: bench/pd_ratio_bench.sh [options]
#   --baton PATH          the baton binary (default build/release/cli/baton)
#   --model DIR           model of every instance (default models/baton-tiny)
#   --instances N         instances per cluster (default 4)
#   --start-prefill K     prefill instances the dynamic cluster starts with
#                         (default N/2)
#   --threads T           CPU threads per instance (default 2)
#   --phase NAME:DURATION_S:RATE:IN:OUT   repeatable (default: two phases,
#                         decode-heavy:40:auto:32:256 then
#                         prefill-heavy:40:auto:896:8)
#   --utilization U       with a RATE of "auto": calibrate (below) and offer
#                         each phase U x (N-1) x the saturated request rate of
#                         one prefill + one decode instance for its shape
#                         (default 0.7): the phase's bottleneck side at U of
#                         capacity with N-1 instances, over capacity with fewer
#   --ttft-slo-ms MS      TTFT SLO (default: calibrated, --ttft-slo-factor x
#                         the unloaded TTFT of the phase with the longest
#                         prompts)
#   --tpot-slo-ms MS      TPOT SLO (default: calibrated, --tpot-slo-factor x
#                         the unloaded TPOT of the phase with the longest
#                         outputs, at least 20 ms)
#   --ttft-slo-factor F   (default 5)
#   --tpot-slo-factor F   (default 5)
#   --ttft-budget-ms MS   prefill admission budget (default 0.8 x the TTFT SLO)
#   --serve-arg ARG       extra `baton serve` argument, repeatable (also
#                         --serve-arg=ARG, for ARGs that start with --)
#   --controller-arg ARG  extra `baton up` argument for the controller's
#                         timings, repeatable (default: --controller-interval-ms
#                         500 --load-window-s 4 --ratio-sustain-rounds 2
#                         --ratio-cooldown-s 4 --ratio-reverse-cooldown-s 8)
#   --only LABELS         comma list of configurations to run (e.g. dynamic-2p2d);
#                         a single one runs on its own (`baton bench` against
#                         it), compared with --reference figures
#   --reference LABEL=G1,...,Gk,OVERALL
#                         goodput (req/s) of a configuration measured in an
#                         earlier run on the same machine, one per phase then
#                         overall, compared with as if measured now (marked
#                         "earlier run" in the summary); repeatable. E.g. the
#                         static splits, whose behaviour a change of the ratio
#                         policy does not touch (their controller only advises)
#   --port P              first gateway port (default 18600; one per config)
#   --seed S              workload seed (default 0)
#   --timeout-s S         per-request timeout (default 20)
#   --out DIR             results, logs and the summary (default results/pd-ratio)
#
# Calibration (when a rate or an SLO is left to it): `baton up --prefill 1
# --decode 1` with the same instance settings; per phase shape, 2 requests one
# at a time (unloaded TTFT and TPOT) and 48 with 24 in flight (saturated
# request rate). The SLOs and rates it chose are printed and recorded.
#
# Writes DIR/summary.md (the table, the commands, the controller's role
# changes), DIR/results/<label>_phases.json and .jsonl (baton bench's files),
# DIR/logs/<label>.log (each `baton up`'s output) and DIR/logs/<label>/ (its
# instances', gateway's and controller's logs).

set -euo pipefail

# Internal: prefixes each line of standard input with the Unix time (the
# launched clusters' output, so that the controller's decisions can be placed
# on the run's time axis).
if [[ ${1:-} == --stamp-lines ]]; then
  while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done
  exit 0
fi
SCRIPT_ABS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")

BATON=build/release/cli/baton
MODEL=models/baton-tiny
N=4
START_PREFILL=
THREADS=2
PHASES=()
TTFT_SLO_MS=
TPOT_SLO_MS=
TTFT_SLO_FACTOR=5
TPOT_SLO_FACTOR=5
UTILIZATION=0.7
TTFT_BUDGET_MS=
SERVE_ARGS=()
CONTROLLER_ARGS=()
ONLY=
REFERENCES=()
PORT=18600
SEED=0
TIMEOUT_S=20
OUT=results/pd-ratio

while [[ $# -gt 0 ]]; do
  case "$1" in
    --baton) BATON=$2; shift 2 ;;
    --model) MODEL=$2; shift 2 ;;
    --instances) N=$2; shift 2 ;;
    --start-prefill) START_PREFILL=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --phase) PHASES+=("$2"); shift 2 ;;
    --ttft-slo-ms) TTFT_SLO_MS=$2; shift 2 ;;
    --tpot-slo-ms) TPOT_SLO_MS=$2; shift 2 ;;
    --ttft-slo-factor) TTFT_SLO_FACTOR=$2; shift 2 ;;
    --tpot-slo-factor) TPOT_SLO_FACTOR=$2; shift 2 ;;
    --utilization) UTILIZATION=$2; shift 2 ;;
    --ttft-budget-ms) TTFT_BUDGET_MS=$2; shift 2 ;;
    --serve-arg) SERVE_ARGS+=("$2"); shift 2 ;;
    --serve-arg=*) SERVE_ARGS+=("${1#--serve-arg=}"); shift ;;
    --controller-arg) CONTROLLER_ARGS+=("$2"); shift 2 ;;
    --controller-arg=*) CONTROLLER_ARGS+=("${1#--controller-arg=}"); shift ;;
    --only) ONLY=$2; shift 2 ;;
    --reference) REFERENCES+=("$2"); shift 2 ;;
    --port) PORT=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --timeout-s) TIMEOUT_S=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "pd_ratio_bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [[ ! -x $BATON ]]; then
  echo "pd_ratio_bench.sh: no baton binary at $BATON (build it, or pass --baton)" >&2
  exit 2
fi
if (( N < 2 )); then
  echo "pd_ratio_bench.sh: --instances must be at least 2" >&2
  exit 2
fi
[[ -n $START_PREFILL ]] || START_PREFILL=$(( N / 2 ))
if (( START_PREFILL < 1 || START_PREFILL >= N )); then
  echo "pd_ratio_bench.sh: --start-prefill must be in 1..N-1" >&2
  exit 2
fi
if [[ ${#PHASES[@]} -eq 0 ]]; then
  PHASES=("decode-heavy:40:auto:32:256" "prefill-heavy:40:auto:896:8")
fi
if [[ ${#CONTROLLER_ARGS[@]} -eq 0 ]]; then
  CONTROLLER_ARGS=(--controller-interval-ms 500 --load-window-s 4 --ratio-sustain-rounds 2
                   --ratio-cooldown-s 4 --ratio-reverse-cooldown-s 8)
fi

mkdir -p "$OUT/results" "$OUT/logs"
BATON_ABS=$(cd "$(dirname "$BATON")" && pwd)/$(basename "$BATON")
OUT_ABS=$(cd "$OUT" && pwd)

# Instance settings shared by the calibration and every configuration (the
# admission budget is added once the TTFT SLO is known).
INSTANCE_ARGS="--serve-arg=--threads --serve-arg=$THREADS"
for a in "${SERVE_ARGS[@]}"; do INSTANCE_ARGS+=" '--serve-arg=$a'"; done

# Starts `baton up $2...` in the background with its output in $1; waits for
# its ready line (3 minutes at most). Sets UP_PID.
start_cluster() {
  local log=$1; shift
  setsid bash -c "exec $*" > "$log" 2>&1 &
  UP_PID=$!
  local deadline=$(( SECONDS + 180 ))
  until grep -qs "is up: http" "$log"; do
    if ! kill -0 "$UP_PID" 2>/dev/null || (( SECONDS > deadline )); then
      echo "pd_ratio_bench.sh: cluster did not come up; see $log" >&2
      kill -TERM "$UP_PID" 2>/dev/null || true
      return 1
    fi
    sleep 0.5
  done
}
stop_cluster() {
  kill -TERM "$UP_PID" 2>/dev/null || true
  local deadline=$(( SECONDS + 30 ))
  while kill -0 "$UP_PID" 2>/dev/null && (( SECONDS < deadline )); do sleep 0.2; done
  kill -KILL "$UP_PID" 2>/dev/null || true
  wait "$UP_PID" 2>/dev/null || true
}

needs_calibration=0
[[ -z $TTFT_SLO_MS || -z $TPOT_SLO_MS ]] && needs_calibration=1
for ph in "${PHASES[@]}"; do
  IFS=: read -r _ _ rate _ _ <<< "$ph"
  [[ $rate == auto ]] && needs_calibration=1
done
if (( needs_calibration )); then
  CAL=$OUT_ABS/calibration
  mkdir -p "$CAL"
  CAL_PORT=$(( PORT + 50 ))
  echo "pd_ratio_bench.sh: calibrating on 1 prefill + 1 decode ($THREADS threads each)"
  start_cluster "$CAL/up.log" "'$BATON_ABS' up --model '$MODEL' --prefill 1 --decode 1 \
    --port $CAL_PORT --log-dir '$CAL/logs' --no-ratio $INSTANCE_ARGS"
  for ph in "${PHASES[@]}"; do
    IFS=: read -r name _ _ in out <<< "$ph"
    "$BATON_ABS" bench --url "http://127.0.0.1:$CAL_PORT" --random-input-len "$in" \
      --random-output-len "$out" --num-prompts 2 --max-concurrency 1 --label "$name-single" \
      --result-dir "$CAL" --timeout-s 120 > "$CAL/$name-single.log" 2>&1
    "$BATON_ABS" bench --url "http://127.0.0.1:$CAL_PORT" --random-input-len "$in" \
      --random-output-len "$out" --num-prompts 48 --max-concurrency 24 --label "$name-saturated" \
      --result-dir "$CAL" --timeout-s 120 > "$CAL/$name-saturated.log" 2>&1
  done
  stop_cluster
  # Prints: the TTFT SLO, the TPOT SLO, then one phase spec per line.
  mapfile -t calibrated < <(python3 - "$CAL" "$N" "$UTILIZATION" "$TTFT_SLO_FACTOR" \
      "$TPOT_SLO_FACTOR" "${TTFT_SLO_MS:-}" "${TPOT_SLO_MS:-}" "${PHASES[@]}" <<'PY'
import json, os, sys
cal, n, util, tf, pf, ttft, tpot = sys.argv[1:8]
phases = sys.argv[8:]
n, util, tf, pf = int(n), float(util), float(tf), float(pf)
def load(label):
    return json.load(open(os.path.join(cal, label + "_rate-inf_conc-" +
                                       ("1" if label.endswith("single") else "24") + ".json")))
# The TTFT SLO scales the unloaded TTFT of the longest prompts, the TPOT SLO
# the unloaded TPOT of the longest outputs.
ttft0 = tpot0 = 0.0
longest_in = longest_out = 0
specs = []
notes = []
for ph in phases:
    name, dur, rate, i, o = ph.split(":")
    single, sat = load(name + "-single"), load(name + "-saturated")
    if int(i) > longest_in:
        longest_in, ttft0 = int(i), single["mean_ttft_ms"]
    if int(o) > longest_out:
        longest_out, tpot0 = int(o), single["mean_tpot_ms"]
    x = sat["request_throughput"]
    if rate == "auto":
        rate = f"{util * (n - 1) * x:.3g}"
    specs.append(f"{name}:{dur}:{rate}:{i}:{o}")
    notes.append(f"{name} ({i} in / {o} out): unloaded TTFT {single['mean_ttft_ms']:.1f} ms, "
                 f"TPOT {single['mean_tpot_ms']:.2f} ms; saturated 1P1D {x:.2f} req/s "
                 f"(mean TTFT {sat['mean_ttft_ms']:.0f} ms, TPOT {sat['mean_tpot_ms']:.1f} ms)")
print(ttft or f"{tf * ttft0:.0f}")
# At least 20 ms: the instances' latency histograms have buckets at 1, 5, 10
# and 20 ms, and the controller needs the TPOT quantile to fall under half the
# target to see decode slack.
print(tpot or f"{max(pf * tpot0, 20.0):.1f}")
for s in specs:
    print(s)
with open(os.path.join(cal, "calibration.md"), "w") as f:
    f.write("Calibration on 1 prefill + 1 decode:\n\n")
    for line in notes:
        f.write(f"- {line}\n")
PY
  )
  TTFT_SLO_MS=${calibrated[0]}
  TPOT_SLO_MS=${calibrated[1]}
  PHASES=("${calibrated[@]:2}")
  cat "$CAL/calibration.md"
  echo "pd_ratio_bench.sh: SLO TTFT $TTFT_SLO_MS ms, TPOT $TPOT_SLO_MS ms; phases ${PHASES[*]}"
fi
if [[ -z $TTFT_BUDGET_MS ]]; then
  TTFT_BUDGET_MS=$(awk -v s="$TTFT_SLO_MS" 'BEGIN { printf "%g", 0.8 * s }')
fi

# Every configuration: label, prefill count, decode count, ratio flag.
LABELS=()
COMMANDS=()
PORTS=()
add_config() {
  local label=$1 p=$2 d=$3 ratio=$4 port=$5
  if [[ -n $ONLY && ",$ONLY," != *",$label,"* ]]; then return; fi
  local cmd="'$BATON_ABS' up --model '$MODEL' --prefill $p --decode $d --port $port"
  cmd+=" --log-dir '$OUT_ABS/logs/$label' --ttft-slo-ms $TTFT_SLO_MS --tpot-slo-ms $TPOT_SLO_MS"
  cmd+=" $INSTANCE_ARGS --serve-arg=--ttft-budget-ms --serve-arg=$TTFT_BUDGET_MS"
  local a
  for a in "${CONTROLLER_ARGS[@]}"; do cmd+=" '$a'"; done
  [[ $ratio == static ]] && cmd+=" --no-ratio"
  cmd+=" 2>&1 | '$SCRIPT_ABS' --stamp-lines"
  LABELS+=("$label")
  COMMANDS+=("$cmd")
  PORTS+=("$port")
}
i=0
for (( p = 1; p < N; ++p )); do
  add_config "static-${p}p$(( N - p ))d" "$p" "$(( N - p ))" static "$(( PORT + i ))"
  i=$(( i + 1 ))
done
add_config "dynamic-${START_PREFILL}p$(( N - START_PREFILL ))d" "$START_PREFILL" \
  "$(( N - START_PREFILL ))" dynamic "$(( PORT + i ))"
if [[ ${#LABELS[@]} -eq 0 || ( ${#LABELS[@]} -lt 2 && ${#REFERENCES[@]} -eq 0 ) ]]; then
  echo "pd_ratio_bench.sh: --only must leave two or more configurations to compare, or one" \
    "with --reference figures" >&2
  exit 2
fi
for ref in "${REFERENCES[@]}"; do
  if [[ $ref != *=* ]]; then
    echo "pd_ratio_bench.sh: --reference $ref: expected LABEL=G1,...,OVERALL" >&2
    exit 2
  fi
done

BENCH=("$BATON_ABS" bench compare)
for k in "${!LABELS[@]}"; do BENCH+=(--launch "${LABELS[$k]}=${COMMANDS[$k]}"); done
for ph in "${PHASES[@]}"; do BENCH+=(--phase "$ph"); done
BENCH+=(--goodput "ttft:$TTFT_SLO_MS" "tpot:$TPOT_SLO_MS" --seed "$SEED" --timeout-s "$TIMEOUT_S"
        --launch-timeout-s 180 --launch-log-dir "$OUT_ABS/logs" --result-dir "$OUT_ABS/results")

{
  echo "# baton bench: dynamic vs static P/D ratio"
  echo
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ); host: $(nproc) hardware threads, $(uname -m);"
  echo "$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //')"
  echo
  echo "Clusters (started one at a time by \`baton bench compare --launch\`):"
  echo
  echo '```'
  for k in "${!LABELS[@]}"; do echo "${LABELS[$k]}: ${COMMANDS[$k]%% 2>&1 |*}"; done
  echo '```'
  echo
  echo "Workload and SLO: ${PHASES[*]/#/--phase } --goodput ttft:$TTFT_SLO_MS tpot:$TPOT_SLO_MS" \
    "--seed $SEED --timeout-s $TIMEOUT_S"
  echo
} > "$OUT/command.md"

# While the runs go on, records every change of each controller's last
# decision (its /cluster, twice a second) with the Unix time, holds included:
# DIR/logs/<label>.decisions. (Role changes are also in <label>.log.)
python3 - "$OUT_ABS/logs" "${LABELS[@]}" <<'PY' &
import json, os, re, sys, time, urllib.request
logs, labels = sys.argv[1], sys.argv[2:]
last = {}
while True:
    for label in labels:
        try:
            text = open(os.path.join(logs, label + ".log"), errors="replace").read()
        except OSError:
            continue
        m = re.search(r"controller  (http://127\.0\.0\.1:\d+)/cluster", text)
        if not m or "Stopping..." in text:
            continue
        try:
            with urllib.request.urlopen(m.group(1) + "/cluster", timeout=0.5) as r:
                c = json.load(r)
        except Exception:
            continue
        for g in c.get("groups", []):
            d = g.get("last_decision") or {}
            key = (label, g.get("group"))
            line = f"{d.get('action')} ({d.get('reason')}) {d.get('detail', '')}"
            if last.get(key) != line:
                last[key] = line
                with open(os.path.join(logs, label + ".decisions"), "a") as f:
                    f.write(f"{time.time():.3f} group {g.get('group')}: {line}\n")
    time.sleep(0.5)
PY
WATCHER=$!

echo "pd_ratio_bench.sh: ${#LABELS[@]} configuration(s) of $N instances: ${LABELS[*]}"
status=0
if [[ ${#LABELS[@]} -eq 1 ]]; then
  # One configuration: started here and measured by `baton bench` (compare
  # needs two targets), with the same workload and result files.
  if start_cluster "$OUT_ABS/logs/${LABELS[0]}.log" "${COMMANDS[0]}"; then
    SINGLE=("$BATON_ABS" bench --url "http://127.0.0.1:${PORTS[0]}" --label "${LABELS[0]}")
    for ph in "${PHASES[@]}"; do SINGLE+=(--phase "$ph"); done
    SINGLE+=(--goodput "ttft:$TTFT_SLO_MS" "tpot:$TPOT_SLO_MS" --seed "$SEED"
             --timeout-s "$TIMEOUT_S" --result-dir "$OUT_ABS/results")
    "${SINGLE[@]}" 2>&1 | tee "$OUT/bench.log" || status=$?
    # The cluster's process group: `baton up` and the line stamper.
    kill -TERM -- "-$UP_PID" 2>/dev/null || true
    deadline=$(( SECONDS + 30 ))
    while kill -0 "$UP_PID" 2>/dev/null && (( SECONDS < deadline )); do sleep 0.2; done
    kill -KILL -- "-$UP_PID" 2>/dev/null || true
    wait "$UP_PID" 2>/dev/null || true
  else
    status=1
  fi
else
  "${BENCH[@]}" 2>&1 | tee "$OUT/bench.log" || status=$?
fi
kill "$WATCHER" 2>/dev/null || true
wait "$WATCHER" 2>/dev/null || true

python3 - "$OUT_ABS" "$TTFT_SLO_MS" "$TPOT_SLO_MS" "${#REFERENCES[@]}" "${REFERENCES[@]}" \
    "${LABELS[@]}" <<'PY' | tee "$OUT/summary.md"
import datetime
import json
import os
import re
import sys

out, ttft, tpot = sys.argv[1], sys.argv[2], sys.argv[3]
nref = int(sys.argv[4])
references = sys.argv[5:5 + nref]
labels = sys.argv[5 + nref:]
print(open(os.path.join(out, "command.md")).read())
cal = os.path.join(out, "calibration", "calibration.md")
if os.path.exists(cal):
    print(open(cal).read())
results = {}
for label in labels:
    path = os.path.join(out, "results", label + "_phases.json")
    if os.path.exists(path):
        results[label] = json.load(open(path))
if not results:
    print("no results")
    sys.exit(1)
first = next(iter(results.values()))
phases = [p["name"] for p in first.get("phases", [])]
# Figures of an earlier run (--reference): goodput per phase, then overall.
earlier = set()
for ref in references:
    label, _, figures = ref.partition("=")
    values = [float(x) for x in figures.split(",")]
    if len(values) != len(phases) + 1:
        print(f"--reference {ref}: expected {len(phases) + 1} figures "
              f"({', '.join(phases)}, overall)")
        sys.exit(1)
    results[label] = {"request_goodput": values[-1],
                      "phases": [{"name": n, "request_goodput": v}
                                 for n, v in zip(phases, values)]}
    earlier.add(label)
    labels.append(label)
print(f"Goodput (req/s) under SLO TTFT <= {ttft} ms and TPOT <= {tpot} ms; each phase's "
      "requests over its own duration, overall over the whole run:")
print()
cols = phases + ["overall"]

def goodput(r, col):
    if col == "overall":
        return r.get("request_goodput")
    for p in r.get("phases", []):
        if p["name"] == col:
            return p.get("request_goodput")
    return None

def shape(col):
    if col == "overall":
        return "overall"
    for p in first["phases"]:
        if p["name"] == col:
            return (f"{col} ({p['duration_s']:g} s, {p['rate']:g} req/s, "
                    f"{p['input_len']} in / {p['output_len']} out)")
    return col

def start_time(r):
    # The run's start as Unix time (the result's "date" is UTC).
    d = r.get("date", "")
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            t = datetime.datetime.strptime(d, fmt).replace(tzinfo=datetime.timezone.utc)
            return t.timestamp()
        except ValueError:
            pass
    return None

# Role changes the controller made (dynamic) or advised (static), with their
# time from the start of the run.
change_re = re.compile(r"^group \S+: (decode_to_prefill|prefill_to_decode) |now serves|"
                       r"draining to change")
line_re = re.compile(r"^(\d+[.,]\d+) controller: (.*)$")
changes = {}
for label in labels:
    log = os.path.join(out, "logs", label + ".log")
    rows = []
    t0 = start_time(results[label]) if label in results else None
    if os.path.exists(log):
        for line in open(log, errors="replace"):
            m = line_re.match(line.strip())
            if not m or not change_re.search(m.group(2)):
                continue
            when = float(m.group(1).replace(",", "."))
            rel = f"{when - t0:7.1f} s" if t0 is not None else m.group(1)
            rows.append(f"{rel}  {m.group(2)}")
    changes[label] = rows

header = "| configuration | " + " | ".join(shape(c) for c in cols) + " | role changes |"
print(header)
print("|" + " --- |" + " ---: |" * len(cols) + " ---: |")
for label in labels:
    r = results.get(label)
    if r is None:
        print(f"| {label} | " + " | ".join("-" for _ in cols) + " | - |")
        continue
    done = sum(1 for x in changes.get(label, []) if "now serves" in x)
    vals = []
    for c in cols:
        g = goodput(r, c)
        vals.append("-" if g is None else f"{g:.2f}")
    n = str(done) if label.startswith("dynamic") else "0"
    name = label + (" (earlier run)" if label in earlier else "")
    print(f"| {name} | " + " | ".join(vals) + f" | {n} |")
dyn = [l for l in labels if l.startswith("dynamic") and l in results]
static = [l for l in labels if l.startswith("static") and l in results]
if dyn and static:
    d = results[dyn[0]]
    for name, pick in (("best", max), ("worst", min)):
        cells = []
        for c in cols:
            vals = [(goodput(results[s], c) or 0.0, s) for s in static]
            v, who = pick(vals)
            g = goodput(d, c) or 0.0
            cells.append(f"{g / v:.2f}x (vs {who})" if v > 0 else "-")
        print(f"| dynamic / {name} static | " + " | ".join(cells) + " | |")
    # The aim (issue 8): within 10% of the best static ratio in each phase,
    # and at least 1.3x the worst static ratio (overall).
    print()
    for c in cols:
        best = max(goodput(results[s], c) or 0.0 for s in static)
        worst = min(goodput(results[s], c) or 0.0 for s in static)
        g = goodput(d, c) or 0.0
        verdict = []
        if best > 0:
            verdict.append(f"{g / best:.2f}x the best static "
                           f"({'within' if g >= 0.9 * best else 'NOT within'} 10%)")
        verdict.append(f"{g / worst:.2f}x the worst" if worst > 0 else "the worst static had 0")
        print(f"- {c}: dynamic {g:.2f} req/s is " + ", ".join(verdict) +
              (f" ({'meets' if worst == 0 or g >= 1.3 * worst else 'misses'} >= 1.3x)"
               if c == "overall" else ""))
print()
print("Per configuration and phase (from the result files):")
print()
print("| configuration | phase | ok | failed | goodput req/s | mean TTFT ms | P99 TTFT ms | "
      "mean TPOT ms | P99 TPOT ms |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for label in labels:
    r = results.get(label)
    if r is None or label in earlier:
        continue
    for p in r.get("phases", []):
        print(f"| {label} | {p['name']} | {p['completed']} | {p['failed']} | "
              f"{p['request_goodput']:.2f} | {p['mean_ttft_ms']:.1f} | "
              f"{p.get('p99_ttft_ms', 0):.1f} | {p['mean_tpot_ms']:.1f} | "
              f"{p.get('p99_tpot_ms', 0):.1f} |")
print()
# The controller's decisions over time: each change of reason, with its
# numbers (from DIR/logs/<label>.decisions).
reasons = {}
for label in labels:
    path = os.path.join(out, "logs", label + ".decisions")
    rows = []
    t0 = start_time(results[label]) if label in results else None
    prev = None
    if os.path.exists(path):
        for line in open(path, errors="replace"):
            when, _, rest = line.strip().partition(" ")
            m = re.match(r"group \S+: (\S+ \(\S+\))", rest)
            key = m.group(1) if m else rest
            if key == prev:
                continue
            prev = key
            rel = f"{float(when) - t0:7.1f} s" if t0 is not None else when
            rows.append(f"{rel}  {rest}")
    reasons[label] = rows
for label in labels:
    if label in earlier:
        continue
    rows = changes.get(label, [])
    kind = "made" if label.startswith("dynamic") else "advised (ratio adjustment off)"
    print(f"Controller of {label}: role changes {kind}, seconds from the run's start:")
    print()
    print("```")
    for x in rows or ["(none)"]:
        print(x)
    print("```")
    print()
    print(f"Controller of {label}: its decision whenever the reason changed:")
    print()
    print("```")
    for x in reasons.get(label) or ["(none recorded)"]:
        print(x)
    print("```")
    print()
PY
exit $status
