#!/usr/bin/env bash
# CUDA shared memory (KServe's extension) on the GPU machine with the
# carried kit: a client process allocates device memory with the CUDA
# driver (ctypes on libcuda.so.1: cuMemAlloc, cuIpcGetMemHandle; no
# tritonclient there, no PyPI) and registers its IPC handle with
# `gpuslice worker` over HTTP (/v2/cudasharedmemory, the handle in base64);
# the worker opens it with cuIpcOpenMemHandle. Checks:
#  1. register and status;
#  2. `simple` (INT32) on the CUDA provider (KIND_GPU) and on the CPU
#     (KIND_CPU): INPUT0/INPUT1 read from the region, OUTPUT0/OUTPUT1
#     written into it, read back by the client and compared (sum,
#     difference); which path ran, from the worker's /metrics
#     (gpuslice_cuda_shm_tensors{direction,path}): the GPU model's 2 inputs
#     and 2 outputs on the device (the engine copies them device to device,
#     no host staging), the CPU model's through the host;
#  2b. host copies: `reshape_shape` (INPUT0 FP32 [16], SHAPE INT64 [2] ->
#     Reshape; no instance_group kind: the CUDA provider takes no INT64
#     input, so it serves on the CPU) with both inputs and its output in the
#     CUDA region: the answer, and /metrics counting 2 inputs and 1 output
#     copied through the host (the engine reads a Reshape's shape on the
#     host; gs_model_input_host_only);
#  3. a handle the driver refuses and a device that does not exist: 400;
#     a byte_size past the client's allocation (1 GiB over a 256-byte
#     cuMemAlloc): 400 naming the allocation, as Triton checks it with
#     cuMemGetAddressRange; unregistering the CUDA region's name as system
#     shared memory does nothing (Triton), the region stays;
#  4. unregister: status empty, an infer naming the region 404;
#  5. big1m (1 MiB FP32 input, KIND_GPU) through the region: the answer,
#     every request on the device path (/metrics), an output region too
#     small still a 400; then mean latency of sequential requests with the
#     input in the CUDA region vs in the HTTP body, for big1m (50 each) and
#     big16m (16 MiB, 20 each): what CUDA shared memory saves (NOTE rows,
#     not pass/fail);
#  6. the worker is alive at the end.
# usage: GS_CARRY=KIT tests/gpu/shm_cuda_check.sh OUT
# (SHM_CHECK_KIND=KIND_CPU puts the "GPU" models on the CPU: for a dry run
# against tests/fake_cuda's IPC, which has no kernels; the device-path rows
# then fail, as a CPU model takes the host path.)
# Exit 0 all passed, 1 a failure, 77 no GPU. About 1 minute (under 3).
set -u
out=${1:?usage: shm_cuda_check.sh OUT}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
kit=$(cd "${GS_CARRY:-$root/.gpukit}" 2>/dev/null && pwd) || {
  echo "shm_cuda_check: no kit"; exit 1; }
gs=$kit/gpuslice
export LD_LIBRARY_PATH=$kit/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 || {
  echo "shm_cuda_check: no NVIDIA GPU: skip"; exit 77; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
m=$out/shm-models
gpu_kind=${SHM_CHECK_KIND:-KIND_GPU}
rm -rf "$m"
timeout 60 python3 "$root/scripts/make_models.py" --out "$m" >/dev/null &&
  timeout 60 python3 "$root/bench/make_big_input_model.py" --out "$m" --kind "$gpu_kind" &&
  timeout 60 python3 "$root/bench/make_big_input_model.py" --out "$m" --kind "$gpu_kind" \
    --width 4194304 --name big16m || {
  echo "shm_cuda_check: cannot make the models"; exit 1; }
rm -rf "$m/classifier" "$m/cnn_small" "$m/mlp"
cp -r "$m/simple" "$m/simple_cpu"
timeout 60 python3 - "$m" <<'PY' || { echo "shm_cuda_check: cannot make reshape_shape"; exit 1; }
import os, sys
import onnx
from onnx import TensorProto, helper
d = os.path.join(sys.argv[1], "reshape_shape", "1")
os.makedirs(d)
g = helper.make_graph(
    [helper.make_node("Reshape", ["INPUT0", "SHAPE"], ["OUTPUT0"])], "reshape_shape",
    [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, [16]),
     helper.make_tensor_value_info("SHAPE", TensorProto.INT64, [2])],
    [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, None)])
