#!/usr/bin/env python3
"""What a Triton user's config.pbtxt and client code expect of the worker
beyond the other tests, on tritonclient (usage: triton_config.py HTTP_PORT
GRPC_PORT MODEL_DIR): a config's `reshape` (densenet_onnx as Triton ships
its config: requests send [3,224,224] and get [1000], the model takes
[1,3,224,224] and gives [1,1000,1,1]; reshape_batch: a batch and a variable
size, [B,K,6] <-> [B,K,2,3], dynamically batched; inception_onnx as
Triton ships its config, NHWC), a reshape whose element
count disagrees with its dims refused naming the tensor, the server name
--server-name gives (Triton's health examples want "triton"), and model
files sent in a load request ("file:1/model.onnx", load_model(files=...))
over both protocols, with bad paths refused and the worker still up; every
ready model's gRPC config (get_model_config(as_json=True)) the same as its
HTTP config on every field the proto has.
MODEL_DIR holds the generated models (their model.onnx files are sent).
Prints one line per failed check and exits 1 when any failed."""
import json
import os
import sys

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

hport, gport, models = sys.argv[1], sys.argv[2], sys.argv[3]
H = httpclient.InferenceServerClient("127.0.0.1:" + hport, concurrency=4)
G = grpcclient.InferenceServerClient("127.0.0.1:" + gport)
fails = 0


def check(ok, what):
    global fails
    if not ok:
        fails += 1
        print("FAIL:", what)


def error_of(call):
    try:
        call()
    except InferenceServerException as e:
        return e
    return None


def server_name():
    check(H.get_server_metadata()["name"] == "triton",
          "http server name %s" % H.get_server_metadata())
    check(G.get_server_metadata().name == "triton",
          "grpc server name %s" % G.get_server_metadata())


# make_example_models.py's densenet_onnx: GlobalAveragePool then a 1x1
# Conv with weights linspace(-1, 1) over [1000, 3]: score j = mean of the
# image per channel times row j.
W = np.linspace(-1, 1, 3000, dtype=np.float32).reshape(1000, 3)


def densenet():
    meta = H.get_model_metadata("densenet_onnx")
    check(meta["inputs"][0]["shape"] == [3, 224, 224] and
          meta["outputs"][0]["shape"] == [1000], "densenet metadata %s" % meta)
    gmeta = G.get_model_metadata("densenet_onnx")
    check(list(gmeta.inputs[0].shape) == [3, 224, 224], "grpc metadata %s" % gmeta)
    cfg = H.get_model_config("densenet_onnx")
    check(cfg["input"][0].get("reshape") == {"shape": [1, 3, 224, 224]} and
          cfg["output"][0].get("reshape") == {"shape": [1, 1000, 1, 1]},
          "densenet config shows the reshapes: %s" % cfg)
    img = np.stack([np.full((224, 224), v, np.float32) for v in (0.25, 0.5, -1)])
    want = W @ np.array([0.25, 0.5, -1], np.float32)
    for mod, c in ((httpclient, H), (grpcclient, G)):
        x = mod.InferInput("data_0", [3, 224, 224], "FP32")
        x.set_data_from_numpy(img)
        r = c.infer("densenet_onnx", [x])
        out = r.as_numpy("fc6_1")
        check(out is not None and out.shape == (1000,) and
              np.allclose(out, want, atol=1e-4),
              "%s densenet fc6_1 %s" % (mod.__name__, None if out is None else out.shape))
        # image_client's request: class_count on the [1000] the client sees
        r = c.infer("densenet_onnx", [x], outputs=[
            mod.InferRequestedOutput("fc6_1", class_count=2)])
        top = [s.decode().split(":")[1] for s in r.as_numpy("fc6_1")]
        check(top == [str(int(np.argmax(want))), str(int(np.argsort(want)[-2]))],
              "%s densenet class_count 2: %s" % (mod.__name__, top))
        # the model's own shape is not what clients send
        x4 = mod.InferInput("data_0", [1, 3, 224, 224], "FP32")
        x4.set_data_from_numpy(img.reshape(1, 3, 224, 224))
        e = error_of(lambda: c.infer("densenet_onnx", [x4]))
        check(e is not None and "data_0" in e.message(),
              "%s densenet with the reshape's shape: %s" % (mod.__name__, e))


