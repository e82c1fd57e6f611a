#!/usr/bin/env bash
# gpuslice serve under the soft backend's green isolation, on the fakes of
# NVML, the CUDA driver (green contexts) and MPS, with the CPU engine: the
# three instances of the GPU live in ONE worker process (green contexts
# only run side by side inside one process), each on its own ports and SM
# range; the router reaches each; kill -9 of that process brings all three
# back; --status names the process; --remove/--add change the set WITHOUT
# restarting it (MIG's promise: the other instances are untouched): same
# pid, the two staying instances answer every request of a load sent to
# their own ports meanwhile, the removed one's port closes, the added one
# serves; an add that fails (repository unreadable) is reported, the others
# serve on, and it joins once it can; removing the instance the process
# started with (its first) is no different, and that instance can then be
# destroyed while the process runs; --workers-per-instance 2 is refused.
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
# NVML's device file, as the fake models it: nvidiactl-PID while the
# process has NVML initialized
export FAKE_NVML_DEVICE_DIR=$tmp/nvdev
mkdir -p "$FAKE_NVML_DEVICE_DIR"
export GPUSLICE_STATE_DIR=$tmp/green-state
# test hook: the run that removes this file fails as a faulted device
export GPUSLICE_TEST_DEVICE_FAIL_FILE=$tmp/device-fails
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

# procs_of ID: the pids `gpuslice list` counts in instance ID (0:N).
procs_of() {
  "$GPUSLICE" --json list | python3 -c "import json,sys
gi = int(sys.argv[1].split(':')[1])
for g in json.load(sys.stdin)['devices'][0]['gpu_instances']:
    if g['id'] == gi:
        print(' '.join(str(p['pid']) for p in g.get('processes', [])))" "$1"
}
# The backend counts the process in every instance it serves (the first
# no more than the others): each is busy, its memory held.
for id in $ids; do
  [ "$(procs_of "$id")" = "$pid" ] || fail "instance $id lists processes '$(procs_of "$id")', not $pid"
done
"$GPUSLICE" run -i "$2" --memory 1G -- true >"$tmp/run.out" 2>&1 &&
  fail "run --memory 1G in $2, whose memory the shared worker holds, was accepted"
grep -q "no memory left" "$tmp/run.out" || fail "run --memory 1G in $2: $(cat "$tmp/run.out")"
echo "PASS: every instance counts process $pid (busy, its memory held: $(cut -c1-90 "$tmp/run.out"))"

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
# serve keeps NVML open for the members' holds (one backend for the serve's
# life); its device file is not the workers': the new process, spawned
# while serve held it, does not inherit it.
fds_to() { ls -l "/proc/$1/fd" 2>/dev/null | grep -c "nvidiactl-$2\$"; }
[ "$(fds_to "$serve_pid" "$serve_pid")" -ge 1 ] ||
  fail "serve does not hold NVML open while it serves (no nvidiactl-$serve_pid among its descriptors)"
[ "$(fds_to "$new" "$serve_pid")" = 0 ] ||
  fail "process $new (serve $serve_pid) inherited serve's NVML descriptor: $(ls -l "/proc/$new/fd" | grep nvidiactl | tr "\n" " ")"
echo "PASS: serve's NVML descriptor stays serve's (not in process $new)"
every_instance_serves "after kill -9"
"$GPUSLICE" serve --status >"$tmp/st" || fail "serve --status after kill -9"
[ "$(grep -Ec " ready +$new +gpu0 " "$tmp/st")" = 3 ] || fail "status after kill -9: $(cat "$tmp/st")"

# A device failure under one instance: the process (one CUDA context for
# all three) exits, saying why, and all three come back in a new one at
# once (serve's --exit-on-device-failure), not after --restart-unhealthy.
touch "$GPUSLICE_TEST_DEVICE_FAIL_FILE"
[ "$(infer)" = 500 ] || fail "the failed run through the router: $(cat "$tmp/infer.out")"
for id in $ids; do
  out=$(wait_state "$id" ready 5 "$new") || { echo "$out"; exit 1; }
done
newer=$(workers_of)
for id in $ids; do
  [ "$(worker_field "$id" pid)" = "$newer" ] && [ "$(worker_field "$id" restarts)" = 2 ] ||
    fail "worker $id after the device failure: pid $(worker_field "$id" pid), restarts $(worker_field "$id" restarts)"
done
grep -q "stopped, to be restarted: the device failed while serving" "$(worker_field "${ids%% *}" log)" ||
  fail "the green process's log does not say why it stopped"
echo "PASS: a device failure in process $new: all three back in process $newer"
every_instance_serves "after the device failure"
new=$newer # the process the rest of the test changes

