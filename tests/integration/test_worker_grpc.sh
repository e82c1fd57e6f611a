#!/usr/bin/env bash
# gpuslice worker's KServe v2 gRPC against Triton's Python client
# (tritonclient.grpc) and grpcio stubs on loopback: live, ready, metadata,
# config, infers checking sums (raw_input_contents and typed contents, many
# at once on one connection), statistics, and the errors: unknown model
# NOT_FOUND, model not ready UNAVAILABLE, wrong datatype INVALID_ARGUMENT,
# other methods UNIMPLEMENTED, a message over 64 MiB RESOURCE_EXHAUSTED.
# Skips (77) when the models cannot be generated or pip cannot install
# tritonclient[grpc].
. "$(dirname "$0")/worker_lib.sh"
. "$(dirname "$0")/triton_env.sh"
py=$(command -v python3 || echo /usr/bin/python3)
make_models "$py"
mkdir -p "$tmp/models/broken/1"
echo "not a model" >"$tmp/models/broken/1/model.onnx"

triton_python || { echo "SKIP: $TRITON_WHY"; exit 77; }

fails=0
# --grpc-port 0 turns gRPC off.
"$GPUSLICE" worker --model-repository "$tmp/models" --http-port 0 \
  --grpc-port 0 --metrics-port 0 --threads 1 2>"$tmp/log0" &
pid=$!
for _ in $(seq 100); do grep -q 'listening on' "$tmp/log0" 2>/dev/null && break; sleep 0.1; done
if grep -q 'gRPC' "$tmp/log0" || ! grep -q 'listening on' "$tmp/log0"; then
  echo "FAIL: --grpc-port 0 did not serve HTTP alone"; cat "$tmp/log0"; fails=$((fails + 1))
else
  echo "ok: --grpc-port 0 serves HTTP only"
fi
kill "$pid"; wait "$pid"; pid=

gport=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$GPUSLICE" worker --model-repository "$tmp/models" --http-port 0 \
  --grpc-port "$gport" --metrics-port 0 --threads 2 2>"$tmp/log" &
pid=$!
for _ in $(seq 100); do grep -q 'listening for gRPC' "$tmp/log" 2>/dev/null && break; sleep 0.1; done
grep -q "listening for gRPC on 127.0.0.1:$gport" "$tmp/log" ||
  { echo "FAIL: worker did not start gRPC"; cat "$tmp/log"; exit 1; }
hport=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$tmp/log")

"$TRITON_PY" - "$gport" <<'PY' || fails=$((fails + 1))
import sys
import grpc as g
import numpy as np
import tritonclient.grpc as tc
from tritonclient.grpc import service_pb2 as pb, service_pb2_grpc as pbg
from tritonclient.utils import InferenceServerException
url = "127.0.0.1:" + sys.argv[1]
c = tc.InferenceServerClient(url=url)

def expect_error(code, fn, *args, **kw):
    try:
        fn(*args, **kw)
    except InferenceServerException as e:
        assert e.status() == "StatusCode." + code, (code, e.status(), str(e))
        return str(e)
    raise SystemExit(f"expected {code}")

assert c.is_server_live()
assert not c.is_server_ready()  # 'broken' failed to load
assert c.is_model_ready("simple") and not c.is_model_ready("broken")
assert not c.is_model_ready("nope")
meta = c.get_server_metadata()
assert meta.name == "gpuslice" and "binary_tensor_data" in meta.extensions, meta
m = c.get_model_metadata("simple")
assert m.versions == ["1"] and [t.name for t in m.inputs] == ["INPUT0", "INPUT1"], m
assert list(m.inputs[0].shape) == [-1, 16] and m.outputs[1].datatype == "INT32", m
cfg = c.get_model_config("simple").config
assert cfg.name == "simple" and cfg.platform == "onnxruntime_onnx", cfg
assert cfg.input[0].data_type == 8 and list(cfg.input[0].dims) == [-1, 16], cfg
print("ok: live, ready, metadata, config")

a = np.arange(16, dtype=np.int32).reshape(1, 16)
b = np.full((1, 16), 3, dtype=np.int32)
ins = [tc.InferInput("INPUT0", [1, 16], "INT32"), tc.InferInput("INPUT1", [1, 16], "INT32")]
ins[0].set_data_from_numpy(a)
ins[1].set_data_from_numpy(b)
r = c.infer("simple", ins, request_id="r1",
            outputs=[tc.InferRequestedOutput("OUTPUT1")])
