#!/usr/bin/env bash
# Throughput and latency of `gpuslice worker` (Triton's `simple` model,
# --threads 2) at concurrency 1, 8 and 64, with Triton's perf_analyzer as
# the load generator: HTTP with JSON tensors, HTTP with binary tensors, and
# gRPC when the binary has --grpc-port. In the same run, wrk against
# GET /v2/health/live gives the ceiling of the worker's HTTP stack (no JSON,
# no model) on the same cores. Prints a Markdown table. Builds nothing.
#
# usage: bench/worker_bench.sh PATH/TO/gpuslice
# env:   BENCH_WINDOW_MS (perf_analyzer window, default 2000: a point is at
#        least 3 windows), BENCH_CONC ("1 8 64"), BENCH_WRK_S (5),
#        PA_VENV (venv holding perf_analyzer, made if missing,
#        default /tmp/gpuslice-bench-venv), PERF_ANALYZER (a binary to use).
set -u
gpuslice=${1:?usage: $0 PATH/TO/gpuslice}
src=$(cd "$(dirname "$0")/.." && pwd)
window=${BENCH_WINDOW_MS:-2000}
conc_list=${BENCH_CONC:-1 8 64}
wrk_s=${BENCH_WRK_S:-5}
. "$src/bench/bench_lib.sh" # tmp, die, free_port, make_models, start_worker, to_us

. "$src/bench/perf_analyzer_env.sh"
pa_find "${PA_VENV:-/tmp/gpuslice-bench-venv}" || die "$PA_WHY"
command -v wrk >/dev/null || die "wrk not found (apt-get install wrk)"

make_models
echo '{"max_batch_size": 8}' >"$tmp/models/simple/config.json"

grpc_args=()
grpc_port=
if "$gpuslice" worker --help 2>&1 | grep -q -- --grpc-port; then
  grpc_port=$(free_port)
  grpc_args=(--grpc-port "$grpc_port")
fi
start_worker "${grpc_args[@]}"

# pa_point LABEL CONC -- perf_analyzer args: one row "label|c|rps|p50|p99".
pa_point() {
  local label=$1 c=$2
  shift 3
  if ! "$PERF_ANALYZER" -m simple --concurrency-range "$c:$c" -p "$window" \
    -f "$tmp/pa.csv" "$@" >"$tmp/pa.out" 2>&1; then
    echo "$label|$c|failed: $(grep -m1 -iE 'fail|error' "$tmp/pa.out")||"
    return
  fi
  # Columns by name: the server columns come and go with "statistics".
  awk -F, -v l="$label" -v c="$c" '
    NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    { printf "%s|%s|%.0f|%.0f|%.0f\n", l, c, $col["Inferences/Second"],
        $col["p50 latency"], $col["p99 latency"] }' "$tmp/pa.csv"
}

wrk_point() {
  local c=$1 t=2
  [ "$c" -lt 2 ] && t=1
  wrk -t "$t" -c "$c" -d "${wrk_s}s" --latency \
    "http://127.0.0.1:$port/v2/health/live" >"$tmp/wrk.out" 2>&1 ||
    { echo "wrk GET /v2/health/live|$c|failed||"; return; }
  local rps p50 p99
  rps=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$tmp/wrk.out")
  p50=$(awk '$1 == "50%" { print $2 }' "$tmp/wrk.out" | to_us)
  p99=$(awk '$1 == "99%" { print $2 }' "$tmp/wrk.out" | to_us)
  echo "wrk GET /v2/health/live (HTTP-stack ceiling)|$c|$rps|$p50|$p99"
}

rows=()
http=(-u "127.0.0.1:$port" -i http)
for c in $conc_list; do
  rows+=("$(pa_point "HTTP, JSON tensors" "$c" -- "${http[@]}" \
    --input-tensor-format json --output-tensor-format json)")
done
for c in $conc_list; do
  rows+=("$(pa_point "HTTP, binary tensors" "$c" -- "${http[@]}")")
done
if [ -n "$grpc_port" ]; then
  for c in $conc_list; do
    rows+=("$(pa_point "gRPC" "$c" -- -u "127.0.0.1:$grpc_port" -i grpc)")
  done
fi
for c in $conc_list; do rows+=("$(wrk_point "$c")"); done

echo "| endpoint | concurrency | requests/s | p50 (us) | p99 (us) |"
echo "|---|---:|---:|---:|---:|"
for r in "${rows[@]}"; do
  IFS='|' read -r l c rps p50 p99 <<<"$r"
  echo "| $l | $c | $rps | $p50 | $p99 |"
done
echo
echo "load generator: $("$PERF_ANALYZER" --version 2>&1 | head -1), sync mode" \
  "(one thread per concurrent request), ${window} ms windows; $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)" \
  "for ${wrk_s} s per point"
[ -n "$grpc_port" ] || echo "gRPC: not available in this build"
