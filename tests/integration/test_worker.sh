#!/usr/bin/env bash
# gpuslice worker against real clients on loopback: every endpoint with
# curl (KServe v2 status codes, including malformed HTTP, limits, bad JSON,
# wrong shapes and datatypes, truncated binary data, unknown models), then
# Triton's own Python client over JSON and binary tensors. Skips (77) when
# the models cannot be generated; the tritonclient part skips when pip
# cannot install it.
. "$(dirname "$0")/worker_lib.sh"
. "$(dirname "$0")/triton_env.sh"
py=$(command -v python3 || echo /usr/bin/python3)
make_models "$py"
mkdir -p "$tmp/models/broken/1" "$tmp/models/batched/1"
echo "not a model" >"$tmp/models/broken/1/model.onnx"
cp "$tmp/models/simple/1/model.onnx" "$tmp/models/batched/1/"
echo '{"max_batch_size": 8}' >"$tmp/models/batched/config.json"

mport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start_worker --grpc-port 0 --metrics-port "$mport" --threads 2 \
  --model-control-mode explicit --load-model "*"
grep -q "model 'broken' is not ready" "$tmp/log" ||
  { echo "FAIL: broken model not reported"; cat "$tmp/log"; exit 1; }
fails=0

# check NAME EXPECTED_STATUS BODY_REGEX -- curl args: passes when the status
# is EXPECTED_STATUS and, unless BODY_REGEX is '', the body matches it.
check() {
  local name=$1 want=$2 re=$3 got
  [ "${4-}" = -- ] || { echo "FAIL: check '$name': no -- before the curl arguments"; exit 1; }
  shift 4
  got=$(curl -s -o "$tmp/body" -w '%{http_code}' "$@")
  if [ "$got" = "$want" ] && { [ -z "$re" ] || grep -Eq -- "$re" "$tmp/body"; }; then
    echo "ok: $name ($got)"
  else
    echo "FAIL: $name: status $got (want $want), body: $(head -c 300 "$tmp/body")"
    fails=$((fails + 1))
  fi
}
J=(-H 'Content-Type: application/json')
in16='[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]'
good='{"id":"r1","inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":'$in16'},{"name":"INPUT1","shape":[1,16],"datatype":"INT32","data":'$in16'}]}'

