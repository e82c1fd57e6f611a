#!/usr/bin/env bash
# KServe's shared-memory extensions in gpuslice worker, driven by Triton's
# Python client from PyPI (tritonclient[http,grpc] and its
# tritonclient.utils.shared_memory), as Triton's simple_http_shm_client.py
# and simple_grpc_shm_client.py do against `simple`: inputs read from and
# outputs written to system shared memory over HTTP and gRPC, status,
# unregister; then the errors (unknown region, a key that does not exist,
# a region past the end of its object, an offset past the end, a region too
# small for an output, the same name twice, unregister while an infer uses
# the region: deferred, the infer still answers right), CUDA shared memory
# without CUDA (refused naming CUDA), and CUDA shared memory through the
# test-only fake driver's IPC (tests/fake_cuda: a "device" allocation that
# is a POSIX shm object). The worker is alive at the end.
# Skips (77) when the models cannot be generated or pip cannot install
# tritonclient[http,grpc].
. "$(dirname "$0")/worker_lib.sh"
. "$(dirname "$0")/triton_env.sh"
py=$(command -v python3 || echo /usr/bin/python3)
make_models "$py"
rm -rf "$tmp/models/classifier" "$tmp/models/cnn_small"
echo '{"max_batch_size": 8, "instance_group": [{"kind": "KIND_CPU"}]}' \
  >"$tmp/models/simple/config.json"
"$py" "$GS_SOURCE_DIR/tests/integration/make_slow_model.py" --out "$tmp/models" \
  --pairs 8 || { echo "FAIL: make_slow_model.py"; exit 1; }

triton_python || { echo "SKIP: $TRITON_WHY"; exit 77; }

fails=0
gport=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# The fake driver (when built) answers the worker's dlopen of libcuda.so.1.
fake=${GS_FAKE_CUDA_DIR:-}
LD_LIBRARY_PATH=${fake:+$fake:}${LD_LIBRARY_PATH:-} \
  start_worker --grpc-port "$gport" --metrics-port 0 --threads 2
hurl=127.0.0.1:$port
gurl=127.0.0.1:$gport

"$TRITON_PY" - "$hurl" "$gurl" "${fake:+fake}" <<'PY' || fails=$((fails + 1))
import base64, sys, threading
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

hurl, gurl, fake = sys.argv[1], sys.argv[2], sys.argv[3] == "fake"
hc = httpclient.InferenceServerClient(url=hurl)
gc = grpcclient.InferenceServerClient(url=gurl)
pid = str(__import__("os").getpid())
handles = []

def region(name, key, size):
    h = shm.create_shared_memory_region(name, key + pid, size)
    handles.append(h)
    return h

def expect_error(want, fn, *args, **kw):
    try:
        fn(*args, **kw)
    except InferenceServerException as e:
        msg = str(e)
        for w in want if isinstance(want, tuple) else (want,):
            assert w in msg, (want, msg)
        return msg
    raise SystemExit(f"expected an error with {want}")

a = np.arange(16, dtype=np.int32).reshape(1, 16)
b = np.full((1, 16), 3, dtype=np.int32)
meta = hc.get_server_metadata()
assert "system_shared_memory" in meta["extensions"], meta
assert "cuda_shared_memory" in meta["extensions"], meta

# ---- HTTP, as simple_http_shm_client.py ----
hc.unregister_system_shared_memory()
hc.unregister_cuda_shared_memory()  # no CUDA regions: no error, even without CUDA
ip = region("in", "/gs_in", 128)
op = region("out", "/gs_out", 128)
shm.set_shared_memory_region(ip, [a])
shm.set_shared_memory_region(ip, [b], offset=64)
hc.register_system_shared_memory("in", "/gs_in" + pid, 128)
hc.register_system_shared_memory("out", "/gs_out" + pid, 128)

def shm_inputs(mod, off1=64, region1="in"):
    ins = [mod.InferInput("INPUT0", [1, 16], "INT32"), mod.InferInput("INPUT1", [1, 16], "INT32")]
    ins[0].set_shared_memory("in", 64)
    ins[1].set_shared_memory(region1, 64, offset=off1)
    return ins

