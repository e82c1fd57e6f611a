#!/usr/bin/env bash
# gpuslice serve on the host backend with real processes on loopback: the
# router in front of two workers (round robin shares, statistics summed over
# workers, /metrics with instance labels, worker errors passed through,
# malformed HTTP rejected at the router in the same format), the status
# view, -f serve.yaml, live changes (an apply adds a worker, --remove and
# --add stop and start one without touching the other), gRPC through the
# router with Triton's client when pip can install it, and a graceful drain
# on SIGTERM under load.
. "$(dirname "$0")/serve_lib.sh"
. "$(dirname "$0")/triton_env.sh"
add_slow_model

start_serve --policy round_robin
base=http://127.0.0.1:$port
pid1=$(worker_field 0:1 pid)
pid2=$(worker_field 0:2 pid)
[ "$pid1" -gt 0 ] && [ "$pid2" -gt 0 ] || fail "workers have no pids"

# Workers run inside their instances: the run confinement set the marker.
grep -q "GPUSLICE_INSTANCE_UUID" "/proc/$pid1/environ" 2>/dev/null ||
  tr '\0' '\n' <"/proc/$pid1/environ" | grep -q GPUSLICE_INSTANCE ||
  fail "worker 0:1 was not started through gpuslice run"

for _ in $(seq 20); do
  [ "$(infer)" = 200 ] || fail "infer through the router: $(cat "$tmp/infer.out")"
done
grep -q '"data":\[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16\]' "$tmp/infer.out" ||
  fail "wrong sums: $(cat "$tmp/infer.out")"
r1=$(worker_field 0:1 requests)
r2=$(worker_field 0:2 requests)
[ "$r1" -eq 10 ] && [ "$r2" -eq 10 ] ||
  fail "round robin should split 20 requests 10/10, got $r1/$r2"

# Statistics are the sum over workers: 20 successes in all.
succ=$(curl -sf "$base/v2/models/simple/stats" | python3 -c "import json,sys
print(json.load(sys.stdin)['model_stats'][0]['inference_stats']['success']['count'])")
[ "$succ" = 20 ] || fail "summed statistics count $succ, want 20"

curl -sf "$base/metrics" >"$tmp/metrics" || fail "/metrics"
grep -q 'nv_inference_request_success{instance="0:1",model="simple",version="1"} 10' "$tmp/metrics" ||
  fail "worker metrics without instance labels: $(grep success "$tmp/metrics" | head -3)"
grep -q 'gpuslice_worker_up{instance="0:2"} 1' "$tmp/metrics" || fail "router metrics"
python3 - "$tmp/metrics" <<'PY' || fail "metric families are not grouped"
import re, sys
seen, last = set(), None
for line in open(sys.argv[1]):
    m = re.match(r"(?:# (?:HELP|TYPE) )?([A-Za-z_:][A-Za-z0-9_:]*)", line)
    if not m:
        continue
    name = m.group(1)
    if name != last:
        if name in seen:
            sys.exit("family %s appears in two places" % name)
        seen.add(name)
        last = name
PY

# The worker's errors pass through with its status.
code=$(curl -s -o "$tmp/o" -w '%{http_code}' "$base/v2/models/nope/infer" -d '{}')
[ "$code" = 404 ] && grep -q "unknown model" "$tmp/o" || fail "unknown model: $code $(cat "$tmp/o")"
code=$(curl -s -o "$tmp/o" -w '%{http_code}' "$base/v2/models/simple/infer" -d '{"inputs":')
[ "$code" = 400 ] && grep -q '"error"' "$tmp/o" || fail "bad JSON: $code $(cat "$tmp/o")"
code=$(curl -s -o "$tmp/o" -w '%{http_code}' "$base/v2/models/simple/stats/x")
[ "$code" = 404 ] || fail "unknown path: $code"
# A URL near the reader's 8 KiB limit is forwarded whole (the worker says
# 404), one over it is refused at the router (414); the router lives on.
long=$(printf 'x%.0s' $(seq 8000))
code=$(curl -s -o "$tmp/o" -w '%{http_code}' "$base/v2/models/$long/ready")
[ "$code" = 404 ] || [ "$code" = 400 ] || fail "long URL: $code $(head -c 200 "$tmp/o")"
long=$(printf 'x%.0s' $(seq 9000))
code=$(curl -s -o "$tmp/o" -w '%{http_code}' "$base/v2/models/$long/ready")
[ "$code" = 414 ] || fail "URL over 8 KiB: $code"
[ "$(infer)" = 200 ] || fail "router after long URLs"
# Malformed HTTP is answered by the router itself, in the same format.
printf 'GARBAGE / HTTP/1.1\r\n\r\n' | timeout 5 python3 -c "
import socket,sys
s=socket.create_connection(('127.0.0.1',$port)); s.sendall(sys.stdin.buffer.read())
d=b''
while True:
    c=s.recv(4096)
    if not c: break
    d+=c
print(d.decode())" >"$tmp/raw"
grep -q "^HTTP/1.1 400" "$tmp/raw" && grep -q '{"error":' "$tmp/raw" ||
  fail "malformed request: $(cat "$tmp/raw")"
code=$(curl -s -o "$tmp/o" -w '%{http_code}' -X DELETE "$base/gpuslice/v1/workers")
[ "$code" = 405 ] || fail "admin with a wrong method: $code"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$base/v2/health/ready")" = 200 ] || fail ready

# gpuslice serve --status finds the serve through the state directory.
"$GPUSLICE" serve --status >"$tmp/st" || fail "serve --status"
grep -q "^0:1 .*ready" "$tmp/st" && grep -q "^0:2 .*ready" "$tmp/st" ||
  fail "status: $(cat "$tmp/st")"

