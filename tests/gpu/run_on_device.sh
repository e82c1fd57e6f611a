#!/usr/bin/env bash
# The GPU verification run: the one script to run on the GPU machine,
#   bash tests/gpu/run_on_device.sh "$OUT"
# with the binaries of tests/gpu/build_carry.sh in .carry/ (carried). Steps:
#   1 environment (nvidia-smi -L, driver, GPU, MIG mode: recorded only)
#   2 check_nvml_readout.sh: NVML = nvidia-smi = gpuslice's table
#   3 the NVML fixture, to OUT/nvml_fixture.json
#   4 soft backend (MPS), if built: seven 1g instances, SM caps (probe_sm),
#     memory quotas (probe_alloc), fault isolation (probe_fault) under MPS
#     and under --isolation process; then everything destroyed and the MPS
#     daemons checked gone
# It never changes clocks, power, compute mode or MIG mode and never resets
# the GPU; MPS runs only with private pipe and log directories and is quit
# before the script ends. Ends with a table (check, expected, observed,
# result). OUT gets at most six files: run.log, summary.txt, readout.txt,
# nvml_fixture.json, soft.txt, nvidia-smi-q.txt.
# Exit: 0 no check failed; 1 some check failed; 77 no NVIDIA GPU here.
set -u

out=${1:?usage: run_on_device.sh OUTDIR}
mkdir -p "$out" || exit 1
out=$(cd "$out" && pwd)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
carry=${GS_CARRY:-$root/.carry}
gs=$carry/gpuslice
# Steps stop starting new work after budget_s; cleanup needs at most ~2 min
# more, inside the machine's 10-minute limit per command.
budget_s=${GS_DEVICE_BUDGET_S:-380}
# Test hook: run step 4 against another backend (host) to try the script.
soft_backend=${GS_SOFT_BACKEND:-soft}
tmp=$(mktemp -d /tmp/gs-gpu-XXXXXX) || exit 1
soft_log=$out/soft.txt
: >"$soft_log"

exec 3>&1 4>&2
exec > >(tee -a "$out/run.log") 2>&1
tee_pid=$!

checks=() expected=() observed=() results=()
record() { # CHECK EXPECTED OBSERVED PASS|FAIL|SKIP|NOTE
  checks+=("$1") expected+=("$2") observed+=("$3") results+=("$4")
  printf '== %s: %s (expected: %s; observed: %s)\n' "$4" "$1" "$2" "$3"
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
  {
    printf '\n%-44s | %-34s | %-44s | %s\n' CHECK EXPECTED OBSERVED RESULT
    printf '%s\n' "$(printf '%.0s-' {1..140})"
    for i in "${!checks[@]}"; do
      printf '%-44s | %-34s | %-44s | %s\n' "${checks[i]}" "${expected[i]}" \
        "${observed[i]}" "${results[i]}"
    done
  } | tee "$out/summary.txt"
}

finish() {
  local rc=$1
  print_summary
  echo "run_on_device: ${SECONDS}s; files in $out: $(cd "$out" && echo *)"
  exec 1>&3 2>&4
  wait "$tee_pid" 2>/dev/null
  rm -rf "$tmp"
  exit "$rc"
}

# ---- 1 environment -------------------------------------------------------
step "1 environment"
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L; then
  record "environment" "an NVIDIA GPU" "no nvidia-smi / no GPU" SKIP
  finish 77
fi
nvidia-smi --query-gpu=index,name,driver_version,memory.total,mig.mode.current,mig.mode.pending,compute_mode,persistence_mode --format=csv
timeout 60 nvidia-smi -q >"$out/nvidia-smi-q.txt" 2>&1
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
  echo "run tests/gpu/build_carry.sh here and carry .carry"
  finish 1
