#!/usr/bin/env bash
# MIG's three promises (and two more) measured on soft instances, one part
# per call so that each fits in a 10-minute GPU command (issue 13):
#   consolidation  ResNet-50 batch-1 throughput within the p99 budget: one
#                  1g alone, seven 1g, the whole GPU as one 7g; then seven
#                  1g and the 7g again with dynamic batching (per mode)
#   qos            a batch-1 victim's p99 alone and beside six neighbours
#                  saturated with batch-64 traffic (closed loop, then paced
#                  at a request rate), per mode, MPS without caps included
#   faults         an illegal address in one instance (probe_fault) and a
#                  kill -9 of one worker, under load: failed requests per
#                  instance, and the time until every instance serves again
#   reconfig       one instance created and destroyed (apply) while six
#                  serve: how long, and the six's p99 and failures meanwhile
#   memory         an allocation past an instance's quota (probe_alloc) and
#                  a process asking more than is left: the messages, and the
#                  neighbours' requests meanwhile
# Raw results: OUTDIR/isolation_PART.csv (one row per measurement), raw/
# (perf JSON and CSV, request logs, serve logs) and the same in one file,
# OUTDIR/raw-PART.tar.gz; a short table last.
#
# usage: bench/isolation.sh PART OUTDIR      (PART: one of the above, or all)
#   GS_CARRY            the kit (tests/gpu/build_carry.sh; default .gpukit)
#   GS_ISOL_BACKEND     soft (default) or host (CPU, to try the logic)
#   GS_ISOL_MODES       isolation modes, in order (default per part:
#                       "mps green process", qos adds mps-open = seven
#                       workers under one MPS daemon with no caps); qos
#                       also takes mps-prio and mps-open-prio: mps and
#                       mps-open with the six neighbours' workers at MPS
#                       client priority BELOW_NORMAL (CUDA_MPS_CLIENT_PRIORITY
#                       =1, the victim's at NORMAL; under mps-prio the
#                       victim's worker is started by `gpuslice run`, the
#                       neighbours' by serve); and MODE-limit (mps-limit,
#                       green-limit, process-limit): MODE with serve's
#                       own --rate-limit on the six neighbours (the
#                       victim's 0) at GS_ISOL_LIMIT_RATE, their clients
#                       unpaced (no paced round); a mode gpuslice does not
#                       accept is recorded unavailable
#   GS_ISOL_REPO        a model repository holding MODEL/1/model.onnx (its
#                       config.json is rewritten in a copy); default:
#                       ResNet-50 exported by the kit's torch_resnet50.py,
#                       else scripts/make_models.py, kept in GS_ISOL_CACHE
#   GS_ISOL_MODEL (resnet50)  GS_ISOL_KIND (KIND_GPU)  GS_ISOL_PRECISION (fp16)
#   GS_ISOL_PROFILE (19: 1g)  GS_ISOL_WHOLE (0: 7g)  GS_ISOL_N (7 instances)
#   GS_ISOL_COUNT (1)   sessions (executions in flight) an instance: instance_group
#                       count; GS_ISOL_WHOLE_COUNT (1) the same for the whole GPU
#   GS_ISOL_INPUT (fp32) fp16: the model's input declared TYPE_FP16, so
#                       clients send half the bytes (needs python3's onnx)
#   GS_ISOL_WINDOW_MS (1000: perf windows, 3 per level)  GS_ISOL_BUDGET_MS (50)
#   GS_ISOL_LEVELS_ONE ("1 2 4 8 16")  GS_ISOL_LEVELS_ALL ("1 2 4 8 16 32 64")
#   GS_ISOL_LEVELS_DYN ("8 16 32 64 128 256"): a sweep stops past the budget
#   GS_ISOL_DIRECT (0)  1: consolidation also sweeps one 1g and the seven
#                       without the router, one perf client per worker at
#                       GS_ISOL_LEVELS_DIRECT ("1 2 4 8") each (cases
#                       1x1g-direct, 7x1g-direct)
#   GS_ISOL_WHOLE_AGAIN (0)  1: consolidation sweeps the whole GPU at batch 1
#                       once more after the modes (case whole-b1-again), to
#                       see how far that row moves within one call
#   GS_ISOL_PERF_ARGS   more `gpuslice perf` options for every measurement,
#                       e.g. "--shared-memory system" (inputs written once
#                       into a region the workers read, as perf_analyzer's
#                       flag: no request body to send and parse)
#   GS_ISOL_SERVE_ARGS  more `gpuslice serve` options for the serves this
#                       script starts (not mps-prio's victim or mps-open's
#                       workers), e.g. "--gpu-wait block"; every part but
#                       faults passes --plan-before-ready all first (its
#                       workers too): they measure steady serving
#   GS_ISOL_NOISY_BATCH (64) GS_ISOL_NOISY_CONC (2) GS_ISOL_PACE_RATE (4
#                       requests/s per neighbour; empty: no paced variant)
#   GS_ISOL_LIMIT_RATE  MODE-limit's serve --rate-limit per neighbour, in
#                       inferences/s (default NOISY_BATCH x PACE_RATE, 4
#                       when PACE_RATE is empty: 256, the load the paced
#                       clients send, held by the server instead)
#   GS_ISOL_SETTLE_S (2) GS_ISOL_RECOVER_S (8)  seconds of load before an
#                       event, and after one; GS_ISOL_NOISY_MARGIN_MS (2000):
#                       how much longer the neighbours run than the victim
#   GS_ISOL_PART_BUDGET_S (480): no new mode starts past it (recorded)
#   GS_ISOL_PORT_BASE (18700)  qos: mps-open's workers listen on BASE+1..N,
#                       mps-prio's victim on BASE+20
# Exit: 0 every planned measurement was taken, 1 otherwise, 2 usage.
set -u
part=${1:-} out=${2:-}
case $part in
consolidation | qos | faults | reconfig | memory | all) ;;
*) echo "usage: isolation.sh consolidation|qos|faults|reconfig|memory|all OUTDIR" >&2; exit 2 ;;
esac
[[ -n $out ]] || { echo "usage: isolation.sh PART OUTDIR" >&2; exit 2; }
if [[ $part == all ]]; then
  rc=0
  for p in consolidation qos faults reconfig memory; do bash "$0" "$p" "$out" || rc=1; done
  exit $rc
fi
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
kit=${GS_CARRY:-$root/.gpukit}
kit=$(cd "$kit" 2>/dev/null && pwd) || { echo "isolation: no kit at ${GS_CARRY:-$root/.gpukit}"; exit 1; }
gs=${GPUSLICE:-$kit/gpuslice}
export LD_LIBRARY_PATH=$kit/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
load_py=$root/bench/gpu/isolation_load.py
render_py=$root/bench/isolation_render.py
mps_control=${GPUSLICE_MPS_CONTROL:-nvidia-cuda-mps-control}

