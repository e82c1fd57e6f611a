#!/usr/bin/env bash
# The worker's own CPU time per request, by protocol (issue 14: "gRPC at
# least as fast as HTTP binary"). On a 2-core machine the load generator
# shares the cores with the worker, so requests/s also measures the client
# (perf_analyzer's gRPC client costs more CPU than its HTTP one); the
# worker's user+system time (/proc/PID/stat) divided by the requests it
# answered (its statistics) measures the server alone. Triton's `simple`
# model, --threads 2, perf_analyzer at concurrency 8; HTTP with JSON
# tensors, HTTP with binary tensors, gRPC; ROUNDS rounds, interleaved.
# Prints a Markdown table: median requests/s and worker CPU us/request.
#
# usage: bench/worker_cpu.sh PATH/TO/gpuslice
# env:   BENCH_WINDOW_MS (2000), BENCH_CONC (8), BENCH_ROUNDS (3),
#        BENCH_PA_ARGS ("-s 100 -r 5": a loaded machine never gets the
#        default 10 % stability; CPU per request does not need it),
#        PA_VENV (venv holding perf_analyzer, default /tmp/gpuslice-bench-venv)
set -u
gpuslice=${1:?usage: $0 PATH/TO/gpuslice}
src=$(cd "$(dirname "$0")/.." && pwd)
window=${BENCH_WINDOW_MS:-2000}
conc=${BENCH_CONC:-8}
rounds=${BENCH_ROUNDS:-3}
. "$src/bench/bench_lib.sh" # tmp, die, free_port, make_models, start_worker
. "$src/bench/perf_analyzer_env.sh"
pa_find "${PA_VENV:-/tmp/gpuslice-bench-venv}" || die "$PA_WHY"

make_models
echo '{"max_batch_size": 8}' >"$tmp/models/simple/config.json"
grpc_port=$(free_port)
start_worker --grpc-port "$grpc_port"
tck=$(getconf CLK_TCK)

# cpu_ticks: the worker's utime + stime (fields 14 and 15 of its stat line,
# counted after the command name, which may hold spaces).
cpu_ticks() { sed 's/.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }'; }
served() {
  curl -sf "127.0.0.1:$port/v2/models/simple/stats" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["model_stats"][0]["inference_stats"]["success"]["count"])'
}

# point LABEL -- perf_analyzer args: one row "label rps us_per_request".
point() {
  local label=$1 t0 t1 n0 n1 rps
  shift 2
  t0=$(cpu_ticks) n0=$(served)
  "$PERF_ANALYZER" -m simple --concurrency-range "$conc:$conc" -p "$window" \
    -f "$tmp/pa.csv" ${BENCH_PA_ARGS:--s 100 -r 5} "$@" >"$tmp/pa.out" 2>&1 || die "perf_analyzer $label: $(tail -2 "$tmp/pa.out")"
  t1=$(cpu_ticks) n1=$(served)
  rps=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    { printf "%.0f", $col["Inferences/Second"] }' "$tmp/pa.csv")
  awk -v l="$label" -v r="$rps" -v t=$((t1 - t0)) -v n=$((n1 - n0)) -v hz="$tck" \
    'BEGIN { printf "%s|%s|%.1f\n", l, r, n ? t * 1e6 / hz / n : 0 }'
}

http=(-u "127.0.0.1:$port" -i http)
for _ in $(seq "$rounds"); do
  point "HTTP, JSON tensors" -- "${http[@]}" --input-tensor-format json --output-tensor-format json
  point "HTTP, binary tensors" -- "${http[@]}"
  point "gRPC" -- -u "127.0.0.1:$grpc_port" -i grpc
done >"$tmp/rows"
echo "| endpoint (c=$conc) | requests/s (median) | worker CPU us/request (median) |"
echo "|---|---:|---:|"
for l in "HTTP, JSON tensors" "HTTP, binary tensors" "gRPC"; do
  grep -F "$l|" "$tmp/rows" | python3 -c '
import statistics, sys
rows = [line.strip().split("|") for line in sys.stdin]
print("| %s | %.0f | %.1f |" % (rows[0][0], statistics.median(float(r[1]) for r in rows),
      statistics.median(float(r[2]) for r in rows)))'
done
echo
echo "$(nproc) CPUs, $(date -u '+%Y-%m-%d %H:%M UTC'), $rounds rounds, ${window} ms windows," \
  "$("$PERF_ANALYZER" --version 2>&1 | head -1)"