model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 8
onnx.save(model, os.path.join(d, "model.onnx"))
PY
echo '{"max_batch_size": 0}' >"$m/reshape_shape/config.json"
echo '{"max_batch_size": 8, "instance_group": [{"kind": "'"$gpu_kind"'"}]}' >"$m/simple/config.json"
echo '{"max_batch_size": 8, "instance_group": [{"kind": "KIND_CPU"}]}' >"$m/simple_cpu/config.json"

port=${SHM_CHECK_PORT:-18420}
timeout -k 5 200 "$gs" worker --model-repository "$m" --http-port $port \
  --grpc-port 0 --metrics-port 0 >"$out/shm_cuda_worker.log" 2>&1 &
wpid=$!
trap 'kill $wpid 2>/dev/null; wait 2>/dev/null' EXIT
for _ in $(seq 300); do
  grep -q 'listening on' "$out/shm_cuda_worker.log" && break
  sleep 0.1
done

timeout 170 python3 - "$port" <<'PY' | tee "$out/shm_cuda.txt"
import base64, ctypes, http.client, json, re, struct, sys, time
port = int(sys.argv[1])
rows, fail = [], [0]
def row(check, want, got, ok):
    rows.append((check, want, got, "PASS" if ok is True else ("NOTE" if ok is None else "FAIL")))
    fail[0] += ok is False

conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
def call(method, path, body=None, headers=None):
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    return r.status, r.read()

cu = ctypes.CDLL("libcuda.so.1")
cu.cuMemcpyHtoD_v2.argtypes = [ctypes.c_uint64, ctypes.c_void_p, ctypes.c_size_t]
cu.cuMemcpyDtoH_v2.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_size_t]
cu.cuIpcGetMemHandle.argtypes = [ctypes.c_void_p, ctypes.c_uint64]
def ck(r, what):
    if r != 0:
        raise SystemExit(f"{what} failed: CUDA error {r}")
ck(cu.cuInit(0), "cuInit")
dev, ctx = ctypes.c_int(), ctypes.c_void_p()
ck(cu.cuDeviceGet(ctypes.byref(dev), 0), "cuDeviceGet")
ck(cu.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev), "cuDevicePrimaryCtxRetain")
ck(cu.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")
def paths():
    # /metrics: CUDA shm tensors by (direction, path) so far
    st, body = call("GET", "/metrics")
    return {(d, p): int(n) for d, p, n in re.findall(
        r'gpuslice_cuda_shm_tensors\{direction="(\w+)",path="(\w+)"\} (\d+)', body.decode())}
def delta(a, b):
    return {k: b.get(k, 0) - a.get(k, 0) for k in b if b.get(k, 0) != a.get(k, 0)}
def alloc(n):
    p = ctypes.c_uint64()
    ck(cu.cuMemAlloc_v2(ctypes.byref(p), ctypes.c_size_t(n)), "cuMemAlloc")
    h = (ctypes.c_char * 64)()
    ck(cu.cuIpcGetMemHandle(h, p.value), "cuIpcGetMemHandle")
    return p.value, base64.b64encode(bytes(h)).decode()

# 1. register, status
ptr, b64 = alloc(256)
a = list(range(16)); b = [3] * 16
src = struct.pack("<16i", *a) + struct.pack("<16i", *b) + bytes(128)
ck(cu.cuMemcpyHtoD_v2(ptr, src, len(src)), "cuMemcpyHtoD")
st, body = call("POST", "/v2/cudasharedmemory/region/cuda_io/register",
                {"raw_handle": {"b64": b64}, "device_id": 0, "byte_size": 256})
row("register", "200", f"{st} {body[:120]!r}", st == 200)
st, body = call("GET", "/v2/cudasharedmemory/status")
row("status", "cuda_io, 256 bytes", body.decode()[:120],
    st == 200 and json.loads(body) == [{"name": "cuda_io", "device_id": 0, "byte_size": 256}])

# 2. infer on the GPU and on the CPU
def p(off, n=64):
    return {"shared_memory_region": "cuda_io", "shared_memory_offset": off,
            "shared_memory_byte_size": n}
req = {"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "parameters": p(0)},
                  {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "parameters": p(64)}],
       "outputs": [{"name": "OUTPUT0", "parameters": p(128)}, {"name": "OUTPUT1", "parameters": p(192)}]}
