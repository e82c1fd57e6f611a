#!/usr/bin/env bash
# The engine's GPU checks, for the GPU kit: ResNet-50 through the engine API
# on the CUDA provider against PyTorch FP32 (torchvision's resnet50, 102
# classes, seed 0, exported to ONNX there), in FP32 and FP16, batches 1 and
# 64; an unsupported request fails cleanly. Before that, without PyTorch,
# the ONNX node tests of the CUDA provider's ops (the kit's node/, from
# build_carry.sh) run on the GPU in FP32 (run_node_tests --provider cuda,
# skips as tests/engine/node_skips_cuda.txt lists them, the CPU's
# tolerance). ResNet-50 FP16 batch 1 runs again with each way of waiting
# for a run (GS_GPU_WAIT block, spin). Then a ResNet-50 batch with NaN and
# Inf images runs (computed, not crashing; the finite image as it is
# alone), and two loads of the model
# file run on one copy of its weights (engine_bench_gpu share, as a green
# process's instances load their copies), and a session with batch 8's
# memory reserved keeps batch 1's graph through batch 8's plan
# (engine_bench_gpu reserve, as the worker plans after ready). Exit 0 all passed, 1 a
# failure, 77 no GPU (or, with the node tests passed, no PyTorch).
#
# usage: tests/gpu/engine_check.sh DIR [OUT]
#   DIR holds engine_bench_gpu (built here: ninja engine_bench_gpu),
#   torch_resnet50.py (bench/gpu/) and lib/ with the .so files the binary
#   links that the GPU machine lacks (libprotobuf-c, libopenblas).
#
# Limits: FP32 max |diff| / max |ref| <= 1e-3 and every top-1 identical.
# FP16: <= max(1e-2, 1.25 x PyTorch's own FP16 error on the same model and
# inputs), and a top-1 may differ only where the reference's two logits are
# closer than twice PyTorch's FP16 error (x max |ref|), a swap its FP16
# could make too: with random weights some images' top two logits are
# within FP16's rounding, and which of them flip changes with cuDNN's timed
# algorithm choice (run 10: 2 of 64, PyTorch's FP16 1). The non-finite check's finite image in FP16: within twice the
# batch-1 limit of its run alone (each run is within the limit of FP32).
set -u
dir=${1:?usage: engine_check.sh DIR [OUT]}
out=${2:-$dir/out}
# Called by run_on_device.sh with GS_CARRY (the kit from build_carry.sh,
# which holds engine_bench_gpu and lib/) and an empty DIR to work in.
kit=${GS_CARRY:-$dir}
root=$(cd "$(dirname "$0")/../.." && pwd)
bench=$(cd "$kit" && pwd)/engine_bench_gpu
torch_py=$kit/torch_resnet50.py
[ -f "$torch_py" ] || torch_py=$root/bench/gpu/torch_resnet50.py
torch_py=$(cd "$(dirname "$torch_py")" && pwd)/$(basename "$torch_py")
export LD_LIBRARY_PATH=$(cd "$kit" && pwd)/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
mkdir -p "$dir" "$out"
cd "$dir" || exit 1
[ -x "$bench" ] || { echo "engine_check: no engine_bench_gpu in $kit"; exit 1; }
command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 || {
  echo "engine_check: no NVIDIA GPU: skip"; exit 77; }
fail=0
# The node tests: the kit's copy, else Debian's (a run from a source tree).
node_dir=$kit/node
[ -d "$node_dir" ] || node_dir=/usr/share/libonnx-testdata/data/node
node_skips=$kit/node_skips_cuda.txt
[ -f "$node_skips" ] || node_skips=$root/tests/engine/node_skips_cuda.txt
if [ -x "$kit/run_node_tests" ] && [ -d "$node_dir" ] && [ -f "$node_skips" ]; then
  "$kit/run_node_tests" --provider cuda --precision fp32 \
    --expected-skips "$node_skips" "$node_dir" >"$out/node_tests_cuda.txt" 2>&1
  rc=$?
  grep -E '^(provider|FAIL|note)' "$out/node_tests_cuda.txt"
  echo "engine_check: node tests (cuda, fp32): $(tail -n 1 "$out/node_tests_cuda.txt") (exit $rc)"
  [ $rc = 0 ] || fail=1
else
  echo "engine_check: node tests: run_node_tests, $node_dir or $node_skips missing from the kit"
  fail=1
fi
python3 -c "import torch, torchvision" 2>/dev/null || {
  echo "engine_check: no PyTorch/torchvision here: skip the ResNet-50 checks"
  [ $fail = 0 ] && exit 77
  echo "engine_check: FAIL"; exit 1; }
m=$out/models
mkdir -p "$m"
"$bench" describe || exit 1
PYTHONUNBUFFERED=1 python3 "$torch_py" export "$m" 2>&1 | grep -E "^export" || {
  echo "engine_check: the PyTorch export failed"; exit 1; }
for n in 1 64; do
  "$bench" check "$m/resnet50.onnx" fp32 "$m/x$n.f32" "$m/ref$n.f32" $n 1e-3 0 || fail=1
  read -r trel tmiss < "$m/torch_fp16_$n.txt"
  lim=$(python3 -c "print(max(1e-2, 1.25 * $trel))")
  echo "engine_check: PyTorch's own FP16, batch $n: rel $trel, $tmiss top-1 differences"
  "$bench" check "$m/resnet50.onnx" fp16 "$m/x$n.f32" "$m/ref$n.f32" $n "$lim" "margin:$trel" || fail=1
  [ $n = 1 ] && lim1=$lim trel1=$trel
done
# The same answers whichever way a session waits for its runs (a worker's
# --gpu-wait): a blocking-sync event, a polled stream.
for w in block spin; do
  line=$(GS_GPU_WAIT=$w "$bench" check "$m/resnet50.onnx" fp16 "$m/x1.f32" "$m/ref1.f32" 1 \
    "$lim1" "margin:$trel1" | tee /dev/stderr | grep "^check ")
  [[ $line == *"(wait $w)"*": PASS" ]] ||
    { echo "engine_check: FAIL with GS_GPU_WAIT=$w: ${line:-no check line}"; fail=1; }
done
# Non-finite inputs: image 0 holds a NaN, image 1 a +Inf, image 2 is finite.
"$bench" nonfinite "$m/resnet50.onnx" fp32 "$m/x1.f32" 1e-3 || fail=1
"$bench" nonfinite "$m/resnet50.onnx" fp16 "$m/x1.f32" \
  "$(python3 -c "print(2 * $lim1)")" || fail=1
# Two loads of one model file (two green instances' copies) share weights.
"$bench" share "$m/resnet50.onnx" fp16 || fail=1
# Memory reserved for batch 8 first: batch 1's graph survives batch 8's
# plan (the worker plans large sizes after ready this way).
"$bench" reserve "$m/resnet50.onnx" fp16 8 || fail=1
echo "engine_check: $([ $fail = 0 ] && echo PASS || echo FAIL)"
exit $fail
