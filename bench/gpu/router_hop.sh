#!/usr/bin/env bash
# What the router's hop costs at concurrency 1 on the GPU machine (the
# README's demo shows 2.4-2.8 ms at c=1 through the router against 0.76 ms
# for a worker alone; not yet explained): one soft instance of the whole GPU
# (profile 0, 7g) per isolation mode, ResNet-50 with FP16 input (KIND_GPU),
# `gpuslice serve` in front; `gpuslice perf` at c=1 over HTTP straight to
# the worker and through the router, alternating, twice; the worker's
# statistics kept.
# usage: GS_CARRY=KIT bench/gpu/router_hop.sh OUTDIR MODEL.onnx
#   ISOS ("mps"): isolation modes to run (mps, green, process); to try the
#   script on a CPU: GS_RH_BACKEND=host GS_RH_KIND=KIND_CPU GS_RH_DTYPE=TYPE_FP32
# About 1 minute per mode. Prints one line per measurement.
set -u
kit=$(cd "${GS_CARRY:?the GPU kit from tests/gpu/build_carry.sh}" && pwd)
out=${1:?usage: router_hop.sh OUTDIR MODEL.onnx} model=${2:?usage: router_hop.sh OUTDIR MODEL.onnx}
gs=$kit/gpuslice
export LD_LIBRARY_PATH=$kit/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
mkdir -p "$out"
work=$(mktemp -d /tmp/gsrh-XXXXXX)
serve_pid=
cleanup() {
  [[ -n $serve_pid ]] && kill -TERM -- "-$serve_pid" 2>/dev/null
  sleep 2
  [[ -n $serve_pid ]] && kill -KILL -- "-$serve_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/repo/r/1"
cp "$model" "$work/repo/r/1/model.onnx"
iname=$(python3 -c "import onnx,sys; print(onnx.load(sys.argv[1]).graph.input[0].name)" "$model")
echo '{"max_batch_size": 64, "instance_group": [{"kind": "'"${GS_RH_KIND:-KIND_GPU}"'"}], "input": [{"name": "'"$iname"'", "data_type": "'"${GS_RH_DTYPE:-TYPE_FP16}"'"}]}' \
  >"$work/repo/r/config.json"
for iso in ${ISOS:-mps}; do
  export GPUSLICE_STATE_DIR=$work/st-$iso
  gsi=("$gs" --backend "${GS_RH_BACKEND:-soft}" --isolation "$iso")
  "${gsi[@]}" create 0 >"$out/create-$iso.txt" 2>&1 || { echo "router_hop $iso: create failed"; continue; }
  setsid "${gsi[@]}" serve --model-repository "$work/repo" --http-port 18500 --grpc-port 0 \
    >"$out/serve-$iso.log" 2>&1 &
  serve_pid=$!
  for _ in $(seq 240); do curl -sf localhost:18500/v2/models/r/ready >/dev/null && break; sleep 0.5; done
  curl -s localhost:18500/gpuslice/v1/workers >"$out/workers-$iso.json"
  wport=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['workers'][0]['http_port'])" \
    "$out/workers-$iso.json" 2>/dev/null)
  for r in 1 2; do
    for u in "127.0.0.1:$wport" 127.0.0.1:18500; do
      what=worker; [[ $u == *:18500 ]] && what=router
      echo "router_hop $iso $what: $(timeout 60 "$gs" perf -m r -u "$u" -i http -p 1500 -r 5 2>&1 |
        grep -E 'p50 lat|p99 lat' | tr -s ' ' | tr '\n' ' ')"
    done
  done
  curl -s "localhost:$wport/v2/models/r/stats" >"$out/stats-$iso.json"
  kill -TERM -- "-$serve_pid" 2>/dev/null
  timeout 20 tail --pid="$serve_pid" -f /dev/null 2>/dev/null || kill -KILL -- "-$serve_pid" 2>/dev/null
  serve_pid=
  "${gsi[@]}" destroy --all >>"$out/create-$iso.txt" 2>&1
done
