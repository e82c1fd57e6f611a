#!/usr/bin/env bash
# gpuslice worker --plan-before-ready: a warm model (CPU, "warmup": true,
# the path a GPU model takes) with max_batch_size 8 and dynamic batching
# plans batch 1 before it is ready and 2, 4, 8 after. While those wait
# (the test hook GPUSLICE_TEST_LATE_PLAN_DELAY_MS holds them 4 s), 12
# concurrent requests all succeed and the batcher runs every one alone
# (batch_stats: size 1 only); once the worker logs the sizes planned
# after ready, 16 concurrent requests form batches larger than 1. The
# load note says what was left for after ready. Requests and planning
# steps alternate: with each step held 1.5 s (GPUSLICE_TEST_LATE_PLAN_STEP_MS),
# two requests in a row both finish before the third step does. Where the
# conv cache has no choice for the largest size's convs (a GPU's first
# start; the hook GPUSLICE_TEST_CONVS_UNCACHED stands in for it on the
# CPU), every size plans before ready. A device failure met by
# that planning (the test hook GPUSLICE_TEST_DEVICE_FAIL_FILE) reaches the
# repository at once, with no request: the model leaves READY and a
# worker with --exit-on-device-failure exits 1 saying why.
# Skips (77) when the models cannot be generated.
. "$(dirname "$0")/worker_lib.sh"
onnx_python
make_models "$py"
mkdir -p "$tmp/models/mlp_warm/1"
cp "$tmp/models/mlp/1/model.onnx" "$tmp/models/mlp_warm/1/"
echo '{"max_batch_size": 8, "warmup": true, "dynamic_batching": {"max_queue_delay_microseconds": 20000}}' \
  >"$tmp/models/mlp_warm/config.json"
fail() { echo "FAIL: $*"; echo "--- worker log"; cat "$tmp/log"; exit 1; }
body=$("$py" -c 'import json; print(json.dumps({"inputs":[{"name":"input","shape":[1,64],"datatype":"FP32","data":[0.5]*64}]}))')
echo "$body" >"$tmp/req.json"

# burst N: N concurrent batch-1 infers; fails unless all are 200.
burst() {
  local i
  for i in $(seq "$1"); do
    curl -s -o /dev/null -w '%{http_code}\n' -d @"$tmp/req.json" \
      "$base/v2/models/mlp_warm/infer" >"$tmp/code$i" &
  done
  wait $(jobs -p | grep -v "^$pid$")
  ! cat "$tmp"/code* | grep -vq 200 || fail "a request of the burst failed: $(cat "$tmp"/code* | sort | uniq -c)"
  rm -f "$tmp"/code*
}
# wait_log PATTERN TENTHS: true once the worker's log has PATTERN, within
# TENTHS tenths of a second.
wait_log() {
  local i
  for ((i = 0; i < $2; i++)); do
    grep -q "$1" "$tmp/log" && return 0
    sleep 0.1
  done
  grep -q "$1" "$tmp/log"
}
stop_worker() {
  kill "$pid"
  wait "$pid" 2>/dev/null
}
# sizes: the batch sizes the model ran so far, "size:count ...".
sizes() {
  curl -s "$base/v2/models/mlp_warm/stats" | "$py" -c 'import json,sys
st = json.load(sys.stdin)["model_stats"][0]
print(" ".join("%d:%d" % (e["batch_size"], e["compute_infer"]["count"]) for e in st["batch_stats"]))'
}

GPUSLICE_TEST_LATE_PLAN_DELAY_MS=4000 start_worker --plan-before-ready 1 --threads 4
grep -q "model mlp_warm: 1 sessions, batch sizes {1} planned in [0-9]* ms, {2,4,8} to plan after ready" "$tmp/log" ||
  fail "the load note does not say {2,4,8} are left for after ready"
burst 12
held=$(sizes)
grep -q "batch sizes {2,4,8} planned after ready" "$tmp/log" &&
  fail "the sizes were planned before the burst ended: the hold did not hold"
