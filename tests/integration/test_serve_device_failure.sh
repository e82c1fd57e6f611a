#!/usr/bin/env bash
# A worker whose device fails under a request (the engine's GS_EDRIVER: on
# a GPU, a CUDA error no later call in the process gets past, such as an
# MPS server's fatal fault) is restarted at once under serve, not after
# its health checks have failed for restart_unhealthy_ms (10 s):
# - serve starts its workers with --exit-on-device-failure; the worker
#   whose run failed answers that request 500 naming the failure, drains,
#   says why in its log and exits; serve restarts it and it is ready again
#   within 3 s (8 under sanitizers), while 8 keep-alive clients send
#   through the router: what fails is the failed run (500) and what the
#   failed worker had already read (503 naming the failure, at most one a
#   client); the other worker is never restarted;
# - a worker without the flag stays up, its model unavailable with the
#   reason ("restart the worker"), as before;
# - with the flag alone, the worker exits 1 after the failed request.
# The failure is a test hook (GPUSLICE_TEST_DEVICE_FAIL_FILE: the run that
# removes the file fails as a faulted device would); the GPU's own case,
# an MPS fault, is bench/isolation.sh's faults part.
. "$(dirname "$0")/serve_lib.sh"
limit=${GS_SANITIZE:+8}
limit=${limit:-3}
export GPUSLICE_TEST_DEVICE_FAIL_FILE=$tmp/device-fails

start_serve --policy round_robin --health-interval 100
pids0="$(worker_field 0:1 pid) $(worker_field 0:2 pid)"
start_load 8
t0=$(date +%s.%N)
touch "$GPUSLICE_TEST_DEVICE_FAIL_FILE"
# the worker that ran into it: the one whose pid changes
back=
for _ in $(seq 150); do
  for w in 0:1 0:2; do
    [ "$(worker_field "$w" restarts)" = 1 ] && back=$w
  done
  [ -n "$back" ] && break
  sleep 0.05
done
[ -n "$back" ] || { stop_load; fail "no worker restarted after the device failure"; }
old=$(echo "$pids0" | cut -d' ' -f"${back#0:}")
took=$(WAIT_T0=$t0 wait_state "$back" ready "$limit" "$old") || {
  stop_load
  fail "worker $back not back: $took"
}
sleep 1
stop_load
echo "worker $back restarted and ready ${took}s after its device failed"
other=0:1
[ "$back" = 0:1 ] && other=0:2
[ "$(worker_field "$other" restarts)" = 0 ] || fail "worker $other was restarted too"
[ ! -e "$GPUSLICE_TEST_DEVICE_FAIL_FILE" ] || fail "no run took the hook's file"
python3 - "$load" <<'PY' || fail "the load: $load"
import json, sys
d = json.loads(sys.argv[1])
# The run that failed is answered 500; requests the failed worker had
# already read or queued are answered 503 naming the failure ("not run:
# the device failed", "not ready: the device failed": it answers what it
# holds while it drains). Nothing else fails.
assert d["statuses"].get("500") == 1 and d["ok"] > 0, d
assert d["failed"] == 1 + d["statuses"].get("503", 0), d
assert all("device failed" in e for e in d["errors"]), d["errors"]
PY
echo "load: $load"
wlog=$(worker_field "$back" log)
grep -q "gpuslice worker: stopped, to be restarted: the device failed while serving; restart the worker: test hook" \
  "$wlog" || fail "the worker's log ($wlog) does not say why it stopped"
# how long the restart took, in the worker's log and in serve's
age=$(sed -n '/stopped, to be restarted/,$s/^gpuslice worker: ready \([0-9]*\) ms after the process started$/\1/p' \
  "$(worker_field "$back" log)" | tail -n 1)
[ -n "$age" ] && [ "$age" -lt 60000 ] || fail "the restarted worker does not say when it was ready (got '$age')"
grep -Eq "worker $back is healthy, [0-9]+ ms after its start" "$tmp/serve.log" ||
  fail "serve does not say how long its restart of $back took"
grep -rq -- "--exit-on-device-failure" "/proc/$(worker_field "$other" pid)/cmdline" ||
  fail "serve does not start its workers with --exit-on-device-failure"
kill "$serve_pid"
wait "$serve_pid"
serve_pid=

# A worker alone: without the flag it stays up, the model unavailable.
# solo_worker ARGS...: a worker on free ports (its pid in wpid, its port in
# wport), ready when it answers.
solo_worker() {
  wport=$(free_port)
  "$GPUSLICE" worker --model-repository "$tmp/models" --http-port "$wport" \
    --grpc-port 0 "$@" >"$tmp/worker.log" 2>&1 &
  wpid=$!
  for _ in $(seq 200); do
    curl -sf -o /dev/null "http://127.0.0.1:$wport/v2/health/ready" && return 0
    sleep 0.05
  done
  fail "the worker did not start: $(cat "$tmp/worker.log")"
}
solo_worker
touch "$GPUSLICE_TEST_DEVICE_FAIL_FILE"
[ "$(infer "$wport")" = 500 ] || fail "the failed run was not 500: $(cat "$tmp/infer.out")"
sleep 0.5
kill -0 "$wpid" 2>/dev/null || fail "a worker without the flag exited"
code=$(curl -s -o "$tmp/ready.out" -w '%{http_code}' "http://127.0.0.1:$wport/v2/models/simple/ready")
[ "$code" = 400 ] || fail "the model is still ready after its device failed ($code)"
[ "$(infer "$wport")" = 503 ] && grep -q "restart the worker" "$tmp/infer.out" ||
  fail "the next request does not say why: $(cat "$tmp/infer.out")"
echo "without the flag: the worker stays up, the model unavailable: $(cat "$tmp/infer.out")"
kill "$wpid"
wait "$wpid"

# With the flag alone: it exits 1 after the failed request.
solo_worker --exit-on-device-failure
touch "$GPUSLICE_TEST_DEVICE_FAIL_FILE"
[ "$(infer "$wport")" = 500 ] || fail "the failed run was not 500 (flag)"
rc=0
timeout 10 tail --pid="$wpid" -f /dev/null || fail "the worker did not exit within 10 s"
wait "$wpid" || rc=$?
[ "$rc" = 1 ] || fail "exit status $rc, not 1: $(cat "$tmp/worker.log")"
grep -q "stopped, to be restarted: the device failed" "$tmp/worker.log" ||
  fail "its log does not say why: $(cat "$tmp/worker.log")"
echo "with the flag: exit 1, $(grep -m1 'stopped, to be restarted' "$tmp/worker.log")"
echo "PASS"