# wait_log PATTERN SECONDS [COUNT]: until the serve's log has COUNT (1)
# lines with PATTERN.
wait_log() {
  for _ in $(seq $(($2 * 10))); do
    [ "$(grep -c "$1" "$tmp/serve.log")" -ge "${3:-1}" ] && return 0
    sleep 0.1
  done
  fail "not ${3:-1} lines '$1' in the serve log after $2 s"
}
# port_closed PORT: nothing accepts connections on it.
port_closed() {
  python3 -c "import socket,sys
s=socket.socket(); s.settimeout(2)
sys.exit(0 if s.connect_ex(('127.0.0.1', int(sys.argv[1]))) else 1)" "$1"
}

# A load on each staying instance's own port (not through the router, which
# would hide a failure by retrying on another instance) during --remove and
# --add: a restart of the process fails requests and changes the ports.
# The one removed and added here is the newest; the first's removal is
# checked last.
X=$3
pA=$(worker_field "$1" http_port)
pB=$(worker_field "$2" http_port)
pX=$(worker_field "$X" http_port)
rm -f "$tmp/stop"
python3 "$GS_SOURCE_DIR/tests/integration/serve_load.py" --port "$pA" --threads 1 \
  --stop-file "$tmp/stop" --seconds 120 >"$tmp/load2.json" &
load2=$!
python3 "$GS_SOURCE_DIR/tests/integration/serve_load.py" --port "$pB" --threads 1 \
  --stop-file "$tmp/stop" --seconds 120 >"$tmp/load3.json" &
load3=$!
load_pid=$load2 # the cleanup's stop file ends both
sleep 1

"$GPUSLICE" serve --remove "$X" >/dev/null || fail "serve --remove $X"
wait_log "instance $X left the workers of gpu0 (pid $new)" 30
port_closed "$pX" || fail "the removed instance's port $pX still accepts"
[ "$(workers_of)" = "$new" ] && ! grep -q "^$X " <("$GPUSLICE" serve --status) ||
  fail "after --remove $X: $(workers_of | tr '\n' ' '); $("$GPUSLICE" serve --status)"
echo "PASS: --remove $X: same process ($new), port $pX closed"

"$GPUSLICE" serve --add "$X" >/dev/null || fail "serve --add $X"
out=$(wait_state "$X" ready 30) || { echo "$out"; exit 1; }
q1=$(worker_field "$X" http_port)
[ "$(workers_of)" = "$new" ] && [ "$(worker_field "$X" pid)" = "$new" ] ||
  fail "after --add $X: processes $(workers_of | tr '\n' ' '), $X in $(worker_field "$X" pid)"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$q1/v2/models/simple/ready")" = 200 ] ||
  fail "the added instance does not serve on its port $q1"
echo "PASS: --add $X: joins process $new on port $q1"

# An add that fails: the repository cannot be read (the staying instances
# have their models loaded and serve on); reported in the serve's log, and
# the instance joins once it can.
"$GPUSLICE" serve --remove "$X" >/dev/null || fail "serve --remove $X (2)"
wait_log "instance $X left the workers of gpu0 (pid $new)" 30 2
mv "$tmp/models" "$tmp/models.away"
"$GPUSLICE" serve --add "$X" >/dev/null || fail "serve --add $X (2)"
wait_log "instance $X could not join the workers of gpu0 (pid $new): .*cannot read model repository" 30
sleep 1
[ "$(worker_field "$X" state)" != ready ] || fail "$X is ready without a repository"
mv "$tmp/models.away" "$tmp/models"
out=$(wait_state "$X" ready 30) || { echo "$out"; exit 1; }
[ "$(workers_of)" = "$new" ] || fail "after the failed add: $(workers_of | tr '\n' ' ')"
echo "PASS: a failed add of $X is reported ($(grep -m1 "could not join" "$tmp/serve.log" | cut -c1-160)); it joins once it can"

# add, remove, add back to back: the first add's answer (its ports, soon
# closed) must not be taken for the second's.
"$GPUSLICE" serve --remove "$X" >/dev/null || fail "serve --remove $X (3)"
wait_log "instance $X left the workers of gpu0 (pid $new)" 30 3
"$GPUSLICE" serve --add "$X" >/dev/null && "$GPUSLICE" serve --remove "$X" >/dev/null &&
  "$GPUSLICE" serve --add "$X" >/dev/null || fail "serve --add/--remove/--add $X"
out=$(wait_state "$X" ready 30) || { echo "$out"; exit 1; }
wait_log "instance $X left the workers of gpu0 (pid $new)" 30 4
qx=$(worker_field "$X" http_port)
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$qx/v2/models/simple/ready")" = 200 ] ||
  fail "after add, remove, add: $X's port $qx does not serve"