def inception():
    # Triton's inception_onnx config: NHWC [299,299,3] in requests, the
    # model's [1,299,299,3]; tensor names with ':' and '/'
    out_name = "InceptionV3/Predictions/Softmax:0"
    meta = G.get_model_metadata("inception_onnx")
    check(list(meta.inputs[0].shape) == [299, 299, 3] and
          list(meta.outputs[0].shape) == [1001], "inception metadata %s" % meta)
    img = np.zeros((299, 299, 3), np.float32)
    img[..., 2] = 1.0  # channel 2 only: the last row of the weights wins
    for mod, c in ((httpclient, H), (grpcclient, G)):
        x = mod.InferInput("input:0", [299, 299, 3], "FP32")
        x.set_data_from_numpy(img)
        probs = c.infer("inception_onnx", [x]).as_numpy(out_name)
        check(probs is not None and probs.shape == (1001,) and
              abs(float(probs.sum()) - 1) < 1e-4,
              "%s inception softmax %s" % (mod.__name__,
                                           None if probs is None else probs.shape))
        r = c.infer("inception_onnx", [x], outputs=[
            mod.InferRequestedOutput(out_name, class_count=1)])
        top = r.as_numpy(out_name)
        check(top is not None and top.shape == (1,) and
              top[0].decode().split(":")[1:] == ["1000", "LABEL_1000"],
              "%s inception class_count 1: %s" % (mod.__name__, top))


def reshape_batch():
    meta = H.get_model_metadata("reshape_batch")
    check(meta["inputs"][0]["shape"] == [-1, -1, 6], "reshape_batch metadata %s" % meta)
    x = np.arange(2 * 3 * 6, dtype=np.float32).reshape(2, 3, 6)
    for mod, c in ((httpclient, H), (grpcclient, G)):
        i = mod.InferInput("x", [2, 3, 6], "FP32")
        i.set_data_from_numpy(x)
        y = c.infer("reshape_batch", [i]).as_numpy("y")
        check(y is not None and y.shape == (2, 3, 6) and np.array_equal(y, 2 * x),
              "%s reshape_batch y %s" % (mod.__name__, None if y is None else y.shape))
    # several requests in flight: the dynamic batcher joins them
    ins = []
    for k in range(4):
        i = httpclient.InferInput("x", [1, 5, 6], "FP32")
        i.set_data_from_numpy(x[:1, :1].repeat(5, axis=1) + k)
        ins.append(i)
    pending = [H.async_infer("reshape_batch", [i]) for i in ins]
    for k, p in enumerate(pending):
        y = p.get_result().as_numpy("y")
        check(y.shape == (1, 5, 6) and
              np.array_equal(y, 2 * (x[:1, :1].repeat(5, axis=1) + k)),
              "batched reshape_batch %d: %s" % (k, y.shape))


DENSENET = {"name": "densenet_onnx", "max_batch_size": 0,
            "input": [{"name": "data_0", "data_type": "TYPE_FP32",
                       "dims": [3, 224, 224],
                       "reshape": {"shape": [1, 3, 224, 225]}}],
            "output": [{"name": "fc6_1", "data_type": "TYPE_FP32",
                        "dims": [1000], "reshape": {"shape": [1, 1000, 1, 1]}}]}


def bad_reshape():
    # a reshape whose element count disagrees with dims: the load fails
    # naming the tensor; the loaded model keeps serving
    for c in (H, G):
        e = error_of(lambda: c.load_model("densenet_onnx", config=json.dumps(DENSENET)))
        check(e is not None and "'data_0'" in e.message() and
              "element count" in e.message(),
              "bad reshape refused naming data_0: %s" % e)
    check(H.is_model_ready("densenet_onnx"), "densenet still ready")


def files():
    # load_model(files=...): Triton's "file:VERSION/NAME" load parameters
    cfg = json.dumps({"max_batch_size": 4,
                      "input": [{"name": "x", "data_type": "TYPE_FP32",
                                 "dims": [-1, 6], "reshape": {"shape": [-1, 2, 3]}}],
                      "output": [{"name": "y", "data_type": "TYPE_FP32",
                                  "dims": [-1, 6], "reshape": {"shape": [-1, 2, 3]}}]})
    onnx = open(os.path.join(models, "reshape_batch", "1", "model.onnx"), "rb").read()
    x = np.ones((1, 2, 6), np.float32)
    for mod, c, name, v in ((httpclient, H, "sent_http", "1"),
                            (grpcclient, G, "sent_grpc", "3")):
        c.load_model(name, config=cfg, files={"file:%s/model.onnx" % v: onnx})
        check(c.is_model_ready(name, v), "%s loaded from files" % name)
        i = mod.InferInput("x", [1, 2, 6], "FP32")
        i.set_data_from_numpy(x)
        y = c.infer(name, [i]).as_numpy("y")
        check(y is not None and np.array_equal(y, 2 * x), "%s answers" % name)
        c.unload_model(name)
        check(not c.is_model_ready(name), "%s unloaded" % name)
        # as Triton's simple_grpc_model_control.py: a path component past
        # NAME_MAX fails as Triton's does (INTERNAL, 500), the worker lives
        e = error_of(lambda: c.load_model("simple", config="{}",
                                          files={"file:" + "A" * 256: b"a"}))
        check(e is not None and "failed to poll from model repository" in e.message()
              and str(e.status()) in ("500", "StatusCode.INTERNAL"),
              "long file name: %s %s" % (e and e.status(), e))
        e = error_of(lambda: c.load_model("x", config=cfg,
                                          files={"file:../1/model.onnx": onnx}))
        check(e is not None and "must stay within the model directory" in e.message(),
              "escaping file path: %s" % e)
        e = error_of(lambda: c.load_model("x", files={"file:1/model.onnx": onnx}))
        check(e is not None and "'config' must be specified" in e.message(),
              "files without config: %s" % e)
        e = error_of(lambda: c.load_model("bad_onnx", config=cfg,
                                          files={"file:1/model.onnx": b"not onnx"}))
        check(e is not None and "failed to load 'bad_onnx'" in e.message(),
              "a file that is not ONNX: %s" % e)