[ "$held" = "1:12" ] || fail "while 2, 4 and 8 were still to plan, batches ran as $held, not 12 of size 1"
echo "ok: while 2, 4, 8 wait to plan, 12 concurrent requests ran one by one ($held)"
wait_log "model mlp_warm: batch sizes {2,4,8} planned after ready in" 200 ||
  fail "no 'planned after ready' line 20 s after the hold"
burst 16
after=$(sizes)
"$py" -c 'import sys
sizes = {int(a): int(b) for a, b in (p.split(":") for p in sys.argv[1].split())}
assert max(sizes) > 1, sizes
assert sum(k * v for k, v in sizes.items()) == 28, sizes' "$after" ||
  fail "after the sizes were planned, batches ran as $after: none larger than 1, or not 28 rows"
echo "ok: once planned ($(grep -o 'batch sizes {2,4,8} planned after ready in [0-9]* ms' "$tmp/log")), batches grew: $after"

stop_worker
GPUSLICE_TEST_LATE_PLAN_STEP_MS=1500 start_worker --plan-before-ready 1
for i in 1 2; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -d @"$tmp/req.json" "$base/v2/models/mlp_warm/infer")
  [ "$code" = 200 ] || fail "request $i while planning after ready: $code"
done
grep -q "planned after ready" "$tmp/log" &&
  fail "two requests in a row waited for all three planning steps (each 1.5 s): the planning did not let them in"
wait_log "model mlp_warm: batch sizes {2,4,8} planned after ready" 100 ||
  fail "the planning never finished after it let the requests in (a lost wakeup?)"
echo "ok: two requests ran between planning steps of 1.5 s, before the third ended; then the planning finished"
stop_worker
GPUSLICE_TEST_CONVS_UNCACHED=1 start_worker --plan-before-ready 1
grep -q "model mlp_warm: 1 sessions, batch sizes {1,2,4,8} planned in [0-9]* ms, every one before ready: the conv cache had no choice for 1 convs of batch 8" "$tmp/log" ||
  fail "with the largest size's convs not in the conv cache, the sizes were not all planned before ready: $(grep 'mlp_warm: 1 sessions' "$tmp/log")"
burst 16
cold=$(sizes)
"$py" -c 'import sys
sizes = {int(a): int(b) for a, b in (p.split(":") for p in sys.argv[1].split())}
assert max(sizes) > 1, sizes' "$cold" || fail "with every size planned before ready, batches ran as $cold: none larger than 1"
grep -q "planned after ready" "$tmp/log" && fail "a size was left for after ready on a cold conv cache"
echo "ok: a cold conv cache plans every size before ready ($(grep -o 'every one before ready[^;]*' "$tmp/log")); batches at once: $cold"
stop_worker
touch "$tmp/fail"
GPUSLICE_TEST_LATE_PLAN_DELAY_MS=3000 GPUSLICE_TEST_DEVICE_FAIL_FILE="$tmp/fail" \
  start_worker --plan-before-ready 1 --exit-on-device-failure
code=$(curl -s -o /dev/null -w '%{http_code}' "$base/v2/health/ready")
[ "$code" = 200 ] || fail "before its planning failed the worker was not ready ($code)"
for _ in $(seq 100); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
kill -0 "$pid" 2>/dev/null && fail "10 s after its planning failed, with no request, the worker still runs"
wait "$pid"
rc=$?
[ "$rc" = 1 ] || fail "the worker exited $rc after a device failure, not 1"
[ ! -e "$tmp/fail" ] || fail "the planning never met the device failure (the hook's file is still there)"
grep -q "test hook: the device failed" "$tmp/log" || fail "the worker's exit does not say the device failed"
pid=
echo "ok: a device failure in the planning after ready ended the worker with no request: $(grep -o 'device failed[^;]*' "$tmp/log" | head -1)"
echo PASS
