#!/usr/bin/env python3
"""The worker serving the exported ResNet-50 on the GPU (KIND_GPU in
config.json) and on the CPU (KIND_CPU), KServe v2 JSON infers against
PyTorch's FP32 reference: one request each, then three at once on the GPU
without batching (three sessions sharing one copy of the weights) and with
dynamic batching (a batch of 3 padded to the captured size 4).
usage: worker_gpu_check.py GPUSLICE MODELDIR"""
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np

gpuslice, mdir = sys.argv[1], sys.argv[2]
repo = tempfile.mkdtemp()
for name, kind in (("r50_gpu", "KIND_GPU"), ("r50_cpu", "KIND_CPU"),
                   ("r50_gpu_batched", "KIND_GPU")):
    os.makedirs("%s/%s/1" % (repo, name))
    shutil.copy(mdir + "/resnet50.onnx", "%s/%s/1/model.onnx" % (repo, name))
    cfg = {"max_batch_size": 64, "instance_group": [{"kind": kind, "count": 1}]}
    if name.endswith("batched"):
        cfg["dynamic_batching"] = {"max_queue_delay_microseconds": 200000}
    with open("%s/%s/config.json" % (repo, name), "w") as f:
        json.dump(cfg, f)
port = 18123
w = subprocess.Popen([gpuslice, "worker", "--model-repository", repo, "--http-port",
                      str(port), "--grpc-port", "0", "--metrics-port", "0"])
base = "http://127.0.0.1:%d" % port
try:
    for _ in range(300):
        try:
            if urllib.request.urlopen(base + "/v2/health/ready").status == 200:
                break
        except Exception:
            time.sleep(0.1)
    x = np.fromfile(mdir + "/x1.f32", "<f4")
    ref = np.fromfile(mdir + "/ref1.f32", "<f4")
    def infer(name, body):
        r = urllib.request.urlopen(urllib.request.Request(
            "%s/v2/models/%s/infer" % (base, name), body.encode(),
            {"Content-Type": "application/json"}))
        return np.array(json.load(r)["outputs"][0]["data"], "f4")

    for name in ("r50_gpu", "r50_cpu"):
        cfg = json.load(urllib.request.urlopen("%s/v2/models/%s/config" % (base, name)))
        body = json.dumps({"inputs": [{"name": "input", "datatype": "FP32",
                                       "shape": [1, 3, 224, 224], "data": x.tolist()}]})
        t0 = time.time()
        r = urllib.request.urlopen(urllib.request.Request(
            "%s/v2/models/%s/infer" % (base, name), body.encode(),
            {"Content-Type": "application/json"}))
        out = np.array(json.load(r)["outputs"][0]["data"], "f4")
        rel = np.abs(out - ref).max() / np.abs(ref).max()
        print("worker %s: instance_group %s precision %s, top-1 %s, rel %.3g, %.0f ms" % (
            name, cfg.get("instance_group"), cfg.get("precision"),
            "same" if out.argmax() == ref.argmax() else "DIFFERENT", rel,
            (time.time() - t0) * 1e3), flush=True)
    body = json.dumps({"inputs": [{"name": "input", "datatype": "FP32",
                                   "shape": [1, 3, 224, 224], "data": x.tolist()}]})
    for name in ("r50_gpu", "r50_gpu_batched"):
        with concurrent.futures.ThreadPoolExecutor(3) as ex:
            outs = list(ex.map(lambda _: infer(name, body), range(3)))
        stats = json.load(urllib.request.urlopen("%s/v2/models/%s/stats" % (base, name)))
        st = stats["model_stats"][0]
        print("worker %s, 3 requests at once: top-1 %s, rel max %.3g, executions %s, "
              "batch sizes %s" % (
                  name, "same" if all(o.argmax() == ref.argmax() for o in outs) else "DIFFERENT",
                  max(np.abs(o - ref).max() for o in outs) / np.abs(ref).max(),
                  st.get("execution_count"),
                  [b.get("batch_size") for b in st.get("batch_stats", [])]), flush=True)
finally:
    w.terminate()
    w.wait()
