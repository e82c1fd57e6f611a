#!/usr/bin/env bash
# bench/isolation.sh's logic without a GPU: every part runs against the
# soft backend on the test-only fake NVML, CUDA driver and MPS daemon, the
# kit's stand-in probes (tests/gpu/standins) and three workers serving
# cnn_small on the CPU, in a quick mode; then the renderer, on these rows
# and on rows with known answers. It measures nothing about GPUs: MPS
# sharing, the probes' faults and allocations are the stand-ins' (the real
# ones run on the GPU machine). Checks: each part exits 0 with its rows,
# green is recorded as unavailable while gpuslice rejects it, ratios and
# failure counts match the raw files, a kill -9 shows on its own instance
# only, nothing (serve, workers, load, MPS daemon, instance) outlives a
# part, even one stopped by SIGTERM.
set -u
root=${GS_SOURCE_DIR:?GS_SOURCE_DIR: the source tree}
build=${GS_BUILD_DIR:?GS_BUILD_DIR: the CMake build directory}
gpuslice=${GPUSLICE:?GPUSLICE: the gpuslice binary}
tmp=$(mktemp -d /tmp/gsib-XXXXXX) # short: MPS socket paths live under it
trap 'rm -rf "$tmp"' EXIT
fails=0
ok() { echo "ok - $1"; }
bad() { echo "not ok - $1"; fails=$((fails + 1)); return 1; }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }

python3 "$root/scripts/make_models.py" --out "$tmp/models" --models cnn_small >/dev/null
rc=$?
[[ $rc -eq 77 ]] && { echo "no onnx package: skip"; exit 77; }
[[ $rc -eq 0 ]] || { echo "make_models.py failed"; exit 1; }
mkdir -p "$tmp/kit/lib" "$tmp/bin"
ln -s "$gpuslice" "$tmp/kit/gpuslice"
ln -s "$root/tests/gpu/standins/probe_fault" "$root/tests/gpu/standins/probe_alloc" "$tmp/kit/"
ln -s "$root/tests/gpu/standins/nvidia-smi" "$root/tests/fake_mps/nvidia-cuda-mps-control" "$tmp/bin/"
export PATH=$tmp/bin:$PATH GS_CARRY=$tmp/kit TMPDIR=$tmp GS_STANDIN_DIR=$tmp
export GPUSLICE_NVML_LIBRARY=$build/tests/fake_nvml/current/libnvidia-ml.so.1
export GPUSLICE_CUDA_LIBRARY=$build/tests/fake_cuda/libcuda.so.1
export GPUSLICE_MPS_CONTROL=$root/tests/fake_mps/nvidia-cuda-mps-control
export FAKE_NVML_CONFIG=h100-80gb:off FAKE_CUDA_SMS=132
# Sanitizers: no RLIMIT_AS (ASan cannot start under one), and a latency
# budget a sanitizer-slowed CPU worker can keep (its c=1 p99 is 70-150 ms:
# with 50 ms no level is within it and the tables hold only "-").
[[ -n ${GS_SANITIZE:-} ]] && export GPUSLICE_TEST_NO_ADDRESS_LIMIT=1 GS_ISOL_BUDGET_MS=2000
# quick mode: three 1g instances, 100 ms windows, short waits
export GS_ISOL_REPO=$tmp/models GS_ISOL_MODEL=cnn_small GS_ISOL_KIND=KIND_CPU GS_ISOL_N=3
export GS_ISOL_WINDOW_MS=100 GS_ISOL_WARMUP_MS=150 GS_ISOL_LEVELS_ONE=1 GS_ISOL_LEVELS_ALL="1 2"
export GS_ISOL_LEVELS_DYN="2 4" GS_ISOL_NOISY_BATCH=8 GS_ISOL_SETTLE_S=1 GS_ISOL_RECOVER_S=2
export GS_ISOL_NOISY_MARGIN_MS=300 GS_ISOL_START_S=40
out=$tmp/out

# leftovers: any process started from our kit or work directories
# (fake MPS daemons by their environment: their command line is the fake's)
leftovers() {
  local p
  pgrep -af "$tmp" | grep -v -e pgrep -e "$$"
  for p in $(pgrep -f fake_mps/nvidia-cuda-mps-control); do
    tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qF "$tmp" && echo "$p fake MPS daemon"
  done
  return 0
}
# value PART MODE CASE INSTANCE METRIC: the value column of one row
value() {
  awk -F, -v p="$1" -v m="$2" -v c="$3" -v i="$4" -v k="$5" \
    '$6 == p && $5 == m && $7 == c && $8 == i && $10 == k { v = $11 } END { print v }' \
    "$out/isolation_$1.csv"
}
run_part() { # PART MODES
  GS_ISOL_MODES=$2 bash "$root/bench/isolation.sh" "$1" "$out" >"$tmp/$1.log" 2>&1
  local rc=$?
  check "$1: exit 0" "[[ $rc -eq 0 ]]" || sed 's/^/  /' "$tmp/$1.log"
  local left
  left=$(leftovers)
  check "$1: nothing left running" "[[ -z \"\$left\" ]]" || echo "  $left"
}

