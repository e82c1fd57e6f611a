#!/usr/bin/env bash
# Consolidation through the engine API alone (no HTTP, router or client):
# ResNet-50 FP16 batch-1 throughput of one 1g instance, of seven at once, and
# of the whole GPU, for green contexts (one process, seven contexts of 16
# SMs, as `serve --isolation green` holds them) and MPS caps (seven soft 1g
# instances, one engine_bench_gpu process in each, timing one common
# wall-clock window). Green runs twice: the seven sharing one copy of the
# weights, as a green worker's instances do since the engine shares equal
# model files' weights, and each with its own (7x1g-own), as they did
# before and MPS's seven processes still do: ResNet-50's FP16 weights are
# 47 MB, an H100's L2 50 MB. Beside bench/isolation.sh's consolidation part (the
# same through workers, router and perf) it separates the GPU side's cap from
# the serving path's (issue 13). About 2-3 minutes on an H100.
#
# usage: bench/gpu/engine_consolidation.sh OUT [MODEL.onnx]
#   GS_CARRY     the kit (tests/gpu/build_carry.sh; default .gpukit)
#   GS_STREAMS   sessions an instance (default 2, as isolation.sh's runs 13-14)
#   GS_SECONDS   timed window per measurement (default 6)
#   GS_SMS       SMs a green context / 1g instance (default 16)
#   GS_PROFILE   soft profile ID for the MPS instances (default 19: 1g)
# Output: OUT/engine_consolidation.csv (mode,case,instances,streams,img_s,
# p50_ms,p99_ms) and a short table; raw lines in OUT/raw/.
# Exit 0 when every row was measured, 1 otherwise, 77 without a GPU.
set -u
out=${1:?usage: engine_consolidation.sh OUT [MODEL.onnx]}
model=${2:-}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
kit=${GS_CARRY:-$root/.gpukit}
kit=$(cd "$kit" 2>/dev/null && pwd) || { echo "engine_consolidation: no kit at ${GS_CARRY:-$root/.gpukit}"; exit 1; }
gs=${GPUSLICE:-$kit/gpuslice}
bench=${ENGINE_BENCH_GPU:-$kit/engine_bench_gpu}
streams=${GS_STREAMS:-2} secs=${GS_SECONDS:-6} sms=${GS_SMS:-16} profile=${GS_PROFILE:-19}
export LD_LIBRARY_PATH=$kit/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
mkdir -p "$out/raw"
out=$(cd "$out" && pwd)
command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 || {
  echo "engine_consolidation: no NVIDIA GPU: skip"; exit 77; }
if [[ -z $model ]]; then
  mkdir -p "$out/models"
  PYTHONUNBUFFERED=1 timeout 120 python3 "$kit/torch_resnet50.py" export "$out/models" 2>&1 | grep -E '^export' ||
    { echo "engine_consolidation: no MODEL given and the PyTorch export failed"; exit 1; }
  model=$out/models/resnet50.onnx
