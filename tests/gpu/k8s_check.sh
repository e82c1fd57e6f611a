#!/usr/bin/env bash
# The CDI spec and the kubelet device plugin on the GPU machine (issue 16):
# seven soft 1g instances under MPS, `gpuslice cdi generate` with the real
# device nodes (/proc/driver/nvidia), the plugin advertising the seven
# (read as the kubelet would, with `gpuslice k8s devices`: no kubelet
# there), a probe run in one instance with the env Allocate gives, then the
# GPU's MPS daemon killed: all seven Unhealthy. `gpuslice k8s metrics`
# scraped while probe_alloc holds 1 GiB in instance 0:2 (the spec's env,
# as a container would run it): that instance's memory series > 0; and
# while probe_sm loops in 0:3, its SM series is noted (NOTE, not a check:
# what NVML samples for MPS clients is what this run finds out).
# usage: tests/gpu/k8s_check.sh OUT   (GS_CARRY: the kit, default .gpukit)
# Exit 0 all checks passed, 1 a check failed, 77 no GPU. ~1.5 minutes.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
kit=${GS_CARRY:-$root/.gpukit}
out=${1:?usage: k8s_check.sh OUT}
mkdir -p "$out" && out=$(cd "$out" && pwd)
gs=$kit/gpuslice
export LD_LIBRARY_PATH=$kit/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export GPUSLICE_STATE_DIR=$out/state GPUSLICE_BACKEND=soft
log=$out/k8s.log
status=0 rows=()
row() {
  rows+=("$(printf '%-44s %-6s %s' "$1" "$2" "$3")")
  if [[ $2 == FAIL ]]; then status=1; fi
  return 0
}
# check COND_STATUS NAME PASS_TEXT FAIL_TEXT: a row from the last test's status.
check() { if [[ $1 == 0 ]]; then row "$2" PASS "$3"; else row "$2" FAIL "$4"; fi; }
command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 || { echo "k8s_check: no GPU: skip"; exit 77; }
[[ -x $gs ]] || { echo "k8s_check: $gs missing"; exit 1; }
plugin= metrics= holder= looper=
cleanup() {
  for p in $holder $looper $metrics $plugin; do
    kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
  done
  timeout 60 "$gs" destroy --all >>"$log" 2>&1
}
trap cleanup EXIT
finish() {
  printf '%-44s %-6s %s\n' CHECK RESULT OBSERVED | tee -a "$out/summary.txt"
  printf '%s\n' "${rows[@]}" | tee -a "$out/summary.txt"
  exit $status
}

# 1. seven 1g instances (profile 19) under MPS.
if timeout 60 "$gs" create 19 19 19 19 19 19 19 >>"$log" 2>&1; then
  row "create 7 x 1g (soft, MPS)" PASS ""
else
  row "create 7 x 1g (soft, MPS)" FAIL "see k8s.log"; finish
fi

# 2. the CDI spec: the GPU's real nodes, the pipe mount, the MPS limits.
spec=$out/gpuslice.json
if timeout 60 "$gs" cdi generate -o "$spec" >>"$log" 2>&1; then
  nodes=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); e=[x for x in d["devices"] if x["name"]=="0:1"][0]["containerEdits"]; print(" ".join(n["path"] for n in e["deviceNodes"]), "|", " ".join(v for v in e["env"] if "MPS" in v))' "$spec" 2>&1)
  missing=$(for n in ${nodes%%|*}; do [[ -c $n ]] || printf '%s ' "$n"; done)
  [[ -z $missing && $nodes == *CUDA_MPS_ACTIVE_THREAD_PERCENTAGE* ]]
  check $? "cdi generate: nodes exist, MPS env" "${nodes:0:120}" "missing: $missing| ${nodes:0:200}"
else
  row "cdi generate" FAIL "see k8s.log"
fi

# 3. the plugin, no kubelet: its 1g socket read as the kubelet would.
dir=$out/device-plugins
mkdir -p "$dir"
"$gs" k8s device-plugin --plugin-dir "$dir" --interval-ms 200 2>>"$log" &
plugin=$!
sock=$dir/none # 1g.10gb on an H100, 1g.18gb on an H200
for _ in $(seq 100); do
  s=$(ls "$dir"/gpuslice-soft-1g.*.sock 2>/dev/null | head -1)
  [[ -n $s ]] && sock=$s && break
  sleep 0.1
done
ls "$dir" >>"$log"
first=$(timeout 30 "$gs" k8s devices --socket "$sock" 2>&1 | tee -a "$log")
healthy=$(grep -c ' Healthy$' <<<"$first")
[[ $healthy == 7 ]]
check $? "plugin: 7 soft 1g devices Healthy" "$(head -1 <<<"$first")" \
  "$healthy healthy: $(head -3 <<<"$first" | tr '\n' ' ')"

