#!/usr/bin/env bash
# On the GPU machine, one run of what feeding the engine costs (issue 12),
# ResNet-50 (torchvision, 102 classes, exported there by torch_resnet50.py),
# FP16 compute:
#   engine API  batch 1 p50/p99 with FP32 and FP16 input (FP16 also with a
#               400 us pause between runs, asleep and busy, as a c=1
#               client leaves: the worker's infer phase is ~0.2 ms above
#               the API's back-to-back runs); batch 64 img/s
#               with 1 and 2 executions in flight (sessions sharing the
#               weights, a stream each), FP32 and FP16 input, and FP16
#               written in place into the session's input buffer (--staged)
#   worker      `gpuslice worker` (KIND_GPU, no dynamic batching) measured
#               at concurrency 1 with `gpuslice perf` over HTTP (binary
#               tensors) and gRPC, the model's input FP32 and, as a second
#               model, FP16 (config.json "input" data_type TYPE_FP16); the
#               worker's own per-phase averages (queue, input, infer,
#               output) from its statistics beside the client's latency
#   PyTorch     TORCH_BENCH=1 adds torch_resnet50.py bench (its
#               torch.compile takes minutes: off by default)
# A table last, with each model's plan time from the worker's log (the
# second model's convs reuse the first's timed choices: same shapes). About
# 3 minutes (5 with PyTorch; WORKER_ONLY=1 skips the engine API part: about
# 1.5 minutes). Logs under OUTDIR.
# usage: [WORKER_ONLY=1] GS_CARRY=KIT bench/gpu/worker_perf.sh OUTDIR
set -u
kit=$(cd "${GS_CARRY:?the GPU kit from tests/gpu/build_carry.sh}" && pwd)
out=${1:?usage: worker_perf.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
export LD_LIBRARY_PATH=$kit/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
gs=$kit/gpuslice eb=$kit/engine_bench_gpu
work=$(mktemp -d) wpid=
mkdir -p "$work/m"
trap '[ -n "$wpid" ] && kill $wpid 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
rc=0
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader; } \
  2>&1 | tee "$out/gpu.txt"
python3 "$kit/torch_resnet50.py" export "$work/m" 2>&1 | grep -E '^export' || exit 1
M=$work/m/resnet50.onnx

# ---- engine API -------------------------------------------------------------
: >"$out/engine.log"
[ "${WORKER_ONLY:-0}" = 1 ] || {
  "$eb" bench "$M" fp16 1 2000
  "$eb" bench "$M" fp16 1 2000 --fp16-input
  # the pause a c=1 client leaves between requests: asleep, then busy
  "$eb" bench "$M" fp16 1 2000 --fp16-input --gap-us 400
  "$eb" bench "$M" fp16 1 2000 --fp16-input --gap-us 400 --spin
  "$eb" bench "$M" fp16 64 150
  "$eb" bench "$M" fp16 64 150 --streams 2
  "$eb" bench "$M" fp16 64 150 --fp16-input
  "$eb" bench "$M" fp16 64 150 --fp16-input --streams 2
  "$eb" bench "$M" fp16 64 150 --fp16-input --staged --streams 2
} 2>&1 | tee "$out/engine.log" | grep -E '^bench|error|run:' || rc=1

# ---- worker -------------------------------------------------------------------
for name in resnet50 resnet50_h; do
  mkdir -p "$work/repo/$name/1"
  cp "$M" "$work/repo/$name/1/model.onnx"
done
echo '{"max_batch_size": 64, "instance_group": [{"kind": "KIND_GPU"}]}' \
  >"$work/repo/resnet50/config.json"
echo '{"max_batch_size": 64, "instance_group": [{"kind": "KIND_GPU"}],
  "input": [{"name": "'"$(python3 -c "import onnx,sys; print(onnx.load(sys.argv[1]).graph.input[0].name)" "$M")"'",
             "data_type": "TYPE_FP16"}]}' >"$work/repo/resnet50_h/config.json"
