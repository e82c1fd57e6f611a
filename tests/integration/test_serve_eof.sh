#!/usr/bin/env bash
# gpuslice serve replaces a dead worker when its pipes close, not only when
# the kernel reaps it (on a GPU a killed process's descriptors close 120-140
# ms before its reap: the context's teardown runs between). A test hook
# (GPUSLICE_TEST_SIGUSR2_CLOSES) makes SIGUSR2 close a worker's pipes and
# sockets and stop it, unreaped. Then, for a worker of its own (process
# isolation, host backend) and for a green process (soft backend on the
# fakes, every instance in it):
# - serve logs that its pipes closed and starts the replacement while the
#   old process still exists (stopped, not reaped);
# - the replacement serves (requests through the router succeed) and is
#   healthy before the old process is reaped; a green process's instances
#   are the new one's to hold (the backend counts it in them, not the old);
# - the old one is killed 5 s after its pipes closed and reaped (its exit
#   logged, no zombie), counted once: restarts stays 1;
# - a serve stopped while an old one waits kills it and exits cleanly.
. "$(dirname "$0")/serve_lib.sh"
export GPUSLICE_TEST_SIGUSR2_CLOSES=1

# wait_log PATTERN SECONDS: until the serve's log has a line with PATTERN.
wait_log() {
  for _ in $(seq $(($2 * 10))); do
    grep -qF "$1" "$tmp/serve.log" && return 0
    sleep 0.1
  done
  fail "no '$1' in the serve's log within $2 s"
}

# line_of PATTERN: the number of the serve log's first line with PATTERN.
line_of() {
  grep -nF "$1" "$tmp/serve.log" | head -1 | cut -d: -f1
}

# stopped PID: true while PID exists, stopped (not a zombie: not reaped).
stopped() {
  [ "$(sed 's/.*) \(.\).*/\1/' "/proc/$1/stat" 2>/dev/null)" = T ]
}

# replaced_before_reaped WHAT OLD NEW HEALTHY: serve said OLD's pipes closed,
# started NEW, and logged HEALTHY (its healthy line) before OLD's exit
# (sanitizers start slower than the 5 s grace: NEW's start is enough).
replaced_before_reaped() {
  local closed started healthy reaped
  wait_log "(pid $2), replaced already, killed by signal 9" 15
  closed=$(line_of "(pid $2): its pipes closed; starting its replacement")
  started=$(line_of "starting (pid $3")
  healthy=$(line_of "$4")
  reaped=$(line_of "(pid $2), replaced already, killed by signal 9")
  [ -n "$closed" ] && [ -n "$started" ] && [ "$closed" -lt "$started" ] &&
    [ "$started" -lt "$reaped" ] || fail "$1: not replaced before its reap"
  [ -n "${GS_SANITIZE:-}" ] || { [ -n "$healthy" ] && [ "$healthy" -lt "$reaped" ]; } ||
    fail "$1: the replacement was not healthy before the old process's reap"
  grep -qF "(pid $2) still runs 5000 ms after its pipes closed: killing it" "$tmp/serve.log" ||
    fail "$1: the old process was not killed after the grace"
  sleep 0.2
  [ ! -e "/proc/$2" ] || fail "$1: process $2 not reaped: $(cat "/proc/$2/stat")"
}

# stop_serve_with_orphan PID: SIGUSR2 to PID, SIGTERM to the serve once it
# replaced it: the serve ends (status 0) and PID with it.
stop_serve_with_orphan() {
  kill -USR2 "$1"
  wait_log "(pid $1): its pipes closed" 5
  stopped "$1" || fail "process $1 is not waiting (stopped) to be reaped"
  kill "$serve_pid"
  local rc=0
  timeout 60 tail --pid="$serve_pid" -f /dev/null || fail "serve did not end"
  wait "$serve_pid" || rc=$?
  serve_pid=
  [ "$rc" = 0 ] || fail "serve ended with status $rc"
  [ ! -e "/proc/$1" ] || fail "process $1 outlived the serve"
  grep -qF "(pid $1), replaced already, killed by signal 9" "$tmp/serve.log" ||
    fail "the serve's log does not say process $1 was reaped"
}

