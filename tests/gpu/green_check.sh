#!/usr/bin/env bash
# Green isolation on the GPU machine: seven 1g instances of the soft backend
# under --isolation green, their recorded SM ranges disjoint, and ResNet-50
# FP16 served on all seven by ONE `gpuslice worker --instance ...` process
# (each instance its own green context and ports), with `gpuslice perf` at
# concurrency 1 against every instance at once: per-instance p50/p99 and
# the total img/s, then one instance alone for comparison.
# usage: tests/gpu/green_check.sh OUT   (GS_CARRY: the kit, default .gpukit)
# Needs the kit's gpuslice and lib/, and PyTorch to export ResNet-50. Exit
# 0 all checks passed, 1 a check failed, 77 no GPU. ~2-3 minutes.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
kit=${GS_CARRY:-$root/.gpukit}
out=${1:?usage: green_check.sh OUT}
mkdir -p "$out" && out=$(cd "$out" && pwd)
gs=$kit/gpuslice
export LD_LIBRARY_PATH=$kit/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export GPUSLICE_STATE_DIR=$out/state GPUSLICE_BACKEND=soft
log=$out/green.log
status=0 rows=()
row() { rows+=("$(printf '%-34s %-10s %s' "$1" "$2" "$3")"); [[ $2 == FAIL ]] && status=1; }
say() { echo "green_check: $*" | tee -a "$log"; }
command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 || { echo "green_check: no GPU: skip"; exit 77; }
[[ -x $gs ]] || { echo "green_check: $gs missing"; exit 1; }
worker=
cleanup() {
  [[ -n $worker ]] && kill "$worker" 2>/dev/null && wait "$worker" 2>/dev/null
  timeout 60 "$gs" destroy --all >>"$log" 2>&1
}
trap cleanup EXIT

# 1. the model: ResNet-50 (102 classes) exported by PyTorch, served FP16.
py=$kit/torch_resnet50.py
[[ -f $py ]] || py=$root/bench/gpu/torch_resnet50.py
repo=$out/models
mkdir -p "$repo/resnet50/1"
if ! timeout 150 python3 "$py" export "$out" >>"$log" 2>&1; then
  row "export ResNet-50" FAIL "see green.log"; printf '%s\n' "${rows[@]}"; exit 1
fi
mv "$out/resnet50.onnx" "$repo/resnet50/1/model.onnx"
cat >"$repo/resnet50/config.json" <<'JSON'
{"max_batch_size": 1, "instance_group": [{"kind": "KIND_GPU", "gpus": [0]}],
 "precision": "fp16"}
JSON

# 2. seven 1g instances (profile 19) under green isolation.
if timeout 60 "$gs" --isolation green create 19 19 19 19 19 19 19 >>"$log" 2>&1; then
  row "create 7 x 1g --isolation green" PASS ""
else
  row "create 7 x 1g --isolation green" FAIL "see green.log"
fi
"$gs" list >>"$log" 2>&1
"$gs" info >>"$log" 2>&1
"$gs" --json list >"$out/list.json" 2>>"$log"
read -r uuid args check < <(python3 - "$out/list.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))["devices"][0]
gis = d["gpu_instances"]
r = sorted((g["sm_partition"]["first"], g["sm_partition"]["count"], g["id"]) for g in gis if "sm_partition" in g)
ok = len(r) == 7 and all(a[0] + a[1] <= b[0] for a, b in zip(r, r[1:]))
args = ",".join("0:%d=%d:%d" % (i, f, c) for f, c, i in r)
print(d.get("uuid") or "-", args or "-", "disjoint" if ok else "OVERLAP:" + str(r))
PY
)
row "recorded SM ranges" "$([[ $check == disjoint ]] && echo PASS || echo FAIL)" "$check ${args//,/ }"

# 3. one worker process hosting all seven, no MPS.
inst=()
IFS=, read -r -a parts <<<"$args"
for p in "${parts[@]}"; do inst+=(--instance "$p"); done
CUDA_MPS_PIPE_DIRECTORY=$out/mps-off \
  "$gs" worker --model-repository "$repo" --ready-fd 3 "${inst[@]}" \
  3>"$out/ready.txt" 2>"$out/worker.log" &
worker=$!
for _ in $(seq 240); do
  [[ $(grep -c '^ready id=' "$out/ready.txt" 2>/dev/null) -ge 7 ]] && break
  kill -0 "$worker" 2>/dev/null || break
  sleep 0.5
done
ports=($(sed -n 's/^ready id=[^ ]* http=\([0-9]*\).*/\1/p' "$out/ready.txt"))
row "one worker process, 7 instances" "$([[ ${#ports[@]} -eq 7 ]] && echo PASS || echo FAIL)" "${#ports[@]} ready (pid $worker)"
grep -q "is not ready" "$out/worker.log" && row "ResNet-50 FP16 on every green context" FAIL "$(grep -m1 'not ready' "$out/worker.log")" ||
  row "ResNet-50 FP16 on every green context" PASS ""

# 4. perf at concurrency 1 on every instance at once, then one alone.
perf() { # PORT CSV
  timeout 90 "$gs" perf -m resnet50 -u "127.0.0.1:$1" -b 1 --concurrency-range 1:1:1 \
    -p 3000 -r 3 -s 20 -f "$2" >>"$log" 2>&1
}
pids=()
for p in "${ports[@]}"; do perf "$p" "$out/perf-$p.csv" & pids+=($!); done
for p in "${pids[@]}"; do wait "$p"; done
[[ ${#ports[@]} -gt 0 ]] && perf "${ports[0]}" "$out/perf-alone.csv"
summary=$(python3 - "$out" "${ports[@]}" <<'PY'
import csv, sys
out, ports = sys.argv[1], sys.argv[2:]
def read(path):
    try:
        r = list(csv.DictReader(open(path)))[-1]
        return float(r["Inferences/Second"]), float(r["p50 latency"]) / 1e3, float(r["p99 latency"]) / 1e3
    except Exception:
        return None
total, n = 0.0, 0
for p in ports:
    v = read("%s/perf-%s.csv" % (out, p))
    if v:
        total += v[0]; n += 1
        print("instance port %s: %.0f img/s p50 %.2f ms p99 %.2f ms" % (p, *v))
    else:
        print("instance port %s: no result" % p)
a = read(out + "/perf-alone.csv")
print("TOTAL %d/%d instances %.0f img/s; one alone: %s" % (n, len(ports), total,
      "%.0f img/s p50 %.2f ms p99 %.2f ms" % a if a else "no result"))
PY
)
echo "$summary" >>"$log"
while read -r line; do
  case $line in
  TOTAL*) row "7 x perf c=1 at once" "$([[ $line == "TOTAL 7/7"* ]] && echo PASS || echo FAIL)" "${line#TOTAL }" ;;
  *) row "  ${line%%:*}" NOTE "${line#*: }" ;;
  esac
done <<<"$summary"
kill "$worker" 2>/dev/null; wait "$worker" 2>/dev/null; worker=
cp "$out/worker.log" "$out/worker-tail.log" 2>/dev/null
echo
printf '%-34s %-10s %s\n' CHECK RESULT OBSERVED | tee "$out/summary.txt"
printf '%s\n' "${rows[@]}" | tee -a "$out/summary.txt"
exit $status
