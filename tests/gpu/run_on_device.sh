#!/usr/bin/env bash
# The GPU verification run: the one script to run on the GPU machine,
#   GS_CARRY=.gpukit bash tests/gpu/run_on_device.sh "$OUT"
# with the kit of tests/gpu/build_carry.sh carried (binaries and lib/,
# which this script puts on LD_LIBRARY_PATH). Steps:
#   1 environment (nvidia-smi -L, driver, GPU, MIG mode and the settings
#     this run must not change: recorded), the carried gpuslice starts
#   2 check_nvml_readout.sh: NVML = nvidia-smi = gpuslice's table
#   3 the NVML fixture, to OUT/nvml_fixture.json
#   4 soft backend (MPS), if built: seven 1g instances, SM caps (probe_sm),
#     memory quotas (probe_alloc), fault isolation (probe_fault) under MPS
#     and under --isolation process; then everything destroyed and the MPS
#     daemons checked gone
#   5 tests/gpu/engine_check.sh, when that file exists (GS_ENGINE_CHECK
#     names another): PASS on exit 0, SKIP on 77, FAIL otherwise
#   6 the GPU's settings are what step 1 found
# It never changes clocks, power, compute mode or MIG mode and never resets
# the GPU; MPS runs only with private pipe and log directories and is quit
# before the script ends. Every check that is planned but does not run (a
# step failed early, the script stopped) is a FAIL. Ends with a table
# (check, expected, observed, result). OUT gets at most seven files:
# run.log, summary.txt, readout.txt, nvml_fixture.json, soft.txt,
# nvidia-smi-q.txt, engine.txt.
# Exit: 0 no check failed; 1 some check failed or did not run; 77 no NVIDIA
# GPU here.
set -u

out=${1:?usage: run_on_device.sh OUTDIR}
mkdir -p "$out" || exit 1
out=$(cd "$out" && pwd)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
# The kit: GS_CARRY, else .gpukit, else the older .carry.
carry=${GS_CARRY:-}
if [[ -z $carry ]]; then
  carry=$root/.gpukit
  [[ ! -d $carry && -d $root/.carry ]] && carry=$root/.carry
fi
carry=$(cd "$carry" 2>/dev/null && pwd || echo "$carry")
export LD_LIBRARY_PATH=$carry/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
gs=$carry/gpuslice
engine_check=${GS_ENGINE_CHECK:-$here/engine_check.sh}
# Steps stop starting new work after budget_s; cleanup needs at most ~2 min
# more, inside the machine's 10-minute limit per command.
budget_s=${GS_DEVICE_BUDGET_S:-380}
# Test hooks: run step 4 against another backend (host) to try the
# script; wait less for background clients to start (stand-in probes).
soft_backend=${GS_SOFT_BACKEND:-soft}
settle() { sleep "${GS_SETTLE_S:-$1}"; }
tmp=$(mktemp -d /tmp/gs-gpu-XXXXXX) || exit 1
soft_log=$out/soft.txt
: >"$soft_log"

exec 3>&1 4>&2
exec > >(tee -a "$out/run.log") 2>&1
tee_pid=$!

checks=() expected=() observed=() results=()
declare -A planned=() # check -> what it expects, until it is recorded
plan_order=()
plan() { # CHECK EXPECTED: a check that must be recorded before the end
  planned[$1]=$2
  plan_order+=("$1")
}
record() { # CHECK EXPECTED OBSERVED PASS|FAIL|SKIP|NOTE
  checks+=("$1") expected+=("$2") observed+=("$3") results+=("$4")
  unset "planned[$1]"
  printf '== %s: %s (expected: %s; observed: %s)\n' "$4" "$1" "$2" "$3"
}
verdict() { "$@" && echo PASS || echo FAIL; } # verdict TEST...: PASS or FAIL
# What a wrapped command's exit status says (timeout's 124 and 137 too).
how() {
  case $1 in
  124) echo "timed out" ;;
  137) echo "killed after its time limit" ;;
  126 | 127) echo "could not start (exit $1)" ;;
  *) echo "exit $1" ;;
  esac
}
step() { printf '\n######## %s (%ss left)\n' "$1" "$(left)"; }
left() { echo $((budget_s - SECONDS)); }
# JSON helper: jq-like, with Python: j FILE 'expression over d'
j() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }
# The last JSON line a probe printed (stdout file), or {}.
last_json() { grep '^{' "$1" 2>/dev/null | tail -n 1 || true; }
field() { # FIELD of the probe's JSON in FILE
  python3 -c 'import json,sys
try: print(json.loads(sys.argv[1]).get(sys.argv[2]))
except Exception: print("?")' "$(last_json "$1")" "$2"
}
soft_keep() { # LABEL FILE...: into soft.txt, which comes back
  {
    echo "---- $1"
    shift
    for f in "$@"; do [[ -s $f ]] && cat "$f"; done
  } >>"$soft_log"
}

