"""tritonclient against a worker serving make_string_models.py's models: the
checks of tests/integration/test_triton_strings.sh (argv: HTTP port, gRPC
port). Exits nonzero at the first failure."""
import sys
import numpy as np
import tritonclient.http as http
import tritonclient.grpc as grpc
from tritonclient.utils import InferenceServerException

hport, gport = sys.argv[1], sys.argv[2]
h = http.InferenceServerClient(url="127.0.0.1:" + hport)
g = grpc.InferenceServerClient(url="127.0.0.1:" + gport)

def expect_error(text, fn, *a, **kw):
    try:
        fn(*a, **kw)
    except InferenceServerException as e:
        assert text in str(e), (text, str(e))
        return str(e)
    raise SystemExit("no error, wanted: " + text)

# configs as Triton shows them: TYPE_STRING, the output's label_filename
cfg = h.get_model_config("simple_string")
assert [t["data_type"] for t in cfg["input"] + cfg["output"]] == ["TYPE_STRING"] * 4, cfg
gcfg = g.get_model_config("simple_string", as_json=True)["config"]
assert [t["data_type"] for t in gcfg["input"]] == ["TYPE_STRING"] * 2, gcfg
assert h.get_model_metadata("simple_string")["inputs"][0]["datatype"] == "BYTES"
cfg = h.get_model_config("simple_cls")
assert cfg["output"][0]["label_filename"] == "labels.txt", cfg
assert "label_filename" not in cfg["output"][1], cfg
print("ok: configs show TYPE_STRING (HTTP and gRPC) and label_filename")

# simple_string as Triton's simple_{http,grpc}_string_infer_client call it:
# [1,16] strings of integers, INPUT0 binary and INPUT1 JSON over HTTP
in0 = np.arange(16, dtype=np.int32).reshape(1, 16)
in1 = np.ones((1, 16), dtype=np.int32)
s0 = np.array([str(v).encode() for v in in0.flatten()], dtype=np.object_).reshape(1, 16)
s1 = np.array([str(v).encode() for v in in1.flatten()], dtype=np.object_).reshape(1, 16)
for binary0, binary1 in ((True, False), (False, True), (True, True), (False, False)):
    ins = [http.InferInput("INPUT0", [1, 16], "BYTES"), http.InferInput("INPUT1", [1, 16], "BYTES")]
    ins[0].set_data_from_numpy(s0, binary_data=binary0)
    ins[1].set_data_from_numpy(s1, binary_data=binary1)
    outs = [http.InferRequestedOutput("OUTPUT0", binary_data=binary0),
            http.InferRequestedOutput("OUTPUT1", binary_data=binary1)]
    r = h.infer("simple_string", ins, outputs=outs)
    sums = [int(v) for v in r.as_numpy("OUTPUT0").flatten()]
    diffs = [int(v) for v in r.as_numpy("OUTPUT1").flatten()]
    assert sums == list(range(1, 17)) and diffs == list(range(-1, 15)), (sums, diffs)
ins = [grpc.InferInput("INPUT0", [1, 16], "BYTES"), grpc.InferInput("INPUT1", [1, 16], "BYTES")]
ins[0].set_data_from_numpy(s0)
ins[1].set_data_from_numpy(s1)
r = g.infer("simple_string", ins)
assert [int(v) for v in r.as_numpy("OUTPUT0").flatten()] == list(range(1, 17))
assert [int(v) for v in r.as_numpy("OUTPUT1").flatten()] == list(range(-1, 15))
# a batch of 3 rows
b0 = np.array([str(v).encode() for v in range(48)], dtype=np.object_).reshape(3, 16)
ins = [http.InferInput("INPUT0", [3, 16], "BYTES"), http.InferInput("INPUT1", [3, 16], "BYTES")]
ins[0].set_data_from_numpy(b0)
ins[1].set_data_from_numpy(b0)
r = h.infer("simple_string", ins)
assert [int(v) for v in r.as_numpy("OUTPUT0").flatten()] == [2 * v for v in range(48)]
# a string that is not an integer: the model's Cast fails, the worker stays up
bad_int = s0.copy()
bad_int[0][3] = b"three"
ins = [http.InferInput("INPUT0", [1, 16], "BYTES"), http.InferInput("INPUT1", [1, 16], "BYTES")]
ins[0].set_data_from_numpy(bad_int)
ins[1].set_data_from_numpy(s1)
try:
    h.infer("simple_string", ins)
    raise SystemExit("'three' was cast to an integer")
except InferenceServerException as e:
    print("ok: a string that is no integer fails the request:", str(e)[:120])
print("ok: simple_string over HTTP (binary and JSON, batch of 3) and gRPC")