# One worker per busy-poll setting, back to back: 0 (sleeping threads,
# blocking CUDA waits), then each of WORKER_BUSY_POLL_US. Files of a
# setting other than 0 carry "-bpN" in their names.
measure_worker() { # BUSY_US TAG
  local bp=() name proto port before after
  [ "$1" != 0 ] && bp=(--busy-poll-us "$1")
  "$gs" worker --model-repository "$work/repo" --http-port 18200 \
    --grpc-port 18201 --metrics-port 0 "${bp[@]}" >"$out/worker$2.log" 2>&1 &
  wpid=$!
  for _ in $(seq 300); do
    curl -sf localhost:18200/v2/models/resnet50_h/ready >/dev/null && break
    sleep 0.1
  done
  curl -s localhost:18200/v2/models/resnet50_h | tee "$out/metadata_h.json" | head -c 400; echo
  for name in resnet50 resnet50_h; do
    for proto in http grpc; do
      port=18200; [ $proto = grpc ] && port=18201
      before=$(curl -s localhost:18200/v2/models/$name/stats)
      "$gs" perf -m $name -u 127.0.0.1:$port -i $proto -p 1500 -r 8 \
        -f "$out/perf$2-$name-$proto.csv" >"$out/perf$2-$name-$proto.txt" 2>&1 || rc=1
      after=$(curl -s localhost:18200/v2/models/$name/stats)
      # The worker's own view of these requests: average per phase, in usec.
      python3 - "$before" "$after" >"$out/phases$2-$name-$proto.txt" <<'EOF2'
import json, sys
b, a = (json.loads(x)["model_stats"][0]["inference_stats"] for x in sys.argv[1:3])
n = a["success"]["count"] - b["success"]["count"]
ph = {k: (a[k]["ns"] - b[k]["ns"]) / max(n, 1) / 1e3
      for k in ("success", "queue", "compute_input", "compute_infer", "compute_output")}
print("server avg usec: total %.0f = queue %.0f + input %.0f + infer %.0f + output %.0f (%d requests)"
      % (ph["success"], ph["queue"], ph["compute_input"], ph["compute_infer"],
         ph["compute_output"], n))
EOF2
      echo "== $name $proto busy_poll_us $1"
      grep -E "Throughput|Avg latency|p50|p99|unstable" "$out/perf$2-$name-$proto.txt"
      cat "$out/phases$2-$name-$proto.txt"
    done
  done
  kill "$wpid" 2>/dev/null
  wait "$wpid" 2>/dev/null
  wpid=
}
: >"$out/busy_poll.txt"
: >"$out/worker_perf.log"
for us in 0 ${WORKER_BUSY_POLL_US:-}; do # not piped: wpid stays the trap's
  tag=; [ "$us" != 0 ] && tag=-bp$us
  echo "$us $tag" >>"$out/busy_poll.txt"
  measure_worker "$us" "$tag" >>"$out/worker_perf.log" 2>&1
done
cat "$out/worker_perf.log"

if [ "${TORCH_BENCH:-0}" = 1 ]; then
  PYTHONUNBUFFERED=1 python3 "$kit/torch_resnet50.py" bench 2>&1 | grep -v -i warn \
    | tee "$out/torch.log"
fi

# ---- the table ----------------------------------------------------------------
python3 - "$out" <<'EOF' | tee "$out/table.txt"
import glob, os, re, sys
out = sys.argv[1]
print("\n%-52s %9s %9s %9s" % ("what (ResNet-50, FP16 compute)", "p50 ms", "p99 ms", "img/s"))
for line in open(os.path.join(out, "engine.log")):
    m = re.match(r"bench (\S+) batch (\d+) in (.*?): p50 ([\d.]+) ms, p99 ([\d.]+) ms.*?(\d+) img/s", line)
    if m:
        print("%-52s %9s %9s %9s" % ("engine API bs%s in %s" % (m[2], m[3]), m[4], m[5], m[6]))
    m = re.match(r"bench (\S+) batch (\d+) in (\S+): device-only graph replay ([\d.]+) ms per run, (\d+) img/s", line)
    if m:
        print("%-52s %9s %9s %9s" % ("  graph replay only bs%s in %s" % (m[2], m[3]), m[4], "", m[5]))
settings = [l.split() for l in open(os.path.join(out, "busy_poll.txt"))]
for us, tag in ((s[0], s[1] if len(s) > 1 else "") for s in settings):
    for name in ("resnet50", "resnet50_h"):
        for proto in ("http", "grpc"):
            f = os.path.join(out, "perf%s-%s-%s.txt" % (tag, name, proto))
            if not os.path.exists(f):
                continue
            t = open(f).read()
            p50 = re.findall(r"p50 latency: (\d+) usec", t)
            p99 = re.findall(r"p99 latency: (\d+) usec", t)
            thr = re.findall(r"Throughput: ([\d.]+) infer/sec", t)
            ph = open(os.path.join(out, "phases%s-%s-%s.txt" % (tag, name, proto))).read().strip()
            label = "worker %s c=1, input %s" % (proto, "FP16" if name.endswith("_h") else "FP32")
            if us != "0":
                label += ", busy_poll_us %s" % us
            if p50:
                print("%-52s %9.3f %9.3f %9.0f" % (label, int(p50[-1]) / 1e3, int(p99[-1]) / 1e3, float(thr[-1])))
                print("    " + ph.replace("server avg usec: ", "server usec: "))
            else:
                print("%-52s %9s" % (label, "FAILED"))
for line in open(os.path.join(out, "worker.log")):  # busy_poll_us 0's
    m = re.search(r"model (\S+): (.*planned in \d+ ms)", line)
    if m:
        print("worker plan %-40s %s" % (m[1], m[2]))
tl = os.path.join(out, "torch.log")
if os.path.exists(tl):
    for line in open(tl):
        if line.startswith("torch"):
            print(line.rstrip())
EOF
exit $rc