print_summary() {
  local i n_fail=0 n_pass=0 n_other=0
  for i in "${!checks[@]}"; do
    case ${results[i]} in
    FAIL) n_fail=$((n_fail + 1)) ;;
    PASS) n_pass=$((n_pass + 1)) ;;
    *) n_other=$((n_other + 1)) ;;
    esac
  done
  {
    printf '\n%-40s | %-34s | %-44s | %s\n' CHECK EXPECTED OBSERVED RESULT
    printf '%s\n' "$(printf '%.0s-' {1..132})"
    for i in "${!checks[@]}"; do
      printf '%-40s | %-34s | %-44s | %s\n' "${checks[i]}" "${expected[i]}" \
        "${observed[i]}" "${results[i]}"
    done
    printf '%s\n' "$(printf '%.0s-' {1..132})"
    printf 'run_on_device: %s: %d FAIL, %d PASS, %d SKIP/NOTE in %ds\n' \
      "$([[ $n_fail -eq 0 ]] && echo OK || echo FAILED)" "$n_fail" "$n_pass" \
      "$n_other" "$SECONDS"
  } | tee "$out/summary.txt"
}

finished=0
# finish RC: planned checks that never ran become FAILs (not on 77: no
# GPU, nothing was meant to run); the table comes last; exit 1 on any FAIL.
finish() {
  local rc=$1 c r
  finished=1
  trap - EXIT
  if [[ $rc -ne 77 ]]; then
    for c in "${plan_order[@]}"; do
      [[ -n ${planned[$c]+set} ]] &&
        record "$c" "${planned[$c]}" "did not run: ${stopped_why:-an earlier step failed}" FAIL
    done
    for r in "${results[@]}"; do [[ $r == FAIL ]] && rc=1; done
  fi
  # No MPS daemon of ours outlives the script, however it ends.
  declare -F mps_quit >/dev/null && mps_quit >/dev/null 2>&1
  echo "run_on_device: files in $out: $(cd "$out" && echo *)"
  print_summary
  exec 1>&3 2>&4
  wait "$tee_pid" 2>/dev/null
  rm -rf "$tmp"
  exit "$rc"
}
stopped_why=""
# Whatever ends the script early (a bug, set -u, a signal) still gives the
# table and a non-zero exit.
on_exit() {
  local rc=$1
  [[ $finished -eq 1 ]] && return
  stopped_why=${stopped_why:-the script stopped early (exit $rc)}
  record "run_on_device.sh ran to the end" "all steps" "stopped (exit $rc)" FAIL
  finish 1
}
trap 'on_exit $?' EXIT
# kill_tree PID: TERM to every descendant of PID but the log's tee.
kill_tree() {
  local p
  for p in $(pgrep -P "$1"); do
    [[ $p == "$tee_pid" ]] && continue
    kill_tree "$p"
    kill -TERM "$p" 2>/dev/null
  done
}
# Killed from outside (the machine's time limit): the table still comes,
# and no process or MPS daemon of ours outlives the command. `timeout`
# signals the whole process group, the log's tee too: a new one takes over.
# (So the script's own time limits use `timeout --foreground`, which stays
# in that group; only the engine check has a group of its own, and is
# reached by kill_tree.)
interrupted() {
  trap '' PIPE
  exec > >(tee -a "$out/run.log" >&3) 2>&1
  tee_pid=$!
  echo "run_on_device: interrupted"
  kill_tree $$
  stopped_why="interrupted"
  exit 1
}
trap interrupted TERM INT HUP