def shm_outputs(mod, size1=64, off1=64, **kw):
    outs = [mod.InferRequestedOutput("OUTPUT0", **kw), mod.InferRequestedOutput("OUTPUT1", **kw)]
    outs[0].set_shared_memory("out", 64)
    outs[1].set_shared_memory("out", size1, offset=off1)
    return outs

def check_out(r):
    o0 = r.get_output("OUTPUT0")
    dt = o0["datatype"] if isinstance(o0, dict) else o0.datatype
    sh = o0["shape"] if isinstance(o0, dict) else list(o0.shape)
    assert dt == "INT32" and list(sh) == [1, 16], o0
    s = shm.get_contents_as_numpy(op, np.int32, [1, 16])
    d = shm.get_contents_as_numpy(op, np.int32, [1, 16], offset=64)
    assert (s == a + b).all() and (d == a - b).all(), (s, d)

shm.set_shared_memory_region(op, [np.zeros((2, 16), np.int32)])
r = hc.infer("simple", shm_inputs(httpclient), outputs=shm_outputs(httpclient, binary_data=True))
check_out(r)
o1 = r.get_output("OUTPUT1")  # the data is in the region, not the body
assert "data" not in o1 and "parameters" not in o1, o1
st = hc.get_system_shared_memory_status()
assert sorted(x["name"] for x in st) == ["in", "out"], st
one = hc.get_system_shared_memory_status("in")
assert one == [{"name": "in", "key": "/gs_in" + pid, "offset": 0, "byte_size": 128}], one
print("ok: HTTP infer in system shared memory, status")

# Mixed: INPUT1 as binary data in the body, outputs in the body.
ins = shm_inputs(httpclient)
ins[1] = httpclient.InferInput("INPUT1", [1, 16], "INT32")
ins[1].set_data_from_numpy(b)
r = hc.infer("simple", ins)
assert (r.as_numpy("OUTPUT0") == a + b).all(), r.as_numpy("OUTPUT0")
print("ok: HTTP infer with one input in shared memory, one in the body")

# ---- gRPC, as simple_grpc_shm_client.py ----
shm.set_shared_memory_region(op, [np.zeros((2, 16), np.int32)])
r = gc.infer("simple", shm_inputs(grpcclient), outputs=shm_outputs(grpcclient))
check_out(r)
gst = gc.get_system_shared_memory_status()
assert sorted(gst.regions) == ["in", "out"], gst
assert gst.regions["in"].key == "/gs_in" + pid and gst.regions["in"].byte_size == 128, gst
ins = shm_inputs(grpcclient)
ins[0] = grpcclient.InferInput("INPUT0", [1, 16], "INT32")
ins[0].set_data_from_numpy(a)
r = gc.infer("simple", ins)  # raw contents for INPUT0 only
assert (r.as_numpy("OUTPUT1") == a - b).all(), r.as_numpy("OUTPUT1")
print("ok: gRPC infer in system shared memory (also mixed with raw), status")

# ---- errors: each names the region, the worker stays up ----
expect_error(("already in manager", "'in'"), hc.register_system_shared_memory, "in", "/gs_in" + pid, 128)
expect_error(("already in manager", "'in'"), gc.register_system_shared_memory, "in", "/gs_in" + pid, 128)
expect_error(("/gs_nokey", "'x'"), hc.register_system_shared_memory, "x", "/gs_nokey" + pid, 64)
expect_error(("past the end", "'x'"), hc.register_system_shared_memory, "x", "/gs_in" + pid, 128, offset=64)
expect_error(("past the end", "'x'"), gc.register_system_shared_memory, "x", "/gs_in" + pid, 256)
expect_error("Unable to find system shared memory region: 'x'", hc.get_system_shared_memory_status, "x")
expect_error("Unable to find system shared memory region: 'x'", gc.get_system_shared_memory_status, "x")
expect_error("Unable to find shared memory region: 'nope'", hc.infer, "simple", shm_inputs(httpclient, region1="nope"))
expect_error("Unable to find shared memory region: 'nope'", gc.infer, "simple", shm_inputs(grpcclient, region1="nope"))
expect_error(("offset 200 is past the end", "'in'"), hc.infer, "simple", shm_inputs(httpclient, off1=200))
expect_error(("do not fit", "'in'"), gc.infer, "simple", shm_inputs(grpcclient, off1=100))
expect_error(("OUTPUT1", "at least 64 bytes"), hc.infer, "simple", shm_inputs(httpclient),
             outputs=shm_outputs(httpclient, size1=32, off1=64))
