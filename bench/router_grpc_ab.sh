#!/usr/bin/env bash
# The router's gRPC front, before/after (issue 14): `gpuslice perf -i grpc`
# through `gpuslice serve` (two workers on the host backend, the `simple`
# model of scripts/make_models.py), binaries A and B in turn, A/B/A/B...,
# so that both see the same machine and load. Prints one line per run and
# the medians (infer/s, average latency, the serve process's CPU time per
# request it proxied; a run perf could not measure, 0, is left out) and the load average. perf runs 3 windows of 3 s and takes
# them whatever their spread (-s 1000): on a loaded machine the stability
# rule would fail most runs.
# usage: bench/router_grpc_ab.sh A_BINARY B_BINARY [ROUNDS [CONCURRENCY]]
set -u
[ $# -ge 2 ] || { echo "usage: $0 A_BINARY B_BINARY [ROUNDS [CONCURRENCY]]" >&2; exit 2; }
bin_a=$(realpath "$1") bin_b=$(realpath "$2") rounds=${3:-3} conc=${4:-16}
export GS_SOURCE_DIR
GS_SOURCE_DIR=$(cd "$(dirname "$0")/.." && pwd)
export GPUSLICE=$bin_a
. "$GS_SOURCE_DIR/tests/integration/serve_lib.sh"

# router_ticks: CPU ticks (user + system) the serve process used so far.
router_ticks() {
  awk '{print $14 + $15}' "/proc/$serve_pid/stat"
}

# proxied: requests the router sent to its workers so far.
proxied() {
  status_json | python3 -c "import json,sys
print(sum(w['requests'] for w in json.load(sys.stdin)['workers']))"
}

# run_one BINARY: serve and perf from BINARY; prints "infer/s latency_us
# router_cpu_us_per_request".
run_one() {
  GPUSLICE=$1
  start_serve --policy round_robin
  local t0 r0 t1 r1
  t0=$(router_ticks) r0=$(proxied)
  "$1" perf -m simple -i grpc -u "127.0.0.1:$grpc_port" \
    --shape INPUT0:1,16 --shape INPUT1:1,16 \
    --concurrency-range "$conc:$conc:1" -p 3000 -s 1000 -r 3 \
    >"$tmp/perf.out" 2>&1 || { echo "perf failed:" >&2; cat "$tmp/perf.out" >&2; }
  t1=$(router_ticks) r1=$(proxied)
  kill "$serve_pid" && wait "$serve_pid" 2>/dev/null
  serve_pid=
  awk -v dt=$((t1 - t0)) -v dr=$((r1 - r0)) -v hz="$(getconf CLK_TCK)" \
    '/^Concurrency:/ {t=$4; l=$7} END {printf "%.0f %.0f %.1f\n", t, l,
      dr ? dt * 1e6 / hz / dr : 0}' FS='[ ,]+' "$tmp/perf.out"
}

: >"$tmp/runs"
for r in $(seq "$rounds"); do
  for side in A B; do
    bin=$bin_a
    [ "$side" = B ] && bin=$bin_b
    res=$(run_one "$bin")
    echo "round $r $side: $res (load $(cut -d' ' -f1-3 /proc/loadavg))"
    case $res in 0\ *) ;; *) echo "$side $res" >>"$tmp/runs" ;; esac
  done
done
for side in A B; do
  # each column's own median
  for col in 2 3 4; do
    awk -v s="$side" -v c=$col '$1 == s {print $c}' "$tmp/runs" | sort -g |
      awk '{v[NR]=$1} END {printf "%s ", NR ? v[int((NR+1)/2)] : "-"}'
  done | awk -v s="$side" '{printf "median %s: %s infer/s, %s us, router %s CPU us/request\n", s, $1, $2, $3}'
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
