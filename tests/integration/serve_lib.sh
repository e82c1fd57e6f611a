# Shared setup of gpuslice serve's integration tests (sourced, not run): a
# host backend of a fixed shape in a temp state dir, the models of
# scripts/make_models.py, a serve started on free ports, and helpers to read
# its status. Everything is stopped and removed at exit.
set -u
: "${GPUSLICE:?}" "${GS_SOURCE_DIR:?}"
tmp=$(mktemp -d)
export GS_TMP=$tmp GPUSLICE_STATE_DIR=$tmp/state GPUSLICE_BACKEND=host
. "$GS_SOURCE_DIR/tests/integration/host_env.sh"
# Sanitizer-built workers cannot start under the RLIMIT_AS fallback (their
# shadow memory is terabytes of address space): test hook, tests only.
[ -n "${GS_SANITIZE:-}" ] && export GPUSLICE_TEST_NO_ADDRESS_LIMIT=1
serve_pid=
load_pid=
cleanup() {
  [ -n "$load_pid" ] && touch "$tmp/stop" && wait "$load_pid" 2>/dev/null
  if [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null; then
    wait "$serve_pid" 2>/dev/null
  fi
  # workers run as "gpuslice worker --model-repository=$tmp/models ..."
  pkill -9 -f "$tmp/models" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*"
  echo "--- serve log"; cat "$tmp/serve.log" 2>/dev/null | tail -30
  exit 1
}

# gen_models SCRIPT ARGS...: a model generator writing into $tmp/models. Its
# exit 77 (no interpreter has onnx) skips the test; any other failure fails
# it, so that a broken generator never passes as a skip.
gen_models() {
  local rc
  python3 "$@" --out "$tmp/models"
  rc=$?
  [ $rc -eq 77 ] && { echo "SKIP: ${1##*/} needs python3-onnx"; exit 77; }
  [ $rc -eq 0 ] || fail "${1##*/} exited $rc"
}
gen_models "$GS_SOURCE_DIR/scripts/make_models.py"

# add_slow_model: the `slow` model of make_slow_model.py (about 6 GFLOP a
# request of 128 rows) for requests that are still in flight when a drain
# starts; before start_serve.
add_slow_model() {
  gen_models "$GS_SOURCE_DIR/tests/integration/make_slow_model.py"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_serve ARGS...: gpuslice serve on free ports with ARGS; sets
# serve_pid, port and grpc_port, or fails when it is not ready in 60 s.
# The ports are free when picked, but serve binds them only after its
# workers are up, and a worker's own ephemeral port may take one first:
# then serve ends with "Address already in use" and is started again on
# new ports (three tries).
start_serve() {
  local try
  for try in 1 2 3; do
    port=$(free_port)
    grpc_port=$(free_port)
    # Emptied here, not by the redirection below: that one runs in the
    # background child, and the wait for "ready" could read an earlier
    # serve's line first.
    : >"$tmp/serve.log"
    "$GPUSLICE" serve --model-repository "$tmp/models" --http-port "$port" \
      --grpc-port "$grpc_port" "$@" >"$tmp/serve.log" 2>&1 &
    serve_pid=$!
    for _ in $(seq 600); do
      grep -q "gpuslice serve: ready" "$tmp/serve.log" && return 0
      kill -0 "$serve_pid" 2>/dev/null || break
      sleep 0.1
    done
    if ! kill -0 "$serve_pid" 2>/dev/null &&
      grep -q "Address already in use" "$tmp/serve.log"; then
      wait "$serve_pid" 2>/dev/null
      echo "start_serve: a port was taken before serve bound it (try $try): $(grep -m1 "Address already in use" "$tmp/serve.log")"
      continue
    fi
    kill -0 "$serve_pid" 2>/dev/null || fail "serve exited while starting"
    fail "serve not ready after 60 s"
  done
  fail "serve could not bind free ports in 3 tries"
}

# status_json: the admin view of the workers.
status_json() {
  curl -sf "http://127.0.0.1:$port/gpuslice/v1/workers"
}

# worker_field LABEL FIELD: one field of one worker's status.
worker_field() {
  status_json | python3 -c "import json,sys
for w in json.load(sys.stdin)['workers']:
    if w['worker'] == sys.argv[1]: print(w[sys.argv[2]])" "$1" "$2"
}

# wait_state LABEL STATE SECONDS [OLD_PID]: polls (every 20 ms, one
# process) until the worker is in STATE (and, with OLD_PID, is another
# process); prints the seconds it took since $WAIT_T0 (date +%s.%N, set
# before the event waited for) or since the call, fails after SECONDS.
wait_state() {
  local out
  out=$(python3 - "$port" "$@" <<'PY'
import json, os, sys, time, urllib.request
port, label, state, limit = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
old_pid = int(sys.argv[5]) if len(sys.argv) > 5 else None
t0 = float(os.environ.get("WAIT_T0") or time.time())
now = None
# Polls for up to 10 s more than the limit (a loaded machine may start this
# poller late), then judges the time the serve itself dates the change at.
while time.time() - t0 < limit + 10:
    with urllib.request.urlopen("http://127.0.0.1:%s/gpuslice/v1/workers" % port) as r:
        w = {w["worker"]: w for w in json.load(r)["workers"]}.get(label, {})
    now = "%s (pid %s)" % (w.get("state"), w.get("pid"))
    if w.get("state") == state and w.get("pid") != old_pid:
        took = time.time() - w.get("healthy_ms", 0) / 1000 - t0
        print("%.2f" % took)
        sys.exit(0 if took <= limit else "took %.2f s" % took)
    time.sleep(0.02)
print("it is %s" % now)
sys.exit(1)
PY
) || fail "worker $1 not $2 within $3 s ($out)"
  echo "$out"
}

# kill9_under_load CLIENTS LIMIT: kill -9 worker 0:1 while CLIENTS keep
# sending; waits until it is back (ready, a new pid) within LIMIT s, sends
# load for one more second, stops it. Sets pid1 (the killed one), took
# (seconds until back, dated by the serve) and load (start_load's result).
kill9_under_load() {
  start_load "$1"
  pid1=$(worker_field 0:1 pid)
  local t0
  t0=$(date +%s.%N)
  kill -9 "$pid1"
  # wait_state's fail ends only the $(...) subshell: fail here too
  took=$(WAIT_T0=$t0 wait_state 0:1 ready "$2" "$pid1") || {
    stop_load
    fail "after kill -9: $took"
  }
  sleep 1
  stop_load
}

# start_load THREADS: serve_load.py against the router until stop_load.
start_load() {
  rm -f "$tmp/stop"
  python3 "$GS_SOURCE_DIR/tests/integration/serve_load.py" --port "$port" \
    --threads "$1" --stop-file "$tmp/stop" --seconds 120 >"$tmp/load.json" &
  load_pid=$!
  sleep 1
}

# stop_load: ends the load and sets `load` to its JSON summary (not in a
# $(...): a subshell cannot wait for the load).
stop_load() {
  touch "$tmp/stop"
  wait "$load_pid"
  load_pid=
  load=$(cat "$tmp/load.json")
}

# infer [PORT]: one `simple` infer through the router (or to PORT, a
# worker's), its status printed.
infer() {
  curl -s -o "$tmp/infer.out" -w '%{http_code}' \
    "http://127.0.0.1:${1:-$port}/v2/models/simple/infer" -d '{"inputs":[
    {"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]},
    {"name":"INPUT1","shape":[1,16],"datatype":"INT32","data":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}]}'
}

# drain_slow_requests N OTHERS: SIGTERMs the serve while N slow requests,
# each on its own connection, are on the workers, then reads every answer:
# each must be 200 with the right output, however long the drain waits for
# it. OTHERS: how many requests other clients (a load) may have in flight at
# most; the serve's status must count more than OTHERS in flight before the
# SIGTERM, so that at least one slow request surely is. Prints a JSON
# summary; the caller waits for the serve. Needs add_slow_model.
drain_slow_requests() {
  python3 - "$port" "$serve_pid" "$1" "$2" <<'PY' || fail "slow requests in flight at SIGTERM"
import http.client, json, os, signal, sys, time, urllib.request
port, pid, n, others = (int(a) for a in sys.argv[1:5])
ROWS = [[float((r * 16 + c) % 251) for c in range(16)] for r in range(128)]
WANT = [x for row in ROWS for x in row]
BODY = json.dumps({"inputs": [{"name": "input", "shape": [128, 16],
                               "datatype": "FP32", "data": ROWS}]})

def in_flight():
    with urllib.request.urlopen("http://127.0.0.1:%d/gpuslice/v1/workers" % port,
                                timeout=30) as r:
        return sum(w["in_flight"] for w in json.load(r)["workers"])

conns = []
for _ in range(n):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("POST", "/v2/models/slow/infer", BODY,
              {"Content-Type": "application/json"})
    conns.append(c)
# Best all N on the workers (the others then wait behind them); where the
# others keep flowing (workers with more threads), more than OTHERS will do.
seen = 0
for i in range(500):
    seen = in_flight()
    if seen >= n + others or (i >= 100 and seen > others):
        break
    time.sleep(0.01)
if seen <= others:
    sys.exit("%d requests in flight, not more than the %d of other clients: "
             "no slow request surely in flight before the SIGTERM" % (seen, others))
os.kill(pid, signal.SIGTERM)
bad = []
for i, c in enumerate(conns):
    try:
        r = c.getresponse()
        data = r.read()
        if r.status != 200:
            bad.append("%d: %d %s" % (i, r.status, data[:200]))
        elif json.loads(data)["outputs"][0]["data"] != WANT:
            bad.append("%d: wrong output %s" % (i, data[:200]))
    except Exception as e:
        bad.append("%d: %s: %s" % (i, type(e).__name__, e))
    c.close()
print(json.dumps({"slow_sent": n, "in_flight_before_sigterm": seen, "failed": bad}))
sys.exit("in-flight requests dropped by the drain: %s" % bad if bad else 0)
PY
}

# drained_in_flight: how many requests the serve's drain started with (its
# log line "draining: ... finishing N requests"), or "" when there is none.
drained_in_flight() {
  sed -n 's/.*draining: .*finishing \([0-9]*\) requests.*/\1/p' "$tmp/serve.log" | head -1
}

"$GPUSLICE" create 1g.3gb 1g.3gb >/dev/null || fail "cannot create instances"
