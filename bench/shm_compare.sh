#!/usr/bin/env bash
# What system shared memory saves: Triton's perf_analyzer against one
# `gpuslice worker` serving big1m (bench/make_big_input_model.py: a 1 MiB
# FP32 input per request, a 4-byte output, almost no compute, CPU), with
# the inputs and outputs in the request and response bodies (binary
# tensors) and then in system shared memory (--shared-memory system), at
# concurrency 1 and 4, HTTP then gRPC, the two modes alternating (which
# goes first flips at every point). Prints a Markdown table of throughput
# and p50/p99 latency with shared memory's difference in %.
#
# GPU mode (the GPU machine has no PyPI, so no perf_analyzer): BENCH_PERF=
# gpuslice measures with `gpuslice perf` (the same flags, its own
# --shared-memory), BENCH_SHM=cuda puts the inputs in CUDA device memory
# (device 0, registered by IPC handle) and BENCH_KIND=KIND_GPU serves big1m
# on the CUDA provider, which takes a CUDA region's input on the GPU.
#
# usage: bench/shm_compare.sh PATH/TO/gpuslice
# env:   BENCH_WINDOW_MS (-p, default 3000), BENCH_CONC ("1 4"),
#        BENCH_PROTOCOLS ("http grpc"), BENCH_STABILITY (-s, 25),
#        BENCH_PERF (perf_analyzer | gpuslice), BENCH_SHM (system | cuda),
#        BENCH_KIND (KIND_CPU | KIND_GPU),
#        PA_VENV (default /tmp/gpuslice-bench-venv), PERF_ANALYZER.
set -u
gpuslice=${1:?usage: $0 PATH/TO/gpuslice}
src=$(cd "$(dirname "$0")/.." && pwd)
window=${BENCH_WINDOW_MS:-3000}
conc_list=${BENCH_CONC:-1 4}
protocols=${BENCH_PROTOCOLS:-http grpc}
stability=${BENCH_STABILITY:-25}
shm_kind=${BENCH_SHM:-system}
. "$src/bench/bench_lib.sh" # tmp, die, free_port, start_worker, machine_facts
if [ "${BENCH_PERF:-perf_analyzer}" = gpuslice ]; then
  perf=("$gpuslice" perf)
  perf_name="gpuslice perf"
else
  . "$src/bench/perf_analyzer_env.sh"
  pa_find "${PA_VENV:-/tmp/gpuslice-bench-venv}" || die "$PA_WHY"
  perf=("$PERF_ANALYZER")
  perf_name="perf_analyzer $("$PERF_ANALYZER" --version 2>&1 | head -1)"
fi
mkdir -p "$tmp/models"
python3 "$src/bench/make_big_input_model.py" --out "$tmp/models" \
  --kind "${BENCH_KIND:-KIND_CPU}" ||
  die "make_big_input_model.py failed (needs python3-onnx)"
gpuslice_src=$gpuslice
gport=$(free_port)
start_worker --grpc-port "$gport"

# point MODE PROTO CONC: "throughput p50 p99" (us) from perf_analyzer's CSV.
point() {
  local mode=$1 proto=$2 c=$3 u csv=$tmp/$1-$2-$3.csv shm=()
  [ "$proto" = grpc ] && u=127.0.0.1:$gport || u=127.0.0.1:$port
  [ "$mode" = shm ] && shm=(--shared-memory "$shm_kind")
  timeout 300 "${perf[@]}" -m big1m -u "$u" -i "$proto" "${shm[@]}" \
    --concurrency-range "$c" -p "$window" -s "$stability" -r 10 -f "$csv" \
    >"$csv.log" 2>&1
  # columns: 2 throughput; p50 is the 4th from the end, p99 the last
  awk -F, 'NR == 2 { printf "%s %s %s\n", $2, $(NF-3), $NF }' "$csv" 2>/dev/null |
    grep . || echo "- - -"
}
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || a == 0) print "-"; else printf "%+.1f%%", (b - a) * 100 / a }'; }

machine_facts "$perf_name, --shared-memory $shm_kind, ${BENCH_KIND:-KIND_CPU}"
echo "| protocol | concurrency | body infer/s | shm infer/s | diff | body p50 (us) | shm p50 (us) | diff | body p99 (us) | shm p99 (us) |"
echo "|---|---|---|---|---|---|---|---|---|---|"
flip=0
for proto in $protocols; do
  for c in $conc_list; do
    if [ $flip -eq 0 ]; then
      read -r b_t b_50 b_99 < <(point body "$proto" "$c")
      read -r s_t s_50 s_99 < <(point shm "$proto" "$c")
    else
      read -r s_t s_50 s_99 < <(point shm "$proto" "$c")
      read -r b_t b_50 b_99 < <(point body "$proto" "$c")
    fi
    flip=$((1 - flip))
    echo "| $proto | $c | $b_t | $s_t | $(pct "$b_t" "$s_t") | $b_50 | $s_50 | $(pct "$b_50" "$s_50") | $b_99 | $s_99 |"
  done
done