expect_error(("OUTPUT1", "at least 64 bytes"), gc.infer, "simple", shm_inputs(grpcclient),
             outputs=shm_outputs(grpcclient, size1=32, off1=64))
bad = shm_inputs(httpclient)
bad[1]._parameters.pop("shared_memory_byte_size")
expect_error("must be given together", hc.infer, "simple", bad)
print("ok: errors: name twice, key not found, region past its object, unknown region, "
      "offset past the end, output region too small, missing byte size")

# ---- unregister while an infer uses the region: deferred ----
rows = 256
x = (np.arange(rows * 16, dtype=np.float32) % 97).reshape(rows, 16)
sp = region("slow_in", "/gs_slow", x.nbytes)
shm.set_shared_memory_region(sp, [x])
hc.register_system_shared_memory("slow_in", "/gs_slow" + pid, x.nbytes)
import time
def slow(done):
    i = grpcclient.InferInput("input", [rows, 16], "FP32")
    i.set_shared_memory("slow_in", x.nbytes)
    try:
        done["r"] = grpcclient.InferenceServerClient(url=gurl).infer("slow", [i])
    except Exception as e:
        done["e"] = e
# The infer must have taken the region before the unregister for the case
# to count; on a loaded machine it may not have started yet (then it gets
# "Unable to find", which is right too): try again with a longer wait; on
# a fast one it may have ended already: try again with a shorter one.
verified = False
wait = 0.15
for attempt in range(10):
    done = {}
    t = threading.Thread(target=slow, args=(done,))
    t0 = time.time()
    t.start()
    time.sleep(wait)
    hc.unregister_system_shared_memory("slow_in")  # while the infer runs
    in_flight = not done
    st_after = [r["name"] for r in hc.get_system_shared_memory_status()]
    t.join(60)
    assert "slow_in" not in st_after, st_after
    if "e" in done:
        assert "Unable to find shared memory region: 'slow_in'" in str(done["e"]), done
        print(f"note: after {wait:.3f} s the infer had not started; again")
        wait = min(wait * 2.5, 4.0)
    elif in_flight:
        assert (done["r"].as_numpy("output") == x).all()
        print(f"slow infer took {time.time() - t0:.2f} s, unregistered after {wait:.3f} s")
        verified = True
        break
    else:
        print(f"note: the infer ended within {wait:.3f} s; again")
        wait /= 3
    hc.register_system_shared_memory("slow_in", "/gs_slow" + pid, x.nbytes)
assert verified, "no infer was in flight at an unregister"
i = httpclient.InferInput("input", [rows, 16], "FP32")
i.set_shared_memory("slow_in", x.nbytes)
expect_error("Unable to find shared memory region: 'slow_in'", hc.infer, "slow", [i])
# The name is free again at once.
hc.register_system_shared_memory("slow_in", "/gs_slow" + pid, x.nbytes)
hc.unregister_system_shared_memory("slow_in")
print("ok: unregister during an infer: the infer answers right, the region is gone after")

# ---- CUDA shared memory ----
handle = base64.b64encode((b"fakeipc:/gs_cuda" + pid.encode()).ljust(64, b"\0"))
if not fake:
    print("note: no fake CUDA driver given (GS_FAKE_CUDA_DIR): the CUDA IPC path is not run")