# Live changes: an instance created now gets a worker; the others keep
# their processes.
"$GPUSLICE" create 1g.3gb >/dev/null || fail "create a third instance"
wait_state 0:3 ready 30 >/dev/null
[ "$(worker_field 0:1 pid)" = "$pid1" ] || fail "worker 0:1 restarted on a layout change"
# The admin answers are read, not just grepped: a status that fails to
# answer is no proof that 0:3 is gone.
out=$("$GPUSLICE" --json serve --remove 0:3) || fail "serve --remove: $out"
python3 -c 'import json,sys; d=json.loads(sys.argv[1])
sys.exit(0 if d["removed"] == "0:3" and d["workers"] == 1 else d)' "$out" ||
  fail "serve --remove 0:3 answered: $out"
listed() {
  status_json | python3 -c 'import json,sys
print(*sorted(w["worker"] for w in json.load(sys.stdin)["workers"]))'
}
for _ in $(seq 100); do
  now=$(listed) || fail "no worker status after --remove"
  [ "$now" = "0:1 0:2" ] && break
  sleep 0.1
done
[ "$now" = "0:1 0:2" ] || fail "workers after --remove 0:3: '$now', want '0:1 0:2'"
"$GPUSLICE" destroy 3 >/dev/null || fail "the removed instance is still busy"
code=$("$GPUSLICE" serve --remove 0:9 2>&1 >/dev/null; echo $?)
[ "${code##*$'\n'}" = 2 ] || fail "--remove of an unknown instance: $code"
out=$("$GPUSLICE" serve --remove 0:2) || fail "--remove 0:2"
[ "$out" = "removed 0:2: 1 workers" ] || fail "--remove 0:2 printed: $out"
sleep 0.5
for _ in $(seq 10); do
  [ "$(infer)" = 200 ] || fail "infer with one worker left"
done
"$GPUSLICE" serve --add 0:2 >/dev/null || fail "--add 0:2"
wait_state 0:2 ready 30 >/dev/null
[ "$(worker_field 0:1 pid)" = "$pid1" ] || fail "worker 0:1 restarted by --add/--remove"

# gRPC through the router, with Triton's client where pip can install it.
# PyPI is reachable on CI, so a client that cannot be installed is a
# failure, never a silent skip.
triton_python || fail "cannot install tritonclient[grpc] from PyPI for the gRPC check: $TRITON_WHY"
"$TRITON_PY" - "$grpc_port" <<'PY' || fail "gRPC through the router"
import sys, numpy as np, tritonclient.grpc as g
c = g.InferenceServerClient("127.0.0.1:%s" % sys.argv[1])
assert c.is_server_live() and c.is_model_ready("simple")
a = np.arange(16, dtype=np.int32).reshape(1, 16)
b = np.ones((1, 16), dtype=np.int32)
for _ in range(20):
    i0 = g.InferInput("INPUT0", [1, 16], "INT32"); i0.set_data_from_numpy(a)
    i1 = g.InferInput("INPUT1", [1, 16], "INT32"); i1.set_data_from_numpy(b)
    r = c.infer("simple", [i0, i1])
    assert (r.as_numpy("OUTPUT0") == a + b).all()
try:
    c.infer("nope", [i0, i1]); sys.exit("unknown model accepted")
except g.InferenceServerException as e:
    assert "unknown model" in str(e) or "not found" in str(e), e
PY

# Graceful drain: SIGTERM under load while slow requests (hundreds of ms of
# CPU each) are on the workers; every request in flight gets its answer,
# the serve exits 0 and its workers are gone.
start_load 8
drain_slow_requests 8 8
wait "$serve_pid"
rc=$?
serve_pid=
[ "$rc" = 0 ] || fail "serve exited $rc after SIGTERM"
stop_load
n=$(drained_in_flight)
# more than the load's 8: a slow request surely was in flight
[ "${n:-0}" -gt 8 ] || fail "the drain did not start with slow requests in flight: $(grep draining "$tmp/serve.log")"
# After the SIGTERM a new connection is refused; nothing else may fail.
python3 -c "import json,sys
d=json.loads(sys.argv[1])
bad=[e for e in d['errors'] if 'Connection refused' not in e and 'Errno 111' not in e]
sys.exit('requests failed during the drain: %s' % bad if bad else 0)" "$load" ||
  fail "drain: $load"
pgrep -f "$tmp/models" >/dev/null && fail "workers left after the drain"
grep -q "draining" "$tmp/serve.log" || fail "no drain in the log"

# -f serve.yaml: the same options as keys; a bad key names file:line:col.
cat >"$tmp/serve.yaml" <<YAML
model_repository: $tmp/models
http_port: $(free_port)
grpc_port: 0
instances: [0:1]
policy: least_request
YAML
printf 'http_port: 1\nbogus: 2\n' >"$tmp/bad.yaml"
out=$("$GPUSLICE" serve -f "$tmp/bad.yaml" 2>&1)
[ $? = 2 ] && echo "$out" | grep -q "bad.yaml:2:1: unknown key 'bogus'" ||
  fail "bad serve.yaml: $out"
"$GPUSLICE" serve -f "$tmp/serve.yaml" >"$tmp/serve.log" 2>&1 &
serve_pid=$!
for _ in $(seq 300); do
  grep -q "serve: ready" "$tmp/serve.log" && break
  sleep 0.1
done
grep -q "serve: ready" "$tmp/serve.log" || fail "serve -f did not start"
port=$(python3 -c "import json; print(json.load(open('$tmp/state/serve.json'))['http_port'])")
n=$(status_json | python3 -c "import json,sys; d=json.load(sys.stdin); print(len(d['workers']), d['policy'])")
[ "$n" = "1 least_request" ] || fail "serve.yaml: $n"
echo "PASS"
