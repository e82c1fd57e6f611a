#!/usr/bin/env bash
# gpuslice serve under the soft backend's green isolation, on the fakes of
# NVML, the CUDA driver (green contexts) and MPS, with the CPU engine: the
# three instances of the GPU live in ONE worker process (green contexts
# only run side by side inside one process), each on its own ports and SM
# range; the router reaches each; kill -9 of that process brings all three
# back; --status names the process; --remove/--add restart it with the new
# set; --workers-per-instance 2 is refused.
. "$(dirname "$0")/serve_lib.sh"
BUILD=$(dirname "$GPUSLICE")
NVML="$BUILD/tests/fake_nvml/current/libnvidia-ml.so.1"
CUDA="$BUILD/tests/fake_cuda/libcuda.so.1"
if [ ! -f "$NVML" ] || [ ! -f "$CUDA" ]; then
  echo "skip: the fakes are not built next to $GPUSLICE"
  exit 77
fi
export GPUSLICE_BACKEND=soft GPUSLICE_NVML_LIBRARY="$NVML" GPUSLICE_CUDA_LIBRARY="$CUDA"
export GPUSLICE_MPS_CONTROL="$GS_SOURCE_DIR/tests/fake_mps/nvidia-cuda-mps-control"
export FAKE_NVML_CONFIG=h100-80gb:off FAKE_CUDA_SMS=132
export GPUSLICE_STATE_DIR=$tmp/green-state
"$GPUSLICE" --isolation green create 1g.10gb 1g.10gb 1g.10gb >/dev/null ||
  fail "cannot create green instances"