# --- process isolation: worker 0:1 of two
start_serve --policy round_robin --health-interval 100
old=$(worker_field 0:1 pid)
t0=$(date +%s.%N)
kill -USR2 "$old"
wait_log "worker 0:1 (pid $old): its pipes closed; starting its replacement before it is reaped" 5
stopped "$old" || fail "worker $old is not waiting (stopped) to be reaped"
WAIT_T0=$t0 wait_state 0:1 ready 5 "$old" >/dev/null
new=$(worker_field 0:1 pid)
before=$(worker_field 0:1 requests)
for _ in $(seq 10); do
  [ "$(infer)" = 200 ] || fail "infer after the replacement: $(cat "$tmp/infer.out")"
done
[ $(($(worker_field 0:1 requests) - before)) -ge 1 ] || fail "no request reached the new worker 0:1"
[ -z "${GS_SANITIZE:-}" ] && { stopped "$old" || fail "old worker $old is gone before its replacement served"; }
echo "PASS: worker 0:1 replaced (pid $old -> $new) before the old one was reaped"
replaced_before_reaped "worker 0:1" "$old" "$new" "worker 0:1 is healthy, "
[ "$(worker_field 0:1 restarts)" = 1 ] || fail "restarts of 0:1: $(worker_field 0:1 restarts), not 1"
[ "$(worker_field 0:1 pid)" = "$new" ] || fail "the old process's reap touched the new worker"
[ "$(infer)" = 200 ] || fail "infer after the old worker's reap"
echo "PASS: the old worker $old killed after the grace and reaped; one restart counted"
stop_serve_with_orphan "$(worker_field 0:2 pid)"
echo "PASS: a serve stopped while an old worker waits kills it and ends cleanly"

# --- green isolation: one process for the GPU's instances
BUILD=$(dirname "$GPUSLICE")
NVML="$BUILD/tests/fake_nvml/current/libnvidia-ml.so.1"
CUDA="$BUILD/tests/fake_cuda/libcuda.so.1"
if [ ! -f "$NVML" ] || [ ! -f "$CUDA" ]; then
  echo "SKIP: green isolation: the fakes are not built next to $GPUSLICE"
  exit 0
fi
export GPUSLICE_BACKEND=soft GPUSLICE_NVML_LIBRARY="$NVML" GPUSLICE_CUDA_LIBRARY="$CUDA"
export GPUSLICE_MPS_CONTROL="$GS_SOURCE_DIR/tests/fake_mps/nvidia-cuda-mps-control"
export FAKE_NVML_CONFIG=h100-80gb:off FAKE_CUDA_SMS=132
export GPUSLICE_STATE_DIR=$tmp/green-state
"$GPUSLICE" --isolation green create 1g.10gb 1g.10gb >/dev/null ||
  fail "cannot create green instances"
ids=$("$GPUSLICE" --json list | python3 -c "import json,sys
print(' '.join('0:%d' % g['id'] for g in json.load(sys.stdin)['devices'][0]['gpu_instances']))")
start_serve --health-interval 100
set -- $ids
old=$(worker_field "$1" pid)
group=$(worker_field "$1" process)
kill -USR2 "$old"
wait_log "workers of $group (pid $old): its pipes closed; starting its replacement before it is reaped" 5
stopped "$old" || fail "green process $old is not waiting (stopped) to be reaped"
for id in $ids; do
  wait_state "$id" ready 10 "$old" >/dev/null
done
new=$(worker_field "$1" pid)
for id in $ids; do
  [ "$(worker_field "$id" pid)" = "$new" ] || fail "instance $id is not in the new process $new"
done
for _ in $(seq 10); do
  [ "$(infer)" = 200 ] || fail "infer after the green replacement: $(cat "$tmp/infer.out")"
done
[ -z "${GS_SANITIZE:-}" ] && { stopped "$old" || fail "old green process $old is gone before its replacement served"; }
grep -q "cannot count the workers" "$tmp/serve.log" &&
  fail "the old process still held the instances: $(grep "cannot count" "$tmp/serve.log")"
echo "PASS: green process replaced (pid $old -> $new) before the old one was reaped"
replaced_before_reaped "green process" "$old" "$new" "worker $1 is healthy, "
for id in $ids; do
  [ "$(worker_field "$id" restarts)" = 1 ] || fail "restarts of $id: $(worker_field "$id" restarts), not 1"
done
echo "PASS: the old green process $old killed after the grace and reaped; one restart counted"
stop_serve_with_orphan "$new"
echo "PASS: a serve stopped while an old green process waits kills it and ends cleanly"
