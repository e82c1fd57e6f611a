#!/usr/bin/env bash
# gpuslice serve's router loops (--router-threads), host backend, two
# workers, real processes on loopback. Each check is named; the first that
# fails ends the test (serve_lib.sh's fail):
# 1. 64 keep-alive clients through 4 loops: every sum right, the loops'
#    request counters (status and /metrics) add up to the requests sent,
#    and the kernel spread the connections over at least 2 loops;
# 2. admin calls and fan-outs (workers, summed stats, /metrics, repository
#    load) on fresh connections: every answer right, and each connection is
#    traced (an infer on it moves one loop's counter) so that every loop is
#    shown to answer them, loops 1.. through the hand-off to the main loop;
# 3. kill -9 a worker under 16 clients: no request fails, it comes back;
# 4. SIGTERM under load with slow requests (hundreds of ms of CPU each) on
#    the workers: exit 0 before the drain timeout, no request in flight
#    lost (the slow ones included), no worker left; 4b. idle keep-alive
#    connections on every loop are answered once more during the drain;
# 5. --router-threads 0/17 and router_threads: 0 in serve.yaml are refused
#    (exit 2, naming the option, file:line:column); --router-threads 1
#    serves with one loop;
# 6. a serve.yaml's router_threads: 4 gives 4 loops, and their shared port
#    stays theirs: a plain bind of it (no SO_REUSEPORT) fails, and so does
#    a second serve (which would set SO_REUSEPORT too).
. "$(dirname "$0")/serve_lib.sh"
add_slow_model
# Sanitizers make everything about 3x slower.
x=${GS_SANITIZE:+3}
x=${x:-1}
loops=4
# The drain waits for the slow requests of check 4: an upper bound only.
drain_ms=$((15000 * x))

ok() { echo "ok - $1"; }

# loop_counts: the status' router_loop_requests, space-separated.
loop_counts() {
  status_json | python3 -c "import json,sys
print(*json.load(sys.stdin)['router_loop_requests'])"
}

# explicit: the admin calls below include a repository load (broadcast),
# which Triton's default mode none refuses.
start_serve --router-threads "$loops" --policy round_robin \
  --health-interval 100 --drain-timeout "$drain_ms" \
  --model-control-mode explicit --load-model '*'

# --- 1. keep-alive load over the loops
c="check 1 (64 keep-alive clients over $loops loops)"
before=$(loop_counts) || fail "$c: status"
start_load 64
sleep $((2 * x))
stop_load
after=$(loop_counts) || fail "$c: status"
curl -sf "http://127.0.0.1:$port/metrics" >"$tmp/metrics" || fail "$c: /metrics"
python3 - "$load" "$before" "$after" "$loops" "$tmp/metrics" <<'PY' || fail "$c: load $load"
import json, re, sys
load = json.loads(sys.argv[1])
before = [int(v) for v in sys.argv[2].split()]
after = [int(v) for v in sys.argv[3].split()]
loops = int(sys.argv[4])
if load["failed"] or load["ok"] == 0:
    sys.exit("failed or wrong answers: %s" % load)
if len(after) != loops:
    sys.exit("router_loop_requests has %d entries, want %d: %s"
             % (len(after), loops, after))
delta = [a - b for a, b in zip(after, before)]
if sum(delta) != load["ok"]:
    sys.exit("the loops counted %d requests (%s), the clients sent %d"
             % (sum(delta), delta, load["ok"]))
busy = sum(1 for d in delta if d > 0)
if busy < 2:
    sys.exit("only %d loop took requests: %s" % (busy, delta))
metric = {}
for line in open(sys.argv[5]):
    m = re.match(r'gpuslice_router_loop_requests_total\{loop="(\d+)"\} (\d+)$',
                 line.strip())
    if m:
        metric[int(m.group(1))] = int(m.group(2))
if metric != dict(enumerate(after)):
    sys.exit("/metrics says %s, the status %s" % (metric, after))
print("%d requests, per loop %s" % (load["ok"], delta))
PY
ok "$c"

