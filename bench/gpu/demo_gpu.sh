#!/usr/bin/env bash
# `gpuslice demo` on the GPU machine from the carried kit: ResNet-50 FP16 on
# the GPU engine (KIND_GPU), soft backend (MPS), 1 x 1g, 7 x 1g and 1 x 7g,
# concurrency swept with a 50 ms p99 budget. The model comes from
# make_models.py --models resnet50 (numpy + onnx). The demo's state and MPS
# directories live under OUT; whatever way the run ends, its MPS daemons
# are quit and its processes ended. OUT gets demo.txt (the table),
# demo.err (progress), gpuslice-demo.svg, info.txt, and the state
# directory's logs on failure (logs.tar.gz). About 4-5 minutes on an H100.
#
# usage: bench/gpu/demo_gpu.sh OUT [extra gpuslice demo arguments]
#   GS_CARRY  the kit (tests/gpu/build_carry.sh), default .gpukit
# Exit: the demo's status (0 done), 77 without a GPU.
set -u
out=${1:?usage: demo_gpu.sh OUT [demo arguments]}
shift
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
kit=${GS_CARRY:-$root/.gpukit}
kit=$(cd "$kit" 2>/dev/null && pwd) || { echo "demo_gpu: no kit at ${GS_CARRY:-$root/.gpukit}"; exit 1; }
gs=${GPUSLICE:-$kit/gpuslice}
export LD_LIBRARY_PATH=$kit/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
mkdir -p "$out"
out=$(cd "$out" && pwd)
command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 || {
  echo "demo_gpu: no NVIDIA GPU: skip"; exit 77; }
[[ -x $gs ]] || { echo "demo_gpu: no gpuslice in $kit"; exit 1; }

# Private places: nothing outside $work is touched. The demo's own state
# directory is made under TMPDIR; MPS pipe/log dirs as the soft backend
# keeps them per state directory, and the default ones pointed here too.
work=$(mktemp -d /tmp/gs-demo-gpu.XXXXXX)
export TMPDIR=$work/tmp GPUSLICE_STATE_DIR=$work/state
export CUDA_MPS_PIPE_DIRECTORY=$work/mps/pipe CUDA_MPS_LOG_DIRECTORY=$work/mps/log
mkdir -p "$TMPDIR" "$GPUSLICE_STATE_DIR" "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"

demo_pid=
cleanup() {
  [[ -n $demo_pid ]] && kill -TERM "$demo_pid" 2>/dev/null && sleep 5
  # every MPS control daemon listening under $work gets "quit"
  local dir
  for dir in $(find "$work" -name control \( -type p -o -type s \) -printf '%h\n' 2>/dev/null | sort -u); do
    echo quit | CUDA_MPS_PIPE_DIRECTORY=$dir timeout 15 nvidia-cuda-mps-control >/dev/null 2>&1
  done
  sleep 1
  # processes whose command line names $work (serve, workers) are ended
  local p
  for p in $(pgrep -f "$work" 2>/dev/null); do
    [[ $p != "$$" ]] && kill -9 "$p" 2>/dev/null
  done
  # live MPS processes (a zombie the daemon left for init to reap has ended)
  local live
  live=$(ps -eo stat=,pid=,args= | awk '$1 !~ /^Z/ && /nvidia-cuda-mps/ && !/awk/')
  if [[ -n $live ]]; then
    echo "demo_gpu: MPS processes still running after cleanup:" >&2
    echo "$live" >&2
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

{
  nvidia-smi --query-gpu=name,driver_version,mig.mode.current --format=csv,noheader
  "$gs" --backend soft info
} >"$out/info.txt" 2>&1
cat "$out/info.txt"

echo "demo_gpu: making ResNet-50 ($(date -u +%T))"
py=$kit/make_models.py
[[ -f $py ]] || py=$root/scripts/make_models.py
timeout 180 python3 "$py" --out "$work/models" --models resnet50 ||
  { echo "demo_gpu: make_models.py --models resnet50 failed"; exit 1; }

echo "demo_gpu: gpuslice demo ($(date -u +%T))"
# In the background and waited for, so that TERM reaches the trap at once;
# the demo then destroys its instances (which quits its MPS daemon).
timeout -k 20 420 "$gs" --backend soft demo --model-repository "$work/models" \
  --out "$out" "$@" >"$out/demo.txt" 2> >(tee "$out/demo.err" >&2) &
demo_pid=$!
wait "$demo_pid"
rc=$?
demo_pid=
if [[ $rc -ne 0 ]]; then
  tar -C "$work" -czf "$out/logs.tar.gz" tmp 2>/dev/null
  echo "demo_gpu: gpuslice demo exited $rc; logs in $out/logs.tar.gz"
fi
echo "demo_gpu: done ($(date -u +%T))"
cat "$out/demo.txt"
exit $rc