t0=$SECONDS
# green is a mode of the soft backend now (the fake CUDA driver has green
# contexts); "threads" is none, and must be recorded as not available.
GS_ISOL_DIRECT=1 GS_ISOL_LEVELS_DIRECT=1 GS_ISOL_WHOLE_AGAIN=1 run_part consolidation "mps green threads"
for c in whole-b1 whole-dyn whole-b1-again; do
  check "consolidation: $c measured (process)" \
    "[[ -n \$(awk -F, '\$7 == \"$c\" && \$10 == \"infer_per_s\"' $out/isolation_consolidation.csv) ]]"
done
for c in 1x1g-b1 3x1g-b1 3x1g-dyn; do
  check "consolidation: mps $c measured" \
    "[[ -n \$(awk -F, '\$5 == \"mps\" && \$7 == \"$c\" && \$10 == \"infer_per_s\"' $out/isolation_consolidation.csv) ]]"
done
check "consolidation: green 3x1g-b1 measured" \
  "[[ -n \$(awk -F, '\$5 == \"green\" && \$7 == \"3x1g-b1\" && \$10 == \"infer_per_s\"' $out/isolation_consolidation.csv) ]]"
for c in 1x1g-direct 3x1g-direct; do
  check "consolidation: mps $c measured" "[[ -n \$(value consolidation mps $c direct infer_per_s) ]]"
done
# without the router: the row is the sum of its clients' throughputs
want=$(python3 -c '
import glob, json, sys
print("%.1f" % sum(float("%.1f" % json.load(open(f))["levels"][-1]["throughput"])
                  for f in glob.glob(sys.argv[1])))' \
  "$out/raw/consolidation/mps-3x1g-direct-c1-[0-9].json")
check "consolidation: 3x1g-direct is the sum of 3 clients ($want)" \
  "[[ \$(ls $out/raw/consolidation/mps-3x1g-direct-c1-[0-9].json | wc -l) == 3 &&
     \$(value consolidation mps 3x1g-direct direct infer_per_s) == $want ]]"
# one instance is served alone (the serve's defaults for one worker: no
# --gpu-wait), the three by a serve of their own (--gpu-wait=block each)
check "consolidation: 1x1g by a serve of one worker, 3x1g by one of three" \
  "grep -qx 'repo_all on 0:[0-9]*: 1 worker processes, gpu-wait: auto' $out/raw/consolidation/mps-workers.txt &&
   grep -qx 'repo_all on all: 3 worker processes, gpu-wait: block block block' $out/raw/consolidation/mps-workers.txt" ||
  sed 's/^/  /' "$out/raw/consolidation/mps-workers.txt"
check "consolidation: green's group of one waits as a lone worker, its group of three blocks" \
  "grep -qx 'repo_all on 0:[0-9]*: 1 worker processes, gpu-wait: auto' $out/raw/consolidation/green-workers.txt &&
   grep -qx 'repo_all on all: 1 worker processes, gpu-wait: block' $out/raw/consolidation/green-workers.txt" ||
  sed 's/^/  /' "$out/raw/consolidation/green-workers.txt"
check "consolidation: the host's CPU use recorded per level (0-100 %)" \
  "[[ \$(awk -F, '\$5 == \"mps\" && \$7 == \"3x1g-b1\" && \$8 == \"host\" && \$10 == \"cpu_busy_pct\" && \$11 >= 0 && \$11 <= 100' $out/isolation_consolidation.csv | wc -l) -ge 1 ]]"
check "consolidation: a mode gpuslice lacks recorded as not available" "[[ \$(value consolidation threads setup - available) == 0 ]]"
# the table (a header, a row per measured mode, a line per mode not
# measured) ends the log
check "consolidation: the table is last" \
  "tail -n 6 $tmp/consolidation.log | grep -q '^mode ' && tail -n 6 $tmp/consolidation.log | grep -q '^mps .*[0-9]'"

run_part qos "mps mps-open mps-prio mps-open-prio mps-limit"
for m in mps-prio mps-open-prio; do
  check "qos: $m's two neighbours' workers at MPS client priority 1, the victim's not" \
    "[[ \$(value qos $m setup neighbours below_normal_workers) == 2 &&
       \$(value qos $m setup victim below_normal_workers) == 0 ]]"
