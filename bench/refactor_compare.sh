#!/usr/bin/env bash
# Before/after of a refactor in one run on one machine (issue 14): builds
# BEFORE (a git revision) and AFTER (a source tree) the same way (Release,
# out of tree, the CLI only), then runs each benchmark on the two binaries
# in turn, A/B/A/B, so that both sides see the same machine, load and
# temperature:
#   - the router against nginx, two workers, c=64 and c=256
#     (bench/router_bench.sh, part b);
#   - the worker's req/s over HTTP with JSON tensors, HTTP with binary
#     tensors and gRPC, perf_analyzer as the client (bench/worker_bench.sh);
#   - gpuslice perf next to perf_analyzer against the same worker, HTTP and
#     gRPC (bench/perf_compare.sh).
# Prints one Markdown table: metric, before, after, after/before (the median
# over the rounds of each side; "x / y" rows are ratios taken per run).
#
# usage: bench/refactor_compare.sh [BEFORE_REV [AFTER_TREE]]
#        bench/refactor_compare.sh --render RESULTS.csv   (the table only)
#   BEFORE_REV  default c189baf (issue 14's base), resolved in AFTER_TREE's
#               repository and taken with `git archive` (the tree as
#               committed).
#   AFTER_TREE  default this checkout, built as it is (uncommitted changes
#               included).
# env: BENCH_QUICK=1   short points, one concurrency (8): ~4 min of
#                      measuring on 2 cores once both sides are built;
#                      default: the full set, ~15 min.
#      BENCH_ROUNDS    A/B rounds (2: A/B/A/B).
#      BENCH_CACHE     where sources and builds are kept between runs
#                      (default AFTER_TREE/build/refactor_compare; a BEFORE
#                      revision is built once).
#      BENCH_JOBS      ninja -j (default nproc).
#      BENCH_ONLY      "router worker perf" (default all three).
#      BENCH_BUILD_ONLY=1  build both sides, print the binaries, stop.
#      PA_VENV, PERF_ANALYZER as in bench/perf_analyzer_env.sh.
# The raw numbers stay in BENCH_CACHE/last/results.csv (metric,side,value)
# with each script's output beside it.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

# render CSV: the table from "metric,side,value" lines (a header line
# "metric,..." is skipped; values that are not numbers are left out).
render() {
  awk -F, '
    $1 == "metric" { next }
    NF >= 3 && $3 ~ /^[0-9]+([.][0-9]+)?([eE][-+]?[0-9]+)?$/ {
      if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 }
      k = $1 SUBSEP $2
      v[k, ++cnt[k]] = $3 + 0
    }
    function median(k,   i, j, t, c, a) {
      c = cnt[k]
      if (!c) return "-"
      for (i = 1; i <= c; i++) a[i] = v[k, i]
      for (i = 1; i <= c; i++)
        for (j = i + 1; j <= c; j++)
          if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
      return (c % 2) ? a[(c + 1) / 2] : (a[c / 2] + a[c / 2 + 1]) / 2
    }
    function show(x) {
      if (x == "-") return x
      return (x < 10 && x != int(x)) ? sprintf("%.3f", x) : sprintf("%.0f", x)
    }
    END {
      print "| metric | before | after | after/before |"
      print "|---|---:|---:|---:|"
      for (i = 1; i <= n; i++) {
        m = order[i]
        b = median(m SUBSEP "before")
        a = median(m SUBSEP "after")
        r = (b != "-" && a != "-" && b > 0) ? sprintf("%.2f", a / b) : "-"
        printf "| %s | %s | %s | %s |\n", m, show(b), show(a), r
      }
    }' "$1"
}

if [ "${1:-}" = --render ]; then
  [ -r "${2:-}" ] || { echo "refactor_compare: no results file '${2:-}'" >&2; exit 2; }
  render "$2"
  exit
fi

before_rev=${1:-c189baf}
after=$(cd "${2:-$here}" && pwd) || exit 2
cache=${BENCH_CACHE:-$after/build/refactor_compare}
jobs=${BENCH_JOBS:-$(nproc)}
rounds=${BENCH_ROUNDS:-2}
only=${BENCH_ONLY:-router worker perf}
die() { echo "refactor_compare: $*" >&2; exit 1; }

