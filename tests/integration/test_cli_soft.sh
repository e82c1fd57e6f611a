# The soft backend through the CLI, on the test-only fakes of NVML, the
# CUDA driver and nvidia-cuda-mps-control (an H100 with MIG off): info
# says what is enforced, run hands a workload its GPU, SM percentage and
# memory share, the MPS daemon comes and goes with the instances, and bad
# input fails cleanly.
. "$(dirname "$0")/lib.sh"
BUILD=$(dirname "$GPUSLICE")
NVML="$BUILD/tests/fake_nvml/current/libnvidia-ml.so.1"
CUDA="$BUILD/tests/fake_cuda/libcuda.so.1"
if [ ! -f "$NVML" ] || [ ! -f "$CUDA" ]; then
  echo "skip: the fakes are not built next to $GPUSLICE"
  exit 77
fi
export GPUSLICE_BACKEND=soft GPUSLICE_NVML_LIBRARY="$NVML" GPUSLICE_CUDA_LIBRARY="$CUDA"
export GPUSLICE_MPS_CONTROL="$GS_SOURCE_DIR/tests/fake_mps/nvidia-cuda-mps-control"
export FAKE_NVML_CONFIG=h100-80gb:off FAKE_CUDA_SMS=132
GPU0=GPU-fa4e0000-0000-4000-8000-000000002330
live_daemons() {
  for f in "$GPUSLICE_STATE_DIR"/mps/*/pipe/*.pid; do
    [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && echo "$f"
  done
}

expect_exit 0 "info" -- gs info
contains "$OUT" "backend: +soft" "info names the soft backend"
contains "$OUT" "SMs capped per process" "info states how compute is enforced"
contains "$OUT" "no MPS static partitions" "info says SMs are not disjoint"
contains "$OUT" "ends every client on that GPU" "info states the fault trade-off"
expect_exit 0 "profiles" -- gs profiles
contains "$OUT" "1g\.10gb" "the H100 table"
expect_exit 2 "a profile this GPU lacks" -- gs create 1g.18gb
contains "$ERR" "1g\.18gb" "the profile is named"
[ -z "$(live_daemons)" ] && pass "no daemon before any process" || fail "no daemon before any process"

expect_exit 0 "create 1g.10gb and 3g.40gb" -- gs create 1g.10gb 3g.40gb
gi=$(json_get "$(gs --json list)" '[g["id"] for g in d["devices"][0]["gpu_instances"] if g["profile"] == "1g.10gb"][0]')
expect_exit 0 "run with --memory 2G" -- gs run -i "$gi" --memory 2G -- sh -c \
  'echo "$CUDA_VISIBLE_DEVICES $CUDA_MPS_ACTIVE_THREAD_PERCENTAGE $CUDA_MPS_PINNED_DEVICE_MEM_LIMIT $GPUSLICE_MEMORY_LIMIT_BYTES $GPUSLICE_ISOLATION"'
contains "$OUT" "^$GPU0 13 0=2048M 2147483648 mps$" "GPU, SM percentage and memory share"
[ -n "$(live_daemons)" ] && pass "the GPU's MPS daemon runs" || fail "the GPU's MPS daemon runs"
expect_exit 2 "a malformed --memory" -- gs run -i "$gi" --memory 2X -- true
expect_exit 0 "list" -- gs list
contains "$OUT" "enforced \(soft backend\)" "list states the enforcement"
expect_exit 1 "switching isolation with instances" -- gs --isolation process create 1g.10gb
contains "$ERR" "run under mps isolation" "the refusal says why"
expect_exit 2 "a bad --isolation" -- gs --isolation threads info
contains "$ERR" "^gpuslice: --isolation is mps, process or green, not 'threads' \(see 'gpuslice --help'\)$" \
  "a global option's usage error names the program once"
GPUSLICE_ISOLATION=bogus expect_exit 2 "a bad GPUSLICE_ISOLATION" -- gs info
expect_exit 0 "destroy --all" -- gs destroy --all
[ -z "$(live_daemons)" ] && pass "the daemon stops with the last instance" || fail "the daemon stops" "$(live_daemons)"

expect_exit 0 "create under process isolation" -- gs --isolation process create 1g.10gb
expect_exit 0 "run under process isolation" -- gs run -i 1 -- sh -c \
  'echo "$GPUSLICE_ISOLATION ${CUDA_MPS_ACTIVE_THREAD_PERCENTAGE:-none} $CUDA_MPS_PIPE_DIRECTORY"'
contains "$OUT" "^process none .*/mps/off$" "no MPS, a pipe directory no daemon serves"
[ -z "$(live_daemons)" ] && pass "no daemon under process isolation" || fail "no daemon under process isolation"
expect_exit 0 "info under process isolation" -- gs info
contains "$OUT" "time-sliced" "info states the other trade-off"
expect_exit 0 "destroy --all" -- gs destroy --all

# Green isolation: disjoint SM ranges (the fake driver splits 132 SMs
# into 16 groups of 8, as an H100's), no MPS, the range handed to run.
expect_exit 0 "create 7 x 1g.10gb under green isolation" -- \
  gs --isolation green create 1g.10gb 1g.10gb 1g.10gb 1g.10gb 1g.10gb 1g.10gb 1g.10gb
ranges=$(json_get "$(gs --json list)" 'sorted((g["sm_partition"]["first"], g["sm_partition"]["count"]) for g in d["devices"][0]["gpu_instances"])')
[ "$ranges" = "[(0, 16), (16, 16), (32, 16), (48, 16), (64, 16), (80, 16), (96, 16)]" ] &&
  pass "seven disjoint 16-SM ranges" || fail "seven disjoint 16-SM ranges" "$ranges"
expect_exit 0 "list under green isolation" -- gs list
contains "$OUT" "16@16-31" "list shows an instance's SM range"
contains "$OUT" "disjoint SMs per instance" "list states what green enforces"
gi=$(json_get "$(gs --json list)" '[g["id"] for g in d["devices"][0]["gpu_instances"] if g["start"] == 2][0]')
expect_exit 0 "run under green isolation" -- gs run -i "$gi" -- sh -c \
  'echo "$GPUSLICE_ISOLATION $GPUSLICE_SM_PARTITION ${CUDA_MPS_ACTIVE_THREAD_PERCENTAGE:-none} $CUDA_MPS_PIPE_DIRECTORY"'
contains "$OUT" "^green 32:16 none .*/mps/off$" "the instance's SMs, no MPS"
[ -z "$(live_daemons)" ] && pass "no daemon under green isolation" || fail "no daemon under green isolation"
expect_exit 0 "info under green isolation" -- gs info
contains "$OUT" "one fault domain" "info states green's fault trade-off"
expect_exit 0 "destroy one green instance" -- gs destroy "$gi"
expect_exit 1 "switching from green with instances" -- gs --isolation mps create 1g.10gb
contains "$ERR" "run under green isolation" "the refusal names green"
expect_exit 0 "destroy --all" -- gs destroy --all
expect_exit 0 "4g.40gb and 3g.40gb under green isolation" -- gs --isolation green create 4g.40gb 3g.40gb
ranges=$(json_get "$(gs --json list)" 'sorted((g["sm_partition"]["first"], g["sm_partition"]["count"]) for g in d["devices"][0]["gpu_instances"])')
[ "$ranges" = "[(0, 64), (64, 56)]" ] &&
  pass "3g.40gb's 60 SMs round down to 56, after 4g.40gb's 64" || fail "4g + 3g ranges" "$ranges"
expect_exit 0 "destroy --all" -- gs destroy --all
FAKE_CUDA_GREEN=off expect_exit 1 "green isolation without green contexts" -- \
  gs --isolation green create 1g.10gb
contains "$ERR" "green contexts are not available" "the refusal says why"

# A state directory too deep for the daemon's sockets (the demo's, under a
# temporary directory on the GPU machine: the real daemon exited 1 there):
# the pipe directory goes under /tmp/gpuslice-mps-HASH, private, and the
# daemon still comes and goes with the instances.
deep="$GS_TMP/a-state-directory-deep-enough-that-the-mps-sockets-would-not-fit"
mkdir -p "$deep"
GPUSLICE_STATE_DIR=$deep expect_exit 0 "create under a deep state directory" -- gs create 1g.10gb
GPUSLICE_STATE_DIR=$deep expect_exit 0 "run under a deep state directory" -- gs run -i 1 -- sh -c 'echo "$CUDA_MPS_PIPE_DIRECTORY"'
contains "$OUT" "^/tmp/gpuslice-mps-[0-9a-f]{8}/$GPU0/pipe$" "the pipe directory moves to /tmp/gpuslice-mps-HASH"
short=$(dirname "$(dirname "$OUT")")
[ -d "$short" ] && [ "$(stat -c %a "$short")" = 700 ] && pass "the short directory is private" ||
  fail "the short directory is private" "$(ls -ld "$short")"
[ -f "$OUT/nvidia-cuda-mps-control.pid" ] && kill -0 "$(cat "$OUT/nvidia-cuda-mps-control.pid")" 2>/dev/null &&
  pass "the daemon runs there" || fail "the daemon runs there" "$(ls -la "$OUT")"
pipe=$OUT
GPUSLICE_STATE_DIR=$deep expect_exit 0 "destroy under a deep state directory" -- gs destroy --all
[ ! -f "$pipe/nvidia-cuda-mps-control.pid" ] && pass "its daemon stops with the last instance" ||
  fail "its daemon stops with the last instance"
# ... and never into a /tmp directory others may write to (they could
# swap the pipe directory under the daemon)
rm -rf "$short"
mkdir -m 777 "$short"
GPUSLICE_STATE_DIR=$deep expect_exit 0 "create again under the deep state directory" -- gs create 1g.10gb
GPUSLICE_STATE_DIR=$deep expect_exit 1 "a world-writable /tmp/gpuslice-mps-HASH is refused" -- gs run -i 1 -- true
contains "$ERR" "not a private directory" "the refusal says why"
GPUSLICE_STATE_DIR=$deep expect_exit 0 "destroy it" -- gs destroy --all
rm -rf "$short"

GPUSLICE_NVML_LIBRARY=/nonexistent/libnvidia-ml.so.1 expect_exit 1 "no driver" -- gs info
contains "$ERR" "NVIDIA driver not found" "the missing driver is named"
FAKE_NVML_CONFIG=h100-80gb expect_exit 1 "no GPU with MIG off" -- gs info
contains "$ERR" "MIG mode on" "the reason is given"
finish
