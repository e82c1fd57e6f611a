#!/usr/bin/env python3
"""PyTorch side of the engine's GPU checks (run on the GPU machine).

  torch_resnet50.py export DIR   torchvision resnet50(num_classes=102), seed 0,
      BatchNorm statistics set by a calibration pass (as training leaves them),
      exported to DIR/resnet50.onnx (opset 17, batch dimension N); inputs
      DIR/x1.f32, DIR/x64.f32 and PyTorch FP32 outputs (TF32 off) DIR/ref1.f32,
      DIR/ref64.f32, raw little-endian floats.
  torch_resnet50.py bench        the same model in FP16 channels_last: eager,
      CUDA-graph replay and torch.compile(mode=reduce-overhead), batch 1
      p50/p99 and batch 64 images/s; inputs already on the GPU.
"""
import sys
import time

import numpy as np
import torch
import torchvision


def model():
    torch.manual_seed(0)
    m = torchvision.models.resnet50(num_classes=102)
    # Calibrate BN statistics on structured random images, as in training.
    m.train()
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.momentum = None  # cumulative average
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(4):
            m(images(16, g))
    return m.eval()


def images(n, g):
    coarse = torch.randn(n, 3, 7, 7, generator=g)
    up = torch.nn.functional.interpolate(coarse, size=(224, 224), mode="nearest")
    colour = 0.5 * torch.randn(n, 3, 1, 1, generator=g)
    return up + colour + 0.5 * torch.randn(n, 3, 224, 224, generator=g)


def export(out):
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    m = model()
    x = images(1, torch.Generator().manual_seed(2))
    torch.onnx.export(m, x, out + "/resnet50.onnx", dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "N"}, "output": {0: "N"}})
    mc = m.cuda()
    for n, seed in ((1, 2), (64, 3)):
        x = images(n, torch.Generator().manual_seed(seed))
        x.numpy().astype("<f4").tofile("%s/x%d.f32" % (out, n))
        with torch.no_grad():
            y = mc(x.cuda()).float().cpu()
        y.numpy().astype("<f4").tofile("%s/ref%d.f32" % (out, n))
        # PyTorch's own FP16 error on the same input, for scale.
        mh = model().cuda().half().to(memory_format=torch.channels_last)
        with torch.no_grad():
            yh = mh(x.cuda().half().to(memory_format=torch.channels_last)).float().cpu()
        rel = (yh - y).abs().max() / y.abs().max()
        same = (yh.argmax(1) == y.argmax(1)).sum().item()
        print("export: batch %d, logits |max| %.3g; torch fp16 vs fp32: rel %.3g, "
              "top-1 %d/%d same" % (n, y.abs().max(), rel, same, n))
        with open("%s/torch_fp16_%d.txt" % (out, n), "w") as f:
            f.write("%.6g %d\n" % (rel, n - same))


def timed(fn, iters):
    for _ in range(20):
        fn()
    torch.cuda.synchronize()
    t = []
    start = time.perf_counter()
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        t.append((time.perf_counter() - t0) * 1e3)
    total = time.perf_counter() - start
    t.sort()
    return t[len(t) // 2], t[int(len(t) * 0.99)], iters / total


def graphed(m, x):
    static_x = x.clone()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s), torch.no_grad():
        for _ in range(3):
            m(static_x)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g), torch.no_grad():
        m(static_x)
    return g.replay


def bench():
    m = model().cuda().half().to(memory_format=torch.channels_last)
    rows = []
    for n, iters in ((1, 1000), (64, 100)):
        x = torch.randn(n, 3, 224, 224, device="cuda").half().to(
            memory_format=torch.channels_last)
        with torch.no_grad():
            rows.append(("eager", n) + timed(lambda: m(x), iters))
        rows.append(("cuda-graph replay", n) + timed(graphed(m, x), iters))
    for n, iters in ((1, 1000), (64, 100)):
        x = torch.randn(n, 3, 224, 224, device="cuda").half().to(
            memory_format=torch.channels_last)
        torch._dynamo.reset()
        c = torch.compile(m, mode="reduce-overhead")
        t0 = time.perf_counter()
        with torch.no_grad():
            for _ in range(3):
                c(x)
        torch.cuda.synchronize()
        comp = time.perf_counter() - t0
        with torch.no_grad():
            r = timed(lambda: c(x), iters)
        rows.append(("torch.compile reduce-overhead (%.0f s to compile)" % comp, n) + r)
    for name, n, p50, p99, rate in rows:
        print("torch %-48s batch %2d: p50 %.3f ms, p99 %.3f ms, %.0f img/s"
              % (name, n, p50, p99, rate * n), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "export":
        export(sys.argv[2])
    else:
        bench()
