#!/usr/bin/env bash
# A restarted GPU worker with the conv choice cache (issue 13), on the GPU
# machine with the carried kit: `gpuslice worker` serving ResNet-50
# (KIND_GPU, max_batch_size 64: planned at 7 batch sizes) started four
# times, each killed with -9 once ready, with GPUSLICE_STATE_DIR set so that
# the cache is the default STATE_DIR/conv-cache:
#   cold     no cache file: every conv timed, the file written (~25 s)
#   warm     the file read: nothing timed (expect ~1-2 s)
#   corrupt  the file cut short: ignored with a log line, timed, rewritten
#   rewarm   the rewritten file read again
# Time to ready is from the worker's start to /v2/health/ready 200; each
# run answers one batch-1 request and the outputs must match the cold one's.
# usage: GS_CARRY=KIT tests/gpu/conv_cache_restart.sh OUT
# Exit 0 passed, 1 failed, 77 no GPU. About 1.5 minutes. Logs under OUT:
# worker-RUN.log, infer-RUN.json, table.txt.
set -uo pipefail
out=${1:?usage: conv_cache_restart.sh OUT}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
kit=$(cd "${GS_CARRY:-$root/.gpukit}" 2>/dev/null && pwd) || {
  echo "conv_cache_restart: no kit"; exit 1; }
gs=$kit/gpuslice
export LD_LIBRARY_PATH=$kit/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 || {
  echo "conv_cache_restart: no NVIDIA GPU: skip"; exit 77; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
export GPUSLICE_STATE_DIR=$out/cr-state
rm -rf "$GPUSLICE_STATE_DIR"
mkdir -p "$GPUSLICE_STATE_DIR"
port=${PORT:-19310}
wpid=
trap '[[ -n $wpid ]] && kill -9 $wpid 2>/dev/null; wait 2>/dev/null' EXIT
{ date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; } |
  tee "$out/gpu.txt"

m=$out/cr-models
mkdir -p "$m" "$out/cr-repo/r50/1"
timeout 180 python3 "$kit/torch_resnet50.py" export "$m" 2>&1 | grep -E '^export' ||
  { echo "conv_cache_restart: ResNet-50 export failed"; exit 1; }
cp "$m/resnet50.onnx" "$out/cr-repo/r50/1/model.onnx"
# CR_KIND=KIND_CPU: a dry run of the script itself where no GPU is
echo '{"max_batch_size": 64, "instance_group": [{"kind": "'"${CR_KIND:-KIND_GPU}"'"}]}' \
  >"$out/cr-repo/r50/config.json"
python3 - "$out/cr-body.json" <<'EOF'
import json, math, sys
n = 3 * 224 * 224
json.dump({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 224, 224],
                       "data": [math.sin(i * 0.01) for i in range(n)]}]},
          open(sys.argv[1], "w"))
EOF

# run NAME: a worker from start to ready, one request, kill -9; appends
# "NAME SECONDS HTTP_CODE" to results.
run() {
  local name=$1 t0 t1 code=000 ready=no
  t0=$(date +%s.%N)
  # every size before ready: the kill comes once ready, and the file must
  # hold all seven sizes' choices by then
  "$gs" worker --model-repository "$out/cr-repo" --http-port "$port" \
    --grpc-port 0 --metrics-port 0 --plan-before-ready=all \
    >"$out/worker-$name.log" 2>&1 &
  wpid=$!
  for _ in $(seq 2400); do # 120 s
    curl -sf -o /dev/null "localhost:$port/v2/health/ready" && { ready=yes; break; }
    kill -0 $wpid 2>/dev/null || break
    sleep 0.05
  done
  t1=$(date +%s.%N)
  [[ $ready == yes ]] && code=$(curl -s -o "$out/infer-$name.json" -w '%{http_code}' \
    -H 'Content-Type: application/json' --data-binary "@$out/cr-body.json" \
    "localhost:$port/v2/models/r50/infer")
  kill -9 $wpid 2>/dev/null
  wait $wpid 2>/dev/null
  wpid=
  [[ $ready == yes ]] || t1=inf
  results+=("$name $(python3 -c "import sys; print('%.2f' % (float(sys.argv[2]) - float(sys.argv[1])) if sys.argv[2] != 'inf' else 'never')" "$t0" "$t1") $code")
}

results=()
run cold
run warm
files=("$GPUSLICE_STATE_DIR"/conv-cache/*.convcache)
if [[ -f ${files[0]} ]]; then
  size=$(stat -c %s "${files[0]}")
  truncate -s $((size - 100)) "${files[0]}"
fi
run corrupt
run rewarm

python3 - "$out" "${results[@]}" <<'EOF' | tee "$out/table.txt"
import json, os, re, sys
out, rows = sys.argv[1], [r.split() for r in sys.argv[2:]]
def log(name):
    p = os.path.join(out, "worker-%s.log" % name)
    return open(p, errors="replace").read() if os.path.exists(p) else ""
def output(name):
    try:
        return json.load(open(os.path.join(out, "infer-%s.json" % name)))["outputs"][0]["data"]
    except Exception:
        return None
ref = output("cold")
print("%-8s | %-8s | %-5s | %-9s | %s" % ("run", "ready s", "infer", "max |diff|", "conv cache (worker log)"))
ok, secs = True, {}
for name, s, code in rows:
    lines = [re.sub(r"^gpuslice: conv cache \S+: ", "", l) for l in log(name).splitlines()
             if l.startswith("gpuslice: conv cache ")]
    o = output(name)
    diff = max(abs(a - b) for a, b in zip(o, ref)) if o and ref and len(o) == len(ref) else None
    secs[name] = float(s) if s != "never" else float("inf")
    print("%-8s | %-8s | %-5s | %-9s | %s" % (name, s, code,
          "-" if diff is None else "%.2e" % diff, "; ".join(lines) or "-"))
    ok &= code == "200" and diff is not None and diff < 1e-2
checks = [
    ("cold run wrote the file", "saved" in log("cold")),
    ("warm run loaded it, timed nothing", "loaded" in log("warm") and "newly timed" not in log("warm")),
    ("warm ready under 4 s and under a quarter of cold", secs["warm"] < 4 and secs["warm"] < secs["cold"] / 4),
    ("cut file ignored with a reason", "ignored (" in log("corrupt")),
    ("rewritten file loaded again", "loaded" in log("rewarm") and secs["rewarm"] < 4),
    ("every run answered, outputs match cold's", ok),
]
bad = 0
for what, good in checks:
    print("%-4s %s" % ("PASS" if good else "FAIL", what))
    bad += not good
sys.exit(1 if bad else 0)
EOF
