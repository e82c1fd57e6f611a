#!/usr/bin/env bash
# Which kernels ResNet-50's CUDA graph spends its time in, on the GPU
# machine with the carried kit: Nsight Compute (ncu, in the CUDA toolkit
# there; nsys is not installed) profiles the kernel nodes of the engine's
# graph replay only (engine_bench_gpu brackets that replay with
# cuProfilerStart/Stop under GS_PROFILE_RANGE=1; the algorithm timing at
# load is not profiled), one duration metric per kernel, each kernel
# serialized, with the GPU's clocks and caches left as they are
# (--clock-control none --cache-control none: ncu's default would lock the
# clocks to base for the run, and this project never changes clocks on the
# GPU machine). Prints, per batch size, the kernels grouped by name with
# their share of one inference, and the sum next to the graph's own time.
# usage: GS_CARRY=KIT bench/gpu/kernel_profile.sh OUT [MODEL.onnx]
# About 1-2 minutes on an H100. Exit 77 without a GPU or ncu.
set -u
out=${1:?usage: kernel_profile.sh OUT [MODEL.onnx]}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
kit=$(cd "${GS_CARRY:-$root/.gpukit}" 2>/dev/null && pwd) || {
  echo "kernel_profile: no kit"; exit 1; }
export LD_LIBRARY_PATH=$kit/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 && [[ -x $ncu ]] || {
  echo "kernel_profile: no NVIDIA GPU or no ncu: skip"; exit 77; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
model=${2:-}
if [[ -z $model ]]; then
  mkdir -p "$out/kp-models"
  timeout 120 python3 "$kit/torch_resnet50.py" export "$out/kp-models" 2>&1 | grep -E '^export' >/dev/null ||
    { echo "kernel_profile: the PyTorch export failed"; exit 1; }
  model=$out/kp-models/resnet50.onnx
fi
iters=20
for n in 1 64; do
  GS_PROFILE_RANGE=1 timeout 240 "$ncu" --profile-from-start off --graph-profiling node \
    --clock-control none --cache-control none \
    --metrics gpu__time_duration.sum --csv --log-file "$out/ncu_b$n.csv" \
    "$kit/engine_bench_gpu" bench "$model" fp16 $n $iters >"$out/ncu_b$n.log" 2>&1 ||
    echo "kernel_profile: ncu at batch $n exited $? (see $out/ncu_b$n.log)"
  "$kit/engine_bench_gpu" bench "$model" fp16 $n $iters 2>/dev/null |
    grep 'device-only' >>"$out/ncu_b$n.log"
done
python3 - "$out" "$iters" <<'EOF'
import csv, collections, re, sys
out, iters = sys.argv[1], int(sys.argv[2])
for n in (1, 64):
    try:
        rows = list(csv.DictReader(l for l in open("%s/ncu_b%d.csv" % (out, n))
                                   if l.startswith('"')))
    except OSError:
        print("batch %d: no ncu output" % n); continue
    dur = collections.defaultdict(float); cnt = collections.Counter()
    ids = set()
    for r in rows:
        if r.get("Metric Name") != "gpu__time_duration.sum":
            continue
        v = float(r["Metric Value"].replace(",", ""))
        unit = r.get("Metric Unit", "nsecond")
        v *= {"nsecond": 1e-3, "usecond": 1, "msecond": 1e3}.get(unit, 1e-3)
        name = re.sub(r"\(.*", "", r["Kernel Name"])[:60]
        dur[name] += v; cnt[name] += 1; ids.add(r["ID"])
    if not ids:
        print("batch %d: ncu profiled no kernel" % n); continue
    # the profiled replay ran the graph ITERS times: per inference is
    # the total over ITERS.
    total = sum(dur.values()) / iters
    kernels = len(ids) / iters
    graph = open("%s/ncu_b%d.log" % (out, n)).read()
    m = (re.findall(r"device-only graph replay ([0-9.]+) ms", graph) or [None])[-1]
    print("batch %d: %.0f kernels an inference, their time %.1f us serialized%s"
          % (n, kernels, total, ", graph replay %s ms per run unprofiled" % m if m else ""))
    print("  %-60s %7s %10s %6s" % ("kernel (grouped by name)", "count", "us", "share"))
    for name, d in sorted(dur.items(), key=lambda x: -x[1])[:12]:
        print("  %-60s %7.0f %10.1f %5.1f%%" % (name, cnt[name] / iters, d / iters,
                                             100 * d / iters / total))
EOF
