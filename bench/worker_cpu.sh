#!/usr/bin/env bash
# The worker's own CPU time per request, by protocol (issue 14: "gRPC at
# least as fast as HTTP binary"). On a 2-core machine the load generator
# shares the cores with the worker, so requests/s also measures the client
# (perf_analyzer's gRPC client costs more CPU than its HTTP one); the
# worker's user+system time (/proc/PID/stat) divided by the requests it
# answered (its statistics) measures the server alone. Triton's `simple`
# model, --threads 2, perf_analyzer at concurrency 8; HTTP with JSON
# tensors, HTTP with binary tensors, gRPC; ROUNDS rounds, interleaved.
# With BENCH_WORKER_CPUS and BENCH_CLIENT_CPUS (taskset lists, e.g. 1 and
# 0) the worker and perf_analyzer run on separate cores, so that the
# client's own cost no longer takes CPU from the worker: where the worker's
# core is busy (worker CPU near 100 %) and the client's is not, requests/s
# is the worker's capacity on one core, whichever client drives it.
# Prints a Markdown table: median requests/s, worker CPU us/request, and
# the worker's and the client's CPU use (% of one core over the point).
#
# usage: bench/worker_cpu.sh PATH/TO/gpuslice
# env:   BENCH_WINDOW_MS (2000), BENCH_CONC (8), BENCH_ROUNDS (3),
#        BENCH_WORKER_CPUS, BENCH_CLIENT_CPUS (unset: no pinning),
#        BENCH_PA_ARGS ("-s 100 -r 5": a loaded machine never gets the
#        default 10 % stability; CPU per request does not need it),
#        BENCH_CLIENT=gpuslice: `gpuslice perf` (perf_analyzer's flags;
#        the binary under test's perf verb, or BENCH_CLIENT_BIN's) drives
#        the worker instead of perf_analyzer: a client whose gRPC costs no
#        more than its HTTP,
#        PA_VENV (venv holding perf_analyzer, default /tmp/gpuslice-bench-venv)
set -u
gpuslice=${1:?usage: $0 PATH/TO/gpuslice}
src=$(cd "$(dirname "$0")/.." && pwd)
window=${BENCH_WINDOW_MS:-2000}
conc=${BENCH_CONC:-8}
rounds=${BENCH_ROUNDS:-3}
. "$src/bench/bench_lib.sh" # tmp, die, free_port, make_models, start_worker
if [ "${BENCH_CLIENT:-}" = gpuslice ]; then
  PERF_ANALYZER=$tmp/gpuslice-perf # its flags are perf_analyzer's
  printf '#!/bin/sh\nexec %q perf "$@"\n' "$(realpath "${BENCH_CLIENT_BIN:-$gpuslice}")" >"$PERF_ANALYZER"
  chmod +x "$PERF_ANALYZER"
else
  . "$src/bench/perf_analyzer_env.sh"
  pa_find "${PA_VENV:-/tmp/gpuslice-bench-venv}" || die "$PA_WHY"
fi

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
make_models
echo '{"max_batch_size": 8}' >"$tmp/models/simple/config.json"
grpc_port=$(free_port)
worker_cpus=${BENCH_WORKER_CPUS:-} # start_worker pins the worker to them
client_pin=()
if [ -n "${BENCH_CLIENT_CPUS:-}" ]; then client_pin=(taskset -c "$BENCH_CLIENT_CPUS"); fi
start_worker --grpc-port "$grpc_port"
tck=$(getconf CLK_TCK)

# cpu_ticks: the worker's utime + stime (fields 14 and 15 of its stat line,
# counted after the command name, which may hold spaces).
cpu_ticks() { sed 's/.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }'; }
served() {
  curl -sf "127.0.0.1:$port/v2/models/simple/stats" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["model_stats"][0]["inference_stats"]["success"]["count"])'
}

# point LABEL -- perf_analyzer args: one row
# "label|rps|worker us per request|worker CPU %|client CPU %".
point() {
  local label=$1 t0 t1 n0 n1 rps w0 w1
  shift 2
  t0=$(cpu_ticks) n0=$(served) w0=$(date +%s%N)
  # the subshell's `times` gives perf_analyzer's user and system time
  (
    "${client_pin[@]}" "$PERF_ANALYZER" -m simple --concurrency-range "$conc:$conc" \
      -p "$window" -f "$tmp/pa.csv" ${BENCH_PA_ARGS:--s 100 -r 5} "$@" >"$tmp/pa.out" 2>&1
    st=$?
    times >"$tmp/pa.times"
    exit "$st"
  ) || die "perf_analyzer $label: $(tail -2 "$tmp/pa.out")"
  t1=$(cpu_ticks) n1=$(served) w1=$(date +%s%N)
  rps=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    { printf "%.0f", $col["Inferences/Second"] }' "$tmp/pa.csv")
  awk -v l="$label" -v r="$rps" -v t=$((t1 - t0)) -v n=$((n1 - n0)) -v hz="$tck" \
    -v c="$(child_ticks "$tmp/pa.times")" -v s=$(((w1 - w0) / 1000000)) \
    'BEGIN { printf "%s|%s|%.1f|%.0f|%.0f\n", l, r, n ? t * 1e6 / hz / n : 0,
             t * 1e5 / hz / s, c * 1e5 / hz / s }'
}

http=(-u "127.0.0.1:$port" -i http)
for _ in $(seq "$rounds"); do
  point "HTTP, JSON tensors" -- "${http[@]}" --input-tensor-format json --output-tensor-format json
  point "HTTP, binary tensors" -- "${http[@]}"
  point "gRPC" -- -u "127.0.0.1:$grpc_port" -i grpc
done >"$tmp/rows"
echo "| endpoint (c=$conc) | requests/s (median) | worker CPU us/request (median) | worker CPU % | client CPU % |"
echo "|---|---:|---:|---:|---:|"
for l in "HTTP, JSON tensors" "HTTP, binary tensors" "gRPC"; do
  grep -F "$l|" "$tmp/rows" | python3 -c '
import statistics, sys
rows = [line.strip().split("|") for line in sys.stdin]
med = lambda k: statistics.median(float(r[k]) for r in rows)
print("| %s | %.0f | %.1f | %.0f | %.0f |" % (rows[0][0], med(1), med(2), med(3), med(4)))'
done
echo
pinning="not pinned"
if [ -n "$worker_cpus${BENCH_CLIENT_CPUS:-}" ]; then
  pinning="worker on CPU ${worker_cpus:-any}, client on CPU ${BENCH_CLIENT_CPUS:-any}"
fi
echo "$(nproc) CPUs, $(date -u '+%Y-%m-%d %H:%M UTC'), $rounds rounds, ${window} ms windows," \
  "$pinning, load average $load_start at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end," \
  "$([ "${BENCH_CLIENT:-}" = gpuslice ] && echo "client: gpuslice perf" ||
    "$PERF_ANALYZER" --version 2>&1 | head -1)"
