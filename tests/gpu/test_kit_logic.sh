#!/usr/bin/env bash
# ctest gpu_kit.logic: the GPU kit's judgement, without a GPU. It runs
# run_on_device.sh and run_two_gpus.sh against stand-ins (tests/gpu/standins:
# nvidia-smi, the probes, a gpuslice wrapper) and the project's fake NVML,
# CUDA driver and MPS, breaks one step at a time, and checks the rule the kit
# must keep: a step that does not run as expected is a FAIL row, the table
# comes last, and the exit is non-zero; a clean run exits 0. About three
# minutes (runs in parallel, two or three at a time; every run waits on its
# stand-ins; the two-GPU runs serve the CPU engine's mlp on eleven workers).
# env: GPUSLICE (the build's CLI), NVML_RECORD, GS_BUILD_DIR (for the fakes)
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${GS_BUILD_DIR:?GS_BUILD_DIR: the CMake build directory}
gpuslice=${GPUSLICE:-$build/gpuslice}
nvml_record=${NVML_RECORD:-$build/tests/nvml_record}
tmp=$(mktemp -d /tmp/gs-kit-logic-XXXXXX)
trap '[[ -n ${GS_KEEP:-} ]] || rm -rf "$tmp"' EXIT
fails=0
ok() { echo "ok: $1"; }
bad() { echo "FAIL: $1"; fails=$((fails + 1)); }

mkdir -p "$tmp/bin"
ln -s "$here/standins/nvidia-smi" "$tmp/bin/"
ln -s "$root/tests/fake_mps/nvidia-cuda-mps-control" "$tmp/bin/"
export PATH=$tmp/bin:$PATH GS_REAL_GPUSLICE=$gpuslice
export GPUSLICE_NVML_LIBRARY=$build/tests/fake_nvml/current/libnvidia-ml.so.1
export GPUSLICE_CUDA_LIBRARY=$build/tests/fake_cuda/libcuda.so.1
export GPUSLICE_MPS_CONTROL=$root/tests/fake_mps/nvidia-cuda-mps-control
# Background clients get 1 s to start; B waits up to 10 s for A's fault and
# the two holders hold 8 s, margins for a loaded machine and ASan builds.
export GS_SETTLE_S=1 GS_STANDIN_LOOP_S=10 GS_STANDIN_HOLD_S=8
[[ -n ${GS_SANITIZE:-} ]] && export GPUSLICE_TEST_NO_ADDRESS_LIMIT=1 # ASan: no RLIMIT_AS in run

# kit NAME [WITHOUT]: a kit folder of stand-in probes, the wrapper and the
# real nvml_record; WITHOUT is left out.
kit() {
  local k=$tmp/$1/kit f
  mkdir -p "$k"
  for f in gpuslice probe_sm probe_alloc probe_fault; do
    [[ $f == "${2:-}" ]] || ln -s "$here/standins/$f" "$k/"
  done
  ln -s "$nvml_record" "$k/nvml_record"
  echo "$k"
}

# device NAME BREAKS [ENGINE_SCRIPT]: run_on_device.sh, one GPU; the exit
# code goes to NAME/rc, the output to NAME/log.
device() {
  local d=$tmp/$1
  mkdir -p "$d/standin"
  local k
  k=$(kit "$1" "${4:-}")
  GS_STANDIN_BREAK=$2 GS_STANDIN_DIR=$d/standin GS_CARRY=$k \
    GS_ENGINE_CHECK=${3:-$d/no_engine_check.sh} FAKE_NVML_CONFIG=h100-80gb:off \
    FAKE_CUDA_SMS=132 bash "$here/run_on_device.sh" "$d/out" >"$d/log" 2>&1
  echo $? >"$d/rc"
}
# two NAME BREAKS: run_two_gpus.sh on two fake GPUs, serving the CPU
# engine's `mlp` (scripts/make_models.py) instead of ResNet-50.
two() {
  local d=$tmp/$1
  mkdir -p "$d/standin"
  GS_STANDIN_BREAK=$2 GS_STANDIN_DIR=$d/standin GS_CARRY=$(kit "$1") \
    GS_SETTLE_S=2 FAKE_SMI_GPUS=2 FAKE_NVML_CONFIG=h100-80gb:off,h100-80gb:off \
    FAKE_CUDA_SMS=132,132 GS_TWO_REPO=$tmp/models GS_TWO_MODEL=mlp GS_TWO_LEVELS="1 4" \
    GS_TWO_WINDOW_MS=300 GS_TWO_PERF_ARGS="--shape input:1,64" \
    bash "$here/run_two_gpus.sh" "$d/out" >"$d/log" 2>&1
  echo $? >"$d/rc"
}
two_row() { # NAME CHECK: the two-GPU table's row
  awk -F' [|] ' -v c="$2" '{ k = $1; sub(/ +$/, "", k) } k == c { print; exit }' \
    "$tmp/$1/out/two_gpus_summary.txt" 2>/dev/null
}
expect_two_row() { # NAME CHECK RESULT [OBSERVED-PATTERN]
  local r
  r=$(two_row "$1" "$2")
  if [[ $r =~ \|\ $3$ ]] && { [[ -z ${4:-} ]] || grep -qE -- "$4" <<<"$r"; }; then
    ok "$1: '$2' is $3${4:+ ($4)}"
  else
    bad "$1: '$2' should be $3${4:+ ($4)}: ${r:-no row}"
  fi
}
python3 "$root/scripts/make_models.py" --models mlp --out "$tmp/models" >"$tmp/models.log" 2>&1 ||
  bad "make_models.py (python3-onnx) for the two-GPU runs: $(tail -1 "$tmp/models.log")"