# ---- 1 environment -------------------------------------------------------
step "1 environment"
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L; then
  record "environment" "an NVIDIA GPU" "no nvidia-smi / no GPU" SKIP
  finish 77
fi
plan "carried binaries" "in the kit"
plan "carried gpuslice starts" "--version, info"
plan "NVML = nvidia-smi = catalog" "all profiles agree"
plan "NVML fixture recorded" "a GPU with MIG profiles"
soft_rows=("soft: 1g instances" "SM caps (MPS percentage)"
  "SM sets of concurrent instances" "memory: over quota in one instance"
  "memory: within quota" "memory: quota over two processes"
  "memory: neighbour while A is full" "fault in A, B under MPS"
  "MPS usable after the fault" "fault in A, B --isolation process"
  "MPS daemons gone after destroy")
for c in "${soft_rows[@]}"; do plan "$c" "see step 4"; done
plan "engine check" "engine_check.sh passes"
plan "GPU settings unchanged" "as found"
# The settings this run must leave alone, read again at the end.
settings() {
  nvidia-smi --query-gpu=index,compute_mode,mig.mode.current,mig.mode.pending,persistence_mode,power.limit,clocks.applications.graphics,clocks.applications.memory --format=csv,noheader 2>/dev/null ||
    nvidia-smi --query-gpu=index,compute_mode,mig.mode.current,mig.mode.pending,persistence_mode --format=csv,noheader 2>&1
}
settings_before=$(settings)
echo "settings: $settings_before"
nvidia-smi --query-gpu=index,name,driver_version,memory.total,mig.mode.current,mig.mode.pending,compute_mode,persistence_mode --format=csv
timeout --foreground 60 nvidia-smi -q >"$out/nvidia-smi-q.txt" 2>&1
uname -a
grep -E '^(PRETTY_NAME|VERSION_ID)=' /etc/os-release
command -v nvcc >/dev/null && nvcc --version | tail -n 2
gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)
driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -n 1)
mig_mode=$(nvidia-smi --query-gpu=mig.mode.current --format=csv,noheader | head -n 1)
mps_before=$(pgrep -d ' ' -x nvidia-cuda-mps)
echo "MPS daemons before this run: ${mps_before:-none}"
record "environment" "an NVIDIA GPU" "$gpu_name, driver $driver, MIG $mig_mode" PASS
missing=""
for b in gpuslice nvml_record probe_sm probe_alloc probe_fault; do
  [[ -x $carry/$b ]] || missing+=" $b"
done
if [[ -n $missing ]]; then
  record "carried binaries" "in $carry" "missing:$missing" FAIL
  echo "run tests/gpu/build_carry.sh here and carry its folder (GS_CARRY)"
  finish 1
fi
record "carried binaries" "in the kit" "$carry" PASS
[[ -f $carry/KIT.txt ]] && head -n 6 "$carry/KIT.txt"
if "$gs" --version && timeout --foreground 60 "$gs" info; then
  record "carried gpuslice starts" "--version, info" "works" PASS
else
  rc=$?
  record "carried gpuslice starts" "--version, info" \
    "$(how $rc); missing: $(ldd "$gs" 2>&1 | awk '/not found/ {printf "%s ", $1}')" FAIL
fi

# ---- 2 NVML readout ------------------------------------------------------
step "2 NVML readout vs nvidia-smi vs catalog"
NVML_RECORD=$carry/nvml_record GPUSLICE=$gs \
  bash "$here/check_nvml_readout.sh" "$tmp/readout" >"$tmp/readout.out" 2>&1
rc=$?
cat "$tmp/readout.out"
{
  cat "$tmp/readout.out"
  for f in lgip.txt lgipp.txt; do
    echo "---- $f"
    cat "$tmp/readout/$f" 2>/dev/null
  done
} >"$out/readout.txt"
readout=$(grep '^readout:' "$tmp/readout.out" | sed 's/^readout: //' | tail -n 1)
grep -q 'listed no profiles' "$tmp/readout.out" &&
  readout+=" (nvidia-smi listed none: NVML vs table)"
