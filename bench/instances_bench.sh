#!/usr/bin/env bash
# 1 vs N instances behind `gpuslice serve` on the host backend, with the
# `mlp` model of scripts/make_models.py (FP32 [-1,64] -> [-1,10], no
# batching): N = the number of CPU cores, N instances of the smallest 1g
# profile placed one per core ("N x 1 core"), against one instance of the
# profile holding every core ("1 x N cores"). Each layout is served by
# `gpuslice serve` (round robin) and loaded through its router with Triton's
# perf_analyzer (HTTP, binary tensors, sync mode) at concurrency 1, 4, 16,
# 64; or with wrk (JSON body) where perf_analyzer cannot run. Aggregate
# requests/s, p50 and p99, and the CPU used by the router, the workers and
# the load generator (from /proc). Layouts alternate, BENCH_REPS times; the
# table gives the median. Prints Markdown. Builds nothing.
#
# usage: bench/instances_bench.sh [PATH/TO/gpuslice]   (or GPUSLICE=...)
# env:   BENCH_CONC ("1 4 16 64"), BENCH_REPS (2), BENCH_WINDOW_MS (3000),
#        BENCH_N (nproc), BENCH_LOADGEN (perf_analyzer|wrk, default
#        perf_analyzer when it runs), BENCH_WRK_S (10),
#        PA_VENV (/tmp/pa-venv), PERF_ANALYZER (a binary to use),
#        GPUSLICE_HOST_CGROUP_ROOT (default none: affinity only).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
gpuslice=${1:-${GPUSLICE:-$src/build/gpuslice}}
conc_list=${BENCH_CONC:-1 4 16 64}
reps=${BENCH_REPS:-2}
window=${BENCH_WINDOW_MS:-3000}
wrk_s=${BENCH_WRK_S:-10}
ncores=${BENCH_N:-$(nproc)}
. "$src/bench/bench_lib.sh" # tmp, die, processes stopped at exit, and the rest
[ -x "$gpuslice" ] || die "no gpuslice binary at $gpuslice"
command -v curl >/dev/null || die "curl not found"

# The host backend, state in $tmp, a private copy of the binary; the
# profiles of this host: the smallest 1g one and the one holding all cores.
host_setup

loadgen=${BENCH_LOADGEN:-}
if [ "$loadgen" != wrk ]; then
  . "$src/bench/perf_analyzer_env.sh"
  if pa_find "${PA_VENV:-/tmp/pa-venv}"; then
    loadgen=perf_analyzer
  else
    [ "$loadgen" = perf_analyzer ] && die "$PA_WHY"
    echo "instances_bench: no perf_analyzer ($PA_WHY); using wrk" >&2
    loadgen=wrk
  fi
fi
[ "$loadgen" = wrk ] && ! command -v wrk >/dev/null && die "wrk not found"

if [ "$loadgen" = perf_analyzer ]; then
  machine_facts "load: $("$PERF_ANALYZER" --version 2>&1 | head -1), -i http (binary tensors), sync, ${window} ms windows"
else
  machine_facts "load: $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), JSON body, ${wrk_s} s"
fi

make_models
slices=7

# layout NAME: makes the instances of layout NAME (after destroying any).
layout() {
  "$gpuslice" destroy --all >/dev/null 2>&1 || true
  if [ "$1" = many ]; then
    # Core k of C is compute slice ceil(k*7/C) (host backend: slice s runs on
    # core s*C/7), so one 1g instance starting there per core.
    local k args=()
    for k in $(seq 0 $((ncores - 1))); do
      args+=("$profile_small:$(( (k * slices + ncores - 1) / ncores ))")
    done
    "$gpuslice" create "${args[@]}" >/dev/null || die "cannot create ${args[*]}"
  else
    "$gpuslice" create "$profile_all" >/dev/null || die "cannot create $profile_all"
  fi
}

# serve_and_check: start_serve (bench_lib.sh), then one mlp request through
# the router.
serve_and_check() {
  start_serve
  curl -sf -H 'Content-Type: application/json' -d @"$tmp/body.json" \
    "http://127.0.0.1:$port/v2/models/mlp/infer" | grep -q probabilities ||
    die "mlp infer through the router failed"
}

describe() { # one line per worker: its CPUs
  local p
  for p in "${worker_pids[@]}"; do
    echo "  - worker pid $p: CPUs $(taskset -pc "$p" | sed 's/.*: //')"
  done
}

python3 - "$tmp/body.json" "$tmp/post.lua" <<'PY'
import json, sys
body = json.dumps({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32",
                              "data": [((i * 37) % 101) / 101.0 for i in range(64)]}]},
                  separators=(",", ":"))
open(sys.argv[1], "w").write(body)
open(sys.argv[2], "w").write(
    'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
    "wrk.body = '%s'\n" % body +
    'done = function(s, lat, r)\n  io.write(string.format("RESULT %.1f %d %d %d\\n",'
    ' s.requests / (s.duration / 1e6), lat:percentile(50), lat:percentile(99),'
    ' s.errors.connect + s.errors.read + s.errors.write + s.errors.timeout + s.errors.status))\nend\n')
PY

now_ms() { date +%s%3N; }

