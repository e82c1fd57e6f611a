#!/usr/bin/env bash
# gpuslice demo's plan without a GPU, on the test-only fakes: the phases
# from each catalog (smallest profile x 1 and x N, whole GPU x 1 with the
# GPU engine: h100, h200, a100, a30 geometries) through --dry-run; option
# errors; and MIG mode on: with no instance the demo says what to create
# and exits 1; with instances it serves on them (a real, short run) and
# never creates or destroys any (the fake NVML refuses every change here,
# and its saved state is byte for byte the same afterwards).
. "$(dirname "$0")/lib.sh"
BUILD=$(dirname "$GPUSLICE")
NVML="$BUILD/tests/fake_nvml/current/libnvidia-ml.so.1"
CUDA="$BUILD/tests/fake_cuda/libcuda.so.1"
if [ ! -f "$NVML" ] || [ ! -f "$CUDA" ]; then
  echo "skip: the fakes are not built next to $GPUSLICE"
  exit 77
fi
export GPUSLICE_NVML_LIBRARY="$NVML" GPUSLICE_CUDA_LIBRARY="$CUDA" FAKE_CUDA_SMS=132
export GPUSLICE_MPS_CONTROL="$GS_SOURCE_DIR/tests/fake_mps/nvidia-cuda-mps-control"
[ -n "${GS_SANITIZE:-}" ] && export GPUSLICE_TEST_NO_ADDRESS_LIMIT=1
WORK=$GS_TMP/work
mkdir -p "$WORK"
not_contains() {
  if printf '%s' "$1" | grep -Eq -- "$2"; then fail "$3" "/$2/ in:" "$1"; else
    pass "$3"; fi
}

# plan GPU ENGINE PHASE... : the dry run names exactly these phases.
plan() {
  local gpu=$1 engine=$2
  shift 2
  FAKE_NVML_CONFIG=$gpu:off expect_exit 0 "$gpu, engine $engine: dry run" -- \
    gs --backend soft demo --dry-run --engine "$engine"
  local got want
  got=$(grep '^phase' <<<"$OUT" | sed 's/^phase [0-9]*: \(.*\), made.*/\1/' | paste -sd';')
  want=$(printf '%s\n' "$@" | paste -sd';')
  [ "$got" = "$want" ] && pass "$gpu, engine $engine: $want" ||
    fail "$gpu, engine $engine phases" "got '$got', want '$want'"
}
plan h100-80gb gpu "1 x 1g.10gb" "7 x 1g.10gb" "1 x 7g.80gb"
plan h200 gpu "1 x 1g.18gb" "7 x 1g.18gb" "1 x 7g.141gb"
plan a100-40gb gpu "1 x 1g.5gb" "7 x 1g.5gb" "1 x 7g.40gb"
plan a30 gpu "1 x 1g.6gb" "4 x 1g.6gb" "1 x 4g.24gb"
plan h100-80gb cpu "1 x 1g.10gb" "7 x 1g.10gb"
contains "$OUT" "^model: classifier " "the CPU engine's model"
contains "$OUT" "concurrency: 1,2,4,8,16,32,64,128;" "the CPU levels"
FAKE_NVML_CONFIG=h100-80gb:off expect_exit 0 "engine gpu: model and levels" -- \
  gs --backend soft demo --dry-run --engine gpu
contains "$OUT" "^model: resnet50 " "ResNet-50 on the GPU"
contains "$OUT" "KIND_GPU" "on KIND_GPU"
contains "$OUT" "concurrency: 1,2,4,8,16,32,64,128,256;" "the GPU levels"
# auto: no CUDA provider here, so the CPU engine, whatever the backend.
FAKE_NVML_CONFIG=h100-80gb:off expect_exit 0 "engine auto without CUDA" -- \
  gs --backend soft demo --dry-run
contains "$OUT" "engine: cpu" "auto falls back to the CPU engine"
FAKE_NVML_CONFIG=h100-80gb:off expect_exit 0 "--instances 3" -- \
  gs --backend soft demo --dry-run --engine gpu --instances 3
contains "$OUT" "phase 2: 3 x 1g.10gb" "N is --instances"

