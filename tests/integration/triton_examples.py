#!/usr/bin/env python3
"""The calls Triton's Python client examples make that no other test covers,
written here on tritonclient (usage: triton_examples.py HTTP_PORT GRPC_PORT):
HTTP async_infer and the asyncio clients (simple_*_async/aio_infer_client),
InferInput objects reused across requests and protocols
(reuse_infer_objects_client), explicit int_contents and bytes_contents
answered in raw_output_contents (grpc_explicit_*_content_client), the
config checks image_client makes (input format NCHW/NHWC, FORMAT_NONE) and
its class_count request, BYTES in system shared memory over gRPC
(simple_grpc_shm_string_client; a malformed region refused), and models only
Triton's Python or TensorFlow backends run, refused naming the backend.
Prints one line per failed check and exits 1 when any failed."""
import asyncio
import sys

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
import tritonclient.http as httpclient
import tritonclient.http.aio as httpaio
import tritonclient.utils.shared_memory as shm
from tritonclient import utils
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

hport, gport = sys.argv[1], sys.argv[2]
H = httpclient.InferenceServerClient("127.0.0.1:" + hport, concurrency=4)
G = grpcclient.InferenceServerClient("127.0.0.1:" + gport)
fails = 0


def check(ok, what):
    global fails
    if not ok:
        fails += 1
        print("FAIL:", what)


A = np.arange(16, dtype=np.int32).reshape(1, 16)
B = np.ones((1, 16), dtype=np.int32)


def simple_inputs(mod, a, b, **kw):
    ins = [mod.InferInput("INPUT0", [1, 16], "INT32"),
           mod.InferInput("INPUT1", [1, 16], "INT32")]
    ins[0].set_data_from_numpy(a, **kw)
    ins[1].set_data_from_numpy(b, **kw)
    return ins


def sums_ok(r, a, b):
    return (np.array_equal(r.as_numpy("OUTPUT0"), a + b) and
            np.array_equal(r.as_numpy("OUTPUT1"), a - b))


def http_async():
    # simple_http_async_infer_client: several requests in flight at once
    pending = [H.async_infer("simple", simple_inputs(httpclient, A * k, B))
               for k in range(4)]
    for k, p in enumerate(pending):
        check(sums_ok(p.get_result(), A * k, B), "http async_infer %d" % k)


async def aio():
    # simple_http_aio_infer_client and simple_grpc_aio_infer_client
    async with httpaio.InferenceServerClient("127.0.0.1:" + hport) as h:
        rs = await asyncio.gather(*[
            h.infer("simple", simple_inputs(httpaio, A + k, B)) for k in range(3)])
        for k, r in enumerate(rs):
            check(sums_ok(r, A + k, B), "http.aio infer %d" % k)
        check(await h.is_model_ready("simple"), "http.aio is_model_ready")
    g = grpcaio.InferenceServerClient("127.0.0.1:" + gport)
    rs = await asyncio.gather(*[
        g.infer("simple", simple_inputs(grpcaio, A - k, B)) for k in range(3)])
    for k, r in enumerate(rs):
        check(sums_ok(r, A - k, B), "grpc.aio infer %d" % k)
    await g.close()


def reuse():
    # reuse_infer_objects_client: the same InferInput/InferRequestedOutput
    # objects, their data replaced between requests, JSON then binary.
    for mod, c in ((httpclient, H), (grpcclient, G)):
        ins = simple_inputs(mod, A, B)
        outs = [mod.InferRequestedOutput("OUTPUT0"),
                mod.InferRequestedOutput("OUTPUT1")]
        for k in range(3):
            a = A * (k + 2)
            if mod is httpclient:
                ins[0].set_data_from_numpy(a, binary_data=bool(k % 2))
                ins[1].set_data_from_numpy(B, binary_data=not k % 2)
            else:
                ins[0].set_data_from_numpy(a)
            r = c.infer("simple", ins, outputs=outs)
            check(sums_ok(r, a, B), "%s reused objects, round %d" % (mod.__name__, k))


def explicit_contents():
    stub = service_pb2_grpc.GRPCInferenceServiceStub(
        grpc.insecure_channel("127.0.0.1:" + gport))

    def request(model, dtype, fill):
        req = service_pb2.ModelInferRequest(model_name=model)
        for name, vals in (("INPUT0", range(16)), ("INPUT1", [1] * 16)):
            t = service_pb2.ModelInferRequest().InferInputTensor()
            t.name, t.datatype = name, dtype
            t.shape.extend([1, 16])
            fill(t.contents, list(vals))
            req.inputs.append(t)
        return stub.ModelInfer(req)

    # grpc_explicit_int_content_client: int_contents in, raw out
    r = request("simple", "INT32", lambda c, v: c.int_contents.extend(v))
    o0 = np.frombuffer(r.raw_output_contents[0], dtype=np.int32)
    o1 = np.frombuffer(r.raw_output_contents[1], dtype=np.int32)
    check(np.array_equal(o0, np.arange(16) + 1) and
          np.array_equal(o1, np.arange(16) - 1), "explicit int_contents")
    # grpc_explicit_byte_content_client: bytes_contents in, raw out
    r = request("simple_string", "BYTES",
                lambda c, v: c.bytes_contents.extend(str(x).encode() for x in v))
    o0 = utils.deserialize_bytes_tensor(r.raw_output_contents[0])
    check([int(x) for x in o0] == [i + 1 for i in range(16)],
          "explicit bytes_contents: %s" % o0[:3])


