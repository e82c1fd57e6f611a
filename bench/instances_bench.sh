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
die() { echo "instances_bench: $*" >&2; exit 1; }
[ -x "$gpuslice" ] || die "no gpuslice binary at $gpuslice"
command -v curl >/dev/null || die "curl not found"

tmp=$(mktemp -d)
export GPUSLICE_STATE_DIR=$tmp/state GPUSLICE_BACKEND=host
export GPUSLICE_HOST_CGROUP_ROOT=${GPUSLICE_HOST_CGROUP_ROOT:-none}
serve_pid=
load_pid=
worker_pids=()
stop_pid() { # stop_pid PID: TERM, up to 10 s, then KILL
  local p=$1
  kill -0 "$p" 2>/dev/null || return 0
  kill "$p" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$p" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}
stop_serve() {
  [ -n "$serve_pid" ] && stop_pid "$serve_pid"
  serve_pid=
  local p
  for p in "${worker_pids[@]}"; do stop_pid "$p"; done
  worker_pids=()
}
cleanup() {
  set +e
  [ -n "$load_pid" ] && stop_pid "$load_pid"
  stop_serve
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# A private copy, so that a rebuild of the tree during the run cannot mix
# binaries (serve starts its workers from its own executable).
mkdir -p "$tmp/bin"
cp "$gpuslice" "$tmp/bin/gpuslice"
gpuslice_src=$gpuslice
gpuslice=$tmp/bin/gpuslice

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

echo "## machine"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "- nproc: $(nproc); CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1)" \
  "($(lscpu | sed -n 's/^Hypervisor vendor: *//p' | head -1) guest)"
echo "- kernel: $(uname -sr); OS: $(. /etc/os-release && echo "$PRETTY_NAME")"
if [ "$loadgen" = perf_analyzer ]; then
  echo "- gpuslice: $gpuslice_src (built $(date -u -r "$gpuslice_src" '+%H:%M UTC'), sha256 $(sha256sum "$gpuslice" | cut -c1-12)); load: $("$PERF_ANALYZER" --version 2>&1 | head -1)," \
    "-i http (binary tensors), sync, ${window} ms windows"
else
  echo "- gpuslice: $gpuslice_src (built $(date -u -r "$gpuslice_src" '+%H:%M UTC'), sha256 $(sha256sum "$gpuslice" | cut -c1-12)); load: $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), JSON body, ${wrk_s} s"
fi
echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

python3 "$src/scripts/make_models.py" --out "$tmp/models" >/dev/null ||
  die "make_models.py failed (needs python3-onnx)"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
profile_small=$("$gpuslice" profiles | awk '$2 == "MIG" && $3 ~ /^1g\.[0-9]+gb$/ { print $3; exit }')
profile_all=$("$gpuslice" profiles | awk '$2 == "MIG" && $3 ~ /^7g\./ { print $3; exit }')
[ -n "$profile_small" ] && [ -n "$profile_all" ] || die "no 1g/7g host profiles"
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

start_serve() {
  port=$(free_port)
  "$gpuslice" serve --model-repository "$tmp/models" --http-port "$port" \
    --grpc-port 0 --policy round_robin >"$tmp/serve.log" 2>&1 &
  serve_pid=$!
  local ok=
  for _ in $(seq 600); do
    grep -q "gpuslice serve: ready" "$tmp/serve.log" && { ok=1; break; }
    kill -0 "$serve_pid" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$ok" ] || { cat "$tmp/serve.log" >&2; die "serve did not start"; }
  curl -sf "http://127.0.0.1:$port/gpuslice/v1/workers" >"$tmp/workers.json"
  mapfile -t worker_pids < <(python3 -c 'import json,sys
for w in json.load(open(sys.argv[1]))["workers"]: print(w["pid"])' "$tmp/workers.json")
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

ticks() { # utime+stime of the processes, clock ticks
  local p t=0 v
  for p in "$@"; do
    v=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null || echo 0)
    t=$((t + v))
  done
  echo "$t"
}
hz=$(getconf CLK_TCK)
now_ms() { date +%s%3N; }

# point LAYOUT C: one measurement through the router; appends
# "layout c rps p50 p99 cpu_router cpu_workers cpu_loadgen note" to $tmp/raw.
point() {
  local l=$1 c=$2 t0 t1 r0 r1 w0 w1 ms lk rps p50 p99 note=
  t0=$(now_ms); r0=$(ticks "$serve_pid"); w0=$(ticks "${worker_pids[@]}")
  if [ "$loadgen" = perf_analyzer ]; then
    ( "$PERF_ANALYZER" -m mlp -u "127.0.0.1:$port" -i http --shape input:1,64 \
        --concurrency-range "$c:$c" -p "$window" -s 25 -r 8 \
        -f "$tmp/pa.csv" >"$tmp/pa.out" 2>&1; rc=$?; times >"$tmp/times"; exit $rc ) &
    load_pid=$!
    if ! wait "$load_pid"; then
      # Not stable within 25 % in 8 windows (a shared box): take 3 windows.
      note='*'
      ( "$PERF_ANALYZER" -m mlp -u "127.0.0.1:$port" -i http --shape input:1,64 \
          --concurrency-range "$c:$c" -p "$window" -s 1000 -r 3 \
          -f "$tmp/pa.csv" >"$tmp/pa.out" 2>&1; rc=$?; times >"$tmp/times"; exit $rc ) &
      load_pid=$!
      wait "$load_pid" || { cat "$tmp/pa.out" >&2; die "perf_analyzer failed"; }
    fi
    read -r rps p50 p99 < <(awk -F, '
      NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
      { printf "%.1f %d %d\n", $col["Inferences/Second"], $col["p50 latency"], $col["p99 latency"] }' "$tmp/pa.csv")
  else
    local th=2
    [ "$c" -lt 2 ] && th=1
    ( wrk -t "$th" -c "$c" -d "${wrk_s}s" --latency -s "$tmp/post.lua" \
        "http://127.0.0.1:$port/v2/models/mlp/infer" >"$tmp/wrk.out" 2>&1; rc=$?
      times >"$tmp/times"; exit $rc ) &
    load_pid=$!
    wait "$load_pid" || { cat "$tmp/wrk.out" >&2; die "wrk failed"; }
    local errs
    read -r rps p50 p99 errs < <(awk '/^RESULT/ { print $2, $3, $4, $5 }' "$tmp/wrk.out")
    [ "$errs" = 0 ] || note="$errs errors"
  fi
  load_pid=
  t1=$(now_ms); r1=$(ticks "$serve_pid"); w1=$(ticks "${worker_pids[@]}")
  ms=$((t1 - t0))
  lk=$(awk -v hz="$hz" 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) {
         split($i, a, /[ms]/); t += a[1] * 60 + a[2] } printf "%d", t * hz }' "$tmp/times")
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
    start_serve
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

median() { # median LAYOUT C FIELD
  awk -v l="$1" -v c="$2" -v f="$3" '$1 == l && $2 == c { v[++k] = $f }
    END { if (!k) { print "-"; exit }
          for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++)
            if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
          m = (k % 2) ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2
          printf "%.0f", m }' "$tmp/raw"
}
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