# The table's row for CHECK in run NAME.
row() {
  awk -F' [|] ' -v c="$2" '{ k = $1; sub(/ +$/, "", k) } k == c { print; exit }' \
    "$tmp/$1/out/summary.txt" 2>/dev/null
}
# expect NAME RC: the exit code, and the table as the output's last lines.
expect_rc() {
  local got
  got=$(cat "$tmp/$1/rc")
  [[ $got == "$2" ]] && ok "$1: exit $2" || { bad "$1: exit $got, expected $2"; tail -n 30 "$tmp/$1/log"; }
}
table_last() {
  tail -n 1 "$tmp/$1/log" | grep -q "$2" && ok "$1: the table ends the output ($2)" ||
    bad "$1: last line: $(tail -n 1 "$tmp/$1/log")"
}
# expect_row NAME CHECK RESULT [OBSERVED-PATTERN]
expect_row() {
  local r
  r=$(row "$1" "$2")
  if [[ $r =~ \|\ $3$ ]] && { [[ -z ${4:-} ]] || grep -qE -- "$4" <<<"$r"; }; then
    ok "$1: '$2' is $3${4:+ ($4)}"
  else
    bad "$1: '$2' should be $3${4:+ ($4)}: ${r:-no row}"
  fi
}

cat >"$tmp/engine_pass.sh" <<'EOF'
echo "engine stand-in: 3 models, outputs match the CPU provider"
EOF
# Fails, and changes a setting the kit must leave alone (stand-in only).
cat >"$tmp/engine_fail.sh" <<'EOF'
echo Exclusive_Process >"$GS_STANDIN_DIR/compute_mode"
echo "engine stand-in: resnet50 output differs"
exit 1
EOF

start=$SECONDS
device clean "" "$tmp/engine_pass.sh" &
device profiles profiles &
device faultless fault_nofault,third_error "$tmp/engine_fail.sh" &
wait
device hang fault_hang &
device nostart fault_setup &
device loopdead loop_setup,alloc_nooom &
wait
device noprobe "" "" probe_sm &
two two_clean "" &
wait
two two_faultless fault_nofault &
two two_spread fault_spread &
wait
# Interrupted from outside as `timeout` does it (TERM to the whole process
# group, the log's tee included) in the middle of step 4: still the table,
# still non-zero, and no process or MPS daemon of ours left.
mkdir -p "$tmp/term/standin"
GS_STANDIN_DIR=$tmp/term/standin GS_CARRY=$(kit term) GS_SETTLE_S=3 \
  GS_ENGINE_CHECK=/nonexistent FAKE_NVML_CONFIG=h100-80gb:off FAKE_CUDA_SMS=132 \
  setsid bash "$here/run_on_device.sh" "$tmp/term/out" >"$tmp/term/log" 2>&1 &
pid=$!
for _ in $(seq 300); do
  grep -q '4d fault isolation' "$tmp/term/log" 2>/dev/null && break
  sleep 0.2
done
kill -TERM -- "-$pid"
wait "$pid"
echo $? >"$tmp/term/rc"
echo "gpu_kit.logic: runs took $((SECONDS - start)) s"

expect_rc clean 0
table_last clean "run_on_device: OK: 0 FAIL"
expect_row clean "memory: quota over two processes" PASS "refused by run"
expect_row clean "fault in A, B under MPS" PASS
expect_row clean "fault in A, B --isolation process" PASS
expect_row clean "engine check" PASS "3 models"
expect_row clean "GPU settings unchanged" PASS
expect_row clean "MPS daemons gone after destroy" PASS

expect_rc profiles 1
table_last profiles "run_on_device: FAILED"
expect_row profiles "soft: 1g instances" FAIL "profiles: exit 1"
expect_row profiles "SM caps (MPS percentage)" FAIL "did not run"
expect_row profiles "fault in A, B under MPS" FAIL "did not run"
expect_row profiles "MPS daemons gone after destroy" PASS

