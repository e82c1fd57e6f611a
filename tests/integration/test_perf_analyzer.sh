#!/usr/bin/env bash
# Triton's perf_analyzer completes a concurrency sweep (1..4, 1 s windows)
# against gpuslice worker on loopback, and writes its CSV with the columns in
# its documented order (server columns present because /v2 lists
# "statistics"). perf_analyzer comes from the tritonclient 2.51.0 wheel (see
# bench/perf_analyzer_env.sh for why not the `perf-analyzer` package).
# Skips (77) when the models cannot be generated, pip cannot install it, or
# it cannot load here (libb64-0d missing).
. "$(dirname "$0")/worker_lib.sh"
py=$(command -v python3 || echo /usr/bin/python3)

. "$GS_SOURCE_DIR/bench/perf_analyzer_env.sh"
pa_find "${GS_PA_VENV:-$tmp/pa-venv}" || { echo "SKIP: $PA_WHY"; exit 77; }
echo "using $("$PERF_ANALYZER" --version 2>&1 | head -1)"

make_models "$py"
# Triton's `simple` has max_batch_size 8 and dims [16]; with it perf_analyzer
# needs no --shape (a [-1,16] input without batching would need one).
echo '{"max_batch_size": 8}' >"$tmp/models/simple/config.json"

start_worker --grpc-port 0 --metrics-port 0 --threads 2

fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
timeout 300 "$PERF_ANALYZER" -m simple -u "127.0.0.1:$port" -i http \
  --concurrency-range 1:4:1 -p 1000 -s 40 -r 20 -f "$tmp/out.csv" >"$tmp/pa.out" 2>&1
rc=$?
[ $rc -eq 0 ] || fail "perf_analyzer exited $rc"

want="Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency"
if [ ! -s "$tmp/out.csv" ]; then
  fail "no CSV written"
else
  got=$(head -1 "$tmp/out.csv")
  [ "$got" = "$want" ] || fail "CSV header: $got"
  # One row per concurrency 1..4 (perf_analyzer orders rows by throughput),
  # each with a positive throughput and 13 fields.
  conc=$(tail -n +2 "$tmp/out.csv" | cut -d, -f1 | sort -n | tr '\n' ' ')
  [ "$conc" = "1 2 3 4 " ] || fail "CSV concurrencies: $conc"
  awk -F, 'NR > 1 && (NF != 13 || $2 <= 0) { bad = 1 } END { exit bad }' \
    "$tmp/out.csv" || fail "CSV rows: $(cat "$tmp/out.csv")"
fi
# The worker counted what perf_analyzer sent, and failed none of it.
stats=$(curl -s "http://127.0.0.1:$port/v2/models/simple/stats")
echo "$stats" | grep -Eq '"fail":\{"count":0,' || fail "failed infers: $stats"
if [ $fails -eq 0 ]; then cat "$tmp/out.csv"; else tail -40 "$tmp/pa.out"; fi

kill "$pid"
wait "$pid"
rc=$?
pid=
[ $rc -eq 0 ] || fail "worker exited $rc on SIGTERM"
[ $fails -eq 0 ] || { echo "$fails check(s) failed"; tail -5 "$tmp/log"; exit 1; }
echo "PASS"