done
for m in mps mps-open mps-prio mps-open-prio; do
  for c in solo noisy paced; do
    check "qos: $m $c victim p99" "[[ -n \$(value qos $m $c victim p99_ms) ]]"
  done
  # the ratio in the table is the victim's p99 beside the noise over alone,
  # from perf's own JSON
  want=$(python3 -c '
import json, sys
p = lambda f: round(json.load(open(f))["levels"][-1]["p99_us"] / 1000, 3)
print("%.3f" % (p(sys.argv[2]) / p(sys.argv[1])))' "$out/raw/qos/$m-solo.json" "$out/raw/qos/$m-noisy-victim.json")
  got=$(awk -v m="$m" '$1 == m { print $4 }' "$tmp/qos.log" | tail -n 1)
  check "qos: $m noisy/solo $got = perf's p99s ($want)" \
    "python3 -c 'import sys; g, w = map(float, sys.argv[1:]); sys.exit(abs(g - w) > 0.01 * w)' '$got' '$want'"
done
check "qos: neighbours' throughput recorded" "[[ -n \$(value qos mps noisy neighbours infer_per_s) ]]"
# mps-limit: serve's --rate-limit holds the two neighbours to 8 x 4 = 32
# inferences a second (their requests wait: /metrics), the victim has none,
# and the clients are not paced (no paced round)
check "qos: mps-limit's serve limits the neighbours to 32/s, the victim not" \
  "[[ \$(value qos mps-limit setup neighbours rate_limit) == 32 &&
     \$(value qos mps-limit noisy neighbour1 rate_limited_requests) -ge 1 &&
     \$(value qos mps-limit noisy neighbour2 rate_limited_requests) -ge 1 &&
     \$(value qos mps-limit noisy victim rate_limited) == 0 &&
     -n \$(value qos mps-limit noisy victim p99_ms) && -z \$(value qos mps-limit paced victim p99_ms) ]]"
check "qos: mps-limit's neighbours' workers got --rate-limit=32, the victim's none" \
  "[[ \$(grep -c -- '--rate-limit=32' $out/raw/qos/mps-limit-cmdlines.txt) == 2 &&
     \$(grep -c . $out/raw/qos/mps-limit-cmdlines.txt) == 3 ]]"

run_part faults "process"
check "faults: the probe faulted (exit 4)" "[[ \$(value faults process fault 0:3 probe_exit) == 4 ]]"
check "faults: kill -9 failed requests on its instance" \
  "[[ \$(value faults process faults/kill9 0:1 failed) -ge 1 ]]"
check "faults: kill -9 failed none on the others" \
  "[[ \$(value faults process faults/kill9 0:2 failed) == 0 ]]"
rec=$(value faults process faults/kill9 0:1 recovery_s)
check "faults: the killed instance served again ($rec s)" \
  "python3 -c 'import sys; sys.exit(not 0 < float(sys.argv[1]) < 10)' '$rec'"
check "faults: the router hid the kill (0 failed)" "[[ \$(value faults process faults/kill9 router failed) == 0 ]]"
check "faults: restarts recorded" "[[ \$(value faults process restarts 0:1 worker_restarts) -ge 1 ]]"
check "faults: the raw logs in one archive (serve's log inside)" \
  "tar -tzf $out/raw-faults.tar.gz | grep -q '^raw/faults/process-serve.log\$'"

# green: the staying instances share one process, which takes the new one
# and lets it go without a restart (their pids stay)
run_part reconfig "mps green"
for m in mps green; do
  check "reconfig: $m create applied (exit 0)" "[[ \$(value reconfig $m create - apply_exit) == 0 ]]"
  check "reconfig: $m destroy applied (exit 0)" "[[ \$(value reconfig $m destroy 0:3 apply_exit) == 0 ]]"
  check "reconfig: $m the new worker's time to serve" "[[ -n \$(value reconfig $m create - serving_s) ]]"
  check "reconfig: $m no staying worker restarted" "[[ \$(value reconfig $m destroy - staying_restarted) == 0 ]]"
  check "reconfig: $m no failed request on the staying instances (table: failed, restarted)" \
    "grep -Eq '^$m +[0-9.]+ +[0-9.]+ +[0-9.]+ .* 0 +0(\.0+)?\$' $tmp/reconfig.log" ||
    grep -E "^(mode|$m) " "$tmp/reconfig.log" | sed 's/^/  /'
done

run_part memory "mps"
check "memory: past the quota: out of memory (exit 3)" "[[ \$(value memory mps overalloc 0:3 probe_exit) == 3 ]]"
check "memory: run --memory beside a worker refused (exit 1)" "[[ \$(value memory mps refusal 0:1 run_exit) == 1 ]]"
check "memory: the refusal says why" "grep -q 'no memory left' $out/isolation_memory.csv"
check "memory: others' requests all answered" "grep -Eq '^mps +3 +[0-9]+ +1 +0 ' $tmp/memory.log"
echo "# parts took $((SECONDS - t0)) s"

