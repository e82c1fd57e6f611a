#!/bin/bash
# On the GPU machine, from a folder holding engine_bench_gpu, lib/ (the .so
# files it links that the machine lacks), torch_resnet50.py and
# engine_check.sh: the engine's GPU checks, then the engine and PyTorch
# benchmarks on the same GPU, in one run. Logs go to $OUT.
# ITERS1 / ITERS64 scale the runs; TORCH_BENCH=0 skips PyTorch's.
set -u
OUT=${OUT:-/tmp/gs_out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
M=/tmp/gs_check/models
ITERS1=${ITERS1:-2000}
ITERS64=${ITERS64:-200}
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  python3 -c "import torch; print('torch', torch.__version__, 'cudnn', torch.backends.cudnn.version())"
  ls -l /lib/x86_64-linux-gnu/libcudnn.so.9* 2>&1 | head -2; } > "$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"
bash ./engine_check.sh . /tmp/gs_check 2>&1 | grep -v Warning | tee "$OUT/check.log"
fail=${PIPESTATUS[0]}
# The CLI's view, and the worker serving the model on the GPU and the CPU.
./gpuslice info --backend=host 2>&1 | grep -E "^engine" | tee "$OUT/worker.log"
[ -x ./gpuslice ] && PYTHONUNBUFFERED=1 timeout 120 python3 worker_gpu_check.py ./gpuslice $M 2>&1 | grep -E "^worker|Error|error" | tee -a "$OUT/worker.log"
{
  ./engine_bench_gpu bench $M/resnet50.onnx fp16 1 $ITERS1
  ./engine_bench_gpu bench $M/resnet50.onnx fp16 64 $ITERS64
  ./engine_bench_gpu bench $M/resnet50.onnx fp32 1 $((ITERS1 / 4))
  ./engine_bench_gpu bench $M/resnet50.onnx fp32 64 $((ITERS64 / 4))
  ./engine_bench_gpu profile $M/resnet50.onnx fp16 1
  ./engine_bench_gpu profile $M/resnet50.onnx fp16 64
} 2>&1 | tee "$OUT/engine.log"
[ "${TORCH_BENCH:-1}" = 1 ] && PYTHONUNBUFFERED=1 python3 torch_resnet50.py bench 2>&1 | grep -v -i warn | tee "$OUT/torch.log"
echo "== summary"
grep -hE "^(check|bench|torch|engine_check|engine|worker)" "$OUT/check.log" "$OUT/worker.log" "$OUT/engine.log" "$OUT/torch.log" 2>/dev/null
exit $fail
