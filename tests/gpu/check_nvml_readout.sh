#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: what gpuslice reads through NVML
# (nvml_record) must equal nvidia-smi's MIG profile tables (`nvidia-smi mig
# -lgip`, `-lgipp`) and gpuslice's catalog table for the model
# (`gpuslice --json profiles --gpu MODEL`); compare_readout.py says where
# they differ. Read-only: nothing on the GPU is changed.
#
# usage: check_nvml_readout.sh [WORKDIR]
#   WORKDIR keeps the raw outputs (lgip.txt, lgipp.txt, nvml_record.json,
#   gpuslice_MODEL.json); default a temporary directory, removed after.
# env:   NVML_RECORD, GPUSLICE (binaries; default .carry/ from
#        tests/gpu/build_carry.sh), GS_READOUT_MODEL (table model for every
#        GPU instead of the one nvml_record maps the PCI ID to)
# exit:  0 all agree; 1 mismatch or failure; 77 no nvidia-smi (skip).
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
nvml_record=${NVML_RECORD:-$root/.carry/nvml_record}
gpuslice=${GPUSLICE:-$root/.carry/gpuslice}

if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "check_nvml_readout: no nvidia-smi here: skipped"
  exit 77
fi
for bin in "$nvml_record" "$gpuslice"; do
  if [[ ! -x $bin ]]; then
    echo "check_nvml_readout: $bin missing: run tests/gpu/build_carry.sh" >&2
    exit 1
  fi
done

if [[ $# -ge 1 ]]; then
  work=$1
  mkdir -p "$work" || exit 1
else
  work=$(mktemp -d /tmp/gs-readout-XXXXXX) || exit 1
  trap 'rm -rf "$work"' EXIT
fi

# nvidia-smi's exit status is not the point (with MIG off some drivers
# answer "No MIG-enabled devices found" and fail); its tables are.
timeout --foreground 60 nvidia-smi mig -lgip >"$work/lgip.txt" 2>&1
echo "nvidia-smi mig -lgip: exit $?" >>"$work/lgip.txt"
timeout --foreground 60 nvidia-smi mig -lgipp >"$work/lgipp.txt" 2>&1
echo "nvidia-smi mig -lgipp: exit $?" >>"$work/lgipp.txt"

timeout --foreground 60 "$nvml_record" >"$work/nvml_record.json"
rc=$?
if [[ $rc -ne 0 ]]; then
  echo "check_nvml_readout: nvml_record failed (exit $rc)" >&2
  exit 1
fi

if [[ -n ${GS_READOUT_MODEL:-} ]]; then
  models=$GS_READOUT_MODEL
else
  models=$(python3 -c '
import json, sys
gpus = json.load(open(sys.argv[1])).get("gpus", [])
print(" ".join(sorted({g["gpuslice_table"] for g in gpus
                       if g.get("gpuslice_table")})))' "$work/nvml_record.json") ||
    exit 1
fi
table_args=()
for model in $models; do
  out=$work/gpuslice_$model.json
  if ! "$gpuslice" --json profiles --gpu "$model" >"$out"; then
    echo "check_nvml_readout: gpuslice profiles --gpu $model failed" >&2
    exit 1
  fi
  table_args+=(--gpuslice "$out")
done
[[ -n $models ]] ||
  echo "check_nvml_readout: no gpuslice table for these GPUs: NVML and" \
    "nvidia-smi only"

model_args=()
[[ -n ${GS_READOUT_MODEL:-} ]] && model_args=(--model "$GS_READOUT_MODEL")
python3 "$here/compare_readout.py" --lgip "$work/lgip.txt" \
  --lgipp "$work/lgipp.txt" --nvml "$work/nvml_record.json" \
  "${table_args[@]}" "${model_args[@]}"