if [ "${BENCH_QUICK:-0}" = 1 ]; then
  router_env=(BENCH_S=3 BENCH_WARMUP_S=1)
  pa_env=(BENCH_WINDOW_MS=500 BENCH_CONC=8)
  worker_env=("${pa_env[@]}" BENCH_WRK_S=1)
  perf_env=("${pa_env[@]}" BENCH_STABILITY=20)
  concs=(8)
else
  router_env=(BENCH_S=8 BENCH_WARMUP_S=2)
  worker_env=(BENCH_WINDOW_MS=1000 "BENCH_CONC=8 64" BENCH_WRK_S=3)
  perf_env=(BENCH_WINDOW_MS=1000 "BENCH_CONC=1 8 32")
  concs=(1 8 32 64)
fi

# ---- builds -----------------------------------------------------------------

# build SRC DIR: Release, out of tree, the CLI only (no tests, no CUDA
# kernels: none of the benchmarks uses them); the log in DIR.log.
build() {
  echo "building $1 in $2" >&2
  mkdir -p "$2"
  { cmake -S "$1" -B "$2" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGS_TESTS=OFF \
      -DGS_CUDA_KERNELS=OFF && ninja -C "$2" -j "$jobs" gpuslice-cli; } \
    >"$2.log" 2>&1 || { tail -20 "$2.log" >&2; die "build of $1 failed (log: $2.log)"; }
}

git -C "$after" rev-parse --git-dir >/dev/null 2>&1 || die "$after is not a git checkout"
before_sha=$(git -C "$after" rev-parse --verify -q "$before_rev^{commit}") ||
  die "no revision '$before_rev' in $after"
mkdir -p "$cache"
before_src=$cache/src-${before_sha:0:12}
if [ ! -f "$before_src/.complete" ]; then
  rm -rf "$before_src"
  mkdir -p "$before_src"
  git -C "$after" archive --format=tar "$before_sha" | tar -x -C "$before_src" ||
    die "git archive $before_rev failed"
  touch "$before_src/.complete"
fi
build "$before_src" "$cache/build-${before_sha:0:12}"
build "$after" "$cache/build-after"
bin_before=$cache/build-${before_sha:0:12}/gpuslice
bin_after=$cache/build-after/gpuslice
if [ "${BENCH_BUILD_ONLY:-0}" = 1 ]; then
  echo "before: $bin_before"
  echo "after: $bin_after"
  exit 0
fi
# Private copies: a rebuild of AFTER during the run cannot swap binaries.
out=$cache/last
rm -rf "$out"
mkdir -p "$out"
{ cp "$bin_before" "$out/gpuslice-before" && cp "$bin_after" "$out/gpuslice-after"; } ||
  die "no binaries"

# perf_analyzer once, before anything is timed (the scripts would make
# their venv inside the first run otherwise).
if [[ " $only " == *" worker "* || " $only " == *" perf "* ]]; then
  . "$here/bench/perf_analyzer_env.sh"
  PA_VENV=${PA_VENV:-/tmp/gpuslice-bench-venv}
  export PA_VENV
  pa_find "$PA_VENV" || echo "refactor_compare: no perf_analyzer ($PA_WHY): worker and perf rows will be missing" >&2
fi

# ---- one run of each benchmark ---------------------------------------------

results=$out/results.csv
echo "metric,side,value" >"$results"
row() { echo "$1,$2,$3" >>"$results"; } # row METRIC SIDE VALUE
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.4f", a / b; else print "-" }'; }

# run_router SIDE LOG: part b once; rows from its raw lines
# "b serve C req/s p50 p99 errors ...".
run_router() {
  local side=$1 log=$2 raw=$out/router-raw-$1
  : >"$raw"
  env "${router_env[@]}" BENCH_REPS=1 BENCH_PARTS=b BENCH_RAW="$raw" \
    bash "$here/bench/router_bench.sh" "$out/gpuslice-$side" >"$log" 2>&1 ||
    { echo "refactor_compare: router_bench ($side) failed: $(tail -1 "$log")" >&2; return; }
  local c s n
  for c in 64 256; do
    s=$(awk -v c="$c" '$1 == "b" && $2 == "serve" && $3 == c { print $4; exit }' "$raw")
    n=$(awk -v c="$c" '$1 == "b" && $2 == "nginx" && $3 == c { print $4; exit }' "$raw")
    row "router req/s c=$c" "$side" "${s:--}"
    row "router p99 us c=$c" "$side" "$(awk -v c="$c" '$1 == "b" && $2 == "serve" && $3 == c { print $6; exit }' "$raw")"
    row "nginx req/s c=$c (same workers)" "$side" "${n:--}"
    row "router / nginx req/s c=$c" "$side" "$(ratio "$s" "$n")"
  done
}