# --- 2. admin calls and fan-outs through every loop
c="check 2 (admin and fan-out through every loop)"
python3 - "$port" "$loops" <<'PY' || fail "$c"
import http.client, json, sys, time
port, loops = int(sys.argv[1]), int(sys.argv[2])
ROUNDS = 60  # fresh connections; 4 loops all reached but with p ~ 1e-7
BODY = json.dumps({"inputs": [
    {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": list(range(16))},
    {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": [1] * 16}]})

def call(conn, method, path, body=None):
    conn.request(method, path, body,
                 {"Content-Type": "application/json"} if body is not None else {})
    r = conn.getresponse()
    data = r.read()
    if r.status != 200:
        sys.exit("%s %s: %d %s" % (method, path, r.status, data[:300]))
    if (r.getheader("Connection") or "").lower() == "close":
        sys.exit("%s %s: the router closed the connection" % (method, path))
    return data

def counts(model_stats):
    m = model_stats["model_stats"][0]
    return (m["inference_count"], m["execution_count"],
            m["inference_stats"]["success"]["count"])

t0 = time.time()
took = [0] * loops  # rounds answered per loop
for i in range(ROUNDS):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    # the connection's first request is an admin call
    st = json.loads(call(conn, "GET", "/gpuslice/v1/workers"))
    if len(st["router_loop_requests"]) != loops or len(st["workers"]) != 2:
        sys.exit("round %d: status %s" % (i, st))
    # the workers' own statistics, on their own ports, added together
    own = [0, 0, 0]
    for w in st["workers"]:
        wc = http.client.HTTPConnection("127.0.0.1", w["http_port"], timeout=30)
        c = counts(json.loads(call(wc, "GET", "/v2/models/simple/stats")))
        wc.close()
        own = [a + b for a, b in zip(own, c)]
    summed = counts(json.loads(call(conn, "GET", "/v2/models/simple/stats")))
    if list(summed) != own or own[0] == 0:
        sys.exit("round %d: the router's stats (inference, execution, success) "
                 "%s, the workers' added together %s" % (i, summed, own))
    metrics = call(conn, "GET", "/metrics").decode()
    for inst in ("0:1", "0:2"):
        if not any(l.startswith("nv_") and 'instance="%s"' % inst in l
                   for l in metrics.splitlines()):
            sys.exit("round %d: /metrics has no worker samples of %s:\n%s"
                     % (i, inst, metrics[:2000]))
    call(conn, "POST", "/v2/repository/models/simple/load", b"")
    # which loop holds this connection: an infer on it moves its counter
    out = json.loads(call(conn, "POST", "/v2/models/simple/infer", BODY))
    if out["outputs"][0]["data"] != [k + 1 for k in range(16)]:
        sys.exit("round %d: wrong sums %s" % (i, out))
    st2 = json.loads(call(conn, "GET", "/gpuslice/v1/workers"))
    moved = [k for k in range(loops) if st2["router_loop_requests"][k]
             != st["router_loop_requests"][k]]
    if len(moved) != 1:
        sys.exit("round %d: the infer moved loops %s (%s -> %s)"
                 % (i, moved, st["router_loop_requests"],
                    st2["router_loop_requests"]))
    took[moved[0]] += 1
    conn.close()
print("%d fresh connections per loop %s, %.1f s" % (ROUNDS, took, time.time() - t0))
if 0 in took:
    sys.exit("some loop answered no admin call: %s" % took)
PY
ok "$c"

# --- 3. kill -9 a worker under load
c="check 3 (kill -9 a worker under 16 clients)"
kill9_under_load 16 "$((3 * x))"
python3 -c "import json,sys
d=json.loads(sys.argv[1])
sys.exit(0 if d['failed']==0 and d['ok']>0 else 'failed requests: %s' % d)" "$load" ||
  fail "$c: $load"
[ "$(worker_field 0:1 pid)" != "$pid1" ] || fail "$c: worker 0:1 not restarted"
[ "$(worker_field 0:1 restarts)" = 1 ] || fail "$c: restarts $(worker_field 0:1 restarts)"
[ "$(worker_field 0:1 state)" = ready ] || fail "$c: 0:1 is $(worker_field 0:1 state)"
echo "worker 0:1 back in ${took}s; $load; retries $(status_json | python3 -c 'import json,sys; print(json.load(sys.stdin)["retries"])')"
ok "$c"

# --- 4. SIGTERM under load
c="check 4 (SIGTERM under load, $loops loops)"
# serve_load.py keeps reconnecting after the drain and keeps only its
# first 10 errors; this load tells every request's fate: each client stops
# at its first refused (or never accepted) connection after the SIGTERM.
cat >"$tmp/drain_load.py" <<'PY'
import http.client, json, os, sys, threading
port, threads, stop, term = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
BODY = json.dumps({"inputs": [
    {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": list(range(16))},
    {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": [1] * 16}]})
st = {"ok": 0, "closes": 0, "refused": 0, "not_accepted": 0, "failures": []}
lock = threading.Lock()

def note(key, error=None):
    with lock:
        if error:
            st["failures"].append(error)
        else:
            st[key] += 1

def client():
    conn, answered = None, 0
    while not os.path.exists(stop):
        try:
            if conn is None:
                conn, answered = http.client.HTTPConnection("127.0.0.1", port, timeout=30), 0
                conn.connect()
            conn.request("POST", "/v2/models/simple/infer", BODY)
            r = conn.getresponse()
            data = r.read()
            answered += 1
            if r.status != 200:
                note(None, "%d %s" % (r.status, data[:200]))
            elif json.loads(data)["outputs"][0]["data"] != [i + 1 for i in range(16)]:
                note(None, "wrong sums %s" % data[:200])
            else:
                note("ok")
            if (r.getheader("Connection") or "").lower() == "close":
                note("closes")
                conn.close()
                conn = None
        except Exception as e:
            termed = os.path.exists(term)
            if conn:
                conn.close()
            conn = None
            if termed and isinstance(e, ConnectionRefusedError):
                return note("refused")
            if termed and answered == 0:  # a listener closed with it queued
                return note("not_accepted")
            note(None, "%s after %d answers on its connection%s: %s" % (
                type(e).__name__, answered, "" if termed else ", before the SIGTERM", e))
            if termed:
                return

ts = [threading.Thread(target=client) for _ in range(threads)]
for t in ts:
    t.start()
for t in ts:
    t.join()
print(json.dumps(st))
PY
rm -f "$tmp/stop" "$tmp/term"
python3 "$tmp/drain_load.py" "$port" 16 "$tmp/stop" "$tmp/term" >"$tmp/load.json" &
load_pid=$!
sleep 1
worker_pids="$(worker_field 0:1 pid) $(worker_field 0:2 pid)"
t0=$(date +%s.%N)
touch "$tmp/term"
# 8 slow requests beside the 16 clients; it sends the SIGTERM once the
# serve counts more than 16 requests in flight, and checks their answers.
drain_slow_requests 8 16
for _ in $(seq $((drain_ms / 50))); do
  kill -0 "$serve_pid" 2>/dev/null || break
  sleep 0.05
done
kill -0 "$serve_pid" 2>/dev/null && fail "$c: still running after the drain timeout (${drain_ms} ms)"
wait "$serve_pid"
rc=$?
serve_pid=
secs=$(python3 -c "import time; print('%.2f' % (time.time() - $t0))")
stop_load
[ "$rc" = 0 ] || fail "$c: the serve exited $rc"
# An answer with Connection: close, then a refused (or never accepted) new
# connection, is fine; a request that got an error or no answer (such as
# RemoteDisconnected: the connection closed with the request unanswered)
# is not.
python3 -c "import json,sys
d=json.loads(sys.argv[1])
sys.exit('requests failed during the drain' if d['failures'] or not d['ok'] or not d['closes'] else 0)" "$load" ||
  fail "$c: $load"
sleep 0.2
pgrep -f "$tmp/models" >/dev/null && fail "$c: workers left: $(pgrep -af "$tmp/models")"
for p in $worker_pids; do
  kill -0 "$p" 2>/dev/null && fail "$c: worker $p left"
done
n=$(drained_in_flight)
[ "${n:-0}" -gt 16 ] || fail "$c: the drain did not start with slow requests in flight: $(grep draining "$tmp/serve.log")"
grep -q "drain timeout" "$tmp/serve.log" && fail "$c: the drain timed out"
echo "exited in ${secs}s; $load"
ok "$c"

# --- 4b. idle keep-alive connections on every loop, SIGTERM: each is
# answered once more (Connection: close) during the drain's grace, however
# long ago its loop last woke.
c="check 4b (idle connections on $loops loops answered once more in the drain)"
start_serve --router-threads "$loops" --drain-timeout "$drain_ms"
python3 - "$port" "$serve_pid" "$x" <<'PY' || fail "$c"
import http.client, json, os, signal, sys, time, urllib.request
port, pid, x = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
BODY = json.dumps({"inputs": [
    {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": list(range(16))},
    {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": [1] * 16}]})
def infer(conn):
    conn.request("POST", "/v2/models/simple/infer", BODY, {"Content-Type": "application/json"})
    r = conn.getresponse()
    return r.status, r.getheader("Connection", ""), r.read()
def per_loop():
    with urllib.request.urlopen("http://127.0.0.1:%d/gpuslice/v1/workers" % port) as r:
        return json.load(r)["router_loop_requests"]
# Only connections of loops 1..: loop 0 is the main loop, which counts its
# own connections exactly; the others' counts reach it through mailboxes.
conns, loops_hit = [], set()
for _ in range(24):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10 * x)
    before = per_loop()
    assert infer(conn)[0] == 200
    loop = [k for k, (a, b) in enumerate(zip(before, per_loop())) if b != a][0]
    if loop == 0:
        conn.close()
    else:
        conns.append(conn)
        loops_hit.add(loop)
if len(loops_hit) < 2:
    sys.exit("the connections landed on fewer than 2 loops besides 0: %s" % loops_hit)
time.sleep(0.5)  # every loop idle for a while
os.kill(pid, signal.SIGTERM)
time.sleep(0.2)
bad = []
for i, conn in enumerate(conns):
    try:
        status, connection, _ = infer(conn)
        if status != 200 or connection.lower() != "close":
            bad.append("%d: %d, Connection: %s" % (i, status, connection))
    except Exception as e:
        bad.append("%d: %s: %s" % (i, type(e).__name__, e))
print("loops %s; %d of %d answered once more" % (sorted(loops_hit), len(conns) - len(bad), len(conns)))
sys.exit("not answered during the drain: %s" % bad if bad else 0)
PY
wait "$serve_pid" || fail "$c: serve exited $?"
serve_pid=
ok "$c"

# --- 5. bad and good --router-threads
c="check 5 (--router-threads values)"
for n in 0 17; do
  out=$(timeout 20 "$GPUSLICE" serve --model-repository "$tmp/models" \
    --http-port 0 --router-threads "$n" 2>&1)
  rc=$?
  [ "$rc" = 2 ] && echo "$out" | grep -q -- "--router-threads" ||
    fail "$c: --router-threads $n: exit $rc: $out"
done
printf 'model_repository: %s\nrouter_threads: 0\n' "$tmp/models" >"$tmp/rt0.yaml"
out=$(timeout 20 "$GPUSLICE" serve -f "$tmp/rt0.yaml" --http-port 0 2>&1)
rc=$?
[ "$rc" = 2 ] && echo "$out" | grep -q "rt0.yaml:2:17: .*router_threads" ||
  fail "$c: router_threads: 0 in serve.yaml: exit $rc: $out"
pgrep -f "$tmp/models" >/dev/null && fail "$c: a refused serve started workers"
start_serve --router-threads 1
for _ in $(seq 10); do
  [ "$(infer)" = 200 ] || fail "$c: infer with one loop: $(cat "$tmp/infer.out")"
done
n=$(loop_counts) || fail "$c: status with one loop"
[ "$n" = 10 ] || fail "$c: one loop: router_loop_requests $n, want 10"
kill "$serve_pid"; wait "$serve_pid"; serve_pid=
ok "$c"

# --- 6. the shared port stays the serve's: a serve.yaml asks for the loops
c="check 6 (no plain bind of the port of $loops loops)"
printf 'router_threads: %s\n' "$loops" >"$tmp/loops.yaml"
start_serve -f "$tmp/loops.yaml"
n=$(loop_counts) || fail "$c: status"
[ "$(echo $n | wc -w)" = "$loops" ] || fail "$c: router_threads: $loops in serve.yaml gave loops $n"
python3 - "$port" <<'PY' || fail "$c"
import errno, socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError as e:
    sys.exit(0 if e.errno == errno.EADDRINUSE else "bind failed with %s" % e)
sys.exit("a plain bind of the serve's port %s succeeded" % sys.argv[1])
PY
[ "$(infer)" = 200 ] || fail "$c: infer after the bind attempt"
# Nor can a second serve (it too would set SO_REUSEPORT) share it.
"$GPUSLICE" serve --model-repository "$tmp/models" --http-port "$port" \
  --grpc-port 0 --router-threads "$loops" --log-dir "$tmp" >"$tmp/second.log" 2>&1 &
second=$!
for _ in $(seq $((300 * x))); do
  kill -0 "$second" 2>/dev/null || break
  grep -q "gpuslice serve: ready" "$tmp/second.log" && break
  sleep 0.1
done
if grep -q "gpuslice serve: ready" "$tmp/second.log" || kill -0 "$second" 2>/dev/null; then
  kill "$second"; wait "$second"
  fail "$c: a second serve on port $port started"
fi
wait "$second" && fail "$c: the second serve exited 0"
grep -q "port $port.*in use" "$tmp/second.log" ||
  fail "$c: the second serve did not say the port is in use: $(tail -3 "$tmp/second.log")"
[ "$(infer)" = 200 ] || fail "$c: infer after the second serve gave up"
ok "$c"
echo "PASS"