echo "PASS: add, remove, add of $X back to back: it serves on its last port ($qx)"

touch "$tmp/stop"
wait "$load2" "$load3"
load_pid=
for f in load2 load3; do
  python3 - "$tmp/$f.json" <<'PY' || fail "a staying instance failed requests during --remove/--add: $(cat "$tmp/$f.json")"
import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if d["failed"] == 0 and d["ok"] > 20 else 1)
PY
done
for id in "$1" "$2"; do
  [ "$(worker_field "$id" pid)" = "$new" ] && [ "$(worker_field "$id" restarts)" = 2 ] &&
    [ "$(worker_field "$id" http_port)" = "$([ "$id" = "$1" ] && echo "$pA" || echo "$pB")" ] ||
    fail "staying $id: pid $(worker_field "$id" pid), restarts $(worker_field "$id" restarts), port $(worker_field "$id" http_port)"
done
grep -q "restart with the" "$tmp/serve.log" && fail "the process restarted: $(grep "restart with" "$tmp/serve.log")"
echo "PASS: staying $1 and $2 answered every request during the changes (ok: $(python3 -c "import json
print(json.load(open('$tmp/load2.json'))['ok'], json.load(open('$tmp/load3.json'))['ok'])"), failed: 0)"
every_instance_serves "after --remove and --add"

# Removing the instance the process started with (its first): no instance
# is special (`run --group` counts the process in none), so the process
# stays, the other two answer every request on their own ports meanwhile,
# and the removed instance can be destroyed while the process runs.
rm -f "$tmp/stop"
pB=$(worker_field "$2" http_port)
pX=$(worker_field "$3" http_port)
p1=$(worker_field "$1" http_port)
r2=$(worker_field "$2" restarts)
r3=$(worker_field "$3" restarts)
python3 "$GS_SOURCE_DIR/tests/integration/serve_load.py" --port "$pB" --threads 1 \
  --stop-file "$tmp/stop" --seconds 120 >"$tmp/load4.json" &
load4=$!
python3 "$GS_SOURCE_DIR/tests/integration/serve_load.py" --port "$pX" --threads 1 \
  --stop-file "$tmp/stop" --seconds 120 >"$tmp/load5.json" &
load5=$!
load_pid=$load4
sleep 1
"$GPUSLICE" serve --remove "$1" >/dev/null || fail "serve --remove $1"
wait_log "instance $1 left the workers of gpu0 (pid $new)" 30
port_closed "$p1" || fail "the removed first instance's port $p1 still accepts"
[ -z "$(procs_of "$1")" ] && [ "$(procs_of "$2")" = "$new" ] ||
  fail "after --remove $1: it lists '$(procs_of "$1")', $2 lists '$(procs_of "$2")'"
"$GPUSLICE" destroy -d 0 "${1#0:}" >"$tmp/destroy.out" 2>&1 ||
  fail "destroying the removed first instance $1 while the process runs: $(cat "$tmp/destroy.out")"
sleep 1
touch "$tmp/stop"
wait "$load4" "$load5"
load_pid=
for f in load4 load5; do
  python3 - "$tmp/$f.json" <<'PY' || fail "a staying instance failed requests while the first left: $(cat "$tmp/$f.json")"
import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if d["failed"] == 0 and d["ok"] > 5 else 1)
PY
done
[ "$(workers_of)" = "$new" ] || fail "after --remove $1: processes $(workers_of | tr '\n' ' ')"
[ "$(worker_field "$2" pid)" = "$new" ] && [ "$(worker_field "$3" pid)" = "$new" ] &&
  [ "$(worker_field "$2" restarts)" = "$r2" ] && [ "$(worker_field "$3" restarts)" = "$r3" ] ||
  fail "staying $2, $3: pids $(worker_field "$2" pid) $(worker_field "$3" pid), restarts $(worker_field "$2" restarts) $(worker_field "$3" restarts) (were $r2 $r3)"
grep -q "restart with the" "$tmp/serve.log" && fail "the process restarted: $(grep "restart with" "$tmp/serve.log")"
echo "PASS: --remove $1 (the process's first instance): same process ($new), $2 and $3 answered every request (ok: $(python3 -c "import json
print(json.load(open('$tmp/load4.json'))['ok'], json.load(open('$tmp/load5.json'))['ok'])"), failed: 0), $1 destroyed while it runs"

kill "$serve_pid"
wait "$serve_pid"
rc=$?
serve_pid=
[ $rc = 0 ] || fail "serve exited $rc on SIGTERM"
[ -z "$(workers_of)" ] || fail "a worker outlived the serve: $(workers_of)"
echo "PASS: SIGTERM stops the shared process"
echo "all passed"
