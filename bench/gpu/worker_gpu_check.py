#!/usr/bin/env python3
"""The worker serving the exported ResNet-50 on the GPU (KIND_GPU in
config.json) and on the CPU (KIND_CPU), one KServe v2 JSON infer each
against PyTorch's FP32 reference: usage worker_gpu_check.py GPUSLICE MODELDIR."""
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
for name, kind in (("r50_gpu", "KIND_GPU"), ("r50_cpu", "KIND_CPU")):
    os.makedirs("%s/%s/1" % (repo, name))
    shutil.copy(mdir + "/resnet50.onnx", "%s/%s/1/model.onnx" % (repo, name))
    with open("%s/%s/config.json" % (repo, name), "w") as f:
        json.dump({"max_batch_size": 64, "instance_group": [{"kind": kind, "count": 1}]}, f)
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
finally:
    w.terminate()
    w.wait()