ids=$("$GPUSLICE" --json list | python3 -c "import json,sys
print(' '.join('0:%d' % g['id'] for g in json.load(sys.stdin)['devices'][0]['gpu_instances']))")
set -- $ids
[ $# = 3 ] || fail "three instances: $ids"

# workers_of: the worker processes of this test's serve (one line each).
workers_of() {
  pgrep -f "worker --model-repository=$tmp/models" || true
}

# --workers-per-instance 2: one process per GPU, one worker per instance.
timeout 60 "$GPUSLICE" serve --model-repository "$tmp/models" --http-port 0 \
  --grpc-port 0 --workers-per-instance 2 >"$tmp/refused.log" 2>&1 &&
  fail "--workers-per-instance 2 under green isolation was accepted"
grep -q "one worker process" "$tmp/refused.log" ||
  fail "the refusal says why: $(cat "$tmp/refused.log")"
echo "PASS: --workers-per-instance 2 refused"

start_serve
[ "$(workers_of | wc -l)" = 1 ] || fail "one worker process: $(workers_of | tr '\n' ' ')"
pid=$(workers_of)
for id in $ids; do
  [ "$(worker_field "$id" pid)" = "$pid" ] || fail "worker $id is not in process $pid"
done
echo "PASS: three green instances, one worker process ($pid)"
# Each instance's router entry is that instance's worker: the port and SMs
# the process logged for the instance (its --instance ID=FIRST:COUNT).
log=$(worker_field "$1" log)
for id in $ids; do
  want="instance $id (SMs $(worker_field "$id" sm_partition | python3 -c "import ast,sys
p=ast.literal_eval(sys.stdin.read()); print('%d+%d' % (p['first'], p['count']))")) on http $(worker_field "$id" http_port)"
  grep -qF "$want" "$log" || fail "worker $id is not the process's $id: no '$want' in $log: $(grep instance "$log")"
done
echo "PASS: each instance routes to its own worker and SMs in the process"
tr '\0' '\n' <"/proc/$pid/environ" | grep -q "^GPUSLICE_ISOLATION=green$" ||
  fail "the process was not started through gpuslice run under green isolation"

# per_instance_infers: each instance's own count of successful infers of
# `simple`, read from its own port (not the router's sum).
per_instance_infers() {
  local id p
  for id in $ids; do
    p=$(worker_field "$id" http_port)
    curl -sf "http://127.0.0.1:$p/v2/models/simple/stats" | python3 -c "import json,sys
print(json.load(sys.stdin)['model_stats'][0]['inference_stats']['success']['count'])"
  done | tr '\n' ' '
}

# every_instance_serves WHAT: 30 infers through the router, round robin:
# each instance's own statistics count some.
every_instance_serves() {
  local counts
  for _ in $(seq 30); do
    [ "$(infer)" = 200 ] || fail "$1: infer through the router: $(cat "$tmp/infer.out")"
  done
  counts=$(per_instance_infers)
  for c in $counts; do
    [ "$c" -gt 0 ] || fail "$1: an instance got no request (per instance: $counts)"
  done
  echo "PASS: $1: requests reach each instance (per instance: $counts)"
}
every_instance_serves "first start"

# serve --status: each instance with its process and SMs.
"$GPUSLICE" serve --status >"$tmp/st" || fail "serve --status"
for id in $ids; do
  grep -Eq "^$id +$id +1g\.10gb +ready +$pid +gpu0 +16@[0-9]+ " "$tmp/st" ||
    fail "status of $id: $(cat "$tmp/st")"
done
echo "PASS: serve --status lists each instance in process $pid"

# kill -9 of the one process: every instance comes back, in one new one.
kill -9 "$pid"
for id in $ids; do
  out=$(wait_state "$id" ready 30 "$pid") || { echo "$out"; exit 1; }
done
[ "$(workers_of | wc -l)" = 1 ] || fail "one worker process after kill -9: $(workers_of | tr '\n' ' ')"
new=$(workers_of)
for id in $ids; do
  [ "$(worker_field "$id" pid)" = "$new" ] && [ "$(worker_field "$id" restarts)" = 1 ] ||
    fail "worker $id after kill -9: pid $(worker_field "$id" pid), restarts $(worker_field "$id" restarts)"
done
echo "PASS: kill -9 of process $pid: all three back in process $new"
every_instance_serves "after kill -9"
"$GPUSLICE" serve --status >"$tmp/st" || fail "serve --status after kill -9"
[ "$(grep -Ec " ready +$new +gpu0 " "$tmp/st")" = 3 ] || fail "status after kill -9: $(cat "$tmp/st")"

# --remove: the process restarts with the two others; --add: all three.
"$GPUSLICE" serve --remove "$1" >/dev/null || fail "serve --remove $1"
out=$(wait_state "$2" ready 30 "$new") || { echo "$out"; exit 1; }
out=$(wait_state "$3" ready 30 "$new") || { echo "$out"; exit 1; }
[ "$(workers_of | wc -l)" = 1 ] && ! grep -q "^$1 " <("$GPUSLICE" serve --status) ||
  fail "after --remove $1: $(workers_of | tr '\n' ' '); $("$GPUSLICE" serve --status)"
two=$(workers_of)
[ "$(worker_field "$2" pid)" = "$two" ] || fail "$2 is not in the new process"
echo "PASS: --remove $1: the others in one new process ($two)"
"$GPUSLICE" serve --add "$1" >/dev/null || fail "serve --add $1"
for id in $ids; do
  out=$(wait_state "$id" ready 30 "$two") || { echo "$out"; exit 1; }
done
[ "$(workers_of | wc -l)" = 1 ] || fail "one process after --add: $(workers_of | tr '\n' ' ')"
echo "PASS: --add $1: three instances in one process again ($(workers_of))"
every_instance_serves "after --remove and --add"

kill "$serve_pid"
wait "$serve_pid"
rc=$?
serve_pid=
[ $rc = 0 ] || fail "serve exited $rc on SIGTERM"
[ -z "$(workers_of)" ] || fail "a worker outlived the serve: $(workers_of)"
echo "PASS: SIGTERM stops the shared process"
echo "all passed"