case $rc in
0) record "NVML = nvidia-smi = catalog" "all profiles agree" "${readout:-ok}" PASS ;;
*) record "NVML = nvidia-smi = catalog" "all profiles agree" "${readout:-$(how $rc)}" FAIL ;;
esac

# ---- 3 fixture -----------------------------------------------------------
step "3 NVML fixture"
timeout --foreground 60 "$carry/nvml_record" >"$out/nvml_fixture.json"
rc=$?
fixture=$(j "$out/nvml_fixture.json" '"%d GPU(s), %d profile(s)" % (len(d["gpus"]), sum(1 for g in d["gpus"] for e in g["gi_profiles"] if e["rc"] == 0))' 2>/dev/null)
if [[ $rc -eq 0 && -n $fixture && $fixture != *", 0 profile"* ]]; then
  record "NVML fixture recorded" "a GPU with MIG profiles" "$fixture" PASS
else
  record "NVML fixture recorded" "a GPU with MIG profiles" "exit $rc; ${fixture:-unreadable}" FAIL
fi
"$gs" --backend mig info || true

# ---- 4 soft backend ------------------------------------------------------
export GPUSLICE_STATE_DIR=$tmp/state
export CUDA_MPS_PIPE_DIRECTORY=$tmp/mps/pipe CUDA_MPS_LOG_DIRECTORY=$tmp/mps/log
mkdir -p "$GPUSLICE_STATE_DIR" "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
in_cleanup=0
soft_global=() # global options for every soft call (--isolation process)
# gpuslice on the soft backend, under a time limit: T (default 120 s), cut
# to what the budget leaves unless cleaning up.
soft() {
  local t=${T:-120} l
  l=$(($(left) - 20))
  [[ $in_cleanup -eq 0 && $l -lt $t ]] && t=$((l > 5 ? l : 5))
  timeout --foreground -k 5 "$t" "$gs" --backend "$soft_backend" "${soft_global[@]}" "$@"
}
config=$tmp/soft.yaml
soft_skip() {
  local why=$1 c
  for c in "${soft_rows[@]}"; do record "$c" "-" "$why" SKIP; done
}

# Our MPS daemons: those whose environment names our private directories.
our_mps() {
  local pid
  # Both daemons' process name is "nvidia-cuda-mps" (15 characters).
  for pid in $(pgrep -x nvidia-cuda-mps); do
    tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qF "$tmp" && echo "$pid"
  done
}

# Quits every MPS control daemon listening in our directories.
mps_quit() {
  local dir
  for dir in $( (
    echo "$CUDA_MPS_PIPE_DIRECTORY"
    find "$tmp" -name control \( -type p -o -type s \) -printf '%h\n' 2>/dev/null
  ) | sort -u); do
    if [[ -e $dir/control ]]; then
      echo "quitting MPS at $dir"
      echo quit | CUDA_MPS_PIPE_DIRECTORY=$dir timeout --foreground 15 nvidia-cuda-mps-control
    fi
  done
}