# point LAYOUT C: one measurement through the router (CPU: ticks,
# run_timed and child_ticks of bench_lib.sh); appends
# "layout c rps p50 p99 cpu_router cpu_workers cpu_loadgen note" to $tmp/raw.
point() {
  local l=$1 c=$2 t0 t1 r0 r1 w0 w1 ms lk rps p50 p99 note=
  t0=$(now_ms); r0=$(ticks "$serve_pid"); w0=$(ticks "${worker_pids[@]}")
  if [ "$loadgen" = perf_analyzer ]; then
    if ! run_timed "$tmp/pa.out" "$PERF_ANALYZER" -m mlp -u "127.0.0.1:$port" \
        -i http --shape input:1,64 --concurrency-range "$c:$c" -p "$window" \
        -s 25 -r 8 -f "$tmp/pa.csv"; then
      # Not stable within 25 % in 8 windows (a shared box): take 3 windows.
      note='*'
      run_timed "$tmp/pa.out" "$PERF_ANALYZER" -m mlp -u "127.0.0.1:$port" \
        -i http --shape input:1,64 --concurrency-range "$c:$c" -p "$window" \
        -s 1000 -r 3 -f "$tmp/pa.csv" ||
        { cat "$tmp/pa.out" >&2; die "perf_analyzer failed"; }
    fi
    read -r rps p50 p99 < <(awk -F, '
      NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
      { printf "%.1f %d %d\n", $col["Inferences/Second"], $col["p50 latency"], $col["p99 latency"] }' "$tmp/pa.csv")
  else
    local th=2
    [ "$c" -lt 2 ] && th=1
    run_timed "$tmp/wrk.out" wrk -t "$th" -c "$c" -d "${wrk_s}s" --latency \
      -s "$tmp/post.lua" "http://127.0.0.1:$port/v2/models/mlp/infer" ||
      { cat "$tmp/wrk.out" >&2; die "wrk failed"; }
    local errs
    read -r rps p50 p99 errs < <(awk '/^RESULT/ { print $2, $3, $4, $5 }' "$tmp/wrk.out")
    [ "$errs" = 0 ] || note="$errs errors"
  fi
  t1=$(now_ms); r1=$(ticks "$serve_pid"); w1=$(ticks "${worker_pids[@]}")
  ms=$((t1 - t0))
  lk=$(child_ticks "$tmp/times")
  local cr=$(( (r1 - r0) * 100000 / (hz * ms) )) cw=$(( (w1 - w0) * 100000 / (hz * ms) ))
  local cl=$(( lk * 100000 / (hz * ms) ))
  echo "$l $c $rps $p50 $p99 $cr $cw $cl ${note:--}" >>"$tmp/raw"
  printf '  %-5s c=%-3s %8.0f req/s  p50 %6s us  p99 %6s us  CPU%%: router %s, workers %s, load generator %s %s\n' \
    "$l" "$c" "$rps" "$p50" "$p99" "$cr" "$cw" "$cl" "$note" >&2
}

: >"$tmp/raw"
label_many="$ncores x $profile_small (1 core each)"
label_one="1 x $profile_all ($ncores cores)"
for r in $(seq "$reps"); do
  for l in many one; do
    layout "$l"
    serve_and_check
    if [ "$r" = 1 ]; then
      [ "$l" = many ] && echo "- $label_many:" || echo "- $label_one:"
      describe
    fi
    echo "repeat $r/$reps: $l" >&2
    for c in $conc_list; do point "$l" "$c"; done
    stop_serve
  done
done
"$gpuslice" destroy --all >/dev/null 2>&1 || true
echo

# median LAYOUT C FIELD (bench_lib.sh): the median over the repeats.
echo "| concurrency | layout | req/s | p50 (us) | p99 (us) | CPU% router | CPU% workers | CPU% load gen |"
echo "|---:|---|---:|---:|---:|---:|---:|---:|"
for c in $conc_list; do
  for l in many one; do
    [ "$l" = many ] && name=$label_many || name=$label_one
    echo "| $c | $name | $(median "$l" "$c" 3) | $(median "$l" "$c" 4) |" \
      "$(median "$l" "$c" 5) | $(median "$l" "$c" 6) | $(median "$l" "$c" 7) | $(median "$l" "$c" 8) |"
  done
done
echo
echo "| concurrency | req/s, N x 1 core vs 1 x N cores | p99, N x 1 core vs 1 x N cores |"
echo "|---:|---:|---:|"
for c in $conc_list; do
  awk -v a="$(median many "$c" 3)" -v b="$(median one "$c" 3)" \
    -v x="$(median many "$c" 5)" -v y="$(median one "$c" 5)" -v c="$c" \
    'BEGIN { printf "| %s | %+.1f %% | %+.1f %% |\n", c, (a / b - 1) * 100, (x / y - 1) * 100 }'
done
echo
echo "Per run (layout c req/s p50 p99 CPU%: router workers loadgen; * = not"
echo "stable within 25 % over 8 windows, the last 3 windows taken):"
echo
sed 's/^/    /' "$tmp/raw"
echo
echo "Load generator, router and workers share the same $(nproc) cores (CPU% is"
echo "% of one core; the machine has $(( $(nproc) * 100 )))."