INT64 = {"TYPE_INT64", "TYPE_UINT64", "TYPE_SINT64", "TYPE_FIXED64",
         "TYPE_SFIXED64"}


def scalar_diff(h, g, field):
    # protobuf's JSON leaves a field at its default out and writes 64-bit
    # integers as strings; an enum's default is its value 0
    if g is None:
        g = field.default_value
        if field.enum_type is not None:
            g = field.enum_type.values_by_number[g].name
    if field.type in {getattr(field, t) for t in INT64}:
        g = int(g)
    return h != g


def repeated(field):
    # protobuf 6 deprecates label for is_repeated; older ones lack it
    if hasattr(field, "is_repeated"):
        return field.is_repeated
    return field.label == field.LABEL_REPEATED


def config_diffs(h, g, desc, path, diffs, http_only):
    """Appends to diffs where HTTP's h and gRPC's g (dicts of message desc)
    differ; HTTP fields the proto lacks go to http_only."""
    g = g or {}
    for key, hv in h.items():
        field = desc.fields_by_name.get(key)
        if field is None:
            http_only.add(path + key)
            continue
        gv, where = g.get(key), path + key
        if repeated(field):
            gv = gv or []
            if len(hv) != len(gv):
                diffs.append("%s: http %s grpc %s" % (where, hv, gv))
                continue
            pairs = list(zip(hv, gv))
        else:
            pairs = [(hv, gv)]
        for k, (a, b) in enumerate(pairs):
            at = where + ("[%d]" % k if repeated(field) else "")
            if field.message_type is not None:
                config_diffs(a, b, field.message_type, at + ".", diffs, http_only)
            elif scalar_diff(a, b, field):
                diffs.append("%s: http %r grpc %r" % (at, a, b))
    diffs.extend(path + k + ": only in grpc" for k in g if k not in h)


def same_configs():
    # a Triton user's get_model_config(as_json=True) over gRPC reads what
    # HTTP's config shows: batching, queue policy, instances, sequences
    names = [m["name"] for m in H.get_model_repository_index()
             if m.get("state") == "READY"]
    for want in ("reshape_batch", "densenet_onnx", "sequence_oldest",
                 "simple_sequence", "sequence_accumulate"):
        check(want in names, "%s ready for the config comparison" % want)
    for name in names:
        h = H.get_model_config(name)
        g = G.get_model_config(name, as_json=True)["config"]
        desc = G.get_model_config(name).config.DESCRIPTOR
        diffs, http_only = [], set()
        config_diffs(h, g, desc, "", diffs, http_only)
        check(not diffs, "%s: grpc config differs from http: %s" % (name, diffs))
        # only gpuslice's own precision has no field in Triton's proto
        check(http_only == {"precision"},
              "%s: http fields the proto lacks: %s" % (name, http_only))
    rb = G.get_model_config("reshape_batch", as_json=True)["config"]
    check(rb.get("dynamic_batching", {}).get("default_queue_policy", {})
          .get("timeout_action") == "DELAY" and
          rb.get("instance_group", [{}])[0].get("kind") == "KIND_CPU",
          "reshape_batch's grpc config as Triton shows it: %s" % rb)


for step in (server_name, densenet, inception, reshape_batch, bad_reshape, files,
             same_configs):
    try:
        step()
    except Exception as ex:  # a failed step is reported, the rest still run
        check(False, "%s raised %r" % (step.__name__, ex))
check(H.is_server_live(), "the worker is live at the end")
sys.exit(1 if fails else 0)
