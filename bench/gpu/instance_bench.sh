#!/usr/bin/env bash
# ResNet-50 through the engine (engine_bench_gpu bench, FP16) on the whole
# GPU and inside one soft 1g and one soft 3g instance (MPS SM and memory
# caps), one after the other in one run: batch-1 p50/p99 and batch-64
# img/s, printed as a short table (and kept in OUT/instance_bench.txt).
# The soft backend gets its own state dir and MPS pipe/log dirs under OUT;
# every instance is destroyed and our MPS daemons are quit at the end,
# however the script ends. About 3-4 minutes on an H100.
#
# usage: bench/gpu/instance_bench.sh OUT [MODEL.onnx]
#   GS_CARRY   the kit (tests/gpu/build_carry.sh): gpuslice, engine_bench_gpu,
#              torch_resnet50.py, lib/ (default: .gpukit in the source tree)
#   MODEL      default: exported here by torch_resnet50.py (needs PyTorch)
#   GS_PROFILES  the two instance profiles, by MIG ID (default "19 9": 1g and
#              3g on H100 and H200, whose soft catalogs keep MIG's IDs)
#   GS_ITERS_1 GS_ITERS_64  timed runs (default 1000 and 40)
# Exit 0 when every row was measured, 1 otherwise, 77 without a GPU.
set -u
out=${1:?usage: instance_bench.sh OUT [MODEL.onnx]}
model=${2:-}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
kit=${GS_CARRY:-$root/.gpukit}
kit=$(cd "$kit" 2>/dev/null && pwd) || { echo "instance_bench: no kit at ${GS_CARRY:-$root/.gpukit}"; exit 1; }
gs=${GPUSLICE:-$kit/gpuslice}
bench=${ENGINE_BENCH_GPU:-$kit/engine_bench_gpu}
read -r -a profiles <<<"${GS_PROFILES:-19 9}"
iters1=${GS_ITERS_1:-1000} iters64=${GS_ITERS_64:-40}
export LD_LIBRARY_PATH=$kit/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
mkdir -p "$out"
out=$(cd "$out" && pwd)

command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 || {
  echo "instance_bench: no NVIDIA GPU: skip"; exit 77; }
[[ -x $gs && -x $bench ]] || { echo "instance_bench: gpuslice or engine_bench_gpu missing from $kit"; exit 1; }
if [[ -z $model ]]; then
  py=$kit/torch_resnet50.py
  [[ -f $py ]] || py=$root/bench/gpu/torch_resnet50.py
  mkdir -p "$out/models"
  PYTHONUNBUFFERED=1 timeout 120 python3 "$py" export "$out/models" 2>&1 | grep -E '^export' ||
    { echo "instance_bench: no MODEL given and the PyTorch export failed"; exit 1; }
  model=$out/models/resnet50.onnx
fi

export GPUSLICE_STATE_DIR=$out/state
export CUDA_MPS_PIPE_DIRECTORY=$out/mps/pipe CUDA_MPS_LOG_DIRECTORY=$out/mps/log
mkdir -p "$GPUSLICE_STATE_DIR" "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
soft() { timeout --foreground -k 5 "${T:-60}" "$gs" --backend soft "$@"; }

# Quits the MPS control daemons listening in our directories (the soft
# backend starts one per GPU, under its state dir, and quits it when the
# GPU's last instance goes: this is the safety net).
mps_quit() {
  local dir
  for dir in $( (echo "$CUDA_MPS_PIPE_DIRECTORY"
    find "$out" -name control \( -type p -o -type s \) -printf '%h\n' 2>/dev/null) | sort -u); do
    [[ -e $dir/control ]] &&
      echo quit | CUDA_MPS_PIPE_DIRECTORY=$dir timeout --foreground 15 nvidia-cuda-mps-control
  done
}
cleanup() {
  T=30 soft destroy --all >/dev/null 2>&1
  mps_quit >/dev/null 2>&1
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rows=() fail=0
# measure LABEL [gpuslice run -i ID --]: one batch-1 and one batch-64 bench.
measure() {
  local label=$1 b1 b64 p50 p99 ips
  shift
  b1=$(timeout 90 "$@" "$bench" bench "$model" fp16 1 "$iters1" 2>>"$out/bench.err" | grep '^bench fp16 batch 1:')
  b64=$(timeout 90 "$@" "$bench" bench "$model" fp16 64 "$iters64" 2>>"$out/bench.err" | grep '^bench fp16 batch 64:')
  echo "$label: $b1" >>"$out/bench.log"
  echo "$label: $b64" >>"$out/bench.log"
  p50=$(sed -n 's/.* p50 \([0-9.]*\) ms.*/\1/p' <<<"$b1")
  p99=$(sed -n 's/.* p99 \([0-9.]*\) ms.*/\1/p' <<<"$b1")
  ips=$(sed -n 's/.* \([0-9]*\) img\/s over.*/\1/p' <<<"$b64")
  [[ -n $p50 && -n $p99 && -n $ips ]] || fail=1
  rows+=("$(printf '%-22s %10s %10s %14s' "$label" "${p50:--}" "${p99:--}" "${ips:--}")")
}

measure "whole GPU"
for p in "${profiles[@]}"; do
  if ! T=60 soft --json create "$p" >"$out/create_$p.json" 2>"$out/create_$p.err"; then
    rows+=("$(printf '%-22s %s' "profile $p" "create failed: $(tail -n 1 "$out/create_$p.err")")")
    fail=1
    continue
  fi
  T=30 soft --json list >"$out/list_$p.json"
  read -r id name < <(python3 -c '
import json, sys
gi = json.load(open(sys.argv[1]))["devices"][0]["gpu_instances"][-1]
print(gi["id"], gi.get("profile", gi.get("name", "?")))' "$out/list_$p.json" 2>/dev/null)
  if [[ -z ${id:-} ]]; then
    rows+=("$(printf '%-22s %s' "profile $p" "created, but not listed")")
    fail=1
  else
    measure "soft $name (GI $id)" "$gs" --backend soft run -i "0:$id" --
  fi
  T=30 soft destroy -d 0 "$id" >/dev/null 2>&1 || T=30 soft destroy --all >/dev/null 2>&1
done

{
  echo "ResNet-50 FP16 through engine_bench_gpu (host input to host output), $(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)"
  printf '%-22s %10s %10s %14s\n' "where" "b1 p50 ms" "b1 p99 ms" "b64 img/s"
  printf '%s\n' "${rows[@]}"
} | tee "$out/instance_bench.txt"
exit $fail