soft_cleanup() {
  step "4e cleanup"
  in_cleanup=1
  [[ -f $config ]] && T=45 soft apply -f "$config" -c gs-verify-none
  T=30 soft destroy --all || true
  soft_global=()
  T=15 soft list || true
  mps_gone "MPS daemons gone after destroy"
  cat "$CUDA_MPS_LOG_DIRECTORY"/*.log 2>/dev/null | tail -n 40 >"$tmp/mps.log"
  soft_keep "MPS logs (last lines)" "$tmp/mps.log"
}

# mps_gone CHECK: quit every MPS daemon of ours; FAIL if one had to be
# terminated.
mps_gone() {
  local pids pid tries=0
  mps_quit
  while [[ -n $(our_mps) && $tries -lt 10 ]]; do
    sleep 1
    tries=$((tries + 1))
  done
  pids=$(our_mps | tr '\n' ' ')
  if [[ -n $pids ]]; then
    echo "MPS daemons still up after quit: $pids: terminating them by pid"
    for pid in $pids; do kill -TERM "$pid" 2>/dev/null; done
    sleep 3
    for pid in $(our_mps); do kill -KILL "$pid" 2>/dev/null; done
    record "$1" "none of ours left" "had to kill: $pids" FAIL
  else
    record "$1" "none of ours left" "none left" PASS
  fi
  echo "MPS daemons now (any owner): $(pgrep -d ' ' -x nvidia-cuda-mps)"
}

# Two instances' worth of fault checking: B loops, A faults. Prints B's
# exit code; callers add the run flags (e.g. --isolation process).
fault_pair() {
  local a=$1 b=$2 tag=$3 arc
  shift 3
  T=60 soft run -i "0:$b" "$@" -- "$carry/probe_fault" loop 15 \
    >"$tmp/fault_b_$tag.out" 2>"$tmp/fault_b_$tag.err" &
  local bpid=$!
  settle 5
  T=60 soft run -i "0:$a" "$@" -- "$carry/probe_fault" fault \
    >"$tmp/fault_a_$tag.out" 2>"$tmp/fault_a_$tag.err"
  arc=$?
  echo "A (fault) exit $arc: $(last_json "$tmp/fault_a_$tag.out")" >&2
  wait "$bpid"
  local brc=$?
  echo "B (loop) exit $brc: $(last_json "$tmp/fault_b_$tag.out")" >&2
  soft_keep "fault $tag: A then B" "$tmp/fault_a_$tag.out" \
    "$tmp/fault_a_$tag.err" "$tmp/fault_b_$tag.out" "$tmp/fault_b_$tag.err"
  echo "$arc $brc"
}

# What probe_fault's exit says: fault (A): 4 faulted, 5 the write went
# through, 1 setup failed; loop (B): 0 ran its time, 2 a CUDA error ended
# it, 1 setup failed. Anything else is the wrapper's (timeout, exec).
fault_a() {
  case $1 in
  4) echo "faulted" ;;
  5) echo "never faulted (exit 5)" ;;
  1) echo "failed to start (exit 1)" ;;
  *) how "$1" ;;
  esac
}
fault_b() {
  case $1 in
  0) echo "survived" ;;
  2) echo "ended by a CUDA error (exit 2)" ;;
  1) echo "failed to start (exit 1)" ;;
  *) how "$1" ;;
  esac
}

soft_checks() {
  step "4a soft backend: profiles and seven 1g instances"
  local rc
  soft --json profiles >"$tmp/soft_profiles.json" 2>"$tmp/soft_profiles.err"
  rc=$?
  if [[ $rc -ne 0 ]]; then
    cat "$tmp/soft_profiles.err"
    record "soft: 1g instances" "a 1g profile" \
      "profiles: $(how $rc): $(head -c 60 "$tmp/soft_profiles.err")" FAIL
    return 1
  fi
  # The 1g profile: ID 19 where the soft catalog keeps MIG's IDs, else the
  # smallest 1-slice profile without media extensions.
  read -r p_name p_sms p_mib p_max < <(python3 - "$tmp/soft_profiles.json" <<'EOF'
import json, sys
ps = json.load(open(sys.argv[1]))["devices"][0]["profiles"]
one = [p for p in ps if p["compute_slices"] == 1 and "+me" not in p["name"]]
p = next((p for p in ps if p["id"] == 19), None) or \
    min(one, key=lambda p: p["memory_mib"])
print(p["name"], p["sms"], p["memory_mib"], p["max_count"])
EOF
  )
  if [[ -z ${p_name:-} ]]; then
    record "soft: 1g instances" "a 1g profile" "none in soft profiles" FAIL
    return 1
  fi
  local n=$((p_max < 7 ? p_max : 7))
  cat >"$config" <<EOF
version: v1
mig-configs:
  gs-verify-1g:
    - devices: [0]
      mig-enabled: true
      mig-devices:
        "$p_name": $n
  gs-verify-none:
    - devices: [0]
      mig-enabled: false
EOF
  soft apply -f "$config" -c gs-verify-1g
  rc=$?
  soft --json list >"$tmp/soft_list.json"
  mapfile -t ids < <(j "$tmp/soft_list.json" '"\n".join(str(g["id"]) for g in d["devices"][0]["gpu_instances"])' 2>/dev/null)
  soft_keep "soft profiles, list" "$tmp/soft_profiles.json" "$tmp/soft_list.json"
  if [[ $rc -ne 0 || ${#ids[@]} -ne $n ]]; then
    record "soft: 1g instances" "$n x $p_name" "apply exit $rc, ${#ids[@]} instances" FAIL
    return 1
  fi
  record "soft: 1g instances" "$n x $p_name" "${#ids[@]} instances: ${ids[*]}" PASS

  step "4b SM caps: probe_sm in every instance at once"
  local id pids=() sms=() distinct=() bad=0
  for id in "${ids[@]}"; do
    T=120 soft run -i "0:$id" -- "$carry/probe_sm" >"$tmp/sm_$id.out" 2>"$tmp/sm_$id.err" &
    pids+=($!)
  done
  for i in "${!ids[@]}"; do
    wait "${pids[i]}" || bad=$((bad + 1))
    id=${ids[i]}
    sms+=("$(field "$tmp/sm_$id.out" device_sms)")
    distinct+=("$(field "$tmp/sm_$id.out" distinct_smids)")
    soft_keep "probe_sm in instance $id" "$tmp/sm_$id.out" "$tmp/sm_$id.err"
  done
  local over
  over=$(python3 -c 'import sys; cap=int(sys.argv[1]); v=[x for x in sys.argv[2:]]; print(sum(1 for x in v if not x.isdigit() or int(x) > cap))' "$p_sms" "${sms[@]}" "${distinct[@]}")
  local obs="device_sms ${sms[*]}; distinct ${distinct[*]}"
  if [[ $bad -eq 0 && $over -eq 0 ]]; then
    record "SM caps (MPS percentage)" "each <= $p_sms SMs" "$obs" PASS
  else
    record "SM caps (MPS percentage)" "each <= $p_sms SMs" "$obs; $bad failed" FAIL
  fi
  local overlap
  overlap=$(python3 - "$tmp" "${ids[@]}" <<'EOF'
import json, sys
sets = []
for i in sys.argv[2:]:
    try:
        line = [l for l in open("%s/sm_%s.out" % (sys.argv[1], i)) if l.startswith("{")][-1]
        sets.append(set(json.loads(line)["smids"]))
    except Exception:
        pass
shared = sum(1 for a in range(len(sets)) for b in range(a + 1, len(sets)) if sets[a] & sets[b])
print("%d of %d pairs share SMs; %d SMs used in all" % (shared, len(sets) * (len(sets) - 1) // 2, len(set().union(*sets)) if sets else 0))
EOF
  )
  record "SM sets of concurrent instances" "may overlap (cap, not partition)" "$overlap" NOTE

  step "4c memory quotas"
  local a=${ids[0]} b=${ids[1]:-${ids[0]}} q
  q=$(j "$tmp/soft_list.json" '[g["memory_mib"] for g in d["devices"][0]["gpu_instances"] if g["id"] == '"$a"'][0]' 2>/dev/null)
  [[ ${q:-0} =~ ^[0-9]+$ && $q -gt 0 ]] || q=$p_mib
  local within=$((q * 3 / 4 / 256 * 256)) over_q=$((q + 2048))
  T=120 soft run -i "0:$a" -- "$carry/probe_alloc" "$over_q" >"$tmp/alloc_over.out" 2>&1
  rc=$?
  soft_keep "probe_alloc $over_q in $a (quota $q)" "$tmp/alloc_over.out"
  record "memory: over quota in one instance" "$over_q MiB > $q: OOM (exit 3)" \
    "exit $rc, got $(field "$tmp/alloc_over.out" allocated_mib) MiB" "$([[ $rc -eq 3 ]] && echo PASS || echo FAIL)"
  T=120 soft run -i "0:$a" -- "$carry/probe_alloc" "$within" >"$tmp/alloc_within.out" 2>&1
  rc=$?
  soft_keep "probe_alloc $within in $a (quota $q)" "$tmp/alloc_within.out"
  record "memory: within quota" "$within MiB: ok (exit 0)" "exit $rc" "$([[ $rc -eq 0 ]] && echo PASS || echo FAIL)"

  # The quota spread over two processes with run --memory: the third,
  # asking for the rest, is refused either by gpuslice (nothing left to
  # give it: exit 1 naming the holders) or by the driver (probe_alloc's
  # out-of-memory exit 3). Any other exit is a failure.
  local half=$((q / 2))
  local each=$(((half - 512) / 256 * 256)) third=2048 p1 p2
  T=90 soft run -i "0:$a" --memory "${half}M" -- "$carry/probe_alloc" "$each" hold 20 >"$tmp/alloc_p1.out" 2>&1 &
  p1=$!
  T=90 soft run -i "0:$a" --memory "${half}M" -- "$carry/probe_alloc" "$each" hold 20 >"$tmp/alloc_p2.out" 2>&1 &
  p2=$!
  settle 8
  T=60 soft run -i "0:$a" -- "$carry/probe_alloc" "$third" >"$tmp/alloc_p3.out" 2>&1
  local rc3=$?
  T=60 soft run -i "0:$b" -- "$carry/probe_alloc" "$within" >"$tmp/alloc_nb.out" 2>&1
  local rcn=$?
  wait "$p1"
  local rc1=$?
  wait "$p2"
  local rc2=$?
  soft_keep "two holders (--memory ${half}M, $each MiB each), third $third MiB, neighbour $within MiB in $b" \
    "$tmp/alloc_p1.out" "$tmp/alloc_p2.out" "$tmp/alloc_p3.out" "$tmp/alloc_nb.out"
  local third_was third_ok=0 held1 held2 holders_ok=0
  if [[ $rc3 -eq 3 ]]; then
    third_was="out of memory (exit 3)" third_ok=1
  elif [[ $rc3 -eq 1 ]] && grep -q "no memory left" "$tmp/alloc_p3.out" &&
    ! grep -q '^{' "$tmp/alloc_p3.out"; then
    third_was="refused by run (exit 1)" third_ok=1
  else
    third_was="$(how $rc3), not a refusal"
  fi
  held1=$(field "$tmp/alloc_p1.out" allocated_mib)
  held2=$(field "$tmp/alloc_p2.out" allocated_mib)
  [[ $rc1 -eq 0 && $rc2 -eq 0 && $held1 == "$each" && $held2 == "$each" ]] && holders_ok=1
  record "memory: quota over two processes" "2x$each ok; +$third refused" \
    "holders $(how $rc1)/$held1, $(how $rc2)/$held2 MiB; third $third_was" \
    "$(verdict [ $holders_ok -eq 1 -a $third_ok -eq 1 ])"
  record "memory: neighbour while A is full" "$within MiB in $b: ok" "$(how $rcn)" \
    "$(verdict [ "$rcn" -eq 0 ])"

  step "4d fault isolation"
  if [[ ${#ids[@]} -lt 2 ]]; then
    record "fault in A, B under MPS" "-" "needs two instances" FAIL
    return 1
  fi
  local arc brc
  read -r arc brc < <(fault_pair "$a" "$b" mps)
  # MPS shares one server: B ending with A is what the notes say (PASS);
  # B surviving is worth knowing (NOTE); A not faulting, or either probe
  # not running its course, means the check did not happen (FAIL).
  local res=FAIL
  if [[ $arc -eq 4 && $brc -eq 2 ]]; then
    res=PASS
  elif [[ $arc -eq 4 && $brc -eq 0 ]]; then
    res=NOTE
  fi
  record "fault in A, B under MPS" "A faults (4); B ends (2) or survives" \
    "A $(fault_a "$arc"); B $(fault_b "$brc")" "$res"
  T=60 soft run -i "0:$a" -- "$carry/probe_sm" 512 200 >"$tmp/after_fault.out" 2>&1
  rc=$?
  soft_keep "probe_sm after the MPS fault" "$tmp/after_fault.out"
  record "MPS usable after the fault" "new client works" "$(how $rc)" \
    "$(verdict [ "$rc" -eq 0 ])"

  # --isolation process (a global option): a GPU's instances all run one
  # way, so the instances are made anew.
  soft apply -f "$config" -c gs-verify-none
  soft_global=(--isolation process) # also for run, list and cleanup
  soft apply -f "$config" -c gs-verify-1g
  rc=$?
  soft --json list >"$tmp/soft_list2.json"
  soft_keep "layout under --isolation process" "$tmp/soft_list2.json"
  mapfile -t ids < <(j "$tmp/soft_list2.json" '"\n".join(str(g["id"]) for g in d["devices"][0]["gpu_instances"])' 2>/dev/null)
  if [[ $rc -ne 0 || ${#ids[@]} -lt 2 ]]; then
    record "fault in A, B --isolation process" "A faults (4); B survives (0)" \
      "apply --isolation process: $(how $rc), ${#ids[@]} instances" FAIL
    return 1
  fi
  a=${ids[0]} b=${ids[1]}
  read -r arc brc < <(fault_pair "$a" "$b" process)
  record "fault in A, B --isolation process" "A faults (4); B survives (0)" \
    "A $(fault_a "$arc"); B $(fault_b "$brc")" \
    "$(verdict [ "$arc" -eq 4 -a "$brc" -eq 0 ])"
}


step "4 soft backend"
if [[ $mig_mode == Enabled ]]; then
  soft_skip "MIG mode is on (left as found)"
elif ! soft info >"$tmp/soft_info.txt" 2>&1; then
  cat "$tmp/soft_info.txt"
  if grep -qi "not built" "$tmp/soft_info.txt"; then
    soft_skip "soft backend not built yet"
  else
    record "soft backend info" "works" "$(head -c 60 "$tmp/soft_info.txt")" FAIL
  fi
else
  cat "$tmp/soft_info.txt"
  soft_keep "soft info" "$tmp/soft_info.txt"
  if [[ $(left) -lt 120 ]]; then
    stopped_why="out of time ($(left)s left at step 4)"
  else
    soft_checks
  fi
  soft_cleanup
fi

# ---- 5 engine check ------------------------------------------------------
# tests/gpu/engine_check.sh WORKDIR (written with the GPU inference engine):
# it gets the kit (GS_CARRY, GPUSLICE, LD_LIBRARY_PATH), a private state
# and MPS directory should it start soft instances, and a time limit;
# exit 0 PASS, 77 SKIP, anything else FAIL; its last line is the observed.
step "5 engine check"
if [[ ! -f $engine_check ]]; then
  record "engine check" "engine_check.sh passes" "no $(basename "$engine_check") in this tree" SKIP
else
  limit=$((${GS_ENGINE_CHECK_TIMEOUT_S:-180}))
  [[ $((555 - SECONDS)) -lt $limit ]] && limit=$((555 - SECONDS))
  if [[ $limit -lt 30 ]]; then
    record "engine check" "engine_check.sh passes" "did not run: out of time (${SECONDS}s used)" FAIL
  else
    mkdir -p "$tmp/engine/state" "$tmp/engine/mps/pipe" "$tmp/engine/mps/log"
    GS_CARRY=$carry GPUSLICE=$gs GPUSLICE_STATE_DIR=$tmp/engine/state \
      CUDA_MPS_PIPE_DIRECTORY=$tmp/engine/mps/pipe \
      CUDA_MPS_LOG_DIRECTORY=$tmp/engine/mps/log \
      timeout -k 10 "$limit" bash "$engine_check" "$tmp/engine/work" \
      >"$tmp/engine.out" 2>&1 &
    # Its own process group, so that its time limit ends all it started;
    # waited for in the background, so that an interruption is seen at once.
    wait $!
    rc=$?
    cat "$tmp/engine.out"
    tail -c 200000 "$tmp/engine.out" >"$out/engine.txt"
    last=$(grep -v '^[[:space:]]*$' "$tmp/engine.out" | tail -n 1 | cut -c 1-60)
    case $rc in
    0) record "engine check" "engine_check.sh passes" "${last:-exit 0}" PASS ;;
    77) record "engine check" "engine_check.sh passes" "skipped: ${last:-exit 77}" SKIP ;;
    *) record "engine check" "engine_check.sh passes" "$(how $rc): $last" FAIL ;;
    esac
    mps_gone "MPS daemons gone after the engine check"
  fi
fi

# ---- 6 settings ----------------------------------------------------------
step "6 GPU settings"
settings_after=$(settings)
if [[ $settings_after == "$settings_before" ]]; then
  record "GPU settings unchanged" "as found" "compute, MIG, persistence, power, clocks" PASS
else
  record "GPU settings unchanged" "as found" "before: $settings_before; after: $settings_after" FAIL
fi

finish 0