check "server metadata" 200 '"extensions":\["binary_tensor_data","statistics","model_repository","system_shared_memory","cuda_shared_memory"\]' -- "$base/v2"
check "live" 200 '' -- "$base/v2/health/live"
check "ready is 400 while a model failed" 400 '' -- "$base/v2/health/ready"
check "model metadata" 200 '"shape":\[-1,16\]' -- "$base/v2/models/simple"
check "model metadata by version" 200 '"versions":\["1"\]' -- "$base/v2/models/simple/versions/1"
check "model ready" 200 '' -- "$base/v2/models/simple/ready"
check "broken model not ready" 400 '"error":' -- "$base/v2/models/broken/ready"
check "config" 200 '"data_type":"TYPE_INT32","dims":\[-1,16\]' -- "$base/v2/models/simple/config"
check "batched config drops dim 0" 200 '"max_batch_size":8.*"dims":\[16\]' -- "$base/v2/models/batched/config"
check "batched metadata keeps -1" 200 '"shape":\[-1,16\]' -- "$base/v2/models/batched"
check "unknown model" 404 '"error":' -- "$base/v2/models/nope"
check "unknown version" 404 '"error":' -- "$base/v2/models/simple/versions/7/ready"
check "unknown path" 404 '"error":' -- "$base/v3/whatever"
check "infer JSON" 200 '"data":\[2,4,6,8,10,12,14,16,18,20,22,24,26,28,30,32\]' -- "${J[@]}" -d "$good" "$base/v2/models/simple/infer"
check "infer on batched, batch 2" 200 '"shape":\[2,16\]' -- -d '{"inputs":[{"name":"INPUT0","shape":[2,16],"datatype":"INT32","data":['$in16','$in16']},{"name":"INPUT1","shape":[2,16],"datatype":"INT32","data":['$in16','$in16']}]}' "$base/v2/models/batched/infer"
check "infer GET is refused" 400 '"error":' -- "$base/v2/models/simple/infer"
check "bad JSON" 400 '"error":".*JSON' -- -d '{"inputs":[' "$base/v2/models/simple/infer"
check "wrong datatype" 400 "data-type is 'FP32'" -- -d '{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"FP32","data":'$in16'},{"name":"INPUT1","shape":[1,16],"datatype":"INT32","data":'$in16'}]}' "$base/v2/models/simple/infer"
check "wrong shape" 400 'unexpected shape' -- -d '{"inputs":[{"name":"INPUT0","shape":[1,15],"datatype":"INT32","data":'$in16'},{"name":"INPUT1","shape":[1,16],"datatype":"INT32","data":'$in16'}]}' "$base/v2/models/simple/infer"
check "data count mismatch" 400 'must hold 32' -- -d '{"inputs":[{"name":"INPUT0","shape":[2,16],"datatype":"INT32","data":'$in16'},{"name":"INPUT1","shape":[1,16],"datatype":"INT32","data":'$in16'}]}' "$base/v2/models/simple/infer"
check "missing input" 400 'expected 2 inputs' -- -d '{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":'$in16'}]}' "$base/v2/models/simple/infer"
check "unknown output" 400 'unexpected inference output' -- -d "${good%\}},\"outputs\":[{\"name\":\"NOPE\"}]}" "$base/v2/models/simple/infer"
check "infer unknown model" 404 '"error":' -- -d "$good" "$base/v2/models/nope/infer"
check "infer broken model" 503 '"error":' -- -d "$good" "$base/v2/models/broken/infer"
printf '{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","parameters":{"binary_data_size":64}},{"name":"INPUT1","shape":[1,16],"datatype":"INT32","parameters":{"binary_data_size":64}}]}' >"$tmp/hdr"
hlen=$(stat -c %s "$tmp/hdr")
head -c 100 /dev/zero | cat "$tmp/hdr" - >"$tmp/trunc"
check "truncated binary" 400 'body ends before' -- -H "Inference-Header-Content-Length: $hlen" --data-binary @"$tmp/trunc" "$base/v2/models/simple/infer"
check "header length beyond body" 400 'larger than the body' -- -H "Inference-Header-Content-Length: 99999" --data-binary @"$tmp/trunc" "$base/v2/models/simple/infer"
head -c 200000 /dev/zero >"$tmp/big"
check "oversized header" 431 'larger than 16 KiB' -- -H "X-Big: $(head -c 17000 /dev/zero | tr '\0' a)" "$base/v2"
check "oversized URL" 414 'longer than 8 KiB' -- "$base/v2/$(head -c 9000 /dev/zero | tr '\0' a)"
check "malformed request line" 400 '"error":' -- -X 'BAD METHOD' "$base/v2"
check "stats" 200 '"inference_count":1.*"success":\{"count":1' -- "$base/v2/models/simple/stats"
check "all stats" 200 '"model_stats":\[' -- "$base/v2/models/stats"
check "metrics" 200 'nv_inference_request_success\{model="simple",version="1"\} 1' -- "$base/metrics"
check "metrics failures" 200 'nv_inference_request_failure\{model="simple",version="1"\} [1-9]' -- "$base/metrics"
# The metrics port (Triton's 8002) serves /metrics and nothing else.
check "metrics port" 200 'nv_inference_request_success\{model="simple",version="1"\} 1' -- "http://127.0.0.1:$mport/metrics"
check "metrics port serves only /metrics" 404 'metrics only' -- "http://127.0.0.1:$mport/v2"
check "repository index" 200 '"name":"broken".*"state":"UNAVAILABLE"' -- -X POST "$base/v2/repository/index"
check "unload" 200 '' -- -X POST "$base/v2/repository/models/mlp/unload"
check "unloaded is not ready" 400 '' -- "$base/v2/models/mlp/ready"
check "load" 200 '' -- -X POST "$base/v2/repository/models/mlp/load"
check "reloaded is ready" 200 '' -- "$base/v2/models/mlp/ready"
check "load of a missing model" 500 'failed to load .ghost., failed to poll from model repository' -- -X POST "$base/v2/repository/models/ghost/load"

