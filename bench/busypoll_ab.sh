#!/usr/bin/env bash
# The c=1 latency of `gpuslice worker` with and without --busy-poll-us
# (issue 12), A/B on a shared, noisy machine: three workers side by side on
# Triton's `simple` model (max_batch_size 8, no dynamic batching, CPU
# provider, --threads 2): BASE (another build, no flag), NEW with
# --busy-poll-us 0 and NEW with --busy-poll-us US; `gpuslice perf` at
# concurrency 1 measures them in alternation, HTTP (binary tensors) then
# gRPC, round by round, so that all see the same background load. Each
# point also takes the worker's own per-phase averages (queue, input,
# infer, output; its statistics before and after). One row per point, then
# a Markdown table of the medians over the rounds and the load average.
#
# usage: bench/busypoll_ab.sh BASE/gpuslice NEW/gpuslice
# env:   AB_ROUNDS (5), AB_WINDOW_MS (1000), AB_BUSY_US (200)
set -u
base=${1:?usage: $0 BASE/gpuslice NEW/gpuslice}
new=${2:?usage: $0 BASE/gpuslice NEW/gpuslice}
src=$(cd "$(dirname "$0")/.." && pwd)
busy=${AB_BUSY_US:-200}
gpuslice=$base
. "$src/bench/bench_lib.sh" # tmp, die, free_port, make_models, start_worker
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
make_models
echo '{"max_batch_size": 8}' >"$tmp/models/simple/config.json"
declare -A hport gport
for which in base new0 "new$busy"; do
  args=()
  gpuslice=$base
  if [ "$which" != base ]; then
    gpuslice=$new
    args=(--busy-poll-us "${which#new}")
  fi
  g=$(free_port)
  start_worker --grpc-port "$g" "${args[@]}"
  hport[$which]=$port
  gport[$which]=$g
done

stats() { curl -sf "127.0.0.1:${hport[$1]}/v2/models/simple/stats"; }

# point WHICH PROTO: "p50 p99 rps queue input infer output" (us), or
# "failed".
point() {
  local u=127.0.0.1:${hport[$1]} before after
  [ "$2" = grpc ] && u=127.0.0.1:${gport[$1]}
  before=$(stats "$1")
  # -s 100: every window counts (an unstable exit still has its numbers)
  "$new" perf -m simple -i "$2" -u "$u" -p "${AB_WINDOW_MS:-1000}" -s 100 \
    -r 3 >"$tmp/perf.out" 2>&1
  after=$(stats "$1")
  python3 - "$tmp/perf.out" "$before" "$after" <<'EOF'
import json, re, sys
t = open(sys.argv[1]).read()
if not re.findall(r"p50 latency: (\d+) usec", t) or len(sys.argv) < 4:
    sys.exit(print("failed"))
p50 = re.findall(r"p50 latency: (\d+) usec", t)[-1]
p99 = re.findall(r"p99 latency: (\d+) usec", t)[-1]
rps = re.findall(r"Throughput: ([\d.]+) infer/sec", t)[-1]
b, a = (json.loads(x)["model_stats"][0]["inference_stats"] for x in sys.argv[2:4])
n = max(a["success"]["count"] - b["success"]["count"], 1)
ph = [(a[k]["ns"] - b[k]["ns"]) / n / 1e3
      for k in ("queue", "compute_input", "compute_infer", "compute_output")]
print(p50, p99, "%.0f" % float(rps), " ".join("%.1f" % x for x in ph))
EOF
}

for round in $(seq "${AB_ROUNDS:-5}"); do
  for proto in http grpc; do
    for which in base new0 "new$busy"; do
      echo "$round $proto $which $(point "$which" "$proto")"
    done
  done
done | tee "$tmp/rows"
echo
echo "load average: $load_start at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end ($(nproc) CPUs)"
echo
echo "| protocol | worker | rounds | p50 us | p99 us | requests/s | queue us | input us | infer us | output us |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
awk '$4 != "failed" { k = $2 "|" $3; n[k]++
    for (f = 4; f <= 10; f++) v[k, f, n[k]] = $f }
  function med(k, f, m,   i, j, t, a) {
    for (i = 1; i <= m; i++) a[i] = v[k, f, i]
    for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++)
      if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2 }
  END { for (k in n) { split(k, p, "|")
    name = p[1] == "http" ? "HTTP, binary" : "gRPC"
    w = p[2] == "base" ? "base" : "busy_poll_us " substr(p[2], 4)
    printf "| %s | %s | %d | %.0f | %.0f | %.0f | %.1f | %.1f | %.1f | %.1f |\n",
      name, w, n[k], med(k, 4, n[k]), med(k, 5, n[k]), med(k, 6, n[k]),
      med(k, 7, n[k]), med(k, 8, n[k]), med(k, 9, n[k]), med(k, 10, n[k]) } }' \
  "$tmp/rows" | sort