# Option errors: exit 2, naming the option.
expect_exit 2 "--engine bogus" -- gs --backend host demo --engine tpu
contains "$ERR" "auto, gpu or cpu" "the engines are named"
GPUSLICE_HOST_CPUS=2 GPUSLICE_HOST_MEMORY_MIB=24576 GPUSLICE_HOST_CGROUP_ROOT=none \
  expect_exit 2 "--engine gpu on the host backend" -- gs --backend host demo --engine gpu --dry-run
contains "$ERR" "needs a GPU backend" "the reason is given"
FAKE_NVML_CONFIG=h100-80gb:off expect_exit 2 "--instances over the profile's count" -- \
  gs --backend soft demo --dry-run --instances 8
contains "$ERR" "at most 7 x 1g.10gb" "the limit is named"
expect_exit 2 "--instances 1" -- gs --backend host demo --instances 1
expect_exit 2 "--window 10" -- gs --backend host demo --window 10
expect_exit 2 "--concurrency not rising" -- gs --backend host demo --concurrency 4,2
contains "$ERR" "rising" "the rule is named"

# MIG on, no instance: advice, exit 1, nothing made.
export FAKE_NVML_CONFIG=h100-80gb FAKE_NVML_STATE=$WORK/nvml.json
expect_exit 1 "MIG on without instances" -- gs --backend mig demo
contains "$ERR" "no instance exists" "says why"
contains "$ERR" "create 1g.10gb 1g.10gb 1g.10gb 1g.10gb 1g.10gb 1g.10gb 1g.10gb$" "the gpuslice command"
contains "$ERR" "nvidia-smi mig -i 0 -cgi 19,19,19,19,19,19,19 -C" "the nvidia-smi command"
expect_exit 0 "still no instance" -- gs --backend mig --json list
[ "$(json_get "$OUT" 'len(d["devices"][0]["gpu_instances"])')" = 0 ] &&
  pass "the demo made none" || fail "the demo made none" "$OUT"

# MIG on with three 1g and a 3g: the 1g ones are used, nothing changes.
expect_exit 0 "make instances" -- gs --backend mig create 1g.10gb 1g.10gb 1g.10gb 3g.40gb
sum=$(md5sum <"$FAKE_NVML_STATE")
FAKE_NVML_NO_PERMISSION=1 expect_exit 0 "dry run on existing instances" -- \
  gs --backend mig demo --dry-run --engine gpu
contains "$OUT" "phase 1: 1 x 1g.10gb, existing MIG instances 0:1$" "one of them"
contains "$OUT" "phase 2: 3 x 1g.10gb, existing MIG instances 0:1,0:2,0:3$" "all three"
not_contains "$OUT" "phase 3" "no whole-GPU instance exists: no third phase"
py=$(command -v python3 || echo /usr/bin/python3)
"$py" "$GS_SOURCE_DIR/scripts/make_models.py" --out "$WORK/models" --models classifier >/dev/null
rc=$?
[ $rc -eq 77 ] && { echo "SKIP: make_models.py needs python3-onnx"; exit 77; }
[ $rc -eq 0 ] || fail "make_models.py exited $rc"
mkdir -p "$WORK/out"
# Every create and destroy fails with NO_PERMISSION in this run.
TMPDIR=$WORK FAKE_NVML_NO_PERMISSION=1 expect_exit 0 "demo on existing MIG instances" -- \
  gs --backend mig demo --model-repository "$WORK/models" --out "$WORK/out" \
  --concurrency 1,2 --window 200
contains "$OUT" "mig backend, CPU engine, model classifier: 1 x 1g.10gb vs 3 x 1g.10gb" "the header"
contains "$OUT" "^2 +\|" "a level row"
contains "$ERR" "existing instances, starting gpuslice serve" "no creation"
[ "$(md5sum <"$FAKE_NVML_STATE")" = "$sum" ] && pass "the MIG layout is as it was" ||
  fail "the MIG layout is as it was"
[ -f "$WORK/out/gpuslice-demo.svg" ] && pass "the plot" || fail "the plot"
ls "$WORK" | grep -q gpuslice-demo- && fail "state directory left behind" || pass "state directory removed"
pgrep -f "$WORK/models" >/dev/null && fail "processes left behind" || pass "no process left"
finish