backend=${GS_ISOL_BACKEND:-soft}
model=${GS_ISOL_MODEL:-resnet50}
kind=${GS_ISOL_KIND:-KIND_GPU} precision=${GS_ISOL_PRECISION:-fp16}
profile=${GS_ISOL_PROFILE:-19} whole=${GS_ISOL_WHOLE:-0} n_inst=${GS_ISOL_N:-7}
window=${GS_ISOL_WINDOW_MS:-1000} budget_ms=${GS_ISOL_BUDGET_MS:-50}
levels_one=${GS_ISOL_LEVELS_ONE:-1 2 4 8 16}
levels_all=${GS_ISOL_LEVELS_ALL:-1 2 4 8 16 32 64}
levels_dyn=${GS_ISOL_LEVELS_DYN:-8 16 32 64 128 256}
direct=${GS_ISOL_DIRECT:-0} levels_direct=${GS_ISOL_LEVELS_DIRECT:-1 2 4 8}
noisy_batch=${GS_ISOL_NOISY_BATCH:-64} noisy_conc=${GS_ISOL_NOISY_CONC:-2}
pace_rate=${GS_ISOL_PACE_RATE-4} victim_conc=${GS_ISOL_VICTIM_CONC:-1}
limit_rate=${GS_ISOL_LIMIT_RATE:-$((noisy_batch * ${pace_rate:-4}))}
settle_s=${GS_ISOL_SETTLE_S:-2} recover_s=${GS_ISOL_RECOVER_S:-8}
part_budget=${GS_ISOL_PART_BUDGET_S:-480} start_s=${GS_ISOL_START_S:-180}
case $part in
qos) modes=${GS_ISOL_MODES:-mps green process mps-open} ;;
*) modes=${GS_ISOL_MODES:-mps green process} ;;
esac

mkdir -p "$out/raw/$part" || exit 1
out=$(cd "$out" && pwd)
raw=$out/raw/$part
csv=$out/isolation_$part.csv
# short: MPS pipe paths under it must fit a socket address (107 bytes)
work=$(mktemp -d "${TMPDIR:-/tmp}/gsi-XXXXXX") || exit 1
# Nothing of ours may talk to the machine's default MPS daemon.
export CUDA_MPS_PIPE_DIRECTORY=$work/mps-none/pipe CUDA_MPS_LOG_DIRECTORY=$work/mps-none/log
mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
t_start=$SECONDS fail=0