# Raw sockets: malformed bytes, pipelining, a body over the limit.
"$py" - "$port" <<'PY' || fails=$((fails + 1))
import re, socket, sys
port = int(sys.argv[1])
def talk(data):
    s = socket.create_connection(("127.0.0.1", port)); s.settimeout(5)
    s.sendall(data); out = b""
    while True:
        d = s.recv(65536)
        if not d: return out
        out += d
r = talk(b"\x00\x01garbage\r\n\r\n")
assert r.startswith(b"HTTP/1.1 400 "), r
r = talk(b"GET /v2/health/live HTTP/1.1\r\n\r\nGET /v2/models/nope HTTP/1.1\r\n\r\n"
         b"GET /v2 HTTP/1.1\r\nConnection: close\r\n\r\n")
codes = re.findall(rb"HTTP/1.1 (\d+)", r)
assert codes == [b"200", b"404", b"200"], codes
r = talk(b"POST /v2/models/simple/infer HTTP/1.1\r\nContent-Length: 67108865\r\n\r\n")
assert r.startswith(b"HTTP/1.1 413 "), r
print("ok: raw sockets (malformed, pipelined in order, 413)")
PY
check "still serving" 200 '' -- "$base/v2/health/live"

# Triton's Python client.
if ! triton_python; then
  echo "SKIP (part): $TRITON_WHY"
  [ $fails -eq 0 ] && exit 77
else
  "$TRITON_PY" - "$port" <<'PY' || fails=$((fails + 1))
import sys
import numpy as np
import tritonclient.http as http
c = http.InferenceServerClient(url="127.0.0.1:" + sys.argv[1])
assert c.is_server_live()
assert c.is_model_ready("simple")
meta = c.get_model_metadata("simple")
assert meta["inputs"][0]["shape"] == [-1, 16], meta
a = np.arange(16, dtype=np.int32).reshape(1, 16)
b = np.full((1, 16), 3, dtype=np.int32)
for binary in (False, True):
    ins = [http.InferInput("INPUT0", [1, 16], "INT32"),
           http.InferInput("INPUT1", [1, 16], "INT32")]
    ins[0].set_data_from_numpy(a, binary_data=binary)
    ins[1].set_data_from_numpy(b, binary_data=binary)
    outs = [http.InferRequestedOutput("OUTPUT0", binary_data=binary),
            http.InferRequestedOutput("OUTPUT1", binary_data=binary)]
    r = c.infer("simple", ins, outputs=outs)
    assert (r.as_numpy("OUTPUT0") == a + b).all(), r.as_numpy("OUTPUT0")
    assert (r.as_numpy("OUTPUT1") == a - b).all(), r.as_numpy("OUTPUT1")
    r = c.infer("simple", ins)  # no outputs named: all of them
    assert (r.as_numpy("OUTPUT1") == a - b).all()
try:
    c.infer("nope", ins)
    raise SystemExit("infer of an unknown model succeeded")
except http.InferenceServerException as e:
    assert "unknown model" in str(e), e
print("ok: tritonclient JSON and binary infers")
PY
fi
# HTTP/1.1 keep-alive holds across an infer (which runs on a thread): the
# same connection answers the next request.
curl -sv "$base/v2/models/simple/infer" -H 'Content-Type: application/json' \
  -d '{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]},{"name":"INPUT1","shape":[1,16],"datatype":"INT32","data":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}]}' \
  "$base/v2/health/live" -o /dev/null -o /dev/null 2>"$tmp/keepalive"
if ! grep -q "Re-using existing connection" "$tmp/keepalive" ||
  grep -qi "^< Connection: close" "$tmp/keepalive"; then
  echo "FAIL: the connection was not kept alive after an infer"
  fails=$((fails + 1))
fi
kill "$pid"
wait "$pid"
rc=$?
pid=
[ $rc -eq 0 ] || { echo "FAIL: worker exited $rc on SIGTERM"; fails=$((fails + 1)); }
[ $fails -eq 0 ] || { echo "$fails check(s) failed"; cat "$tmp/log"; exit 1; }
echo "PASS"
