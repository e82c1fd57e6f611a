#!/usr/bin/env bash
# Issue 17's Show on a machine with 2+ GPUs, MIG off, in one command:
#   GS_CARRY=.gpukit bash tests/gpu/run_two_gpus.sh "$OUT"      (<= 10 min)
# The soft backend lays out one mig-parted config per GPU (7 x 1g on GPU 0,
# 4g + 3 x 1g on GPU 1; soft instances stand in for MIG's, whose mode this
# script never changes); `gpuslice serve` serves ResNet-50 (FP16, GPU
# engine) on all eleven behind one router and the demo's sweep runs through
# it; a fatal fault (probe_fault) in an instance on GPU 0 under load, under
# MPS and under --isolation process: failed requests and recovery on GPU 0's
# other instances, none on GPU 1's; an apply changing only GPU 1 while GPU
# 0's instances serve: none of GPU 0's requests may fail; the device plugin
# over both GPUs, by profile, with health per GPU (GPU 0's MPS daemon
# killed: only its instances Unhealthy). Read-only towards the GPUs'
# settings: MPS only with our own pipe and log directories (under a private
# GPUSLICE_STATE_DIR), stopped before the script ends. Every planned check
# that does not run is a FAIL; the table comes last (also
# OUT/two_gpus_summary.txt; the log is OUT/two_gpus.log, the sweep
# OUT/two_gpus_sweep.txt, the serve's log OUT/two_gpus_serve.log, perf's
# reports and every request of the loads in OUT/two_gpus_load.tar.gz).
# Exit: 0 no check failed; 1 some check failed or did not run; 77 fewer
# than two GPUs.
# Test hooks (tests/gpu/test_kit_logic.sh): GS_TWO_REPO (a model repository
# instead of exporting ResNet-50), GS_TWO_MODEL (resnet50), GS_TWO_LEVELS
# (the sweep's concurrencies, "1 4 16 64 256"), GS_TWO_WINDOW_MS (1000),
# GS_TWO_BUDGET_S (no new step after it, 480), GS_SETTLE_S (seconds of load
# before an event, 3), GS_TWO_PERF_ARGS (more `gpuslice perf` arguments).
set -uo pipefail
out=${1:?usage: run_two_gpus.sh OUTDIR}
mkdir -p "$out" && out=$(cd "$out" && pwd) || exit 1
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
carry=${GS_CARRY:-}
if [[ -z $carry ]]; then
  carry=$root/.gpukit
  [[ ! -d $carry && -d $root/.carry ]] && carry=$root/.carry
fi
carry=$(cd "$carry" 2>/dev/null && pwd) || carry=${GS_CARRY:-$root/.gpukit}
export LD_LIBRARY_PATH=$carry/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
gs="$carry/gpuslice"
load_py=$root/bench/gpu/isolation_load.py
state=$(mktemp -d /tmp/gs2.XXXXXX) || exit 1
export GPUSLICE_STATE_DIR=$state GPUSLICE_BACKEND=soft
log="$out/two_gpus.log"
model=${GS_TWO_MODEL:-resnet50}
levels=${GS_TWO_LEVELS:-1 4 16 64 256}
window=${GS_TWO_WINDOW_MS:-1000}
budget=${GS_TWO_BUDGET_S:-480}
settle_s=${GS_SETTLE_S:-3}
t_start=$SECONDS