# 4. a CUDA probe in one instance with the spec's env (what a container
#    with --device gpuslice.dev/instance=0:1 would run).
probe=$kit/probe_sm
if [[ -x $probe ]]; then
  env_args=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); e=[x for x in d["devices"] if x["name"]=="0:1"][0]["containerEdits"]; print(" ".join(e["env"]))' "$spec")
  cap=$(tr ' ' '\n' <<<"$env_args" | sed -n 's/^GPUSLICE_SMS=//p')
  if p=$(env $env_args timeout 60 "$probe" 2>&1); then
    got=$(tail -1 <<<"$p" | python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["distinct_smids"])' 2>/dev/null)
    [[ -n $got && -n $cap && $got -le $cap ]]
    check $? "probe_sm with the spec's env: SMs <= cap" "$got SMs used, cap $cap" \
      "$got SMs used, cap $cap: $(tail -1 <<<"$p" | cut -c1-80)"
  else
    row "probe_sm with the spec's env" FAIL "$(tail -1 <<<"$p" | cut -c1-100)"
  fi
  echo "$p" >>"$log"
else
  row "probe_sm with the spec's env" SKIP "no probe_sm in the kit"
fi

# 4b. gpuslice k8s metrics, scraped while probe_alloc holds 1 GiB in 0:2
#     (found by GPUSLICE_INSTANCE_UUID in its env, as a container's would
#     be) and probe_sm loops in 0:3.
# sample FAMILY ID: the value of FAMILY{instance_id="ID",...} in metrics.txt
sample() {
  sed -n "s/^$1{instance_id=\"$2\"[^}]*} \(.*\)$/\1/p" "$out/metrics.txt" | head -1
}
"$gs" k8s metrics --listen 127.0.0.1:0 2>>"$out/metrics.log" &
metrics=$!
url=
for _ in $(seq 100); do
  url=$(sed -n 's|.*serving \(http://[^ ]*/metrics\).*|\1|p' "$out/metrics.log")
  [[ -n $url ]] && break
  sleep 0.1
done
spec_env() {
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); e=[x for x in d["devices"] if x["name"]==sys.argv[2]][0]["containerEdits"]; print(" ".join(e["env"]))' "$spec" "$1"
}
if [[ -z $url ]]; then
  row "metrics: the exporter listens" FAIL "$(tail -1 "$out/metrics.log")"
elif [[ ! -x $kit/probe_alloc ]]; then
  row "metrics: 0:2 memory while probe_alloc" FAIL "no probe_alloc in the kit"
else
  env $(spec_env 0:2) timeout 60 "$kit/probe_alloc" 1024 hold 25 >>"$out/metrics.log" 2>&1 &
  holder=$!
  if [[ -x $probe ]]; then
    (for _ in $(seq 20); do env $(spec_env 0:3) timeout 30 "$probe" 4096 20000 >/dev/null 2>&1; done) &
    looper=$!
  fi
  mem=0 procs=0 sm3=none
  for _ in $(seq 40); do
    sleep 0.5
    curl -sf -o "$out/metrics.txt" "$url" || continue
    mem=$(sample gpuslice_instance_memory_used_bytes 0:2:0)
    procs=$(sample gpuslice_instance_processes 0:2:0)
    s3=$(sample gpuslice_instance_sm_utilization_ratio 0:3:0)
    [[ -n $s3 && $s3 != 0 ]] && sm3=$s3
    [[ ${mem:-0} != 0 && $sm3 != none ]] && break
  done
  [[ ${mem:-0} =~ ^[0-9.e+]+$ ]] && python3 -c 'import sys; sys.exit(not float(sys.argv[1]) > 0)' "$mem"
  check $? "metrics: 0:2 memory > 0 while probe_alloc" \
    "memory_used_bytes ${mem} (${procs} processes)" "memory_used_bytes ${mem:-none} (${procs:-?} processes)"
  other=$(sample gpuslice_instance_memory_used_bytes 0:5:0)
  [[ ${other:-x} == 0 ]]
  check $? "metrics: idle 0:5 memory 0" "0" "${other:-none}"
  row "metrics: 0:3 SM ratio while probe_sm" NOTE "${sm3} (none: NVML sampled nothing for it)"
  h=$(grep -c '^gpuslice_instance_healthy{.*} 1$' "$out/metrics.txt")
  [[ $h == 7 ]]
  check $? "metrics: 7 instances healthy" "7" "$h"
  kill $holder $looper 2>/dev/null
  wait $holder $looper 2>/dev/null
  holder= looper=
fi

# 5. the GPU's MPS daemon killed: the plugin reports all seven Unhealthy.
pidfile=$(ls "$GPUSLICE_STATE_DIR"/mps/*/pipe/nvidia-cuda-mps-control.pid 2>/dev/null | head -1)
if [[ -n $pidfile ]] && kill -9 "$(cat "$pidfile")" 2>>"$log"; then
  sleep 1
  after=$(timeout 30 "$gs" k8s devices --socket "$sock" 2>&1 | tee -a "$log")
  bad=$(grep -c ' Unhealthy$' <<<"$after")
  [[ $bad == 7 ]]
  check $? "MPS daemon killed: 7 Unhealthy" "pid $(cat "$pidfile")" "$bad unhealthy"
  if [[ -n $url ]] && curl -sf -o "$out/metrics.txt" "$url"; then
    u=$(grep -c '^gpuslice_instance_healthy{.*} 0$' "$out/metrics.txt")
    [[ $u == 7 ]]
    check $? "metrics: MPS killed: 7 healthy 0" "7" "$u"
  fi
else
  row "MPS daemon killed: 7 Unhealthy" FAIL "no MPS daemon pid file under $GPUSLICE_STATE_DIR/mps"
fi
finish
