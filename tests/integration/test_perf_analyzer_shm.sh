#!/usr/bin/env bash
# Triton's perf_analyzer with --shared-memory system against gpuslice
# worker on loopback, HTTP then gRPC, on Triton's `simple` (its inputs and
# outputs then travel in the POSIX shared-memory regions perf_analyzer
# creates and registers): each run completes (exit 0, a CSV row with a
# positive throughput), the worker failed no infer, every region
# perf_analyzer registered is unregistered at its end, and the worker
# stays up. perf_analyzer comes from the tritonclient 2.51.0 wheel (see
# bench/perf_analyzer_env.sh). Skips (77) as test_perf_analyzer.sh does.
. "$(dirname "$0")/worker_lib.sh"
py=$(command -v python3 || echo /usr/bin/python3)

. "$GS_SOURCE_DIR/bench/perf_analyzer_env.sh"
pa_find "${GS_PA_VENV:-$tmp/pa-venv}" || { echo "SKIP: $PA_WHY"; exit 77; }

make_models "$py"
rm -rf "$tmp/models/classifier" "$tmp/models/cnn_small" "$tmp/models/mlp"
echo '{"max_batch_size": 8}' >"$tmp/models/simple/config.json"
gport=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start_worker --grpc-port "$gport" --metrics-port 0 --threads 2

fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
for proto in http grpc; do
  [ "$proto" = http ] && u=127.0.0.1:$port || u=127.0.0.1:$gport
  timeout 200 "$PERF_ANALYZER" -m simple -u "$u" -i "$proto" --shared-memory system \
    --concurrency-range 1:2:1 -p 1000 -s 100 -r 10 -f "$tmp/$proto.csv" \
    >"$tmp/pa-$proto.out" 2>&1
  rc=$?
  if [ $rc -ne 0 ]; then
    fail "perf_analyzer ($proto, --shared-memory system) exited $rc"
    tail -5 "$tmp/pa-$proto.out"
  elif ! awk -F, 'NR > 1 && $2 > 0 { n++ } END { exit n != 2 }' "$tmp/$proto.csv"; then
    fail "$proto CSV: $(cat "$tmp/$proto.csv")"
  else
    echo "ok: perf_analyzer --shared-memory system over $proto: $(tail -n +2 "$tmp/$proto.csv" | cut -d, -f1,2 | tr '\n' ' ')"
  fi
done
stats=$(curl -s "http://127.0.0.1:$port/v2/models/simple/stats")
echo "$stats" | grep -Eq '"fail":\{"count":0,' || fail "failed infers: $stats"
echo "$stats" | grep -Eq '"success":\{"count":[1-9]' || fail "no infers: $stats"
regions=$(curl -s "http://127.0.0.1:$port/v2/systemsharedmemory/status")
[ "$regions" = "[]" ] || fail "regions left registered: $regions"
curl -sf "http://127.0.0.1:$port/v2/health/live" >/dev/null || fail "worker not live"
[ $fails -eq 0 ] || { echo "$fails check(s) failed"; tail -5 "$tmp/log"; exit 1; }
echo "PASS"