expect_rc faultless 1
expect_row faultless "fault in A, B under MPS" FAIL "A never faulted"
expect_row faultless "fault in A, B --isolation process" FAIL "A never faulted"
expect_row faultless "memory: quota over two processes" FAIL "third exit 1, not a refusal"
expect_row faultless "engine check" FAIL "resnet50 output differs"
expect_row faultless "GPU settings unchanged" FAIL "Exclusive_Process"

expect_rc hang 1
expect_row hang "fault in A, B under MPS" FAIL "A timed out"
expect_rc nostart 1
expect_row nostart "fault in A, B under MPS" FAIL "A failed to start"
expect_rc loopdead 1
expect_row loopdead "fault in A, B under MPS" FAIL "B failed to start"
expect_row loopdead "fault in A, B --isolation process" FAIL "B failed to start"
expect_row loopdead "memory: over quota in one instance" FAIL "exit 1"

expect_rc noprobe 1
table_last noprobe "run_on_device: FAILED"
expect_row noprobe "carried binaries" FAIL "missing: probe_sm"
expect_row noprobe "NVML fixture recorded" FAIL "did not run"

expect_rc term 1
table_last term "run_on_device: FAILED"
expect_row term "run_on_device.sh ran to the end" FAIL
expect_row term "GPU settings unchanged" FAIL "did not run: interrupted"
grep -q '^run_on_device: FAILED' "$tmp/term/out/run.log" && ok "term: run.log has the table too" ||
  bad "term: run.log lacks the table"
sleep 1
left=$(pgrep -f "$tmp/term")
for p in $(pgrep -x nvidia-cuda-mps); do # the fake daemon's name, too
  grep -qF "$tmp/term" "/proc/$p/environ" 2>/dev/null && left+=" $p"
done
if [[ -n ${left// /} ]]; then
  bad "term: processes of the interrupted run remain: $(ps -o pid,args -p ${left// /,})"
else
  ok "term: nothing of the interrupted run remains (MPS quit)"
fi

expect_rc two_clean 0
tail -n 1 "$tmp/two_clean/log" | grep -q "run_two_gpus: OK" && ok "two_clean: table last" ||
  bad "two_clean: last line $(tail -n 1 "$tmp/two_clean/log")"
for c in "dry run of the per-GPU config" "per-GPU layout applied (soft, MPS)" \
  "one MPS control daemon per GPU" "sweep through the router" "every instance served in the sweep" \
  "apply changing only GPU 1 (4g -> 3g)" "GPU 1 new 3g serves" "device plugin: both GPUs by profile" \
  "fault on GPU 0 (process)" "GPU 0 neighbours after the fault (process)" "MPS daemons after destroy"; do
  expect_two_row two_clean "$c" PASS
done
expect_two_row two_clean "serve: every instance behind one router" PASS "7 on GPU 0, 4 on GPU 1"
expect_two_row two_clean "GPU 0 neighbours after the fault (MPS)" PASS "^.*\| [1-9][0-9]* failed of"
expect_two_row two_clean "GPU 1 during the GPU 0 fault (MPS)" PASS "\| 0 failed of [1-9]"
expect_two_row two_clean "GPU 0 requests during the GPU 1 apply" PASS "\| 0 failed of [1-9][0-9]*; pids same"
expect_two_row two_clean "device plugin: GPU 0 MPS daemon killed" PASS "GPU0 0/7 GPU1 3/0"
[[ $(grep -c '| PASS$' "$tmp/two_clean/out/two_gpus_summary.txt" 2>/dev/null) == 20 ]] &&
  ok "two_clean: 20 rows, all PASS" || bad "two_clean: not 20 PASS rows: $(cat "$tmp/two_clean/out/two_gpus_summary.txt")"
[[ -f $tmp/two_clean/out/two_gpus_load.tar.gz && -s $tmp/two_clean/out/two_gpus_sweep.txt ]] &&
  ok "two_clean: the loads and the sweep are kept" || bad "two_clean: $(ls "$tmp/two_clean/out")"
expect_rc two_spread 1
expect_two_row two_spread "GPU 1 during the GPU 0 fault (MPS)" FAIL "[1-9][0-9]* failed of"
expect_two_row two_spread "GPU 1 during the GPU 0 fault (process)" PASS
expect_rc two_faultless 1
grep -E '^fault on GPU 0 .*never faulted.*FAIL$' "$tmp/two_faultless/out/two_gpus_summary.txt" >/dev/null &&
  ok "two_faultless: the fault that never came is a FAIL" ||
  bad "two_faultless: $(cat "$tmp/two_faultless/out/two_gpus_summary.txt")"

echo "test_kit_logic: $fails failure(s) in $SECONDS s"
[[ $fails -eq 0 ]]
