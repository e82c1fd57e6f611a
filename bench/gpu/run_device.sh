#!/bin/bash
# On the GPU machine, from a folder holding engine_bench_gpu, lib/ (the .so
# files it links that the machine lacks) and torch_resnet50.py: export the
# reference ResNet-50, check the engine against PyTorch in FP32 and FP16,
# benchmark both. Logs go to $OUT. ITERS1/ITERS64 scale the runs.
set -u
OUT=${OUT:-/tmp/gs_out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
M=/tmp/gs_models
mkdir -p $M
ITERS1=${ITERS1:-2000}
ITERS64=${ITERS64:-200}
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv;
  ls -l /lib/x86_64-linux-gnu/libcudnn.so.9* /usr/lib/x86_64-linux-gnu/libcublas.so.13* 2>&1 | head -4; } > "$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"
PYTHONUNBUFFERED=1 python3 torch_resnet50.py export $M 2>&1 | grep -v Warning | tail -6 | tee "$OUT/export.log"
fail=0
{
  ./engine_bench_gpu check $M/resnet50.onnx fp32 $M/x1.f32 $M/ref1.f32 1 1e-3 || fail=1
  ./engine_bench_gpu check $M/resnet50.onnx fp32 $M/x64.f32 $M/ref64.f32 64 1e-3 || fail=1
  ./engine_bench_gpu check $M/resnet50.onnx fp16 $M/x1.f32 $M/ref1.f32 1 1e-2 || fail=1
  ./engine_bench_gpu check $M/resnet50.onnx fp16 $M/x64.f32 $M/ref64.f32 64 1e-2 || fail=1
  ./engine_bench_gpu bench $M/resnet50.onnx fp16 1 $ITERS1
  ./engine_bench_gpu bench $M/resnet50.onnx fp16 64 $ITERS64
  ./engine_bench_gpu bench $M/resnet50.onnx fp32 1 $((ITERS1 / 4))
  ./engine_bench_gpu profile $M/resnet50.onnx fp16 1
  ./engine_bench_gpu profile $M/resnet50.onnx fp16 64

} 2>&1 | tee "$OUT/engine.log"
# Kernel-level view of replayed graphs (which kernels dominate), when nsys is there.
if [ "${NSYS:-1}" = 1 ] && command -v nsys >/dev/null; then
  for n in 1 64; do
    nsys profile -o /tmp/gs_nsys$n --force-overwrite true --cuda-graph-trace=node \
      ./engine_bench_gpu bench $M/resnet50.onnx fp16 $n 50 >/dev/null 2>&1
    nsys stats -q --report cuda_gpu_kern_sum --format csv /tmp/gs_nsys$n.nsys-rep 2>/dev/null \
      | head -30 > "$OUT/nsys_kernels_bs$n.csv"
  done
  head -12 "$OUT/nsys_kernels_bs1.csv" | cut -c1-220
else
  echo "nsys: not run ($(command -v nsys || echo absent))"
fi
[ "${TORCH_BENCH:-1}" = 1 ] && PYTHONUNBUFFERED=1 python3 torch_resnet50.py bench 2>&1 | grep -v -i warn | tee "$OUT/torch.log"
grep -E "^(check|bench|torch)" "$OUT/engine.log" "$OUT/torch.log" 2>/dev/null
exit $fail
