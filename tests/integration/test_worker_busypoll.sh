#!/usr/bin/env bash
# gpuslice worker --busy-poll-us (issue 12) on loopback: with its own
# spinning pool the worker answers `simple` right over HTTP, gRPC and a
# dynamic-batching model (gpuslice perf at c=1 and c=4, no failure in its
# statistics), sleeps once idle (under a tenth of a CPU second over a
# second without requests), stops on SIGTERM in the middle of a burst
# (exit 0, within 10 s), and the option's range is checked on the worker's
# command line and in serve.yaml. Skips (77) when the models cannot be
# generated.
. "$(dirname "$0")/worker_lib.sh"
fails=0
pass() { echo "ok: $*"; }
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
onnx_python
make_models "$py"
echo '{"max_batch_size": 8}' >"$tmp/models/simple/config.json"
mkdir -p "$tmp/models/mlp_batched/1"
cp "$tmp/models/mlp/1/model.onnx" "$tmp/models/mlp_batched/1/"
echo '{"max_batch_size": 8, "dynamic_batching": {"max_queue_delay_microseconds": 2000}}' \
  >"$tmp/models/mlp_batched/config.json"

# the range, from the option table: worker flag and serve.yaml key
"$GPUSLICE" worker --model-repository "$tmp/models" --busy-poll-us 1000001 \
  >/dev/null 2>"$tmp/err"
rc=$?
[ $rc = 2 ] && grep -q "busy-poll-us '1000001': a whole number from 0 to 1000000" "$tmp/err" &&
  pass "worker --busy-poll-us 1000001 refused" ||
  fail "worker --busy-poll-us 1000001: exit $rc, $(cat "$tmp/err")"
printf 'model_repository: %s\nbusy_poll_us: 1000001\n' "$tmp/models" >"$tmp/s.yaml"
"$GPUSLICE" --state-dir "$tmp/state" serve -f "$tmp/s.yaml" >/dev/null 2>"$tmp/err"
rc=$?
[ $rc = 2 ] && grep -q "'busy_poll_us'" "$tmp/err" &&
  pass "serve.yaml busy_poll_us: 1000001 refused" ||
  fail "serve.yaml busy_poll_us: 1000001: exit $rc, $(cat "$tmp/err")"

start_worker --grpc-port any --metrics-port 0 --threads 2 --busy-poll-us 500
for _ in $(seq 300); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/v2/health/ready")" = 200 ] && break
  sleep 0.1
done
gport=$(sed -n 's/.*listening for gRPC on 127.0.0.1:\([0-9]*\).*/\1/p' "$tmp/log")

body='{"inputs": [
  {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": [0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]},
  {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": [1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}]}'
out=$(curl -s -d "$body" "$base/v2/models/simple/infer")
echo "$out" | python3 -c '
import json, sys
o = {t["name"]: t["data"] for t in json.load(sys.stdin)["outputs"]}
assert o["OUTPUT0"] == [i + 1 for i in range(16)], o
assert o["OUTPUT1"] == [i - 1 for i in range(16)], o' &&
  pass "simple answers right" || fail "simple's answer: $out"

# perf ARGS...: gpuslice perf's p50 line, or fail
perf() {
  timeout 60 "$GPUSLICE" perf -p 300 -r 3 -s 100 "$@" >"$tmp/perf" 2>&1
  if grep -q "p50 latency" "$tmp/perf"; then
    pass "perf $* ($(grep -m1 'p50 latency' "$tmp/perf" | xargs))"
  else
    fail "perf $*: $(tail -5 "$tmp/perf")"
  fi
}
perf -m simple -u "127.0.0.1:$port"
perf -m simple -i grpc -u "127.0.0.1:$gport"
perf -m simple -u "127.0.0.1:$port" --concurrency-range 4:4
perf -m mlp_batched -u "127.0.0.1:$port" --concurrency-range 4:4
for m in simple mlp_batched; do
  curl -s "$base/v2/models/$m/stats" | python3 -c '
import json, sys
s = json.load(sys.stdin)["model_stats"][0]["inference_stats"]
assert s["success"]["count"] > 100 and s["fail"]["count"] == 0, s' &&
    pass "$m: many answered, none failed" || fail "$m's statistics"
done

# idle: the threads and the loop sleep 500 us after the last request
ticks() { sed 's/.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }'; }
sleep 0.2
t0=$(ticks)
sleep 1
used=$(($(ticks) - t0))
hz=$(getconf CLK_TCK)
[ $((used * 10)) -lt "$hz" ] && pass "idle for 1 s: $used ticks of CPU" ||
  fail "idle for 1 s the worker used $used ticks of CPU ($hz a second): it spins"

# SIGTERM in the middle of a burst
timeout 30 "$GPUSLICE" perf -m simple -u "127.0.0.1:$port" --concurrency-range 4:4 \
  -p 2000 -r 3 -s 100 >/dev/null 2>&1 &
load=$!
sleep 1
kill -TERM "$pid"
for _ in $(seq 100); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$pid" 2>/dev/null; then
  fail "the worker did not stop within 10 s of SIGTERM under load"
else
  wait "$pid"
  rc=$?
  [ $rc = 0 ] && pass "SIGTERM under load: exit 0" || fail "SIGTERM under load: exit $rc"
  pid=
fi
kill "$load" 2>/dev/null
wait "$load" 2>/dev/null
[ $fails = 0 ] && echo "PASS" || { echo "$fails failed"; exit 1; }
