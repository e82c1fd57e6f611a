#!/usr/bin/env bash
# A warm model (its sessions made at load: every CUDA model, or "warmup":
# true) without dynamic batching runs at most one request per session;
# the others wait on the worker's loop, not in its thread pool, so a burst
# to that model does not hold up the other models sharing the pool (under
# green isolation, the other instances of the process). Here: a pool of 2
# threads, three slow requests to a warm one-session model, then one
# request to another model: it must be answered before the first slow one
# (with the waits in the pool, it queued behind them). Skips (77) when the
# models cannot be generated.
. "$(dirname "$0")/worker_lib.sh"
fails=0
pass() { echo "ok: $*"; }
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
onnx_python
make_models "$py"
# 60 pairs: about 1 s a request here, against a few ms for `simple`
"$py" "$GS_SOURCE_DIR/tests/integration/make_slow_model.py" --out "$tmp/models" --pairs 60 >/dev/null ||
  { echo "FAIL: make_slow_model.py"; exit 1; }
echo '{"warmup": true}' >"$tmp/models/slow/config.json"
start_worker --threads 2 --grpc-port 0 --metrics-port 0
for _ in $(seq 300); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/v2/health/ready")" = 200 ] && break
  sleep 0.1
done
grep -q "model slow: 1 sessions" "$tmp/log" && pass "the slow model is warm, one session" ||
  fail "the slow model is warm, one session" "$(cat "$tmp/log")"

out=$(python3 - "$port" <<'PY'
import http.client, json, sys, threading, time
port = int(sys.argv[1])
ROWS = [[float((r * 16 + c) % 251) for c in range(16)] for r in range(128)]
SLOW = json.dumps({"inputs": [{"name": "input", "shape": [128, 16],
                               "datatype": "FP32", "data": ROWS}]})
FAST = json.dumps({"inputs": [
    {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": list(range(16))},
    {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": [1] * 16}]})
done = []
lock = threading.Lock()

def call(name, body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    c.request("POST", "/v2/models/%s/infer" % name, body,
              {"Content-Type": "application/json"})
    status = c.getresponse().status
    with lock:
        done.append((name, status, time.monotonic()))

slow = [threading.Thread(target=call, args=("slow", SLOW)) for _ in range(3)]
for t in slow:
    t.start()
time.sleep(0.2)  # the three are in: one runs, two wait
fast = threading.Thread(target=call, args=("simple", FAST))
fast.start()
for t in slow + [fast]:
    t.join()
order = [n for n, _, _ in sorted(done, key=lambda d: d[2])]
print(json.dumps({"order": order, "status": [s for _, s, _ in done]}))
PY
)
echo "$out"
python3 -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if d["order"][0] == "simple" else 1)' "$out" &&
  pass "another model's request is answered before the burst's first" ||
  fail "another model's request is answered before the burst's first" "$out"
python3 -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if d["status"] == [200] * 4 else 1)' "$out" &&
  pass "every request answered 200" || fail "every request answered 200" "$out"
[ "$fails" = 0 ] || exit 1