else:
    cp = region("cuda_backing", "/gs_cuda", 256)
    shm.set_shared_memory_region(cp, [a, b])
    hc.register_cuda_shared_memory("cin", handle, 0, 256)
    expect_error("'cin' already in manager", gc.register_cuda_shared_memory, "cin", handle, 0, 256)
    # as Triton: a byte_size past the client's allocation is refused at register
    expect_error(("'c3'", "larger than the CUDA allocation"), hc.register_cuda_shared_memory, "c3", handle, 0, 257)
    expect_error(("'c3'", "larger than the CUDA allocation"), gc.register_cuda_shared_memory, "c3", handle, 0, 257)
    # as Triton: unregistering a name of the other kind does nothing, no error
    hc.unregister_system_shared_memory("cin")
    gc.unregister_system_shared_memory("cin")
    expect_error(("raw_handle", "64"), hc.register_cuda_shared_memory, "c2",
                 base64.b64encode(b"short"), 0, 256)
    cst = hc.get_cuda_shared_memory_status()
    assert cst == [{"name": "cin", "device_id": 0, "byte_size": 256}], cst
    assert list(gc.get_cuda_shared_memory_status().regions) == ["cin"]
    expect_error("registered as CUDA shared memory", hc.get_system_shared_memory_status, "cin")
    ins = [httpclient.InferInput("INPUT0", [1, 16], "INT32"), httpclient.InferInput("INPUT1", [1, 16], "INT32")]
    ins[0].set_shared_memory("cin", 64)
    ins[1].set_shared_memory("cin", 64, offset=64)
    outs = [httpclient.InferRequestedOutput("OUTPUT0"), httpclient.InferRequestedOutput("OUTPUT1")]
    outs[0].set_shared_memory("cin", 64, offset=128)
    outs[1].set_shared_memory("cin", 64, offset=192)
    hc.infer("simple", ins, outputs=outs)
    s = shm.get_contents_as_numpy(cp, np.int32, [1, 16], offset=128)
    d = shm.get_contents_as_numpy(cp, np.int32, [1, 16], offset=192)
    assert (s == a + b).all() and (d == a - b).all(), (s, d)
    # a CPU model keeps the host copy: /metrics counts which path ran
    import urllib.request
    met = urllib.request.urlopen(f"http://{hurl}/metrics").read().decode()
    for d_, p_, n_ in (("input", "host", 2), ("output", "host", 2),
                       ("input", "device", 0), ("output", "device", 0)):
        line = f'gpuslice_cuda_shm_tensors{{direction="{d_}",path="{p_}"}} {n_}'
        assert line in met, (line, met[-600:])
    gc.unregister_cuda_shared_memory("cin")
    assert gc.get_cuda_shared_memory_status().regions == {} or len(gc.get_cuda_shared_memory_status().regions) == 0
    print("ok: CUDA shared memory through the fake driver's IPC: register, infer in and out, status, unregister")

hc.unregister_system_shared_memory()
gc.unregister_system_shared_memory()
assert hc.get_system_shared_memory_status() == []
assert hc.is_server_live()
for h in handles:
    shm.destroy_shared_memory_region(h)
print("ok: all unregistered, worker live")
PY

if ! kill -0 "$pid" 2>/dev/null; then
  echo "FAIL: the worker died"; tail -20 "$tmp/log"; fails=$((fails + 1))
fi
kill "$pid"; wait "$pid" 2>/dev/null; pid=

# Without CUDA (the fake driver's cuInit failing, or no driver at all), a
# CUDA register is refused naming CUDA; system shared memory still works.
LD_LIBRARY_PATH=${fake:+$fake:}${LD_LIBRARY_PATH:-} FAKE_CUDA_FAIL_INIT=1 \
  start_worker --grpc-port 0 --metrics-port 0 --threads 1
code=$(curl -s -o "$tmp/nocuda" -w '%{http_code}' -X POST \
  -d '{"raw_handle": {"b64": "'"$(head -c 64 /dev/zero | base64 -w0)"'"}, "device_id": 0, "byte_size": 64}' \
  "$base/v2/cudasharedmemory/region/c/register")
if [ "$code" = 400 ] && grep -q "CUDA is not available" "$tmp/nocuda"; then
  echo "ok: without CUDA, register is refused: $(cat "$tmp/nocuda")"
else
  echo "FAIL: CUDA register without CUDA answered $code: $(cat "$tmp/nocuda")"
  fails=$((fails + 1))
fi
[ $fails -eq 0 ] && echo "PASS" || { echo "FAILED: $fails"; tail -20 "$tmp/log"; }
exit $((fails > 0))