if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  IFS=, read -r gpu_name driver < <(nvidia-smi --query-gpu=name,driver_version \
    --format=csv,noheader | head -n 1)
  driver=${driver# }
  gpu_uuid=$(nvidia-smi -L | sed -n 's/.*UUID: \(GPU-[^)]*\)).*/\1/p' | head -n 1)
elif [[ $backend == soft ]]; then
  echo "isolation: no NVIDIA GPU (nvidia-smi -L): the soft backend needs one: skip"
  rm -rf "$work"
  exit 77
else
  gpu_name="host $(nproc) CPUs" driver=none gpu_uuid=
fi
date_utc=$(date -u +%Y-%m-%dT%H:%M:%SZ)
[[ -s $csv ]] || echo "date,gpu,driver,backend,mode,part,case,instance,level,metric,value,note" >"$csv"

log() { echo "isolation: [$((SECONDS - t_start))s] $*"; }
# row MODE CASE INSTANCE LEVEL METRIC VALUE [NOTE]: one measurement.
row() {
  local note=${7:-}
  note=${note//,/;} note=${note//\"/\'}
  printf '%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n' "$date_utc" "${gpu_name//,/;}" \
    "$driver" "$backend" "$1" "$part" "$2" "$3" "$4" "$5" "$6" "${note//$'\n'/ }" >>"$csv"
}
now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print('%.3f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$2"; }

# ---- processes we start, and cleanup ----------------------------------------

bg_pids=() serve_pid= mode_state= mode_label=none isolation= mode_n=0
serve_extra=() # more serve options for the current mode (MODE-limit's)
gsm() { # gpuslice for the current mode, bounded in time
  timeout --foreground -k 5 "${T:-120}" "$gs" --backend "$backend" --state-dir "$mode_state" \
    ${isolation:+--isolation "$isolation"} "$@"
}
mps_quit() {
  local dir
  for dir in $(find "$work" -name control \( -type p -o -type s \) -printf '%h\n' 2>/dev/null | sort -u); do
    echo quit | CUDA_MPS_PIPE_DIRECTORY=$dir timeout --foreground 15 "$mps_control" >/dev/null 2>&1
  done
}
stop_bg() {
  local p
  for p in "${bg_pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${bg_pids[@]}"; do
    timeout 10 tail --pid="$p" -f /dev/null 2>/dev/null || kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  bg_pids=()
}
stop_serve() {
  [[ -n $serve_pid ]] || return 0
  kill -TERM "$serve_pid" 2>/dev/null
  timeout 30 tail --pid="$serve_pid" -f /dev/null 2>/dev/null || kill -KILL "$serve_pid" 2>/dev/null
  wait "$serve_pid" 2>/dev/null
  serve_pid=
  # the log's last lines; bounded, should a child still hold the pipe
  if [[ -n ${stamp_pid:-} ]]; then
    timeout 10 tail --pid="$stamp_pid" -f /dev/null 2>/dev/null || kill "$stamp_pid" 2>/dev/null
    wait "$stamp_pid" 2>/dev/null
  fi
  stamp_pid=
}
# Ends what the current mode started: load, serve, raw workers, instances,
# MPS daemons. Safe to call twice.
mode_down() {
  stop_bg
  stop_serve
  [[ -n $mode_state && -d $mode_state ]] && T=60 gsm destroy --all >/dev/null 2>&1
  mps_quit
  if [[ -d $mode_state/serve-logs ]]; then
    mkdir -p "$raw/$mode_label"
    tail -q -n 20 "$mode_state"/serve-logs/* >"$raw/$mode_label/worker-logs-tail.txt" 2>/dev/null
  fi
}
cleanup() {
  trap - EXIT INT TERM
  mode_down
  rm -rf "$work"
  # One file with every raw log, also when interrupted or killed by a
  # timeout: the GPU machine sends back at most 8 files, none deeper than
  # OUTDIR/a/b, so raw/ itself does not come back.
  [[ -d ${raw:-} ]] && { tar -czf "$out/raw-$part.tar.gz" -C "$out" "raw/$part" 2>/dev/null ||
    log "could not archive $raw"; }
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ---- the model ----------------------------------------------------------------

# Writes three repositories: $work/repo (MODEL without dynamic batching),
# $work/repo_all (the same plus MODEL_dyn with dynamic batching), both with
# GS_ISOL_COUNT sessions an instance, and $work/repo_whole (as repo_all,
# GS_ISOL_WHOLE_COUNT sessions: the whole GPU's row).
prepare_model() {
  local onnx= src=${GS_ISOL_REPO:-} cache=${GS_ISOL_CACHE:-/tmp/gs-isolation-model} py
  if [[ -n $src ]]; then
    onnx=$src/$model/1/model.onnx
  else
    onnx=$cache/$model/1/model.onnx
    if [[ ! -s $onnx ]]; then
      mkdir -p "$cache/$model/1" "$cache/export"
      py=$kit/torch_resnet50.py
      [[ -f $py ]] || py=$root/bench/gpu/torch_resnet50.py
      if timeout 180 python3 "$py" export "$cache/export" >"$raw/model.log" 2>&1; then
        mv "$cache/export/resnet50.onnx" "$onnx"
      else
        timeout 180 python3 "$root/scripts/make_models.py" --out "$cache" --models "$model" \
          >>"$raw/model.log" 2>&1
      fi
    fi
  fi
  [[ -s $onnx ]] || { log "no model: $onnx (see $raw/model.log)"; return 1; }
  write_repo "$onnx" "$work/repo" "${GS_ISOL_COUNT:-1}" "" || return 1
  write_repo "$onnx" "$work/repo_all" "${GS_ISOL_COUNT:-1}" dyn || return 1
  write_repo "$onnx" "$work/repo_whole" "${GS_ISOL_WHOLE_COUNT:-1}" dyn || return 1
}

# write_repo ONNX DIR COUNT [dyn]: MODEL (and MODEL_dyn with dynamic
# batching when the 4th argument is "dyn") in DIR, COUNT sessions an
# instance (instance_group count: executions in flight on the instance).
write_repo() {
  local onnx=$1 dir=$2 count=$3
  local cfg="\"max_batch_size\": $noisy_batch, \"instance_group\": [{\"kind\": \"$kind\", \"count\": $count}], \"precision\": \"$precision\""
  [[ $kind == KIND_CPU ]] && cfg="\"max_batch_size\": $noisy_batch, \"instance_group\": [{\"kind\": \"KIND_CPU\", \"count\": $count}]"
  if [[ ${GS_ISOL_INPUT:-fp32} == fp16 ]]; then # the client sends FP16
    local name
    name=$(python3 -c 'import onnx,sys; print(onnx.load(sys.argv[1]).graph.input[0].name)' "$onnx") ||
      return 1
    cfg="$cfg, \"input\": [{\"name\": \"$name\", \"data_type\": \"TYPE_FP16\"}]"
  fi
  local dyn="\"dynamic_batching\": {\"max_queue_delay_microseconds\": ${GS_ISOL_QUEUE_US:-2000}}"
  mkdir -p "$dir/$model/1"
  ln -sf "$onnx" "$dir/$model/1/model.onnx"
  echo "{$cfg}" >"$dir/$model/config.json"
  [[ ${4:-} == dyn ]] || return 0
  mkdir -p "$dir/${model}_dyn/1"
  ln -sf "$onnx" "$dir/${model}_dyn/1/model.onnx"
  echo "{$cfg, $dyn}" >"$dir/${model}_dyn/config.json"
}

# ---- modes, instances, serve --------------------------------------------------

# mode_up MODE: a fresh state directory for MODE; 1 when gpuslice does not
# take it (recorded).
mode_up() {
  mode_label=$1 isolation=${1%-limit} serve_extra=()
  mode_n=$((mode_n + 1))
  mode_state=$work/s$mode_n-$1
  mkdir -p "$mode_state"
  if [[ $1 == mps-prio ]]; then
    isolation=mps
    [[ $backend == soft ]] || { row "$1" setup - - available 0 "needs the soft backend"; return 1; }
  fi
  if [[ $1 == mps-open* ]]; then
    isolation=
    if [[ $backend != soft ]] || ! command -v "$mps_control" >/dev/null; then
      row "$1" setup - - available 0 "needs the soft backend and $mps_control"
      return 1
    fi
    return 0
  fi
  [[ $backend == soft ]] || isolation=
  local why
  if ! why=$("$gs" --backend "$backend" --state-dir "$mode_state" --isolation "${isolation:-${1%-limit}}" list 2>&1); then
    row "$1" setup - - available 0 "not available: $(tail -n 1 <<<"$why")"
    log "mode $1: not available: $(tail -n 1 <<<"$why")"
    return 1
  fi
  row "$1" setup - - available 1
}

# create_instances PROFILE N: sets inst_ids (GI IDs, in order) and quota_mib.
create_instances() {
  local p=$1 n=$2 list= i
  for ((i = 0; i < n; i++)); do list+=${list:+,}$p; done
  gsm create "$list" >"$raw/$mode_label-create.log" 2>&1 || {
    log "create $list failed: $(tail -n 1 "$raw/$mode_label-create.log")"; return 1; }
  read_instances
}
read_instances() {
  local doc
  doc=$(T=30 gsm --json list) || return 1
  read -r quota_mib profile_name < <(python3 -c '
import json, sys
gis = json.loads(sys.argv[1])["devices"][0]["gpu_instances"]
print(gis[0]["memory_mib"] if gis else 0, gis[0]["profile"] if gis else "-")' "$doc")
  mapfile -t inst_ids < <(python3 -c '
import json, sys
for gi in sorted(json.loads(sys.argv[1])["devices"][0]["gpu_instances"], key=lambda g: g["id"]):
    print(gi["id"])' "$doc")
}

serve_json() { curl -sf --max-time 2 "http://127.0.0.1:$serve_port/gpuslice/v1/workers"; }
# worker_waits REPO INSTANCES: how the serve's workers wait for their GPU
# runs (each worker's --gpu-wait, "auto" when it has none), a line per serve
# in $raw/$mode_label-workers.txt; their command lines, one each, in
# $raw/$mode_label-cmdlines.txt.
worker_waits() {
  local p waits=()
  for p in $(pgrep -f -- "--model-repository=$1( |\$)"); do
    waits+=("$(tr '\0' '\n' <"/proc/$p/cmdline" 2>/dev/null |
      sed -n 's/^--gpu-wait=//p' | grep . || echo auto)")
    { tr '\0' ' ' <"/proc/$p/cmdline"; echo; } >>"$raw/$mode_label-cmdlines.txt" 2>/dev/null
  done
  echo "${1##*/} on $2: ${#waits[@]} worker processes, gpu-wait: ${waits[*]}" \
    >>"$raw/$mode_label-workers.txt"
}

# stamp_lines: stdin to stdout, each line after its arrival time (s).
stamp_lines() {
  python3 -u -c 'import sys, time
for line in sys.stdin:
    sys.stdout.write("%.3f %s" % (time.time(), line))'
}

# serve_up REPO [INSTANCES]: the serve on INSTANCES (default all), every
# worker ready. Sets serve_pid, serve_port.
serve_up() {
  local repo=$1 sel=${2:-all} tries extra
  read -r -a extra <<<"${GS_ISOL_SERVE_ARGS:-}"
  # Every batch size planned before ready, except where the restart's
  # speed is measured (faults): the others measure steady serving, which
  # planning after ready (cuDNN timing on a first start) would disturb.
  [[ $part == faults ]] || extra=(--plan-before-ready all ${extra[@]+"${extra[@]}"})
  # not through gsm: $! must be the serve itself, which SIGTERM drains;
  # each line of its log stamped with the wall clock (the marks' and the
  # request logs' clock), so that a restart's steps can be timed: the
  # stamper starts first (a line written before it is up, in its first
  # ~0.1 s, is stamped when it is read), and stop_serve waits for it to
  # write the last
  local stamp_fd
  exec {stamp_fd}> >(stamp_lines >>"$raw/$mode_label-serve.log")
  stamp_pid=$!
  "$gs" --backend "$backend" --state-dir "$mode_state" ${isolation:+--isolation "$isolation"} \
    serve --model-repository "$repo" --instances "$sel" --http-port 0 --grpc-port 0 \
    --start-timeout $((start_s * 1000)) ${extra[@]+"${extra[@]}"} \
    ${serve_extra[@]+"${serve_extra[@]}"} >&"$stamp_fd" 2>&1 {stamp_fd}>&- &
  serve_pid=$!
  exec {stamp_fd}>&-
  local deadline=$((SECONDS + start_s + 10))
  while ((SECONDS < deadline)); do
    if grep -q 'gpuslice serve: ready' "$raw/$mode_label-serve.log" 2>/dev/null; then
      serve_port=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["http_port"])' \
        "$mode_state/serve.json" 2>/dev/null) && [[ -n $serve_port ]] && {
        worker_waits "$repo" "$sel"
        return 0
      }
    fi
    kill -0 "$serve_pid" 2>/dev/null || break
    sleep 0.2
  done
  log "serve did not start (see $raw/$mode_label-serve.log)"
  stop_serve
  tail -n 5 "$raw/$mode_label-serve.log"
  return 1
}
# wait_workers N: until the serve has N ready workers (at most start_s).
wait_workers() {
  local want=$1 deadline=$((SECONDS + start_s))
  while ((SECONDS < deadline)); do
    [[ $(serve_json | python3 -c 'import json,sys
print(sum(w["state"] == "ready" for w in json.load(sys.stdin)["workers"]))' 2>/dev/null) == "$want" ]] &&
      return 0
    sleep 0.1
  done
  return 1
}
# worker_field INSTANCE FIELD: e.g. http_port, pid.
worker_field() {
  serve_json | python3 -c 'import json,sys
ws = [w for w in json.load(sys.stdin)["workers"] if w["instance"] == sys.argv[1] and w["state"] == "ready"]
print(ws[0][sys.argv[2]] if ws else "")' "$1" "$2"
}

# ---- measuring ----------------------------------------------------------------

# perf_level NAME PORT MODEL BATCH LEVEL [rate]: one level, 3 windows; prints
# "throughput p50_ms p99_ms" or nothing.
perf_level() {
  local name=$1 port=$2 m=$3 b=$4 level=$5 how=--concurrency-range w=${PERF_WINDOW:-$window}
  [[ ${6:-} == rate ]] && how=--request-rate-range
  local extra=()
  read -r -a extra <<<"${GS_ISOL_PERF_ARGS:-}"
  timeout --foreground -k 5 $((w * 5 / 1000 + 60)) "$gs" perf -m "$m" -u "127.0.0.1:$port" -b "$b" \
    "$how" "$level" -p "$w" -r 3 -s 100000 --percentile 99 --json -f "$raw/$name.csv" "${extra[@]}" \
    >"$raw/$name.json" 2>"$raw/$name.err"
  python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
l = d["levels"][-1]
print("%.1f %.3f %.3f" % (l["throughput"], l["p50_us"] / 1000, l["p99_us"] / 1000))' \
    "$raw/$name.json" 2>/dev/null
}

# warm_up NAME PORT MODEL BATCH LEVEL: a short unrecorded run, so that the
# sessions and CUDA graphs a level needs exist before it is measured.
warm_up() {
  local w=${GS_ISOL_WARMUP_MS:-500}
  ((w > 0)) && PERF_WINDOW=$((w / 3 > 10 ? w / 3 : 10)) perf_level "warmup-$1" "$2" "$3" "$4" "$5" >/dev/null
  return 0
}
# warm_ports BATCH LEVEL PORT...: warm_up on every port at once.
warm_ports() {
  local b=$1 l=$2 p pids=()
  shift 2
  for p in "$@"; do warm_up "$mode_label-$p-b$b" "$p" "$model" "$b" "$l" & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p"; done
}

# cpu_ticks: the host's busy and total CPU ticks (/proc/stat's cpu line:
# user to steal; busy is all but idle and iowait; guest time is in user).
cpu_ticks() {
  awk '$1 == "cpu" { t = 0; for (i = 2; i <= 9 && i <= NF; i++) t += $i; print t - $5 - $6, t; exit }' /proc/stat
}
# cpu_busy_pct "BUSY0 TOTAL0" "BUSY1 TOTAL1": the share of the host's CPU
# time that was busy between the two readings.
cpu_busy_pct() {
  python3 -c 'import sys; b0, t0 = map(int, sys.argv[1].split()); b1, t1 = map(int, sys.argv[2].split())
print("%.1f" % (100.0 * (b1 - b0) / max(1, t1 - t0)))' "$1" "$2"
}

# sweep MODE CASE PORT MODEL LEVELS: concurrency sweep through the router
# after a warm-up at its highest level, stopping after two levels in a row
# past the budget.
sweep() {
  local mode=$1 case=$2 port=$3 m=$4 level r over=0 c0
  warm_up "$mode_label-$case" "$port" "$m" 1 "${5##* }"
  for level in $5; do
    c0=$(cpu_ticks)
    r=$(perf_level "$mode_label-$case-c$level" "$port" "$m" 1 "$level")
    row "$mode" "$case" host "$level" cpu_busy_pct "$(cpu_busy_pct "$c0" "$(cpu_ticks)")" \
      "the host's CPUs, all processes, during the level"
    if [[ -z $r ]]; then
      row "$mode" "$case" router "$level" error 1 "perf: $(tail -n 1 "$raw/$mode_label-$case-c$level.err")"
      fail=1
      return 1
    fi
    if level_rows "$mode" "$case" router "$level" "$r"; then over=0; else ((++over >= 2)) && break; fi
  done
  return 0
}
# level_rows MODE CASE WHO LEVEL "THROUGHPUT P50 P99" [NOTE]: one level's
# three rows and its log line; 1 when its p99 is past the budget.
level_rows() {
  local ips p50 p99
  read -r ips p50 p99 <<<"$5"
  row "$1" "$2" "$3" "$4" infer_per_s "$ips" "${6:-}"
  row "$1" "$2" "$3" "$4" p50_ms "$p50"
  row "$1" "$2" "$3" "$4" p99_ms "$p99"
  log "$1 $2 c=$4${6:+ ($6)}: $ips infer/s, p99 $p99 ms"
  python3 -c 'import sys; sys.exit(float(sys.argv[1]) > float(sys.argv[2]))' "$p99" "$budget_ms"
}

# sweep_direct MODE CASE LEVELS N PORT...: the same sweep without the router:
# one `gpuslice perf` per worker port at once, LEVEL requests in flight on
# each; the row is their summed throughput, the highest of their p99s and
# the mean of their p50s. Separates the GPU side from the router's and one
# client's host path (GS_ISOL_DIRECT=1). N: the ports expected (one per
# instance); fewer is an error, not a smaller sum.
sweep_direct() {
  local mode=$1 case=$2 levels=$3 want=$4 level over=0 p i pids r
  shift 4
  if (($# != want)); then
    row "$mode" "$case" direct - error 1 "$# of $want workers have a port"
    fail=1
    return 1
  fi
  warm_ports 1 "${levels##* }" "$@"
  for level in $levels; do
    pids=() i=0
    for p in "$@"; do
      perf_level "$mode_label-$case-c$level-$i" "$p" "$model" 1 "$level" >"$work/direct$i.out" &
      pids+=($!) i=$((i + 1))
    done
    for p in "${pids[@]}"; do wait "$p"; done
    r=$(python3 -c '
import sys
rows = []
for f in sys.argv[1:]:
    try:
        rows.append([float(x) for x in open(f).read().split()])
    except (OSError, ValueError):
        sys.exit(1)
if not rows or any(len(x) != 3 for x in rows):
    sys.exit(1)
print("%.1f %.3f %.3f" % (sum(x[0] for x in rows), sum(x[1] for x in rows) / len(rows),
                          max(x[2] for x in rows)))' $(for ((i = 0; i < $#; i++)); do echo "$work/direct$i.out"; done))
    if [[ -z $r ]]; then
      row "$mode" "$case" direct "$level" error 1 "perf failed on a worker port"
      fail=1
      return 1
    fi
    if level_rows "$mode" "$case" direct "$level" "$r" "$# clients; level per instance"; then
      over=0
    else
      ((++over >= 2)) && break
    fi
  done
  return 0
}
# worker_ports GI...: the http ports of the serve's ready workers of GI...
worker_ports() {
  local id p
  for id in "$@"; do
    p=$(worker_field "0:$id" http_port)
    [[ -n $p ]] && echo "$p"
  done
}

# load_start SECONDS ARGS...: the timeline client in the background.
load_start() {
  local s=$1
  shift
  rm -rf "$work/events" && mkdir -p "$work/events"
  : >"$work/marks"
  python3 "$load_py" run --model "$model" --out "$work/events" --seconds "$s" \
    --stop-file "$work/stop" "$@" >"$work/load.log" 2>&1 &
  bg_pids+=($!)
  rm -f "$work/stop"
  local deadline=$((SECONDS + 30)) # every client under way, so the baseline has requests
  until grep -q 'clients started' "$work/load.log" || ((SECONDS > deadline)); do sleep 0.1; done
  sleep 0.5
}
mark() { echo "$1 $2 $3" >>"$work/marks"; }
# load_stop CASE: stops the load, analyses it into rows; keeps the logs.
load_stop() {
  local case=$1 w t metric v p
  touch "$work/stop"
  for p in "${bg_pids[@]}"; do timeout 30 tail --pid="$p" -f /dev/null 2>/dev/null; done
  stop_bg
  python3 "$load_py" analyze --events "$work/events" --marks "$work/marks" \
    >"$raw/$mode_label-$case-windows.csv" 2>>"$work/load.log" || {
    cp "$work/load.log" "$raw/$mode_label-$case-load.log"
    row "$mode_label" "$case" - - error 1 "no requests logged"; fail=1; return 1; }
  cp "$work/load.log" "$raw/$mode_label-$case-load.log"
  cat "$work"/events/client*.csv | gzip >"$raw/$mode_label-$case-requests.csv.gz"
  cp "$work/marks" "$raw/$mode_label-$case-marks.txt"
  while IFS=, read -r w t metric v; do
    [[ $w == window ]] && continue
    row "$mode_label" "$case/$w" "$t" - "$metric" "$v"
  done <"$raw/$mode_label-$case-windows.csv"
}
# warm_instances GI...: warm_ports at batch 1 on the serve's workers of GI...
warm_instances() {
  local ports=()
  mapfile -t ports < <(worker_ports "$@")
  ((${#ports[@]})) && warm_ports 1 1 "${ports[@]}"
  return 0
}
direct_targets() { local i s=; for i in "$@"; do s+=${s:+,}0:$i; done; echo "$s"; }
budget_left() {
  if ((SECONDS - t_start > part_budget)); then
    row "$1" setup - - skipped 1 "part budget ${part_budget}s spent"
    log "mode $1: skipped, the part's budget is spent"
    fail=1
    return 1
  fi
}

# ---- consolidation --------------------------------------------------------------

# The whole GPU as one instance (GS_ISOL_WHOLE) under process isolation
# when that is in the list (no MPS: the GPU as one client has it): batch 1
# and dynamic batching; with SUFFIX (-again), batch 1 only, as whole-b1-again.
whole_gpu() {
  local mode=process again=${1:-}
  [[ " $modes " == *" process "* ]] || mode=${modes%% *}
  mode_up "$mode" || return 0
  log "whole GPU (profile $whole) under $mode${again:+ (again)}"
  if create_instances "$whole" 1 && serve_up "$work/repo_whole"; then
    sweep "$mode" "whole-b1$again" "$serve_port" "$model" "$levels_all"
    [[ -n $again ]] || sweep "$mode" whole-dyn "$serve_port" "${model}_dyn" "$levels_dyn"
  else
    row "$mode" "whole-b1$again" - - error 1 "whole GPU: no instance or no serve"
    fail=1
  fi
  mode_down
}

part_consolidation() {
  local mode id
  whole_gpu
  for mode in $modes; do
    [[ $mode == mps-open* || $mode == mps-prio ]] && continue
    budget_left "$mode" && mode_up "$mode" || continue
    log "mode $mode: $n_inst x profile $profile"
    # One instance served alone, then the seven by a serve of their own:
    # each as a user would serve it (serve's defaults follow the worker
    # count, e.g. --gpu-wait auto), the six others created but idle.
    if create_instances "$profile" "$n_inst" && serve_up "$work/repo_all" "0:${inst_ids[0]}"; then
      sweep "$mode" 1x1g-b1 "$serve_port" "$model" "$levels_one"
      [[ $direct == 1 ]] && sweep_direct "$mode" 1x1g-direct "$levels_direct" 1 \
        $(worker_ports "${inst_ids[0]}")
      stop_serve
      if serve_up "$work/repo_all" && wait_workers "$n_inst"; then
        sweep "$mode" "${n_inst}x1g-b1" "$serve_port" "$model" "$levels_all"
        [[ $direct == 1 ]] && sweep_direct "$mode" "${n_inst}x1g-direct" "$levels_direct" "$n_inst" \
          $(worker_ports "${inst_ids[@]}")
        sweep "$mode" "${n_inst}x1g-dyn" "$serve_port" "${model}_dyn" "$levels_dyn"
      else
        row "$mode" "${n_inst}x1g-b1" - - error 1 "the serve of $n_inst workers did not start"
        fail=1
      fi
    else
      row "$mode" 1x1g-b1 - - error 1 "no instances or no serve"
      fail=1
    fi
    mode_down
  done
  [[ ${GS_ISOL_WHOLE_AGAIN:-0} == 1 ]] && whole_gpu -again
  return 0
}

# ---- qos ----------------------------------------------------------------------------

# Seven workers under one MPS daemon of ours with no SM or memory cap (what
# MPS gives clients that nobody limits): sets ports.
open_workers_up() {
  local i base=${GS_ISOL_PORT_BASE:-18700} pipe=$work/$mode_label/pipe logd=$work/$mode_label/log prio
  mkdir -p "$pipe" "$logd" "$raw/$mode_label"
  CUDA_MPS_PIPE_DIRECTORY=$pipe CUDA_MPS_LOG_DIRECTORY=$logd timeout 30 "$mps_control" -d \
    >"$raw/$mode_label/mps-start.log" 2>&1 || { log "MPS daemon did not start"; return 1; }
  ports=()
  for ((i = 1; i <= n_inst; i++)); do
    prio=0 # mps-open-prio: the neighbours (2..n) below the victim (1)
    [[ $mode_label == mps-open-prio ]] && ((i > 1)) && prio=1
    env ${gpu_uuid:+CUDA_VISIBLE_DEVICES=$gpu_uuid} CUDA_MPS_PIPE_DIRECTORY="$pipe" \
      CUDA_MPS_CLIENT_PRIORITY=$prio \
      CUDA_MPS_LOG_DIRECTORY="$logd" "$gs" worker --model-repository "$work/repo" \
      --http-port $((base + i)) --grpc-port 0 --metrics-port 0 --plan-before-ready all \
      >"$raw/$mode_label/worker$i.log" 2>&1 &
    bg_pids+=($!)
    ports+=($((base + i)))
  done
  local deadline=$((SECONDS + start_s)) ready=0
  while ((SECONDS < deadline)); do
    ready=0
    for i in "${ports[@]}"; do
      curl -sf --max-time 1 "http://127.0.0.1:$i/v2/health/ready" >/dev/null && ready=$((ready + 1))
    done
    if ((ready == n_inst)); then
      [[ $mode_label == mps-open-prio ]] && priority_rows "${bg_pids[@]: -n_inst}"
      return 0
    fi
    sleep 0.2
  done
  log "$mode_label: $ready of $n_inst workers ready"
  return 1
}

# mps-prio: the first instance's worker started alone (`gpuslice run`, MPS
# client priority NORMAL), the others' through serve at BELOW_NORMAL. Sets
# ports (the victim's first).
prio_workers_up() {
  local port=$((${GS_ISOL_PORT_BASE:-18700} + 20)) id deadline victim
  if curl -s --max-time 1 -o /dev/null "http://127.0.0.1:$port/"; then
    log "mps-prio: port $port is taken (GS_ISOL_PORT_BASE)"
    return 1
  fi
  create_instances "$profile" "$n_inst" || return 1
  # not through gsm: its time limit would end the worker
  CUDA_MPS_CLIENT_PRIORITY=0 "$gs" --backend "$backend" --state-dir "$mode_state" \
    --isolation mps run -i "0:${inst_ids[0]}" -- "$gs" worker \
    --model-repository "$work/repo" --http-port "$port" --grpc-port 0 --metrics-port 0 \
    --plan-before-ready all >"$raw/$mode_label-victim.log" 2>&1 &
  victim=$!
  bg_pids+=("$victim")
  CUDA_MPS_CLIENT_PRIORITY=1 serve_up "$work/repo" "$(direct_targets "${inst_ids[@]:1}")" || return 1
  deadline=$((SECONDS + start_s))
  until curl -sf --max-time 1 "http://127.0.0.1:$port/v2/health/ready" >/dev/null; do
    ((SECONDS < deadline)) || { log "mps-prio: the victim's worker is not ready"; return 1; }
    kill -0 "$victim" 2>/dev/null || {
      log "mps-prio: the victim's worker ended: $(tail -n 1 "$raw/$mode_label-victim.log")"
      return 1
    }
    sleep 0.2
  done
  ports=("$port")
  local pids=()
  for id in "${inst_ids[@]:1}"; do
    ports+=("$(worker_field "0:$id" http_port)")
    pids+=("$(worker_field "0:$id" pid)")
  done
  priority_rows "$victim" "${pids[@]}"
}
# priority_rows VICTIM_PID NEIGHBOUR_PID...: the MPS client priority each
# worker really got (its /proc environment), as two rows.
priority_rows() {
  local victim=$1 low=0 pid
  shift
  for pid in "$@"; do
    env_has "$pid" CUDA_MPS_CLIENT_PRIORITY=1 && low=$((low + 1))
  done
  row "$mode_label" setup neighbours - below_normal_workers "$low" "of $#"
  row "$mode_label" setup victim - below_normal_workers "$(env_has "$victim" CUDA_MPS_CLIENT_PRIORITY=1 && echo 1 || echo 0)"
}
env_has() { tr '\0' '\n' <"/proc/$1/environ" 2>/dev/null | grep -qx "$2"; }

# noisy_round MODE CASE HOW LEVEL: six neighbours at batch 64 (HOW: conc or
# rate) for the whole of one victim measurement.
noisy_round() {
  local mode=$1 case=$2 how=$3 level=$4 i p pids=() nw r sum=0
  nw=$(((settle_s * 1000 + 3 * window + ${GS_ISOL_NOISY_MARGIN_MS:-2000}) / 3))
  for ((i = 1; i < ${#ports[@]}; i++)); do
    PERF_WINDOW=$nw perf_level "$mode_label-$case-noisy$i" "${ports[$i]}" "$model" "$noisy_batch" "$level" \
      ${how/conc/} >"$work/noisy$i.out" &
    pids+=($!)
  done
  sleep "$settle_s"
  r=$(perf_level "$mode_label-$case-victim" "${ports[0]}" "$model" 1 "$victim_conc")
  for p in "${pids[@]}"; do wait "$p"; done
  for ((i = 1; i < ${#ports[@]}; i++)); do
    read -r ips _ <"$work/noisy$i.out" 2>/dev/null || ips=
    [[ -n $ips ]] || { row "$mode" "$case" "neighbour$i" "$level" error 1 "noisy perf failed"; fail=1; continue; }
    sum=$(python3 -c 'import sys; print("%.1f" % (float(sys.argv[1]) + float(sys.argv[2])))' "$sum" "$ips")
  done
  row "$mode" "$case" neighbours "$level" infer_per_s "$sum" "$((${#ports[@]} - 1)) neighbours at batch $noisy_batch ($how $level)"
  if [[ -z $r ]]; then
    row "$mode" "$case" victim "$victim_conc" error 1 "victim perf failed"
    fail=1
    return 1
  fi
  read -r ips p50 p99 <<<"$r"
  row "$mode" "$case" victim "$victim_conc" infer_per_s "$ips"
  row "$mode" "$case" victim "$victim_conc" p50_ms "$p50"
  row "$mode" "$case" victim "$victim_conc" p99_ms "$p99"
  log "$mode $case: victim p99 $p99 ms beside $sum infer/s of neighbours"
}

# qos_limit MODE: for MODE-limit, serve's --rate-limit: the victim (the
# first instance) none, each neighbour limit_rate inferences a second.
qos_limit() {
  [[ $1 == *-limit ]] || return 0
  serve_extra=(--rate-limit "0:${inst_ids[0]}=0,$limit_rate")
  row "$1" setup neighbours - rate_limit "$limit_rate" "serve --rate-limit ${serve_extra[1]}"
}
# limit_rows: how many of each neighbour's requests waited for their turn,
# and how long in all (its worker's /metrics), and that the victim has no
# limit.
limit_rows() {
  local i m
  for ((i = 1; i < ${#ports[@]}; i++)); do
    m=$(curl -sf "http://127.0.0.1:${ports[$i]}/metrics" |
      awk '$1 == "gpuslice_rate_limited_requests" { n = $2 } $1 == "gpuslice_rate_limit_wait_us" { w = $2 }
           END { if (n != "") print n, w }')
    if [[ -n $m ]]; then
      row "$mode_label" noisy "neighbour$i" - rate_limited_requests "${m% *}"
      row "$mode_label" noisy "neighbour$i" - rate_limit_wait_us "${m#* }"
    else
      row "$mode_label" noisy "neighbour$i" - error 1 "no rate limit in its /metrics"
      fail=1
    fi
  done
  m=$(curl -sf "http://127.0.0.1:${ports[0]}/metrics")
  if grep -q '^nv_inference_request_success' <<<"$m"; then
    row "$mode_label" noisy victim - rate_limited "$(grep -c '^gpuslice_rate_limited_requests ' <<<"$m")" \
      "0: the victim has no limit"
  else
    row "$mode_label" noisy victim - error 1 "no /metrics from the victim"
    fail=1
  fi
}

part_qos() {
  local mode r id wp
  for mode in $modes; do
    budget_left "$mode" && mode_up "$mode" || continue
    log "mode $mode"
    ports=()
    if [[ $mode == mps-open* ]]; then
      open_workers_up || { row "$mode" solo - - error 1 "workers did not start"; fail=1; mode_down; continue; }
    elif [[ $mode == mps-prio ]]; then
      prio_workers_up || { row "$mode" solo - - error 1 "workers did not start"; fail=1; mode_down; continue; }
    elif create_instances "$profile" "$n_inst" && qos_limit "$mode" && serve_up "$work/repo"; then
      for id in "${inst_ids[@]}"; do ports+=("$(worker_field "0:$id" http_port)"); done
    else
      row "$mode" solo - - error 1 "no instances or no serve"
      fail=1
      mode_down
      continue
    fi
    warm_ports 1 "$victim_conc" "${ports[0]}" & # the victim at batch 1, the others at 64
    wp=$!
    warm_ports "$noisy_batch" "$noisy_conc" "${ports[@]:1}"
    wait "$wp"
    r=$(perf_level "$mode_label-solo" "${ports[0]}" "$model" 1 "$victim_conc")
    if [[ -n $r ]]; then
      read -r ips p50 p99 <<<"$r"
      row "$mode" solo victim "$victim_conc" infer_per_s "$ips"
      row "$mode" solo victim "$victim_conc" p50_ms "$p50"
      row "$mode" solo victim "$victim_conc" p99_ms "$p99"
      log "$mode solo: victim p99 $p99 ms"
    else
      row "$mode" solo victim "$victim_conc" error 1 "victim perf failed"
      fail=1
    fi
    noisy_round "$mode" noisy conc "$noisy_conc"
    [[ -n $pace_rate && $mode != *-limit ]] && noisy_round "$mode" paced rate "$pace_rate"
    [[ $mode == *-limit ]] && limit_rows
    mode_down
  done
}

# ---- faults -----------------------------------------------------------------------

part_faults() {
  local mode t0 t1 rc pid serving fault_inst
  for mode in $modes; do
    [[ $mode == mps-open* || $mode == mps-prio ]] && continue
    budget_left "$mode" && mode_up "$mode" || continue
    log "mode $mode"
    if ! create_instances "$profile" "$n_inst"; then
      row "$mode" fault - - error 1 "no instances"; fail=1; mode_down; continue
    fi
    fault_inst=${inst_ids[-1]}
    serving=("${inst_ids[@]:0:n_inst-1}")
    if ! serve_up "$work/repo" "$(direct_targets "${serving[@]}")"; then
      row "$mode" fault - - error 1 "no serve"; fail=1; mode_down; continue
    fi
    warm_instances "${serving[@]}"
    load_start $((settle_s + 2 * recover_s + 60)) --router "127.0.0.1:$serve_port" \
      --instances "$(direct_targets "${serving[@]}")" --router-clients 2
    sleep "$settle_s"
    t0=$(now)
    T=60 gsm run -i "0:$fault_inst" -- "$kit/probe_fault" fault >"$raw/$mode_label-probe_fault.txt" 2>&1
    rc=$? t1=$(now)
    mark fault "$t0" "$t1"
    row "$mode" fault "0:$fault_inst" - event 1 "probe_fault fault in an instance with no worker"
    row "$mode" fault "0:$fault_inst" - probe_exit "$rc" "4: the illegal address was reported; $(tail -n 1 "$raw/$mode_label-probe_fault.txt")"
    log "$mode: probe_fault exit $rc"
    sleep "$recover_s"
    pid=$(worker_field "0:${serving[0]}" pid)
    t0=$(now)
    if [[ -n $pid ]]; then
      kill -KILL "$pid"
      row "$mode" kill9 "0:${serving[0]}" - event 1 "kill -9 of its worker (pid $pid)"
    else
      row "$mode" kill9 "0:${serving[0]}" - error 1 "no ready worker to kill"
      fail=1
    fi
    mark kill9 "$t0" "$t0"
    sleep "$recover_s"
    serve_json | python3 -c 'import json,sys
for w in json.load(sys.stdin)["workers"]:
    print(w["instance"], w["restarts"], w["state"])' >"$work/restarts" 2>/dev/null
    while read -r id n st; do row "$mode" restarts "$id" - worker_restarts "$n" "$st"; done <"$work/restarts"
    load_stop faults
    mode_down
  done
}

# ---- reconfiguration ------------------------------------------------------------

write_config() { # FILE NAME COUNT ...
  local f=$1
  shift
  { echo "version: v1"; echo "mig-configs:"
    while (($#)); do
      printf '  %s:\n    - devices: all\n      mig-enabled: true\n      mig-devices:\n        "%s": %s\n' \
        "$1" "$profile_name" "$2"
      shift 2
    done; } >"$f"
}

# staying_pids ID...: the worker pid of each instance, one line.
staying_pids() { local id; for id in "$@"; do worker_field "0:$id" pid; done | tr '\n' ' '; }

part_reconfig() {
  local mode t0 t1 t2 rc new id staying tries pids0 pids1 moved
  for mode in $modes; do
    [[ $mode == mps-open* || $mode == mps-prio ]] && continue
    budget_left "$mode" && mode_up "$mode" || continue
    log "mode $mode"
    if ! create_instances "$profile" $((n_inst - 1)) || ! serve_up "$work/repo"; then
      row "$mode" create - - error 1 "no instances or no serve"; fail=1; mode_down; continue
    fi
    staying=("${inst_ids[@]}")
    write_config "$work/reconfig.yaml" gs-isol-fewer $((n_inst - 1)) gs-isol-more "$n_inst"
    warm_instances "${staying[@]}"
    pids0=$(staying_pids "${staying[@]}")
    load_start $((4 * settle_s + start_s)) --router "127.0.0.1:$serve_port" \
      --instances "$(direct_targets "${staying[@]}")"
    sleep "$settle_s"
    t0=$(now)
    T=60 gsm apply -f "$work/reconfig.yaml" -c gs-isol-more >"$raw/$mode_label-apply-more.txt" 2>&1
    rc=$? t1=$(now)
    wait_workers "$n_inst"
    t2=$(now)
    mark create "$t0" "$t1"
    row "$mode" create - - apply_exit "$rc" "$(tail -n 1 "$raw/$mode_label-apply-more.txt")"
    row "$mode" create - - apply_s "$(elapsed "$t0" "$t1")"
    row "$mode" create - - serving_s "$(elapsed "$t0" "$t2")" "apply start to the new worker ready"
    read_instances
    new=
    for id in "${inst_ids[@]}"; do [[ " ${staying[*]} " == *" $id "* ]] || new=$id; done
    log "$mode: created 0:$new in $(elapsed "$t0" "$t1") s, serving after $(elapsed "$t0" "$t2") s"
    sleep "$settle_s"
    t0=$(now)
    [[ -n $new ]] && T=30 gsm serve --remove "0:$new" >"$raw/$mode_label-apply-fewer.txt" 2>&1
    for ((tries = 0; tries < 100; tries++)); do # until the worker has let go
      T=60 gsm apply -f "$work/reconfig.yaml" -c gs-isol-fewer >>"$raw/$mode_label-apply-fewer.txt" 2>&1
      rc=$?
      ((rc == 0)) && break
      sleep 0.05
    done
    t1=$(now)
    mark destroy "$t0" "$t1"
    row "$mode" destroy "0:$new" - apply_exit "$rc" "$((tries + 1)) tries; $(tail -n 1 "$raw/$mode_label-apply-fewer.txt")"
    row "$mode" destroy "0:$new" - apply_s "$(elapsed "$t0" "$t1")" "serve --remove then apply"
    log "$mode: destroyed 0:$new in $(elapsed "$t0" "$t1") s ($((tries + 1)) applies)"
    sleep "$settle_s"
    load_stop reconfig
    # green: the six share one process, which takes and lets go of the
    # seventh without a restart (its control pipe); a restart shows here
    pids1=$(staying_pids "${staying[@]}")
    moved=$(python3 -c "import sys
a, b = sys.argv[1].split(), sys.argv[2].split()
print(sum(x != y for x, y in zip(a, b)) + abs(len(a) - len(b)))" "$pids0" "$pids1")
    row "$mode" destroy - - staying_restarted "$moved" "staying instances whose worker pid changed over create and destroy (before: $pids0; after: $pids1)"
    log "$mode: staying workers' pids before $pids0, after $pids1 ($moved changed)"
    grep -h "restart with\|joins the workers\|could not join\|left the workers" "$raw/$mode_label-serve.log" 2>/dev/null | tail -n 6 || true
    mode_down
  done
}

# ---- memory ---------------------------------------------------------------------

part_memory() {
  local mode t0 t1 rc serving last big msg
  for mode in $modes; do
    [[ $mode == mps-open* || $mode == mps-prio ]] && continue
    budget_left "$mode" && mode_up "$mode" || continue
    log "mode $mode"
    if ! create_instances "$profile" "$n_inst"; then
      row "$mode" overalloc - - error 1 "no instances"; fail=1; mode_down; continue
    fi
    last=${inst_ids[-1]}
    serving=("${inst_ids[@]:0:n_inst-1}")
    if ! serve_up "$work/repo" "$(direct_targets "${serving[@]}")"; then
      row "$mode" overalloc - - error 1 "no serve"; fail=1; mode_down; continue
    fi
    warm_instances "${serving[@]}"
    load_start $((3 * settle_s + 120)) --router "127.0.0.1:$serve_port" \
      --instances "$(direct_targets "${serving[@]}")"
    sleep "$settle_s"
    big=$((quota_mib + 2048))
    t0=$(now)
    T=120 gsm run -i "0:$last" -- "$kit/probe_alloc" "$big" >"$raw/$mode_label-probe_alloc.txt" 2>&1
    rc=$? t1=$(now)
    mark overalloc "$t0" "$t1"
    msg=$(grep -v '^$' "$raw/$mode_label-probe_alloc.txt" | tail -n 1)
    row "$mode" overalloc "0:$last" - event 1 "probe_alloc $big MiB in a ${quota_mib} MiB instance"
    row "$mode" overalloc "0:$last" - probe_exit "$rc" "3: out of memory; $msg"
    row "$mode" overalloc "0:$last" - allocated_mib "$(sed -n 's/.*"allocated_mib": *\([0-9]*\).*/\1/p' \
      "$raw/$mode_label-probe_alloc.txt" | tail -n 1)"
    log "$mode: probe_alloc $big MiB: exit $rc: $msg"
    sleep 1
    t0=$(now)
    T=60 gsm run -i "0:${serving[0]}" --memory 1G -- "$kit/probe_alloc" 256 >"$raw/$mode_label-run-memory.txt" 2>&1
    rc=$? t1=$(now)
    mark refusal "$t0" "$t1"
    msg=$(grep -v '^$' "$raw/$mode_label-run-memory.txt" | tail -n 1)
    row "$mode" refusal "0:${serving[0]}" - event 1 "run --memory 1G in an instance whose worker holds its memory"
    row "$mode" refusal "0:${serving[0]}" - run_exit "$rc" "$msg"
    log "$mode: run --memory 1G beside a worker: exit $rc: $msg"
    sleep "$settle_s"
    load_stop memory
    mode_down
  done
}

# ---- main ---------------------------------------------------------------------------

log "part $part on $gpu_name (driver $driver), backend $backend, modes: $modes"
prepare_model || { row - setup - - error 1 "no model"; fail=1; }
if ((fail == 0)); then
  "part_$part"
fi
log "done in $((SECONDS - t_start)) s; raw results in $raw"
python3 "$render_py" --budget-ms "$budget_ms" --date "$date_utc" --table "$part" "$csv"
exit $fail