fi
export GPUSLICE_STATE_DIR=$out/state
export CUDA_MPS_PIPE_DIRECTORY=$out/mps/pipe CUDA_MPS_LOG_DIRECTORY=$out/mps/log
mkdir -p "$GPUSLICE_STATE_DIR" "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
soft() { timeout --foreground -k 5 60 "$gs" --backend soft "$@"; }
cleanup() {
  soft destroy --all >/dev/null 2>&1
  local dir
  for dir in $( (echo "$CUDA_MPS_PIPE_DIRECTORY"
    find "$out" -name control \( -type p -o -type s \) -printf '%h\n' 2>/dev/null) | sort -u); do
    [[ -e $dir/control ]] &&
      echo quit | CUDA_MPS_PIPE_DIRECTORY=$dir timeout --foreground 15 nvidia-cuda-mps-control >/dev/null 2>&1
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

csv=$out/engine_consolidation.csv fail=0
echo "mode,case,instances,streams,img_s,p50_ms,p99_ms" >"$csv"
# The bench's result line: "img_s p50 p99", or nothing.
parse() { sed -n 's/^bench .* p50 \([0-9.]*\) ms, p99 \([0-9.]*\) ms, .*, \([0-9]*\) img\/s over.*/\3 \1 \2/p' "$1"; }
row() { # MODE CASE INSTANCES IMG_S P50 P99
  echo "$1,$2,$3,$streams,$4,$5,$6" >>"$csv"
  [[ -n $4 ]] || fail=1
}
# one LABEL [ARGS...]: one bench process over the whole GPU or green contexts.
one() {
  local mode=$1 case=$2 n=$3 log=$out/raw/$1-$2.log
  shift 3
  timeout 120 "$bench" bench "$model" fp16 1 200000 --fp16-input --staged \
    --streams "$streams" --seconds "$secs" "$@" >"$log" 2>&1
  read -r ips p50 p99 < <(parse "$log")
  row "$mode" "$case" "$n" "${ips:-}" "${p50:-}" "${p99:-}"
}

one whole whole 1
one green 1x1g 1 --green "1:$sms"
one green 7x1g 7 --green "7:$sms"
one green 7x1g-own 7 --green "7:$sms" --own-weights

# MPS caps: seven soft 1g instances, one bench process in each.
ids=()
for i in 1 2 3 4 5 6 7; do
  soft --json create "$profile" >"$out/raw/create_$i.json" 2>"$out/raw/create_$i.err" || break
done
soft --json list >"$out/raw/list.json" 2>&1
mapfile -t ids < <(python3 -c '
import json, sys
for gi in json.load(open(sys.argv[1]))["devices"][0]["gpu_instances"]:
    print(gi["id"])' "$out/raw/list.json" 2>/dev/null)
if ((${#ids[@]} != 7)); then
  echo "engine_consolidation: ${#ids[@]} soft instances of profile $profile, not 7" >&2
  fail=1
else
  # mps_at N: N bench processes, instance k in instance ids[k], one window.
  mps_at() {
    local n=$1 case=$2 start k sum=0 p50max=0 p99max=0 pids=()
    start=$(python3 -c 'import time; print(f"{time.time() + 40:.3f}")')
    for ((k = 0; k < n; k++)); do
      timeout 150 "$gs" --backend soft run -i "0:${ids[k]}" -- "$bench" bench "$model" fp16 1 200000 \
        --fp16-input --staged --streams "$streams" --start-at "$start" --seconds "$secs" \
        >"$out/raw/mps-$case-$k.log" 2>&1 &
      pids+=($!)
    done
    wait "${pids[@]}"
    for ((k = 0; k < n; k++)); do
      # A process warmed up past the common start timed another window:
      # its sum would mix windows, so the row fails.
      if grep -q 'late:' "$out/raw/mps-$case-$k.log"; then
        echo "engine_consolidation: mps $case $k started late: row dropped" >&2
        row mps "$case" "$n" "" "" ""
        return
      fi
      read -r ips p50 p99 < <(parse "$out/raw/mps-$case-$k.log")
      [[ -n ${ips:-} ]] || { row mps "$case" "$n" "" "" ""; return; }
      sum=$((sum + ips))
      p50max=$(python3 -c "print(max($p50max, $p50))") p99max=$(python3 -c "print(max($p99max, $p99))")
    done
    row mps "$case" "$n" "$sum" "$p50max" "$p99max"
  }
  mps_at 1 1x1g
  mps_at 7 7x1g
fi

python3 - "$csv" <<'PY' | tee "$out/engine_consolidation.txt"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
get = lambda m, c: next((float(r["img_s"]) for r in rows if r["mode"] == m and r["case"] == c and r["img_s"]), None)
print("ResNet-50 FP16 batch 1 through the engine API (p50/p99: worst instance)")
print(f"{'mode':6} {'case':6} {'img/s':>8} {'p50 ms':>7} {'p99 ms':>7}")
for r in rows:
    print(f"{r['mode']:6} {r['case']:6} {r['img_s'] or '-':>8} {r['p50_ms'] or '-':>7} {r['p99_ms'] or '-':>7}")
whole = get("whole", "whole")
for m, c in (("green", "7x1g"), ("green", "7x1g-own"), ("mps", "7x1g")):
    one, seven = get(m, "1x1g"), get(m, c)
    if one and seven and whole:
        print(f"{m} {c}: 7x/1x {seven / one:.2f}, 7x/whole {seven / whole:.2f}")
PY
exit $fail
