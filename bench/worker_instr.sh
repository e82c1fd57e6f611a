#!/usr/bin/env bash
# The worker's user-space instructions per request, counted by valgrind's
# callgrind: a measure the machine's load does not move (req/s on a shared
# 2-core machine swings 20 %; this repeats to within 1 %). For each binary
# given and each endpoint (HTTP with binary tensors, HTTP with JSON tensors,
# gRPC), the worker runs Triton's `simple` under callgrind, gets 200
# requests of warm-up, then perf_analyzer at concurrency 1 for 3 windows;
# the counts taken over that run are divided by the requests the model's
# statistics counted. Kernel time (syscalls, wake-ups) is not in the count:
# read it beside bench/worker_cpu.sh. Prints a Markdown table, one column
# per binary. Builds nothing.
#
# usage: bench/worker_instr.sh PATH/TO/gpuslice [PATH/TO/other ...]
# env:   BENCH_PROTOCOLS ("http json grpc"), BENCH_WINDOW_MS (2000),
#        BENCH_KEEP (a directory: the callgrind files are copied there, one
#        per binary and endpoint, for callgrind_annotate),
#        PA_VENV (venv holding perf_analyzer, default /tmp/gpuslice-bench-venv)
set -u
[ $# -ge 1 ] || { echo "usage: $0 PATH/TO/gpuslice [PATH/TO/other ...]" >&2; exit 2; }
src=$(cd "$(dirname "$0")/.." && pwd)
gpuslice=$1 # bench_lib.sh wants one
protocols=${BENCH_PROTOCOLS:-http json grpc}
window=${BENCH_WINDOW_MS:-2000}
. "$src/bench/bench_lib.sh" # tmp, die, free_port, make_models, stop_at_exit
. "$src/bench/perf_analyzer_env.sh"
pa_find "${PA_VENV:-/tmp/gpuslice-bench-venv}" || die "$PA_WHY"
command -v valgrind >/dev/null && command -v callgrind_control >/dev/null ||
  die "valgrind not found (apt-get install valgrind)"

make_models
echo '{"max_batch_size": 8}' >"$tmp/models/simple/config.json"

# count BIN PROTO: prints the instructions per request.
count() {
  local bin=$1 proto=$2 gport cg=$tmp/cg.out vpid
  gport=$(free_port)
  rm -f "$cg"* "$tmp/log"
  valgrind --tool=callgrind --callgrind-out-file="$cg" "$bin" worker \
    --model-repository "$tmp/models" --http-port 0 --grpc-port "$gport" \
    --metrics-port 0 --threads 2 2>"$tmp/log" &
  vpid=$!
  stop_at_exit "$vpid"
  wait_http_port "$tmp/log" 600 ||
    { cat "$tmp/log" >&2; die "worker did not start under valgrind"; }
  local args
  case $proto in
  http) args=(-u "127.0.0.1:$port" -i http) ;;
  json) args=(-u "127.0.0.1:$port" -i http --input-tensor-format json
    --output-tensor-format json) ;;
  grpc) args=(-u "127.0.0.1:$gport" -i grpc) ;;
  *) die "unknown endpoint $proto (http, json, grpc)" ;;
  esac
  "$PERF_ANALYZER" -m simple "${args[@]}" --concurrency-range 1:1 -p 500 \
    -s 100 -r 2 >/dev/null 2>&1 # warm-up: allocator, caches, first plans
  callgrind_control -z "$vpid" >/dev/null 2>&1
  local c0 c1
  c0=$(stats_count "$port")
  "$PERF_ANALYZER" -m simple "${args[@]}" --concurrency-range 1:1 \
    -p "$window" -s 100 -r 3 >"$tmp/pa.out" 2>&1
  c1=$(stats_count "$port")
  callgrind_control -d "$vpid" >/dev/null 2>&1
  kill "$vpid" 2>/dev/null
  wait "$vpid" 2>/dev/null
  local dump total
  dump=$(ls "$cg".* 2>/dev/null | head -1)
  [ -n "$dump" ] || die "no callgrind dump for $bin $proto"
  total=$(awk '/^(summary|totals):/ { print $2; exit }' "$dump")
  if [ -n "${BENCH_KEEP:-}" ]; then
    mkdir -p "$BENCH_KEEP"
    cp "$dump" "$BENCH_KEEP/$(echo "$bin" | tr / _).$proto.callgrind"
  fi
  [ "$c1" -gt "$c0" ] || die "no requests counted for $bin $proto: $(tail -3 "$tmp/pa.out")"
  echo $((total / (c1 - c0)))
}

stats_count() {
  curl -s "http://127.0.0.1:$1/v2/models/simple/stats" | python3 -c \
    'import json,sys; print(json.load(sys.stdin)["model_stats"][0]["inference_count"])'
}

declare -A result
for bin in "$@"; do
  for proto in $protocols; do
    result[$bin,$proto]=$(count "$bin" "$proto") || exit 1
  done
done

printf '| instructions per request |'
for bin in "$@"; do printf ' %s |' "$bin"; done
printf '\n|---|'
for _ in "$@"; do printf -- '---:|'; done
echo
for proto in $protocols; do
  case $proto in
  http) label="HTTP, binary tensors" ;;
  json) label="HTTP, JSON tensors" ;;
  grpc) label="gRPC" ;;
  esac
  printf '| %s |' "$label"
  for bin in "$@"; do printf ' %s |' "${result[$bin,$proto]}"; done
  echo
done
echo
echo "$(nproc) CPUs, $(date -u '+%Y-%m-%d %H:%M') UTC, simple, perf_analyzer c=1, $window ms windows, $("$PERF_ANALYZER" --version 2>&1 | head -1)"