# SIGTERM in the middle of a part: it stops, exits non-zero, leaves nothing.
GS_ISOL_MODES=mps bash "$root/bench/isolation.sh" consolidation "$tmp/out-term" >"$tmp/term.log" 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q 'whole GPU' "$tmp/term.log" && break; sleep 0.1; done
sleep 1
kill -TERM "$pid"
wait "$pid"
rc=$?
check "TERM: non-zero exit ($rc)" "[[ $rc -ne 0 ]]"
left=$(leftovers)
check "TERM: nothing left running" "[[ -z \"\$left\" ]]" || echo "  $left"

# The renderer: rows with known answers (a faster level past the budget is
# not the best; ratios of the best within it).
cat >"$tmp/known.csv" <<'EOF'
date,gpu,driver,backend,mode,part,case,instance,level,metric,value,note
d,g,v,soft,process,consolidation,whole-b1,router,1,infer_per_s,1000,
d,g,v,soft,process,consolidation,whole-b1,router,1,p99_ms,2,
d,g,v,soft,process,consolidation,whole-b1,router,8,infer_per_s,1500,
d,g,v,soft,process,consolidation,whole-b1,router,8,p99_ms,60,
d,g,v,soft,mps,consolidation,1x1g-b1,router,4,infer_per_s,800,
d,g,v,soft,mps,consolidation,1x1g-b1,router,4,p99_ms,10,
d,g,v,soft,mps,consolidation,7x1g-b1,router,16,infer_per_s,5000,
d,g,v,soft,mps,consolidation,7x1g-b1,router,16,p99_ms,40,
d,g,v,soft,mps,consolidation,7x1g-b1,router,32,infer_per_s,9000,
d,g,v,soft,mps,consolidation,7x1g-b1,router,32,p99_ms,51,
EOF
table=$(python3 "$root/bench/isolation_render.py" --table consolidation "$tmp/known.csv")
check "render: best within the budget and its ratios" \
  "grep -Eq '^mps +800.0 +5000.0 +1000.0 +6.250 +5.000' <<<\"\$table\"" || echo "$table"
cat >>"$tmp/known.csv" <<'EOF'
d,g,v,soft,mps,consolidation,1x1g-direct,direct,2,infer_per_s,900,
d,g,v,soft,mps,consolidation,1x1g-direct,direct,2,p99_ms,12,
d,g,v,soft,mps,consolidation,7x1g-direct,direct,2,infer_per_s,6300,
d,g,v,soft,mps,consolidation,7x1g-direct,direct,2,p99_ms,30,
d,g,v,soft,mps,consolidation,7x1g-direct,direct,4,infer_per_s,8000,
d,g,v,soft,mps,consolidation,7x1g-direct,direct,4,p99_ms,55,
EOF
table=$(python3 "$root/bench/isolation_render.py" --table consolidation "$tmp/known.csv")
check "render: the direct columns, best within the budget (7.000x, 6.300x)" \
  "grep -Eq '^mps +800.0 .* 900.0 +6300.0 +7.000 +6.300\$' <<<\"\$table\"" || echo "$table"
# the whole GPU measured again after the modes: its own columns
sed -n '1p;/whole-b1,/p' "$tmp/known.csv" | sed 's/whole-b1,router,1,infer_per_s,1000/whole-b1-again,router,1,infer_per_s,1250/; s/whole-b1,/whole-b1-again,/' >"$tmp/again.csv"
grep -v '^date' "$tmp/again.csv" >>"$tmp/known.csv"
table=$(python3 "$root/bench/isolation_render.py" --table consolidation "$tmp/known.csv")
check "render: the whole GPU again (1250.0, 5000/1250 = 4.000x)" \
  "grep -Eq '^mps +800.0 +5000.0 +1000.0 +6.250 +5.000 .* 1250.0 +4.000 ' <<<\"\$table\"" || echo "$table"
python3 "$root/bench/isolation_render.py" "$out" --svg-dir "$tmp/svg" --svg-prefix docs/bench >"$tmp/block.md"
for h in Consolidation QoS Faults Reconfiguration Memory; do
  check "render: markdown section $h" "grep -q '^#### $h' $tmp/block.md"
done
check "render: three SVG charts that parse" "python3 -c '
import sys, xml.etree.ElementTree as E
[E.parse(f) for f in sys.argv[1:]]; sys.exit(len(sys.argv) != 4)' $tmp/svg/*.svg"
echo "test_isolation_bench: $fails failure(s) in $((SECONDS - t0)) s"
[[ $fails -eq 0 ]]