for model, path in (("simple", "device"), ("simple_cpu", "host")):
    ck(cu.cuMemcpyHtoD_v2(ptr + 128, bytes(128), 128), "cuMemcpyHtoD")
    before = paths()
    st, body = call("POST", f"/v2/models/{model}/infer", req)
    moved = delta(before, paths())
    got = ctypes.create_string_buffer(128)
    ck(cu.cuMemcpyDtoH_v2(got, ptr + 128, 128), "cuMemcpyDtoH")
    s = struct.unpack("<16i", got.raw[:64]); d = struct.unpack("<16i", got.raw[64:])
    ok = st == 200 and list(s) == [x + y for x, y in zip(a, b)] and list(d) == [x - y for x, y in zip(a, b)]
    row(f"infer {model} in/out CUDA region", "200, sum and difference", f"{st} {body[:80]!r} {s[:3]} {d[:3]}", ok)
    want = {("input", path): 2, ("output", path): 2}
    row(f"{model}: path ({path})", f"/metrics 2 in, 2 out on {path}", str(moved), moved == want)

# 2b. host copies: a Reshape's shape input, read by the engine on the host
rptr, rb64 = alloc(256)
x = [float(i) for i in range(16)]
ck(cu.cuMemcpyHtoD_v2(rptr, struct.pack("<16f", *x) + struct.pack("<2q", 4, 4), 80), "cuMemcpyHtoD")
st, body = call("POST", "/v2/cudasharedmemory/region/cuda_rs/register",
                {"raw_handle": {"b64": rb64}, "device_id": 0, "byte_size": 256})
def rp(off, n):
    return {"shared_memory_region": "cuda_rs", "shared_memory_offset": off, "shared_memory_byte_size": n}
rreq = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [16], "parameters": rp(0, 64)},
                   {"name": "SHAPE", "datatype": "INT64", "shape": [2], "parameters": rp(64, 16)}],
        "outputs": [{"name": "OUTPUT0", "parameters": rp(128, 64)}]}
before = paths()
st2, body2 = call("POST", "/v2/models/reshape_shape/infer", rreq)
moved = delta(before, paths())
got = ctypes.create_string_buffer(64)
ck(cu.cuMemcpyDtoH_v2(got, rptr + 128, 64), "cuMemcpyDtoH")
y = list(struct.unpack("<16f", got.raw))
shape = json.loads(body2)["outputs"][0]["shape"] if st2 == 200 else None
row("infer reshape_shape in/out CUDA", "200, [4, 4], the input's values", f"{st} {st2} {shape} {body2[:60]!r}",
    st == 200 and st2 == 200 and shape == [4, 4] and y == x)
want = {("input", "host"): 2, ("output", "host"): 1}
row("reshape_shape: path (host)", "/metrics 2 in, 1 out on host", str(moved), moved == want)

# 3. refused: a handle the driver cannot open, a device that does not exist
st, body = call("POST", "/v2/cudasharedmemory/region/bad/register",
                {"raw_handle": {"b64": base64.b64encode(b"\x07" * 64).decode()}, "device_id": 0, "byte_size": 64})
row("bad handle", "400 naming cuIpcOpenMemHandle", f"{st} {body[:120]!r}", st == 400 and b"cuIpcOpenMemHandle" in body)
st, body = call("POST", "/v2/cudasharedmemory/region/bad/register",
                {"raw_handle": {"b64": b64}, "device_id": 63, "byte_size": 64})
row("bad device", "400", f"{st} {body[:120]!r}", st == 400)
hptr, hb64 = alloc(256)  # its own allocation: a handle opened twice is another question
st, body = call("POST", "/v2/cudasharedmemory/region/huge/register",
                {"raw_handle": {"b64": hb64}, "device_id": 0, "byte_size": 1 << 30})
row("byte_size past the allocation", "400 naming the allocation", f"{st} {body[:120]!r}",
    st == 400 and b"larger than the CUDA allocation" in body)