rows=()
declare -A planned=()
plan_order=()
failed=0
plan() { planned[$1]=$2; plan_order+=("$1"); }
record() { # CHECK EXPECTED OBSERVED PASS|FAIL|NOTE
  rows+=("$(printf '%-40s | %-36s | %-44s | %s' "$1" "$2" "$3" "$4")")
  unset "planned[$1]"
  [[ $4 == FAIL ]] && failed=1
  echo "== $4: $1 (expected: $2; observed: $3)"
}
# check NAME OBSERVED CONDITION...: PASS when the condition holds.
check() {
  local name=$1 obs=$2 ok=0
  shift 2
  "$@" || ok=1
  record "$name" "${planned[$name]:-?}" "$obs" "$([[ $ok -eq 0 ]] && echo PASS || echo FAIL)"
  return $ok
}
how() {
  case $1 in
  124) echo "timed out" ;;
  137) echo "killed after its time limit" ;;
  126 | 127) echo "could not start (exit $1)" ;;
  *) echo "exit $1" ;;
  esac
}
say() { echo "run_two_gpus [$((SECONDS - t_start)) s]: $*"; }
# in_budget STEP: false (and why) once the budget is spent.
in_budget() {
  ((SECONDS - t_start < budget)) && return 0
  stopped_why="time budget (${budget} s) spent before: $1"
  return 1
}
# Our MPS processes: those whose environment names our state directory.
our_mps() {
  local pid
  for pid in $(pgrep -x nvidia-cuda-mps); do
    tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qF "$state" && echo "$pid"
  done
}
mps_quit() {
  local p
  for p in "$state"/mps/*/pipe; do
    [[ -e $p/control ]] && echo quit | CUDA_MPS_PIPE_DIRECTORY=$p timeout --foreground 10 nvidia-cuda-mps-control >/dev/null 2>&1
  done
}
serve_pid="" plugin_pid="" load_pid=""
stop_serve() {
  [[ -n $serve_pid ]] || return 0
  kill "$serve_pid" 2>/dev/null
  timeout 60 tail --pid="$serve_pid" -f /dev/null 2>/dev/null || kill -9 "$serve_pid" 2>/dev/null
  wait "$serve_pid" 2>/dev/null
  serve_pid=""
}
finished=0
finish() {
  local c
  finished=1
  [[ -n $load_pid ]] && touch "$state/stop" && { timeout 30 tail --pid="$load_pid" -f /dev/null; kill "$load_pid"; } 2>/dev/null
  [[ -n $plugin_pid ]] && kill "$plugin_pid" 2>/dev/null
  stop_serve
  timeout --foreground 30 "$gs" destroy -d 0 --all >/dev/null 2>&1
  timeout --foreground 30 "$gs" destroy -d 1 --all >/dev/null 2>&1
  mps_quit
  for c in "${plan_order[@]}"; do
    [[ -n ${planned[$c]+set} ]] &&
      record "$c" "${planned[$c]}" "did not run: ${stopped_why:-an earlier step failed}" FAIL >>"$log"
  done
  tail -n 5 "$log"
  {
    printf '%-40s | %-36s | %-44s | %s\n' CHECK EXPECTED OBSERVED RESULT
    printf '%s\n' "${rows[@]}"
    printf 'run_two_gpus: %s in %d s\n' "$([[ $failed -eq 0 ]] && echo OK || echo FAILED)" $((SECONDS - t_start))
  } | tee "$out/two_gpus_summary.txt"
  [[ -d $out/two_gpus_load ]] && tar -C "$out" -czf "$out/two_gpus_load.tar.gz" two_gpus_load && rm -rf "$out/two_gpus_load"
  rm -rf "$state"
  exit "$failed"
}
stopped_why=""
trap 'stopped_why=${stopped_why:-stopped early (exit $?)}; [[ $finished -eq 1 ]] || { failed=1; finish; }' EXIT
trap 'stopped_why=interrupted; exit 1' TERM INT HUP

n=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')
if [[ $n -lt 2 ]]; then
  echo "run_two_gpus: needs 2 GPUs, found $n: skipped"
  finished=1
  rm -rf "$state"
  exit 77
fi
plan "GPUs 0 and 1 with MIG off" "soft backend usable, nothing changed"
plan "model" "$model exported for the GPU engine"
plan "dry run of the per-GPU config" "GPU 0: 7 x 1g; GPU 1: 4g + 3 x 1g"
plan "per-GPU layout applied (soft, MPS)" "exactly the config; assert passes"
plan "serve: every instance behind one router" "11 workers ready (7 GPU 0, 4 GPU 1)"
plan "one MPS control daemon per GPU" "2 daemons, own pipe dirs"
plan "sweep through the router" "every concurrency answered"
plan "every instance served in the sweep" "requests > 0 on all 11 workers"
plan "fault on GPU 0 (MPS)" "probe_fault faults (exit 4)"
plan "GPU 0 neighbours after the fault (MPS)" "fail, then all serve again"
plan "GPU 1 during the GPU 0 fault (MPS)" "0 failed"
plan "apply changing only GPU 1 (4g -> 3g)" "GPU 0: 7 kept, same IDs and UUIDs"
plan "GPU 0 requests during the GPU 1 apply" "0 failed, same worker pids"
plan "GPU 1 new 3g serves" "worker ready"
plan "device plugin: both GPUs by profile" "1g: 10 Healthy; 3g: 1 Healthy"
plan "device plugin: GPU 0 MPS daemon killed" "1g: GPU 0's 7 Unhealthy, GPU 1's 3 Healthy"
plan "fault on GPU 0 (process)" "probe_fault faults (exit 4)"
plan "GPU 0 neighbours after the fault (process)" "0 failed (contexts are separate)"
plan "GPU 1 during the GPU 0 fault (process)" "0 failed"
plan "MPS daemons after destroy" "none of ours"

# ---- helpers over the serve and the layout -----------------------------------
workers_json() { curl -sf --max-time 5 "http://127.0.0.1:$port/gpuslice/v1/workers"; }
# wfield EXPR: a Python expression over the workers `w`.
wfield() { workers_json | python3 -c 'import json,sys; w=json.load(sys.stdin)["workers"]; print(eval(sys.argv[1]))' "$1" 2>/dev/null; }
# lay EXPR: a Python expression over the layout's devices `d`.
lay() { timeout --foreground 60 "$gs" --json list | python3 -c 'import json,sys; d=json.load(sys.stdin)["devices"]; print(eval(sys.argv[1]))' "$1" 2>/dev/null; }
gis() { lay "' '.join('%d:%s:%d:%s' % (g['id'], g['profile'], g['start'], g.get('uuid', '')) for g in sorted(d[$1]['gpu_instances'], key=lambda g: g['id']))"; }
pids() { wfield "' '.join('%s=%s' % (x['instance'], x['pid']) for x in sorted(w, key=lambda x: x['instance']) if x['instance'].startswith('$1:'))"; }
# serve_up SECONDS [INSTANCES]: the serve on free ports; sets serve_pid, port.
serve_up() {
  port=""
  : >"$out/two_gpus_serve.log.tmp"
  "$gs" serve --model-repository "$state/models" --instances "${2:-all}" --http-port 0 \
    --grpc-port 0 --start-timeout $(($1 * 1000)) --health-interval 200 \
    >>"$out/two_gpus_serve.log.tmp" 2>&1 &
  serve_pid=$!
  local deadline=$((SECONDS + $1 + 10))
  while ((SECONDS < deadline)); do
    if grep -q 'gpuslice serve: ready' "$out/two_gpus_serve.log.tmp"; then
      port=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["http_port"])' "$state/serve.json" 2>/dev/null)
      [[ -n $port ]] && break
    fi
    kill -0 "$serve_pid" 2>/dev/null || break
    sleep 0.5
  done
  cat "$out/two_gpus_serve.log.tmp" >>"$out/two_gpus_serve.log"
  rm -f "$out/two_gpus_serve.log.tmp"
  [[ -n ${port:-} ]]
}
# wait_ready EXPR SECONDS: until wfield EXPR prints True.
wait_ready() {
  local deadline=$((SECONDS + $2))
  while ((SECONDS < deadline)); do
    [[ $(wfield "$1") == True ]] && return 0
    sleep 0.5
  done
  return 1
}
# load_start INSTANCES ROUTER_CLIENTS: isolation_load.py until load_stop.
load_start() {
  rm -rf "$state/events" "$state/stop"
  : >"$state/marks"
  python3 "$load_py" run --router "127.0.0.1:$port" --model "$model" --out "$state/events" \
    --seconds 300 --stop-file "$state/stop" --instances "$1" --router-clients "$2" \
    --timeout 30 >"$state/load.log" 2>&1 &
  load_pid=$!
  local deadline=$((SECONDS + 30))
  until grep -q 'clients started' "$state/load.log" || ((SECONDS > deadline)); do sleep 0.2; done
  sleep "$settle_s"
}
mark() { echo "$1 $(date +%s.%N) $(date +%s.%N)" >>"$state/marks"; }
# load_stop NAME WINDOW: stops the load; sets f0 f1 fr (failed on GPU 0's
# workers, GPU 1's, the router), n0 n1 (requests) and rec0 (GPU 0's longest
# recovery in s; -1: one never served again) for the mark WINDOW.
load_stop() {
  touch "$state/stop"
  timeout 60 tail --pid="$load_pid" -f /dev/null
  wait "$load_pid" 2>/dev/null
  load_pid=""
  mkdir -p "$out/two_gpus_load"
  cat "$state/load.log" >>"$log"
  python3 "$load_py" analyze --events "$state/events" --marks "$state/marks" \
    >"$out/two_gpus_load/$1-windows.csv" 2>>"$log"
  cat "$state"/events/client*.csv 2>/dev/null | gzip >"$out/two_gpus_load/$1-requests.csv.gz"
  read -r f0 f1 n0 n1 rec0 fr < <(python3 - "$out/two_gpus_load/$1-windows.csv" "$2" <<'PY'
import csv, sys
s = {}
try:
    rows = list(csv.DictReader(open(sys.argv[1])))
except OSError:
    rows = []
for r in rows:
    if r["window"] != sys.argv[2]:
        continue
    g = r["target"].split(":")[0] if ":" in r["target"] else "r"
    v = float(r["value"])
    k = (r["metric"], g)
    if r["metric"] == "recovery_s":
        s[k] = -1 if -1 in (v, s.get(k)) else max(v, s.get(k, 0))
    else:
        s[k] = s.get(k, 0) + v
print(*(int(s.get((m, g), -1 if not rows else 0)) for m, g in (
    ("failed", "0"), ("failed", "1"), ("requests", "0"), ("requests", "1"))),
      "%.2f" % s.get(("recovery_s", "0"), 0), int(s.get(("failed", "r"), 0)))
PY
)
  say "$1: GPU 0 $f0 failed of $n0 (recovery $rec0 s), GPU 1 $f1 of $n1, router $fr failed"
}
# fault_under_load MODE: probe_fault in GPU 0's instance $fault_gi (no
# worker) while every served instance and the router take load.
fault_under_load() {
  local mode=$1 targets st r0
  targets=$(wfield "','.join(sorted(x['instance'] for x in w if x['state'] == 'ready'))")
  r0=$(wfield "sum(x['restarts'] for x in w if x['instance'].startswith('0:'))")
  load_start "$targets" 2
  mark fault
  timeout --foreground 60 "$gs" run -i "0:$fault_gi" -- "$carry/probe_fault" fault
  st=$?
  local fa="never faulted (exit 5)"
  [[ $st -eq 5 ]] || fa=$(how "$st")
  record "fault on GPU 0 ($mode)" "probe_fault faults (exit 4)" "$fa" "$([[ $st -eq 4 ]] && echo PASS || echo FAIL)"
  # Under MPS GPU 0's workers die with it (their CUDA context is gone: not
  # ready, restarted): wait until each of them was restarted and is ready
  # (the load tells when each answered again); elsewhere a few seconds.
  sleep 2
  if [[ $st -ne 4 ]]; then
    : # no fault: nothing to recover from
  elif [[ $mode == MPS ]]; then
    wait_ready "all(x['state'] == 'ready' and (x['restarts'] > 0 or not x['instance'].startswith('0:')) for x in w)" 180 ||
      say "not every GPU 0 worker restarted and ready after 180 s"
  else
    sleep 3
    wait_ready "all(x['state'] == 'ready' for x in w)" 60 || say "not every worker ready after 60 s"
  fi
  sleep 2
  local rn
  rn=$(wfield "sum(x['restarts'] for x in w if x['instance'].startswith('0:'))")
  restarts=$((${rn:-0} - ${r0:-0}))
  load_stop "fault-$mode" fault
  [[ $st -eq 4 ]]
}

two_gpus() {
  nvidia-smi -L
  nvidia-smi --query-gpu=index,name,driver_version,mig.mode.current --format=csv,noheader
  local modes st p1 p4 p3 b1 m
  modes=$(nvidia-smi --query-gpu=mig.mode.current --format=csv,noheader | head -2 | tr -d ' ' | tr '\n' ' ')
  if [[ $modes != "Disabled Disabled " ]]; then
    record "GPUs 0 and 1 with MIG off" "soft backend usable, nothing changed" "MIG mode: $modes(not changed here)" FAIL
    stopped_why="MIG mode is on: the soft backend needs it off and this script never changes it"
    return 1
  fi
  record "GPUs 0 and 1 with MIG off" "soft backend usable, nothing changed" "$modes" PASS

  # 1. the model: ResNet-50 (102 classes, as the demo's) served in FP16.
  mkdir -p "$state/models"
  if [[ -n ${GS_TWO_REPO:-} ]]; then
    cp -r "$GS_TWO_REPO"/. "$state/models/"
    st=$?
  else
    m=$state/export
    mkdir -p "$m" "$state/models/$model/1"
    py=$carry/torch_resnet50.py
    [[ -f $py ]] || py=$root/bench/gpu/torch_resnet50.py
    timeout --foreground 180 python3 "$py" export "$m" && mv "$m/resnet50.onnx" "$state/models/$model/1/model.onnx"
    st=$?
    cat >"$state/models/$model/config.json" <<'JSON'
{"max_batch_size": 8, "instance_group": [{"kind": "KIND_GPU"}], "precision": "fp16",
 "dynamic_batching": {"max_queue_delay_microseconds": 100, "preferred_batch_size": [4, 8]}}
JSON
  fi
  check "model" "$([[ $st -eq 0 ]] && echo "$model in $state/models" || how "$st")" [ "$st" -eq 0 ] || return 1

  # 2. the per-GPU config, planned, then applied.
  read -r p1 p4 p3 < <(timeout --foreground 60 "$gs" --json profiles -d 0 | python3 -c '
import json, sys
p = {x["id"]: x["name"] for x in json.load(sys.stdin)["devices"][0]["profiles"]}
print(p.get(19, "-"), p.get(5, "-"), p.get(9, "-"))')
  cat >"$state/two.yaml" <<YAML
version: v1
mig-configs:
  per-gpu:
    - devices: [0]
      mig-enabled: true
      mig-devices:
        "$p1": 7
    - devices: [1]
      mig-enabled: true
      mig-devices:
        "$p4": 1
        "$p1": 3
  per-gpu-b:
    - devices: [0]
      mig-enabled: true
      mig-devices:
        "$p1": 7
    - devices: [1]
      mig-enabled: true
      mig-devices:
        "$p3": 1
        "$p1": 3
YAML
  cat "$state/two.yaml"
  local plan_out
  plan_out=$(timeout --foreground 60 "$gs" apply --dry-run -f "$state/two.yaml" -c per-gpu 2>&1)
  st=$?
  echo "$plan_out"
  local c0 c1 c4
  c0=$(sed -n '/^Plan for device 0/,/^Plan for device 1/p' <<<"$plan_out" | grep -c "^  create   $p1 ")
  c1=$(sed -n '/^Plan for device 1/,$p' <<<"$plan_out" | grep -c "^  create   $p1 ")
  c4=$(sed -n '/^Plan for device 1/,$p' <<<"$plan_out" | grep -c "^  create   $p4 ")
  check "dry run of the per-GPU config" "$(how $st): GPU 0 $c0 x $p1; GPU 1 $c4 x $p4 + $c1 x $p1" \
    [ "$st/$c0/$c4/$c1" = "0/7/1/3" ]
  timeout --foreground 120 "$gs" apply -f "$state/two.yaml" -c per-gpu &&
    timeout --foreground 60 "$gs" assert -f "$state/two.yaml" -c per-gpu
  st=$?
  b1=$(lay "' + '.join(sorted(g['profile'] for g in d[1]['gpu_instances']))")
  check "per-GPU layout applied (soft, MPS)" "$(how $st); GPU 0 $(lay "len(d[0]['gpu_instances'])") x $p1; GPU 1 $b1" \
    [ "$st" -eq 0 ] || return 1
  fault_gi=$(lay "max(g['id'] for g in d[0]['gpu_instances'])")

  # 3. ResNet-50 on all eleven behind one router, then the demo's sweep.
  in_budget "serve" || return 1
  serve_up 240
  local ready
  ready=$(wfield "'%d on GPU 0, %d on GPU 1' % (sum(x['state'] == 'ready' and x['instance'].startswith('0:') for x in w), sum(x['state'] == 'ready' and x['instance'].startswith('1:') for x in w))")
  check "serve: every instance behind one router" "${ready:-no serve} ($((SECONDS - t_start)) s in)" \
    [ "$ready" = "7 on GPU 0, 4 on GPU 1" ] || return 1
  local daemons
  daemons=$(for f in "$state"/mps/*/pipe/nvidia-cuda-mps-control.pid; do [[ -f $f ]] && kill -0 "$(cat "$f")" 2>/dev/null && echo "$f"; done | wc -l)
  check "one MPS control daemon per GPU" "$daemons" [ "$daemons" -eq 2 ]

  local level r sweep="" answered=0
  {
    echo "sweep through the router (gpuslice perf, $model, batch 1, ${window} ms windows), $(date -u '+%F %T') UTC"
    printf '%-12s %12s %10s %10s\n' concurrency "infer/s" "p50 ms" "p99 ms"
  } >"$out/two_gpus_sweep.txt"
  for level in $levels; do
    in_budget "the sweep at concurrency $level" || break
    timeout --foreground -k 5 $((window * 6 / 1000 + 60)) "$gs" perf -m "$model" -u "127.0.0.1:$port" -b 1 \
      --concurrency-range "$level:$level:1" -p "$window" -r 3 -s 100000 --percentile 99 --json \
      ${GS_TWO_PERF_ARGS:-} >"$state/perf.json" 2>>"$log"
    r=$(python3 -c '
import json, sys
l = json.load(open(sys.argv[1]))["levels"][-1]
print("%.1f %.2f %.2f" % (l["throughput"], l["p50_us"] / 1000, l["p99_us"] / 1000))' "$state/perf.json" 2>/dev/null)
    mkdir -p "$out/two_gpus_load"
    cp "$state/perf.json" "$out/two_gpus_load/sweep-c$level.json" 2>/dev/null
    read -r tput p50 p99 <<<"${r:-- - -}"
    printf '%-12s %12s %10s %10s\n' "$level" "$tput" "$p50" "$p99" >>"$out/two_gpus_sweep.txt"
    if [[ -n $r ]]; then
      answered=$((answered + 1))
      sweep+="c$level ${tput}/s p99 ${p99}; "
    else
      sweep+="c$level: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("error", "no result")[:60])' "$state/perf.json" 2>/dev/null || echo "no report"); "
    fi
  done
  cat "$out/two_gpus_sweep.txt"
  check "sweep through the router" "${sweep% }" [ "$answered" -eq "$(wc -w <<<"$levels")" ]
  local idle
  idle=$(wfield "' '.join(x['instance'] for x in w if x['requests'] == 0)")
  local served=1
  [[ -z $idle && $answered -gt 0 && -n $(wfield "len(w)") ]] && served=0
  check "every instance served in the sweep" "$([[ -z $idle ]] && echo "all 11" || echo "idle: $idle")" [ "$served" -eq 0 ]

  # 4. a fatal fault on GPU 0 under MPS: its instance's worker leaves the
  #    serve first (the fault runs there alone), the other ten take load.
  in_budget "the fault under MPS" || return 1
  timeout --foreground 30 "$gs" serve --remove "0:$fault_gi"
  sleep 1
  if fault_under_load MPS; then
    local res=PASS
    [[ $f0 -eq 0 ]] && res=NOTE
    [[ $rec0 == -1* || $f0 -lt 0 ]] && res=FAIL
    record "GPU 0 neighbours after the fault (MPS)" "fail, then all serve again" \
      "$f0 failed of $n0, all back in ${rec0} s, $restarts restarts" "$res"
    check "GPU 1 during the GPU 0 fault (MPS)" "$f1 failed of $n1 (router: $fr failed)" [ "$f1" -eq 0 -a "$n1" -gt 0 ]
  fi
  timeout --foreground 30 "$gs" serve --add "0:$fault_gi"
  wait_ready "len(w) == 11 and all(x['state'] == 'ready' for x in w)" 180 ||
    say "0:$fault_gi not back in the serve after 180 s"

  # 5. an apply changing only GPU 1 while GPU 0's seven serve.
  in_budget "the apply changing GPU 1" || return 1
  local before0 lay0 g4 g3 apply_out
  before0=$(pids 0) lay0=$(gis 0)
  g4=$(lay "[g['id'] for g in d[1]['gpu_instances'] if g['profile'] == '$p4'][0]")
  load_start "$(wfield "','.join(sorted(x['instance'] for x in w if x['instance'].startswith('0:')))")" 0
  mark reconfig
  timeout --foreground 30 "$gs" serve --remove "1:$g4"
  for _ in $(seq 120); do # until its worker has left the instance
    [[ $(lay "len([g for g in d[1]['gpu_instances'] if g['id'] == $g4][0].get('processes', []))") == 0 ]] && break
    sleep 0.5
  done
  apply_out=$(timeout --foreground 120 "$gs" apply -f "$state/two.yaml" -c per-gpu-b 2>&1)
  st=$?
  echo "$apply_out"
  g3=$(lay "[g['id'] for g in d[1]['gpu_instances'] if g['profile'] == '$p3'][0]")
  [[ -n $g3 ]] && timeout --foreground 30 "$gs" serve --add "1:$g3"
  wait_ready "any(x['instance'] == '1:$g3' and x['state'] == 'ready' for x in w)" 180
  local new_ok=$?
  sleep 2
  load_stop reconfig reconfig
  grep -q "^Changed device 0 .*: 7 kept, 0 destroyed, 0 created" <<<"$apply_out"
  local kept=$?
  check "apply changing only GPU 1 (4g -> 3g)" \
    "$(how $st); GPU 0 $([[ $(gis 0) == "$lay0" ]] && echo untouched || echo CHANGED); GPU 1 $(lay "' + '.join(sorted(g['profile'] for g in d[1]['gpu_instances']))")" \
    [ "$st" -eq 0 -a "$kept" -eq 0 -a "$(gis 0)" = "$lay0" ]
  check "GPU 0 requests during the GPU 1 apply" \
    "$f0 failed of $n0; pids $([[ $(pids 0) == "$before0" ]] && echo same || echo CHANGED)" \
    [ "$f0" -eq 0 -a "$n0" -gt 0 -a "$(pids 0)" = "$before0" ]
  check "GPU 1 new 3g serves" "$([[ $new_ok -eq 0 ]] && echo "1:$g3 ready" || echo "1:${g3:-?} not ready")" [ "$new_ok" -eq 0 ]
  stop_serve

  # 6. the device plugin over both GPUs, no kubelet: one resource per
  #    profile, health per GPU.
  in_budget "the device plugin" || return 1
  local dp=$state/dp s1 s3 h1 h3
  mkdir -p "$dp"
  "$gs" k8s device-plugin --plugin-dir "$dp" --interval-ms 200 2>>"$log" &
  plugin_pid=$!
  s1=$dp/gpuslice-soft-$p1.sock s3=$dp/gpuslice-soft-$p3.sock
  for _ in $(seq 100); do [[ -S $s1 && -S $s3 ]] && break; sleep 0.1; done
  ls "$dp"
  h1=$(health "$s1") h3=$(health "$s3")
  check "device plugin: both GPUs by profile" "$p1: $h1; $p3: $h3 (healthy/unhealthy per GPU)" \
    [ "$h1" = "GPU0 7/0 GPU1 3/0" -a "$h3" = "GPU0 0/0 GPU1 1/0" ]
  local uuid0 pidfile
  uuid0=$(timeout 60 "$gs" info | sed -n 's/^device 0: .*(\(GPU-[^)]*\)).*/\1/p')
  pidfile=$state/mps/$uuid0/pipe/nvidia-cuda-mps-control.pid
  if [[ -n $uuid0 && -f $pidfile ]] && kill -9 "$(cat "$pidfile")"; then
    sleep 1
    h1=$(health "$s1") h3=$(health "$s3")
    check "device plugin: GPU 0 MPS daemon killed" "$p1: $h1; $p3: $h3" \
      [ "$h1" = "GPU0 0/7 GPU1 3/0" -a "$h3" = "GPU0 0/0 GPU1 1/0" ]
  else
    record "device plugin: GPU 0 MPS daemon killed" "${planned["device plugin: GPU 0 MPS daemon killed"]}" "no MPS daemon pid file for GPU 0 ($pidfile)" FAIL
  fi
  kill "$plugin_pid" 2>/dev/null
  wait "$plugin_pid" 2>/dev/null
  plugin_pid=""
  # GPU 0's MPS server, its control daemon killed, is ended here.
  for p in $(our_mps); do
    tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qF "$uuid0" && say "ending GPU 0's MPS process $p" && kill "$p"
  done

  # 7. the fault again with --isolation process (no MPS): separate contexts.
  in_budget "the fault under --isolation process" || return 1
  timeout --foreground 60 "$gs" destroy -d 0 --all && timeout --foreground 60 "$gs" destroy -d 1 --all &&
    timeout --foreground 120 "$gs" --isolation process apply -f "$state/two.yaml" -c per-gpu
  st=$?
  if [[ $st -ne 0 ]]; then
    stopped_why="--isolation process apply: $(how $st)"
    return 1
  fi
  fault_gi=$(lay "max(g['id'] for g in d[0]['gpu_instances'])")
  local sel
  sel=$(lay "','.join('%d:%d' % (i, g['id']) for i in (0, 1) for g in d[i]['gpu_instances'] if (i, g['id']) != (0, $fault_gi))")
  serve_up 300 "$sel" || { stopped_why="serve under --isolation process did not start"; return 1; }
  if fault_under_load process; then
    check "GPU 0 neighbours after the fault (process)" "$f0 failed of $n0 (recovery ${rec0} s)" [ "$f0" -eq 0 -a "$n0" -gt 0 ]
    check "GPU 1 during the GPU 0 fault (process)" "$f1 failed of $n1 (router: $fr failed)" [ "$f1" -eq 0 -a "$n1" -gt 0 ]
  fi
  stop_serve
  timeout --foreground 30 "$gs" destroy -d 0 --all && timeout --foreground 30 "$gs" destroy -d 1 --all
  mps_quit
  sleep "${GS_SETTLE_S:-2}"
  local left
  left=$(our_mps | wc -l)
  check "MPS daemons after destroy" "$left running" [ "$left" -eq 0 ]
}

# health SOCKET: "GPU0 H/U GPU1 H/U", the plugin's list by GPU (from the
# layout's compute instance UUIDs).
health() {
  timeout 30 "$gs" --json k8s devices --socket "$1" 2>>"$log" | head -1 >"$state/devs.json"
  python3 - "$state/devs.json" "$(timeout 60 "$gs" --json list)" <<'PY'
import json, sys
try:
    devs = json.loads(open(sys.argv[1]).read() or "[]")
except ValueError:
    devs = []
gpu = {}
for d in json.loads(sys.argv[2])["devices"]:
    for g in d["gpu_instances"]:
        gpu[g.get("uuid")] = d["index"]
        for c in g["compute_instances"]:
            gpu[c.get("uuid")] = d["index"]
n = {0: [0, 0], 1: [0, 0]}
for x in devs:
    n.setdefault(gpu.get(x["id"], 9), [0, 0])[x["health"] != "Healthy"] += 1
print("GPU0 %d/%d GPU1 %d/%d" % (n[0][0], n[0][1], n[1][0], n[1][1]) + (" other %d" % sum(n[9]) if 9 in n else ""))
PY
}

two_gpus >"$log" 2>&1
finish