# BYTES identity: utf-8 with a NUL, binary blobs, each path
arrays = [np.array([["he\x00llo".encode()] * 16], dtype=np.object_),
          np.array([[b"\x00\x01\x02\x03"] * 16], dtype=np.object_),
          np.array([["\u00e9t\u00e9".encode(), b"", b"x" * 1000] * 2], dtype=np.object_)]
for a in arrays:
    for binary in (True, False):
        i = http.InferInput("INPUT0", list(a.shape), "BYTES")
        i.set_data_from_numpy(a, binary_data=binary)
        o = http.InferRequestedOutput("OUTPUT0", binary_data=binary)
        r = h.infer("simple_identity", [i], outputs=[o]).as_numpy("OUTPUT0")
        got = r if binary else np.array([x.encode() if isinstance(x, str) else x for x in r.flatten()], dtype=np.object_).reshape(r.shape)
        assert r.shape == a.shape and (got == a).all(), (binary, r)
    i = grpc.InferInput("INPUT0", list(a.shape), "BYTES")
    i.set_data_from_numpy(a)
    r = g.infer("simple_identity", [i]).as_numpy("OUTPUT0")
    assert r.shape == a.shape and (r == a).all(), r
print("ok: BYTES identity over HTTP binary, HTTP JSON and gRPC raw")

# a dynamic batch of BYTES rows of different lengths, split back per request
import threading
rows = [np.array([[b"a" * 50, b"b"]], dtype=np.object_),
        np.array([[b"c", b"dd"], [b"e", b"f" * 30]], dtype=np.object_),
        np.array([[b"", b"xyz"]], dtype=np.object_)]
results = {}
def batched(k, a):
    c = http.InferenceServerClient(url="127.0.0.1:" + hport)
    i = http.InferInput("INPUT0", list(a.shape), "BYTES")
    i.set_data_from_numpy(a)
    o = http.InferRequestedOutput("OUTPUT0", binary_data=k % 2 == 0)
    try:
        r = c.infer("identity_batched", [i], outputs=[o]).as_numpy("OUTPUT0")
        r = np.array([v.encode() if isinstance(v, str) else v for v in r.flatten()],
                     dtype=np.object_).reshape(r.shape)
        results[k] = True if r.shape == a.shape and (r == a).all() else repr(r)
    except InferenceServerException as e:
        results[k] = str(e)
threads = [threading.Thread(target=batched, args=(k, a)) for k, a in enumerate(rows)]
[t.start() for t in threads]
[t.join() for t in threads]
assert all(v is True for v in results.values()) and len(results) == 3, results
st = h.get_inference_statistics("identity_batched")["model_stats"][0]
assert st["execution_count"] < 3, st
print("ok: a dynamic batch of BYTES rows split back per request (%d executions)"
      % st["execution_count"])

# not UTF-8: JSON refuses naming the element, binary and gRPC carry it
bad = np.array([[b"ok", b"\xff\xfe"]], dtype=np.object_)
i = http.InferInput("INPUT0", [1, 2], "BYTES")
i.set_data_from_numpy(bad, binary_data=True)
e = expect_error("element 1 is not valid UTF-8", h.infer, "simple_identity", [i],
                 outputs=[http.InferRequestedOutput("OUTPUT0", binary_data=False)])
assert (h.infer("simple_identity", [i]).as_numpy("OUTPUT0") == bad).all()
print("ok: non-UTF-8 element as JSON refused:", e)

# classification: top N per row, labels, HTTP binary and JSON, gRPC
x = np.array([[0.1, 0.5, 0.2, 0.05, 0.9, 0.15], [3, 1, 2, 6, 5, 4]], dtype=np.float32)
ids = np.array([[5, -2, 7, 7, 0, 1], [1, 2, 3, 4, 5, 6]], dtype=np.int32)
def cls_inputs(mod):
    a = mod.InferInput("INPUT0", [2, 6], "FP32")
    b = mod.InferInput("INPUT1", [2, 6], "INT32")
    a.set_data_from_numpy(x)
    b.set_data_from_numpy(ids)
    return [a, b]
want0 = [[b"0.900000:4", b"0.500000:1:dog", b"0.200000:2:fish"],
         [b"6.000000:3:bird", b"5.000000:4", b"4.000000:5:horse"]]
want1 = [[b"7:2", b"7:3"], [b"6:5", b"5:4"]]
for binary in (True, False):
    outs = [http.InferRequestedOutput("OUTPUT0", binary_data=binary, class_count=3),
            http.InferRequestedOutput("OUTPUT1", binary_data=binary, class_count=2)]
    r = h.infer("simple_cls", cls_inputs(http), outputs=outs)
    for name, want in (("OUTPUT0", want0), ("OUTPUT1", want1)):
        got = r.as_numpy(name)
        got = [[v.encode() if isinstance(v, str) else v for v in row] for row in got]
        assert got == want, (binary, name, got)
    assert r.get_output("OUTPUT0")["datatype"] == "BYTES"
    assert r.get_output("OUTPUT0")["shape"] == [2, 3]