def image_config():
    # image_client's parse_model: the input format, from config.pbtxt
    formats = {"densenet_onnx": "FORMAT_NCHW", "image_nhwc": "FORMAT_NHWC",
               "simple": "FORMAT_NONE"}
    for m, f in formats.items():
        hc = H.get_model_config(m)
        check(hc["input"][0].get("format") == f,
              "http %s format %s" % (m, hc["input"][0].get("format")))
        gc = G.get_model_config(m).config
        check(gc.input[0].format == getattr(type(gc.input[0]), f),
              "grpc %s format %d" % (m, gc.input[0].format))
    hc = H.get_model_config("densenet_onnx")
    check(hc["max_batch_size"] == 0 and
          hc["output"][0].get("label_filename") == "densenet_labels.txt",
          "densenet config %s" % hc)
    # its request: a preprocessed image, class_count 3 ("score:index:label")
    img = np.full((3, 224, 224), 0.5, dtype=np.float32)
    x = grpcclient.InferInput("data_0", [3, 224, 224], "FP32")
    x.set_data_from_numpy(img)
    r = G.infer("densenet_onnx", [x], outputs=[
        grpcclient.InferRequestedOutput("fc6_1", class_count=3)])
    top = [s.decode().split(":") for s in r.as_numpy("fc6_1")]
    check(len(top) == 3 and top[0][1:] == ["999", "CLASS_999"],
          "densenet class_count 3: %s" % top)


def shm_strings():
    # simple_grpc_shm_string_client: BYTES inputs in a system region
    vals = [np.array([[str(i) for i in range(16)]], dtype=np.object_),
            np.array([["1"] * 16], dtype=np.object_)]
    ser = [utils.serialize_byte_tensor(v) for v in vals]
    size = sum(utils.serialized_byte_size(s) for s in ser)
    h = shm.create_shared_memory_region("in_str", "/gs_ex_in_str", size)
    try:
        shm.set_shared_memory_region(h, ser)
        G.register_system_shared_memory("in_str", "/gs_ex_in_str", size)
        ins = [grpcclient.InferInput("INPUT%d" % k, [1, 16], "BYTES") for k in (0, 1)]
        n0 = utils.serialized_byte_size(ser[0])
        ins[0].set_shared_memory("in_str", n0)
        ins[1].set_shared_memory("in_str", size - n0, offset=n0)
        r = G.infer("simple_string", ins)
        check([int(x) for x in r.as_numpy("OUTPUT0")[0]] == list(range(1, 17)),
              "grpc shm BYTES inputs")
        # a region whose element lengths run past it: refused, not a crash
        shm.set_shared_memory_region(
            h, [np.full(size, 0xff, dtype=np.uint8)])
        try:
            G.infer("simple_string", ins)
            check(False, "grpc shm malformed BYTES accepted")
        except InferenceServerException as e:
            check("INVALID_ARGUMENT" in str(e.status()) and "INPUT0" in e.message(),
                  "grpc shm malformed BYTES: %s %s" % (e.status(), e.message()))
        G.unregister_system_shared_memory("in_str")
    finally:
        shm.destroy_shared_memory_region(h)


def refused():
    # Models only Triton's Python or TensorFlow backends run
    names = {"py_model": "backend 'python'",
             "tf_graphdef": "platform 'tensorflow_graphdef'",
             "tf_savedmodel": "platform 'tensorflow_savedmodel'",
             "tf_backend": "backend 'tensorflow'"}
    index = {m["name"]: m for m in H.get_model_repository_index()}
    for m, want in names.items():
        e = index.get(m, {})
        check(e.get("state") == "UNAVAILABLE" and want in e.get("reason", ""),
              "%s in the index: %s" % (m, e))
        try:
            G.load_model(m)
            check(False, "grpc load_model %s succeeded" % m)
        except InferenceServerException as ex:
            check(want in ex.message(), "grpc load_model %s: %s" % (m, ex.message()))


for step in (http_async, lambda: asyncio.run(aio()), reuse, explicit_contents,
             image_config, shm_strings, refused):
    try:
        step()
    except Exception as e:  # a failed step is reported, the rest still run
        check(False, "%s raised %r" % (getattr(step, "__name__", "aio"), e))
check(H.is_server_live(), "the worker is live at the end")
sys.exit(1 if fails else 0)
