#!/usr/bin/env bash
# On the GPU machine: ResNet-50 (torchvision, 102 classes, exported there by
# torch_resnet50.py) served by `gpuslice worker` on the CUDA provider (FP16,
# KIND_GPU, no dynamic batching), measured end to end at concurrency 1 with
# `gpuslice perf` over HTTP (binary tensors) and gRPC.
# usage: GS_CARRY=KIT bench/gpu/worker_perf.sh OUTDIR
set -u
kit=$(cd "${GS_CARRY:?the GPU kit from tests/gpu/build_carry.sh}" && pwd)
out=${1:?usage: worker_perf.sh OUTDIR}
export LD_LIBRARY_PATH=$kit/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
gs=$kit/gpuslice
work=$(mktemp -d) wpid=
mkdir -p "$work/m"
trap '[ -n "$wpid" ] && kill $wpid 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
python3 "$kit/torch_resnet50.py" export "$work/m" 2>&1 | grep -E '^export' || exit 1
mkdir -p "$work/repo/resnet50/1"
cp "$work/m/resnet50.onnx" "$work/repo/resnet50/1/model.onnx"
echo '{"max_batch_size": 64, "instance_group": [{"kind": "KIND_GPU"}]}' \
  >"$work/repo/resnet50/config.json"
"$gs" worker --model-repository "$work/repo" --http-port 18200 \
  --grpc-port 18201 --metrics-port 0 >"$out/worker.log" 2>&1 &
wpid=$!
for _ in $(seq 300); do
  curl -sf localhost:18200/v2/health/ready >/dev/null && break
  sleep 0.1
done
curl -s localhost:18200/v2/models/resnet50/config | head -c 600; echo
rc=0
for proto in http grpc; do
  port=18200; [ $proto = grpc ] && port=18201
  "$gs" perf -m resnet50 -u 127.0.0.1:$port -i $proto -p 1500 -r 10 \
    -f "$out/perf-$proto.csv" >"$out/perf-$proto.txt" 2>&1 || rc=1
  echo "== $proto"; grep -E "Throughput|latency|Avg|p50|p99|unstable" "$out/perf-$proto.txt"
done
exit $rc