fi
"$gs" --version
"$gs" info || true

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
verdict=$(grep -E '^readout:|listed no profiles' "$tmp/readout.out" | tr '\n' ' ')
case $rc in
0) record "NVML = nvidia-smi = catalog" "all profiles agree" "${verdict:-ok}" PASS ;;
77) record "NVML = nvidia-smi = catalog" "all profiles agree" "skipped" SKIP ;;
*) record "NVML = nvidia-smi = catalog" "all profiles agree" "${verdict:-exit $rc}" FAIL ;;
esac

# ---- 3 fixture -----------------------------------------------------------
step "3 NVML fixture"
timeout 60 "$carry/nvml_record" >"$out/nvml_fixture.json"
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
  timeout -k 5 "$t" "$gs" --backend "$soft_backend" "${soft_global[@]}" "$@"
}
config=$tmp/soft.yaml
soft_skip() {
  local why=$1
  for c in "soft: 1g instances" "SM caps (MPS percentage)" \
    "memory quota" "fault isolation"; do
    record "$c" "-" "$why" SKIP
  done
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
    find "$tmp" -type p -name control -printf '%h\n' 2>/dev/null
  ) | sort -u); do
    if [[ -p $dir/control ]]; then
      echo "quitting MPS at $dir"
      echo quit | CUDA_MPS_PIPE_DIRECTORY=$dir timeout 15 nvidia-cuda-mps-control
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
  local pids tries=0
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
    record "MPS daemons gone after destroy" "none of ours left" "had to kill: $pids" FAIL
  else
    record "MPS daemons gone after destroy" "none of ours left" "none left" PASS
  fi
  echo "MPS daemons now (any owner): $(pgrep -d ' ' -x nvidia-cuda-mps)"
  cat "$CUDA_MPS_LOG_DIRECTORY"/*.log 2>/dev/null | tail -n 40 >"$tmp/mps.log"
  soft_keep "MPS logs (last lines)" "$tmp/mps.log"
}

# Two instances' worth of fault checking: B loops, A faults. Prints B's
# exit code; callers add the run flags (e.g. --isolation process).
fault_pair() {
  local a=$1 b=$2 tag=$3 arc
  shift 3
  T=60 soft run -i "0:$b" "$@" -- "$carry/probe_fault" loop 15 \
    >"$tmp/fault_b_$tag.out" 2>"$tmp/fault_b_$tag.err" &
  local bpid=$!
  sleep 5
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

fate() { [[ $1 -eq 0 ]] && echo survived || echo "failed (exit $1)"; }

soft_checks() {
  step "4a soft backend: profiles and seven 1g instances"
  soft --json profiles >"$tmp/soft_profiles.json" || return 1
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
  local rc=$?
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

  # The quota spread over two processes with run --memory, if run has it.
  local half=$((q / 2)) form="" f
  if "$gs" --backend "$soft_backend" run --help 2>&1 | grep -q -- '--memory'; then
    for f in "${half}MiB" "${half}M" "${half}m" "$((half / 1024))G"; do
      if T=60 soft run -i "0:$a" --memory "$f" -- true >/dev/null 2>&1; then
        form=$f
        break
      fi
    done
  fi
  if [[ -z $form ]]; then
    record "memory: quota over two processes" "-" "run has no usable --memory" SKIP
    record "memory: neighbour while A is full" "-" "needs the step above" SKIP
  else
    local each=$(((half - 512) / 256 * 256)) third=2048 p1 p2
    T=90 soft run -i "0:$a" --memory "$form" -- "$carry/probe_alloc" "$each" hold 20 >"$tmp/alloc_p1.out" 2>&1 &
    p1=$!
    T=90 soft run -i "0:$a" --memory "$form" -- "$carry/probe_alloc" "$each" hold 20 >"$tmp/alloc_p2.out" 2>&1 &
    p2=$!
    sleep 8
    T=60 soft run -i "0:$a" -- "$carry/probe_alloc" "$third" >"$tmp/alloc_p3.out" 2>&1
    local rc3=$?
    T=60 soft run -i "0:$b" -- "$carry/probe_alloc" "$within" >"$tmp/alloc_nb.out" 2>&1
    local rcn=$?
    wait "$p1"
    local rc1=$?
    wait "$p2"
    local rc2=$?
    soft_keep "two holders (--memory $form, $each MiB each), third $third MiB, neighbour $within MiB in $b" \
      "$tmp/alloc_p1.out" "$tmp/alloc_p2.out" "$tmp/alloc_p3.out" "$tmp/alloc_nb.out"
    local res=FAIL
    [[ $rc1 -eq 0 && $rc2 -eq 0 && $rc3 -ne 0 ]] && res=PASS
    record "memory: quota over two processes" "2x$each ok; +$third fails" \
      "exits $rc1,$rc2; third exit $rc3" "$res"
    record "memory: neighbour while A is full" "$within MiB in $b: ok" "exit $rcn" \
      "$([[ $rcn -eq 0 ]] && echo PASS || echo FAIL)"
  fi

  step "4d fault isolation"
  if [[ ${#ids[@]} -lt 2 ]]; then
    record "fault isolation" "-" "needs two instances" SKIP
    return 0
  fi
  local arc brc
  read -r arc brc < <(fault_pair "$a" "$b" mps)
  record "fault in A, B under MPS" "A faults (4); B fails (MPS, notes)" \
    "A exit $arc; B $(fate "$brc")" \
    "$([[ $arc -eq 4 && $brc -ne 0 ]] && echo PASS || echo NOTE)"
  T=60 soft run -i "0:$a" -- "$carry/probe_sm" 512 200 >"$tmp/after_fault.out" 2>&1
  rc=$?
  soft_keep "probe_sm after the MPS fault" "$tmp/after_fault.out"
  record "MPS usable after the fault" "new client works" "exit $rc" \
    "$([[ $rc -eq 0 ]] && echo PASS || echo FAIL)"

  # --isolation process: a global option, or one of run's, or of apply's.
  # A GPU's instances all run one way, so the instances are made anew.
  local iso=() apply_iso=()
  if "$gs" --help 2>&1 | grep -q -- '--isolation'; then
    apply_iso=(--isolation process)
  elif "$gs" --backend "$soft_backend" run --help 2>&1 | grep -q -- '--isolation'; then
    iso=(--isolation process)
  elif "$gs" --backend "$soft_backend" apply --help 2>&1 | grep -q -- '--isolation'; then
    apply_iso=(apply --isolation process)
  else
    record "fault in A, B --isolation process" "B survives" "no --isolation option" SKIP
    return 0
  fi
  if [[ ${#apply_iso[@]} -gt 0 ]]; then
    soft apply -f "$config" -c gs-verify-none
    if [[ ${apply_iso[0]} == apply ]]; then
      soft "${apply_iso[@]}" -f "$config" -c gs-verify-1g
    else
      soft_global=("${apply_iso[@]}") # also for run, list and cleanup
      soft apply -f "$config" -c gs-verify-1g
    fi
    soft --json list >"$tmp/soft_list2.json"
    soft_keep "layout under --isolation process" "$tmp/soft_list2.json"
    mapfile -t ids < <(j "$tmp/soft_list2.json" '"\n".join(str(g["id"]) for g in d["devices"][0]["gpu_instances"])' 2>/dev/null)
    a=${ids[0]:-$a} b=${ids[1]:-$b}
  fi
  read -r arc brc < <(fault_pair "$a" "$b" process "${iso[@]}")
  record "fault in A, B --isolation process" "A faults (4); B survives" \
    "A exit $arc; B $(fate "$brc")" \
    "$([[ $arc -eq 4 && $brc -eq 0 ]] && echo PASS || echo FAIL)"
}

# Killed from outside (the machine's time limit): no MPS daemon of ours may
# outlive the command.
trap 'echo "run_on_device: interrupted"; mps_quit; exit 1' TERM INT HUP

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
    soft_skip "out of time ($(left)s left)"
  else
    soft_checks
  fi
  soft_cleanup
fi

failed=0
for r in "${results[@]}"; do [[ $r == FAIL ]] && failed=1; done
finish "$failed"
