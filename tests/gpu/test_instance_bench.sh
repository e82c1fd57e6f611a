#!/usr/bin/env bash
# ctest gpu_kit.instance_bench: bench/gpu/instance_bench.sh's logic on a
# machine without a GPU, against the stand-ins (engine_bench_gpu, nvidia-smi)
# and the fake NVML, CUDA driver and MPS: a table with the whole GPU, a soft
# 1g and a soft 3g row; the instance runs get their MPS SM percentage;
# nothing is left behind; a bench that prints nothing is a '-' and exit 1.
# It measures nothing: the real run is on the GPU machine.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${GS_BUILD_DIR:?GS_BUILD_DIR: the CMake build directory}
gpuslice=${GPUSLICE:?GPUSLICE: the gpuslice binary}
tmp=$(mktemp -d /tmp/gs-instance-bench-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fails=0
ok() { echo "ok: $1"; }
bad() { echo "FAIL: $1"; fails=$((fails + 1)); }
mkdir -p "$tmp/kit/lib" "$tmp/bin"
ln -s "$gpuslice" "$tmp/kit/gpuslice"
ln -s "$here/standins/engine_bench_gpu" "$tmp/kit/"
ln -s "$here/standins/nvidia-smi" "$tmp/bin/"
ln -s "$root/tests/fake_mps/nvidia-cuda-mps-control" "$tmp/bin/"
export PATH=$tmp/bin:$PATH
export GPUSLICE_NVML_LIBRARY=$build/tests/fake_nvml/current/libnvidia-ml.so.1
export GPUSLICE_CUDA_LIBRARY=$build/tests/fake_cuda/libcuda.so.1
export GPUSLICE_MPS_CONTROL=$root/tests/fake_mps/nvidia-cuda-mps-control
export FAKE_NVML_CONFIG=h100-80gb:off FAKE_CUDA_SMS=132
[[ -n ${GS_SANITIZE:-} ]] && export GPUSLICE_TEST_NO_ADDRESS_LIMIT=1

GS_CARRY=$tmp/kit bash "$root/bench/gpu/instance_bench.sh" "$tmp/out" /dev/null >"$tmp/log" 2>&1
rc=$?
cat "$tmp/log"
[[ $rc -eq 0 ]] && ok "exit 0" || bad "exit $rc"
for row in "whole GPU" "soft 1g.10gb" "soft 3g.40gb"; do
  grep -Eq "^$row.* 0\.900 +1\.100 +1234$" "$tmp/log" && ok "row: $row" || bad "row missing or unparsed: $row"
done
pct=$(sed -n 's/^stand-in: MPS percentage //p' "$tmp/out/bench.err" | tr '\n' ' ')
[[ $pct == "none none 13 13 46 46 " ]] && ok "MPS percentages: $pct" || bad "MPS percentages: $pct"
GPUSLICE_STATE_DIR=$tmp/out/state "$gpuslice" --backend soft list | grep -q 'no instances' &&
  ok "no instances left" || bad "instances left behind"

# A bench that fails: its cells are '-', and the script exits 1.
printf '#!/bin/sh\nexit 2\n' >"$tmp/failing_bench"
chmod +x "$tmp/failing_bench"
GS_CARRY=$tmp/kit ENGINE_BENCH_GPU=$tmp/failing_bench bash "$root/bench/gpu/instance_bench.sh" \
  "$tmp/out2" /dev/null >"$tmp/log2" 2>&1
rc=$?
[[ $rc -eq 1 ]] && grep -Eq '^whole GPU +- +- +-$' "$tmp/log2" && ok "a failing bench: '-' cells, exit 1" ||
  bad "a failing bench: exit $rc: $(cat "$tmp/log2")"
echo "test_instance_bench: $fails failure(s)"
[[ $fails -eq 0 ]]