st, body = call("POST", "/v2/systemsharedmemory/region/cuda_io/unregister")
st2, body2 = call("GET", "/v2/cudasharedmemory/region/cuda_io/status")
row("unregister as system", "200, cuda_io still registered", f"{st} {st2} {body2[:80]!r}",
    st == 200 and st2 == 200 and json.loads(body2)[0]["name"] == "cuda_io")

# 5. big inputs: the device path, then CUDA region vs HTTP body
def timed(fn, n):
    fn()
    t = time.perf_counter()
    for _ in range(n):
        st, body = fn()
        if st != 200:
            return st, body, 0.0
    return 200, b"", (time.perf_counter() - t) / n * 1000
for model, W, n in (("big1m", 262144, 50), ("big16m", 4194304, 20)):
    bptr, bb64 = alloc(W * 4 + 64)
    payload = struct.pack(f"<{W}f", *([0.5] * W))
    ck(cu.cuMemcpyHtoD_v2(bptr, payload, len(payload)), "cuMemcpyHtoD")
    region = "r_" + model
    st, body = call("POST", f"/v2/cudasharedmemory/region/{region}/register",
                    {"raw_handle": {"b64": bb64}, "device_id": 0, "byte_size": W * 4 + 64})
    def shm_req(out_size=4):
        return {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, W],
                            "parameters": {"shared_memory_region": region, "shared_memory_byte_size": W * 4}}],
                "outputs": [{"name": "OUTPUT0", "parameters": {"shared_memory_region": region,
                             "shared_memory_offset": W * 4, "shared_memory_byte_size": out_size}}]}
    hdr = json.dumps({"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, W],
                                  "parameters": {"binary_data_size": W * 4}}],
                      "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": True}}]}).encode()
    before = paths()
    st1, body1, shm_ms = timed(lambda: call("POST", f"/v2/models/{model}/infer", shm_req()), n)
    moved = delta(before, paths())
    st2, body2, http_ms = timed(lambda: call("POST", f"/v2/models/{model}/infer", hdr + payload,
                                             {"Inference-Header-Content-Length": str(len(hdr))}), n)
    out = ctypes.create_string_buffer(4)
    ck(cu.cuMemcpyDtoH_v2(out, bptr + W * 4, 4), "cuMemcpyDtoH")
    mean = struct.unpack("<f", out.raw)[0]
    row(f"{model} via CUDA region", "200, output 0.5", f"{st1} {st2} {body1[:60]!r} {mean:.4f}",
        st1 == 200 and st2 == 200 and abs(mean - 0.5) < (1e-3 if W < 1 << 20 else 1e-2))
    want = {("input", "device"): n + 1, ("output", "device"): n + 1}
    row(f"{model}: path (device)", f"/metrics {n + 1} in, {n + 1} out on device", str(moved), moved == want)
    if model == "big1m":
        st, body = call("POST", f"/v2/models/{model}/infer", shm_req(2))
        row("output region too small", "400 naming 'should be at least 4'", f"{st} {body[:100]!r}",
            st == 400 and b"should be at least 4 bytes" in body)
    row(f"{model} {W * 4 >> 20} MiB latency", "CUDA shm vs HTTP body",
        f"{shm_ms:.2f} ms vs {http_ms:.2f} ms ({n} each)", None)

# 4. unregister
st, _ = call("POST", "/v2/cudasharedmemory/unregister")
st2, body = call("GET", "/v2/cudasharedmemory/status")
row("unregister all", "200, status []", f"{st} {st2} {body!r}", st == 200 and json.loads(body) == [])
st, body = call("POST", "/v2/models/simple/infer", req)
row("infer after unregister", "404 naming cuda_io", f"{st} {body[:100]!r}", st == 404 and b"cuda_io" in body)

# 6. alive
st, _ = call("GET", "/v2/health/live")
row("worker live", "200", str(st), st == 200)
print(f"{'check':34} | {'expected':32} | {'observed':60} | result")
for r in rows:
    print(f"{r[0]:34} | {r[1]:32} | {r[2][:60]:60} | {r[3]}")
print(f"{sum(r[3] == 'PASS' for r in rows)} passed, {fail[0]} failed")
sys.exit(1 if fail[0] else 0)
PY
rc=${PIPESTATUS[0]}
kill $wpid 2>/dev/null
wait $wpid 2>/dev/null
[ $rc -eq 0 ] || { echo "worker log tail:"; tail -5 "$out/shm_cuda_worker.log"; }
exit $rc
