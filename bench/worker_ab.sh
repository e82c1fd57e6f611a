#!/usr/bin/env bash
# A/B of two `gpuslice worker` builds on a shared, noisy machine: both run
# side by side (Triton's `simple` model, --threads 2) and perf_analyzer
# measures them in alternation, point by point (HTTP with binary tensors,
# then gRPC, at concurrency 1 and 8), so that both see the same background
# load; worker_bench.sh's stability rule cannot be met when other jobs share
# the cores. One row per point: round protocol concurrency build rps p50 p99
# (us), then the medians over the rounds. Builds nothing.
#
# usage: bench/worker_ab.sh BASE/gpuslice NEW/gpuslice
# env:   AB_ROUNDS (5), AB_WINDOW_MS (1500), PA_VENV (as worker_bench.sh).
set -u
base=${1:?usage: $0 BASE/gpuslice NEW/gpuslice}
new=${2:?usage: $0 BASE/gpuslice NEW/gpuslice}
src=$(cd "$(dirname "$0")/.." && pwd)
gpuslice=$base
. "$src/bench/bench_lib.sh"
. "$src/bench/perf_analyzer_env.sh"
pa_find "${PA_VENV:-/tmp/gpuslice-bench-venv}" || die "$PA_WHY"
make_models
echo '{"max_batch_size": 8}' >"$tmp/models/simple/config.json"
declare -A hport gport
for which in base new; do
  gpuslice=$base
  [ "$which" = new ] && gpuslice=$new
  g=$(free_port)
  start_worker --grpc-port "$g"
  hport[$which]=$port
  gport[$which]=$g
done

# point BUILD PROTO CONC: "rps p50 p99", or "failed". Stability 100 %: the
# noise is the machine's, and both builds get the same.
point() {
  local u=127.0.0.1:${hport[$1]}
  [ "$2" = grpc ] && u=127.0.0.1:${gport[$1]}
  "$PERF_ANALYZER" -m simple --concurrency-range "$3:$3" -i "$2" -u "$u" \
    -p "${AB_WINDOW_MS:-1500}" -s 100 --max-trials 4 -f "$tmp/pa.csv" \
    >"$tmp/pa.out" 2>&1 || { echo failed; return; }
  awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    { printf "%.0f %.0f %.0f\n", $col["Inferences/Second"],
        $col["p50 latency"], $col["p99 latency"] }' "$tmp/pa.csv"
}

for round in $(seq "${AB_ROUNDS:-5}"); do
  for conc in 1 8; do
    for proto in http grpc; do
      for which in base new; do
        echo "$round $proto $conc $which $(point "$which" "$proto" "$conc")"
      done
    done
  done
done | tee "$tmp/rows"
echo
echo "| protocol | concurrency | build | rounds | requests/s (median) | p50 us | p99 us |"
echo "|---|---:|---|---:|---:|---:|---:|"
sort -k2,2 -k3,3n -k4,4 "$tmp/rows" | awk '$5 != "failed" {
    k = $2 "|" $3 "|" $4; n[k]++; r[k, n[k]] = $5; p[k, n[k]] = $6; q[k, n[k]] = $7 }
  function med(a, k, m,   i, j, t, v) {
    for (i = 1; i <= m; i++) v[i] = a[k, i]
    for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++)
      if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
    return m % 2 ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2 }
  END { for (k in n) { split(k, f, "|")
    name = f[1] == "http" ? "HTTP, binary tensors" : "gRPC"
    printf "| %s | %s | %s | %d | %.0f | %.0f | %.0f |\n", name, f[2], f[3],
      n[k], med(r, k, n[k]), med(p, k, n[k]), med(q, k, n[k]) } }' | sort
