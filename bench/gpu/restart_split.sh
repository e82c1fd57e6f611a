#!/usr/bin/env bash
# Where a GPU worker's restart goes, with and without planning the large
# batch sizes after ready (gpuslice worker --plan-before-ready): a lone
# worker on the whole GPU, then one process holding six green instances of
# 16 SMs (serve's green layout on a 132-SM H100/H200), each started,
# killed with SIGKILL once it served a while, and started again
# (bench/gpu/exit_probe.py). The first start of each layout times every
# conv (the conv cache is empty) and is kept apart; the others read it.
#
# usage: bench/gpu/restart_split.sh KIT OUTDIR ONNX
#   KIT     the GPU kit (tests/gpu/build_carry.sh): gpuslice, lib/
#   ONNX    ResNet-50 (torch_resnet50.py export, or isolation.sh's
#           /tmp/gs-isolation-model/resnet50/1/model.onnx)
#   GS_SPLIT_REPS (3) kills per layout and setting
#   GS_SPLIT_PLANS ("all 1") the --plan-before-ready settings compared
# Writes OUTDIR/restart_split.txt (exit_probe's JSON lines, each after a
# "# layout plan" line) and OUTDIR/restart_split.log (the workers' logs:
# "ready N ms after the process started", each model's load note and the
# "planned after ready" line); a table of ready times last.
# Exit 0 when every kill was timed, 1 otherwise, 2 usage.
set -u
kit=${1:-} out=${2:-} onnx=${3:-}
if [[ -z $kit || -z $out || ! -s $onnx || ! -x $kit/gpuslice ]]; then
  echo "usage: restart_split.sh KIT OUTDIR ONNX (KIT holds gpuslice; ONNX a model file)" >&2
  exit 2
fi
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
kit=$(cd "$kit" && pwd)
export LD_LIBRARY_PATH=$kit/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
reps=${GS_SPLIT_REPS:-3}
mkdir -p "$out/repo/resnet50/1" "$out/cache"
ln -sf "$(cd "$(dirname "$onnx")" && pwd)/$(basename "$onnx")" "$out/repo/resnet50/1/model.onnx"
name=$(python3 -c 'import onnx,sys; print(onnx.load(sys.argv[1]).graph.input[0].name)' "$onnx" 2>/dev/null ||
  echo input)
# isolation.sh's instance config: batch 64, one session, FP16, FP16 input.
printf '{"max_batch_size": 64, "instance_group": [{"kind": "KIND_GPU", "count": 1}], "precision": "fp16", "input": [{"name": "%s", "data_type": "TYPE_FP16"}]}\n' \
  "$name" >"$out/repo/resnet50/config.json"
green=()
for k in 0 1 2 3 4 5; do green+=("--instance=0:$((k + 1))=$((16 * k)):16"); done
txt=$out/restart_split.txt
export EXIT_PROBE_LOG=$out/restart_split.log EXIT_PROBE_SETTLE_S=${GS_SPLIT_SETTLE_S:-2}
: >"$txt"
fail=0
probe() { # LABEL REPS ARGS...
  local label=$1 n=$2
  shift 2
  echo "# $label" >>"$txt"
  echo "=== $label" >>"$EXIT_PROBE_LOG"
  python3 "$root/bench/gpu/exit_probe.py" "$kit/gpuslice" "$out/repo" "$out/cache" "$n" "$@" \
    >>"$txt" 2>&1 || fail=1
}
for layout in lone green; do
  args=()
  [[ $layout == green ]] && args=("${green[@]}")
  probe "$layout cold" 1 "${args[@]}"
  for plan in ${GS_SPLIT_PLANS:-all 1}; do
    probe "$layout $plan" "$reps" "${args[@]}" "--plan-before-ready=$plan"
  done
done
python3 - "$txt" <<'PY'
import json, statistics, sys
rows, label = {}, None
for line in open(sys.argv[1]):
    if line.startswith("# "):
        label = line[2:].strip()
    elif line.startswith("{"):
        r = json.loads(line)
        if "ready_ms" in r:
            rows.setdefault(label, []).append(r["ready_ms"])
print("%-12s %5s %12s %s" % ("layout plan", "kills", "ready ms med", "all"))
for label, v in rows.items():
    print("%-12s %5d %12.0f %s" % (label, len(v), statistics.median(v), v))
PY
exit $fail