r = g.infer("simple_cls", cls_inputs(grpc),
            outputs=[grpc.InferRequestedOutput("OUTPUT0", class_count=3),
                     grpc.InferRequestedOutput("OUTPUT1", class_count=2)])
assert r.as_numpy("OUTPUT0").tolist() == want0, r.as_numpy("OUTPUT0")
assert r.as_numpy("OUTPUT1").tolist() == want1
assert r.get_output("OUTPUT0").datatype == "BYTES"
# a count larger than the row: every class, in order
r = h.infer("simple_cls", cls_inputs(http),
            outputs=[http.InferRequestedOutput("OUTPUT1", class_count=100)])
assert r.as_numpy("OUTPUT1").shape == (2, 6)
# and the plain tensor when no class count is asked for
r = h.infer("simple_cls", cls_inputs(http), outputs=[http.InferRequestedOutput("OUTPUT0")])
assert (r.as_numpy("OUTPUT0") == x).all()
print("ok: classification over HTTP (binary, JSON) and gRPC, labels per class")

# duplicate requested outputs: 400 / INVALID_ARGUMENT naming the output
o = http.InferRequestedOutput("OUTPUT0")
e = expect_error("output 'OUTPUT0' already exists in request", h.infer,
                 "simple_cls", cls_inputs(http), outputs=[o, o])
assert "[400]" in e, e
o = grpc.InferRequestedOutput("OUTPUT1")
e = expect_error("output 'OUTPUT1' already exists in request", g.infer,
                 "simple_cls", cls_inputs(grpc), outputs=[o, o])
assert "INVALID_ARGUMENT" in e, e
expect_error("unexpected inference output 'NOPE' for model 'simple_cls'",
             h.infer, "simple_cls", cls_inputs(http),
             outputs=[http.InferRequestedOutput("NOPE")])
print("ok: duplicate outputs refused over HTTP and gRPC:", e)

# gRPC bytes_contents (as grpc_explicit_byte_content_client sends them)
import grpc as grpcio
from tritonclient.grpc import service_pb2 as pb, service_pb2_grpc as pbg
stub = pbg.GRPCInferenceServiceStub(grpcio.insecure_channel("127.0.0.1:" + gport))
req = pb.ModelInferRequest(model_name="simple_identity")
t = req.inputs.add(name="INPUT0", datatype="BYTES", shape=[1, 3])
t.contents.bytes_contents.extend([b"a", b"", b"\xff\x00z"])
resp = stub.ModelInfer(req)
raw = resp.raw_output_contents[0]
assert raw == b"\x01\x00\x00\x00a\x00\x00\x00\x00\x03\x00\x00\x00\xff\x00z", raw
t.contents.bytes_contents.append(b"4th")
try:
    stub.ModelInfer(req)
    raise SystemExit("4 elements for a [1,3] shape were accepted")
except grpcio.RpcError as e:
    assert e.code() == grpcio.StatusCode.INVALID_ARGUMENT, e
    assert "input 'INPUT0': 4 elements in bytes_contents, but its shape needs 3" in e.details(), e.details()
    print("ok: gRPC bytes_contents in, raw out; a 4th element refused:", e.details())

# binary extension: an element's length running past the tensor is a 400
import json, urllib.request, urllib.error
def post(model, header, data):
    h_ = json.dumps(header).encode()
    rq = urllib.request.Request("http://127.0.0.1:%s/v2/models/%s/infer" % (hport, model),
                                data=h_ + data, headers={"Inference-Header-Content-Length": str(len(h_))})
    try:
        return 200, urllib.request.urlopen(rq).read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
data = b"\x02\x00\x00\x00ab" + b"\x09\x00\x00\x00abc"
code, body = post("simple_identity", {"inputs": [{"name": "INPUT0", "datatype": "BYTES", "shape": [1, 2],
                                      "parameters": {"binary_data_size": len(data)}}]}, data)
assert code == 400 and b"input 'INPUT0': element 1's length 9 runs past the end of its 13 bytes" in body, (code, body)
code, body = post("simple_identity", {"inputs": [{"name": "INPUT0", "datatype": "BYTES", "shape": [1, 3],
                                      "data": [["a", "b"]]}]}, b"")
assert code == 400 and b"must hold 3 strings" in body, (code, body)
print("ok: element lengths and counts checked:", body.decode())
