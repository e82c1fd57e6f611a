#!/usr/bin/env bash
# Two-GPU checks of the soft backend, run on a machine with 2+ GPUs:
#   bash tests/gpu/run_two_gpus.sh OUTDIR     (binaries from .carry/)
# One mig-parted config for devices [0, 1]; one MPS control daemon per GPU;
# a fatal fault on GPU 0 ends GPU 0's other client (MPS) but not GPU 1's.
# Read-only towards the GPUs' settings: MPS only with our own pipe and log
# directories, stopped before the script ends.
set -uo pipefail
out=${1:?usage: run_two_gpus.sh OUTDIR}
carry=$(cd "$(dirname "$0")/../.." && pwd)/.carry
gs="$carry/gpuslice"
export GPUSLICE_STATE_DIR=$(mktemp -d /tmp/gs2.XXXXXX) GPUSLICE_BACKEND=soft
log="$out/two_gpus.log"
results=()
record() { results+=("$(printf '%-38s | %-34s | %-40s | %s' "$1" "$2" "$3" "$4")"); }
cleanup() {
  "$gs" destroy -d 0 --all >/dev/null 2>&1
  "$gs" destroy -d 1 --all >/dev/null 2>&1
  for p in "$GPUSLICE_STATE_DIR"/mps/*/pipe; do
    [ -d "$p" ] && echo quit | CUDA_MPS_PIPE_DIRECTORY=$p timeout 10 nvidia-cuda-mps-control >/dev/null 2>&1
  done
}
trap cleanup EXIT
{
  nvidia-smi -L
  n=$(nvidia-smi -L | wc -l)
  [ "$n" -ge 2 ] || { echo "needs 2 GPUs, found $n"; exit 77; }
  name=$("$gs" --json profiles -d 0 | python3 -c 'import json,sys; print([p["name"] for p in json.load(sys.stdin)["devices"][0]["profiles"] if p["id"] == 19][0])')
  cat >"$GPUSLICE_STATE_DIR/two.yaml" <<YAML
version: v1
mig-configs:
  two-each:
    - devices: [0, 1]
      mig-enabled: true
      mig-devices:
        "$name": 2
YAML
  "$gs" apply -f "$GPUSLICE_STATE_DIR/two.yaml" -c two-each && "$gs" assert -f "$GPUSLICE_STATE_DIR/two.yaml" -c two-each
  st=$?
  record "apply devices: [0, 1]" "2 x $name on each GPU" "exit $st" "$([ $st -eq 0 ] && echo PASS || echo FAIL)"
  "$gs" --json list >"$GPUSLICE_STATE_DIR/list.json"
  ids() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(" ".join(str(g["id"]) for g in d["devices"][int(sys.argv[2])]["gpu_instances"]))' "$GPUSLICE_STATE_DIR/list.json" "$1"; }
  read -r a c <<<"$(ids 0)"
  read -r b _ <<<"$(ids 1)"
  echo "GPU 0 instances: $a $c; GPU 1 instance: $b"
  timeout 60 "$gs" run -i "1:$b" -- "$carry/probe_fault" loop 12 >"$GPUSLICE_STATE_DIR/b.out" 2>/dev/null & pb=$!
  timeout 60 "$gs" run -i "0:$c" -- "$carry/probe_fault" loop 12 >"$GPUSLICE_STATE_DIR/c.out" 2>/dev/null & pc=$!
  sleep 4
  daemons=$(ls "$GPUSLICE_STATE_DIR"/mps/*/pipe/nvidia-cuda-mps-control.pid 2>/dev/null | wc -l)
  record "one MPS control daemon per GPU" "2 daemons, own pipe dirs" "$daemons" "$([ "$daemons" -eq 2 ] && echo PASS || echo FAIL)"
  timeout 60 "$gs" run -i "0:$a" -- "$carry/probe_fault" fault; sa=$?
  wait "$pb"; sb=$?
  wait "$pc"; sc=$?
  cat "$GPUSLICE_STATE_DIR/b.out" "$GPUSLICE_STATE_DIR/c.out"
  record "fault on GPU 0 (instance $a)" "faults (exit 4)" "exit $sa" "$([ $sa -eq 4 ] && echo PASS || echo FAIL)"
  record "neighbour on GPU 0 (MPS)" "ends with the fault (notes)" "exit $sc" "$([ $sc -ne 0 ] && echo PASS || echo NOTE)"
  record "instance on GPU 1" "unaffected (exit 0)" "exit $sb" "$([ $sb -eq 0 ] && echo PASS || echo FAIL)"
  "$gs" destroy -d 0 --all && "$gs" destroy -d 1 --all
  sleep 2
  left=$(ps -eo pid,args | grep -c "[n]vidia-cuda-mps" || true)
  record "MPS daemons after destroy" "none" "$left running" "$([ "$left" -eq 0 ] && echo PASS || echo FAIL)"
} >"$log" 2>&1
printf '%-38s | %-34s | %-40s | %s\n' CHECK EXPECTED OBSERVED RESULT | tee "$out/two_gpus_summary.txt"
printf '%s\n' "${results[@]}" | tee -a "$out/two_gpus_summary.txt"
tail -5 "$log"
