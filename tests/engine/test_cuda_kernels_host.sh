#!/usr/bin/env bash
# ctest engine.cuda_kernels_host: the CUDA provider's kernels
# (src/engine/cuda_kernels.cu) compiled by g++ for the host with a stand-in
# cuda_fp16.h (tests/engine/cuda_host/) and run as one thread against ONNX
# node test outputs: the index math of pooling with asymmetric pads,
# Softmax over any axis and Clip with bounds in memory, FP32 and FP16. A
# GPU run (tests/gpu/engine_check.sh) is still what proves them on a GPU.
# Exit 77 without g++ (12+, for _Float16) or libonnx-testdata.
set -u
src=${GS_SOURCE_DIR:?GS_SOURCE_DIR: the source tree}
data=${GS_NODE_TESTS:-/usr/share/libonnx-testdata/data/node}
[[ -d $data ]] || { echo "no libonnx-testdata: skip"; exit 77; }
command -v g++ >/dev/null || { echo "no g++: skip"; exit 77; }
tmp=$(mktemp -d /tmp/gs-cuda-host-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
g++ -std=c++17 -O1 -Wall -Wno-unused-function -Wno-unused-variable -Wno-sign-compare \
  -I "$src/tests/engine/cuda_host" -I "$src/src/engine" \
  -o "$tmp/cuda_kernels_host" "$src/tests/engine/cuda_host/cuda_kernels_host.cc" || {
  echo "FAIL: g++ could not build the kernels for the host"; exit 1; }
"$tmp/cuda_kernels_host" "$data"