assert r.get_response().id == "r1" and r.as_numpy("OUTPUT0") is None
assert (r.as_numpy("OUTPUT1") == a - b).all(), r.as_numpy("OUTPUT1")
r = c.infer("simple", ins, model_version="1")
assert (r.as_numpy("OUTPUT0") == a + b).all() and (r.as_numpy("OUTPUT1") == a - b).all()
print("ok: infer with raw_input_contents")

# Many infers at once on one connection: each answer matches its request.
done = {}
def cb(i, result, error):
    done[i] = (result, error)
for i in range(48):
    xi = np.full((1, 16), i, dtype=np.int32)
    ii = [tc.InferInput("INPUT0", [1, 16], "INT32"), tc.InferInput("INPUT1", [1, 16], "INT32")]
    ii[0].set_data_from_numpy(xi)
    ii[1].set_data_from_numpy(b)
    c.async_infer("simple", ii, callback=lambda result, error, i=i: cb(i, result, error))
import time
for _ in range(200):
    if len(done) == 48:
        break
    time.sleep(0.05)
assert len(done) == 48, len(done)
for i, (res, err) in done.items():
    assert err is None, err
    assert (res.as_numpy("OUTPUT0") == i + 3).all(), (i, res.as_numpy("OUTPUT0"))
print("ok: 48 concurrent infers")

# Typed contents through a plain grpcio stub.
stub = pbg.GRPCInferenceServiceStub(g.insecure_channel(url))
req = pb.ModelInferRequest(model_name="simple")
for n, v in (("INPUT0", list(range(16))), ("INPUT1", [5] * 16)):
    t = req.inputs.add(name=n, datatype="INT32", shape=[1, 16])
    t.contents.int_contents.extend(v)
resp = stub.ModelInfer(req)
out = {o.name: np.frombuffer(raw, dtype=np.int32)
       for o, raw in zip(resp.outputs, resp.raw_output_contents)}
assert (out["OUTPUT0"] == np.arange(16) + 5).all(), out
assert resp.model_name == "simple" and resp.model_version == "1"
print("ok: infer with typed contents")

msg = expect_error("NOT_FOUND", c.infer, "nope", ins)
assert "unknown model" in msg, msg
expect_error("NOT_FOUND", c.get_model_metadata, "nope")
expect_error("UNAVAILABLE", c.infer, "broken", ins)
bad = [tc.InferInput("INPUT0", [1, 16], "FP32"), ins[1]]
bad[0].set_data_from_numpy(a.astype(np.float32))
msg = expect_error("INVALID_ARGUMENT", c.infer, "simple", bad)
assert "data-type" in msg, msg
short = [tc.InferInput("INPUT0", [1, 15], "INT32"), ins[1]]
short[0].set_data_from_numpy(a[:, :15])
expect_error("INVALID_ARGUMENT", c.infer, "simple", short)
try:
    stub.TraceSetting(pb.TraceSettingRequest())
    raise SystemExit("TraceSetting succeeded")
except g.RpcError as e:
    assert e.code() == g.StatusCode.UNIMPLEMENTED, e
ch = g.insecure_channel(url, options=[("grpc.max_send_message_length", 1 << 28)])
big = pb.ModelInferRequest(model_name="simple")
big.raw_input_contents.append(b"\0" * (65 << 20))
try:
    pbg.GRPCInferenceServiceStub(ch).ModelInfer(big)
    raise SystemExit("a 65 MiB message was accepted")
except g.RpcError as e:
    assert e.code() == g.StatusCode.RESOURCE_EXHAUSTED, e
print("ok: NOT_FOUND, UNAVAILABLE, INVALID_ARGUMENT, UNIMPLEMENTED, RESOURCE_EXHAUSTED")

st = c.get_inference_statistics("simple").model_stats[0]
assert st.inference_count == 51 and st.inference_stats.success.count == 51, st
assert st.inference_stats.fail.count >= 2, st
# Every execution is in batch_stats under its batch size.
assert sum(b.compute_infer.count for b in st.batch_stats) == st.execution_count, st
assert c.is_server_live()
print("ok: statistics count the gRPC infers")
PY
curl -sf "http://127.0.0.1:$hport/v2/health/live" >/dev/null &&
  echo "ok: HTTP still serving" || { echo "FAIL: HTTP stopped"; fails=$((fails + 1)); }
kill "$pid"
wait "$pid"
rc=$?
pid=
[ $rc -eq 0 ] || { echo "FAIL: worker exited $rc on SIGTERM"; fails=$((fails + 1)); }
[ $fails -eq 0 ] || { echo "$fails check(s) failed"; cat "$tmp/log"; exit 1; }
echo "PASS"
