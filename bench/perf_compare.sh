#!/usr/bin/env bash
# gpuslice perf next to Triton's perf_analyzer against the same
# `gpuslice worker` (Triton's `simple`, --threads 2) in the same run, at
# concurrency 1, 8 and 32, HTTP then gRPC, the two tools alternating (which
# one goes first flips at every point). Prints a Markdown table of
# throughput and p50 for both, with gpuslice's difference in %.
#
# usage: bench/perf_compare.sh PATH/TO/gpuslice
# env:   BENCH_MODEL (simple or classifier), BENCH_WINDOW_MS (-p, default 2000), BENCH_CONC ("1 8 32"),
#        BENCH_PROTOCOLS ("http grpc"), BENCH_STABILITY (-s, 10),
#        BENCH_PIN=1 (worker on CPU 1, the clients on CPU 0: the client's
#        own CPU cost then no longer slows the server), PA_VENV (default
#        /tmp/gpuslice-bench-venv), PERF_ANALYZER (a binary to use).
set -u
gpuslice=${1:?usage: $0 PATH/TO/gpuslice}
src=$(cd "$(dirname "$0")/.." && pwd)
window=${BENCH_WINDOW_MS:-2000}
conc_list=${BENCH_CONC:-1 8 32}
protocols=${BENCH_PROTOCOLS:-http grpc}
stability=${BENCH_STABILITY:-10}
# BENCH_MODEL: simple (the client's cost shows) or classifier (~0.4 ms of
# compute per request on the worker: the server sets the pace)
model=${BENCH_MODEL:-simple}
shape=()
[ "$model" = classifier ] && shape=(--shape input:1,512)
. "$src/bench/bench_lib.sh" # tmp, die, free_port, make_models, start_worker
pin_client=()
if [ "${BENCH_PIN:-0}" = 1 ]; then
  worker_cpus=1 pin_client=(taskset -c 0)
fi

. "$src/bench/perf_analyzer_env.sh"
pa_find "${PA_VENV:-/tmp/gpuslice-bench-venv}" || die "$PA_WHY"
make_models
echo '{"max_batch_size": 8}' >"$tmp/models/simple/config.json"
gport=$(free_port)
start_worker --grpc-port "$gport"

# point TOOL PROTO CONC: "throughput p50" from the tool's CSV (same flags).
point() {
  local tool=$1 proto=$2 c=$3 u csv=$tmp/$1-$2-$3.csv
  [ "$proto" = grpc ] && u=127.0.0.1:$gport || u=127.0.0.1:$port
  local args=(-m "$model" "${shape[@]}" -u "$u" -i "$proto" --concurrency-range "$c"
    -p "$window" -s "$stability" -r 20 -f "$csv")
  if [ "$tool" = pa ]; then
    timeout 300 "${pin_client[@]}" "$PERF_ANALYZER" "${args[@]}" >"$csv.log" 2>&1
  else
    timeout 300 "${pin_client[@]}" "$gpuslice" perf "${args[@]}" >"$csv.log" 2>&1
  fi
  # columns: 2 throughput; p50 is the 4th from the end
  awk -F, 'NR == 2 { printf "%s %s\n", $2, $(NF-3) }' "$csv" 2>/dev/null |
    grep . || echo "- -"
}
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || a == 0) print "-"; else printf "%+.1f%%", (b - a) * 100 / a }'; }

echo "| protocol | concurrency | perf_analyzer infer/s | gpuslice perf infer/s | diff | perf_analyzer p50 (us) | gpuslice perf p50 (us) | diff |"
echo "|---|---|---|---|---|---|---|---|"
flip=0
for proto in $protocols; do
  for c in $conc_list; do
    if [ $flip -eq 0 ]; then
      read -r pa_t pa_p < <(point pa "$proto" "$c")
      read -r gs_t gs_p < <(point gs "$proto" "$c")
    else
      read -r gs_t gs_p < <(point gs "$proto" "$c")
      read -r pa_t pa_p < <(point pa "$proto" "$c")
    fi
    flip=$((1 - flip))
    echo "| $proto | $c | $pa_t | $gs_t | $(pct "$pa_t" "$gs_t") | $pa_p | $gs_p | $(pct "$pa_p" "$gs_p") |"
  done
done