# run_worker SIDE LOG: worker_bench once; rows from its table
# "| endpoint | c | req/s | p50 | p99 |".
run_worker() {
  local side=$1 log=$2
  env "${worker_env[@]}" bash "$here/bench/worker_bench.sh" "$out/gpuslice-$side" >"$log" 2>&1 ||
    { echo "refactor_compare: worker_bench ($side) failed: $(tail -1 "$log")" >&2; return; }
  local c j b g
  for c in "${concs[@]}"; do
    j=$(awk -F' *[|] *' -v c="$c" '$2 == "HTTP, JSON tensors" && $3 == c { print $4 }' "$log")
    b=$(awk -F' *[|] *' -v c="$c" '$2 == "HTTP, binary tensors" && $3 == c { print $4 }' "$log")
    g=$(awk -F' *[|] *' -v c="$c" '$2 == "gRPC" && $3 == c { print $4 }' "$log")
    [ -n "$j$b$g" ] || continue
    row "worker HTTP JSON req/s c=$c" "$side" "${j:--}"
    row "worker HTTP binary req/s c=$c" "$side" "${b:--}"
    row "worker gRPC req/s c=$c" "$side" "${g:--}"
    row "worker gRPC / HTTP binary c=$c" "$side" "$(ratio "$g" "$b")"
  done
}

# run_perf SIDE LOG: perf_compare once; rows from its table
# "| proto | c | pa infer/s | perf infer/s | diff | pa p50 | perf p50 | diff |".
run_perf() {
  local side=$1 log=$2
  env "${perf_env[@]}" bash "$here/bench/perf_compare.sh" "$out/gpuslice-$side" >"$log" 2>&1 ||
    { echo "refactor_compare: perf_compare ($side) failed: $(tail -1 "$log")" >&2; return; }
  local proto c pa gs
  for proto in http grpc; do
    for c in "${concs[@]}"; do
      read -r pa gs < <(awk -F' *[|] *' -v p="$proto" -v c="$c" \
        '$2 == p && $3 == c { print $4, $5 }' "$log")
      [ -n "${pa:-}" ] || continue
      row "perf infer/s $proto c=$c" "$side" "$gs"
      row "perf_analyzer infer/s $proto c=$c" "$side" "$pa"
      row "perf / perf_analyzer $proto c=$c" "$side" "$(ratio "$gs" "$pa")"
    done
  done
}

# ---- A/B/A/B ----------------------------------------------------------------

t0=$(date +%s)
echo "## refactor_compare"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); nproc $(nproc);" \
  "CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
echo "- before: $before_rev ($(git -C "$after" log -1 --format='%h %s' "$before_sha" | cut -c1-60))"
echo "- after: $after ($(git -C "$after" log -1 --format='%h' HEAD)$(git -C "$after" diff --quiet HEAD 2>/dev/null || echo ', uncommitted changes'))"
echo "- mode: $([ "${BENCH_QUICK:-0}" = 1 ] && echo quick || echo full), $rounds rounds (A/B per round), load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
for bench in $only; do
  case $bench in router | worker | perf) ;; *) die "BENCH_ONLY: no benchmark '$bench'" ;; esac
  for r in $(seq "$rounds"); do
    for side in before after; do
      echo "$bench round $r/$rounds: $side" >&2
      "run_$bench" "$side" "$out/$bench-$side-$r.log"
    done
  done
done
render "$results"
echo
echo "$(( ($(date +%s) - t0) / 60 )) min of measuring; load average at the end:" \
  "$(cut -d' ' -f1-3 /proc/loadavg); raw numbers and logs in $out"
