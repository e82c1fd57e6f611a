# gpuslice cdi generate on the three backends: the spec is valid against the
# CDI JSON schema (vendored in tests/data/cdi, python3-jsonschema), YAML says
# the same as JSON, each device's edits are its instance's (MIG device and
# capability nodes, MPS pipe and limits, the host hook), the spec follows
# create/destroy/apply when GPUSLICE_CDI_DIR is set, and the host hook puts
# a process into its instance's CPUs. Podman: test_cdi_podman.sh.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/host_env.sh"
PY=/usr/bin/python3
if ! "$PY" -c 'import jsonschema, yaml' 2>/dev/null; then
  echo "not ok - python3-jsonschema and python3-yaml (Debian) are needed" \
    "to validate against the CDI schema: scripts/install-deps.sh installs them"
  exit 1
fi
BUILD=$(dirname "$GPUSLICE")
not_contains() {
  if printf '%s' "$1" | grep -Eq -- "$2"; then fail "$3" "/$2/ in:" "$1"; else
    pass "$3"; fi
}
SCHEMA="$GS_SOURCE_DIR/tests/data/cdi"

# validate FILE [yaml]: against the vendored schema; prints the error.
validate() {
  "$PY" - "$SCHEMA" "$@" <<'PY'
import json, sys, pathlib, yaml, jsonschema
d = pathlib.Path(sys.argv[1])
schema = json.loads((d / "schema.json").read_text())
text = pathlib.Path(sys.argv[2]).read_text()
doc = yaml.safe_load(text) if len(sys.argv) > 3 else json.loads(text)
store = {"defs.json": json.loads((d / "defs.json").read_text())}
resolver = jsonschema.RefResolver(base_uri=d.as_uri() + "/", referrer=schema,
                                  store={d.as_uri() + "/defs.json": store["defs.json"]})
try:
    jsonschema.Draft7Validator(schema, resolver=resolver).validate(doc)
except jsonschema.ValidationError as e:
    print(e.message, list(e.absolute_path))
    sys.exit(1)
PY
}
# edits FILE NAME EXPR: a Python expression over the device's containerEdits (e).
edits() {
  "$PY" - "$@" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
e = next((d["containerEdits"] for d in doc["devices"] if d["name"] == sys.argv[2]), None)
print(eval(sys.argv[3]) if e is not None else "NO DEVICE " + sys.argv[2])
PY
}

# ---- host -------------------------------------------------------------------
expect_exit 0 "host: two 1g and a 2g" -- gs create 1g.3gb 1g.3gb 2g.6gb
expect_exit 0 "host: cdi generate -o FILE" -- gs cdi generate -o "$GS_TMP/host.json"
validate "$GS_TMP/host.json" && pass "host: valid against the CDI schema" ||
  fail "host: valid against the CDI schema"
contains "$(cat "$GS_TMP/host.json")" '"cdiVersion": "0.5.0"' "cdiVersion 0.5.0"
contains "$(cat "$GS_TMP/host.json")" '"kind": "gpuslice.dev/instance"' "the kind"
hook=$(edits "$GS_TMP/host.json" 0:3 'e["hooks"][0]["hookName"] + " " + " ".join(e["hooks"][0]["args"][1:])')
contains "$hook" "^createRuntime --backend=host --state-dir=$GPUSLICE_STATE_DIR cdi hook --instance 3:0$" \
  "host: the 2g device's createRuntime hook names its instance"
env=$(edits "$GS_TMP/host.json" 0:3:0 '" ".join(e["env"])')
contains "$env" "GPUSLICE_PROFILE=2g.6gb" "host: the instance's env"
uuid=$(edits "$GS_TMP/host.json" 0:3:0 '[v.split("=")[1] for v in e["env"] if v.startswith("GPUSLICE_INSTANCE_UUID=")][0]')
contains "$(edits "$GS_TMP/host.json" "$uuid" '"yes"')" yes "host: the instance's UUID is a device name too"
expect_exit 0 "host: --format yaml to stdout" -- gs cdi generate -o - --format yaml
printf '%s\n' "$OUT" >"$GS_TMP/cdi-host.yaml"
validate "$GS_TMP/cdi-host.yaml" yaml && pass "host yaml: valid" || fail "host yaml: valid"
"$PY" -c 'import json,sys,yaml; a=json.load(open(sys.argv[1])); b=yaml.safe_load(open(sys.argv[2])); sys.exit(a!=b)' \
  "$GS_TMP/host.json" "$GS_TMP/cdi-host.yaml" && pass "yaml and json say the same" ||
  fail "yaml and json say the same"
expect_exit 2 "--format toml refused" -- gs cdi generate --format toml -o -
expect_exit 1 "an unwritable output fails" -- gs cdi generate -o /proc/gpuslice.json
contains "$ERR" "/proc/gpuslice.json" "names the path"

# Refresh on layout changes.
export GPUSLICE_CDI_DIR="$GS_TMP/cdi"
mkdir -p "$GPUSLICE_CDI_DIR"
expect_exit 0 "create with GPUSLICE_CDI_DIR" -- gs create 1g.3gb
n=$("$PY" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["devices"]))' "$GPUSLICE_CDI_DIR/gpuslice.json")
[ "$n" = 12 ] && pass "create rewrote the spec (4 instances x 3 names)" || fail "create rewrote the spec" "$n devices"
expect_exit 0 "apply with GPUSLICE_CDI_DIR" -- gs apply -f "$CFG" -c whole
contains "$(cat "$GPUSLICE_CDI_DIR/gpuslice.json")" '"GPUSLICE_PROFILE=7g.24gb"' "apply rewrote the spec"
not_contains "$(cat "$GPUSLICE_CDI_DIR/gpuslice.json")" '1g.3gb' "no instance of the old layout is left in it"
expect_exit 0 "destroy --all" -- gs destroy --all
contains "$(cat "$GPUSLICE_CDI_DIR/gpuslice.json")" '"devices": \[\]' "destroy rewrote the spec"
ls "$GPUSLICE_CDI_DIR" | grep -q tmp && fail "no temporary file left" || pass "no temporary file left"
unset GPUSLICE_CDI_DIR

# The hook: the OCI state's pid goes to the instance's CPUs (cgroups: none
# here; test_cdi_podman.sh checks them in a real container).
expect_exit 0 "host: a 1g instance" -- gs create 1g.3gb
sleep 30 &
victim=$!
GS_PIDS+=("$victim")
printf '{"ociVersion":"1.0.2","id":"t","status":"creating","pid":%d,"bundle":"/"}' "$victim" |
  gs cdi hook --instance 1:0
[ $? -eq 0 ] && pass "the hook runs" || fail "the hook runs"
cpus=$(awk '/Cpus_allowed_list/ {print $2}' /proc/$victim/status)
want=$(gs run -i 1 -- sh -c 'echo $GPUSLICE_CPUS')
[ "$cpus" = "$want" ] && [ "$(nproc --all)" -gt 1 ] && pass "the hook pinned the container's pid to the instance's CPU" ||
  fail "the hook pinned the pid" "Cpus_allowed_list $cpus, the instance's: $want"
echo '{"pid": 0}' | expect_exit 2 "the hook refuses pid 0" -- gs cdi hook --instance 1:0
echo 'nonsense' | expect_exit 2 "the hook refuses a malformed state" -- gs cdi hook --instance 1:0
expect_exit 2 "the hook needs GI:CI" -- gs cdi hook --instance one
gs destroy --all >/dev/null

# ---- soft (fake NVML, CUDA and MPS) --------------------------------------------
NVML="$BUILD/tests/fake_nvml/current/libnvidia-ml.so.1"
CUDA="$BUILD/tests/fake_cuda/libcuda.so.1"
(
  base=$GS_FAILED
  export GPUSLICE_STATE_DIR="$GS_TMP/state-soft"
  export GPUSLICE_BACKEND=soft GPUSLICE_NVML_LIBRARY="$NVML" GPUSLICE_CUDA_LIBRARY="$CUDA"
  export GPUSLICE_MPS_CONTROL="$GS_SOURCE_DIR/tests/fake_mps/nvidia-cuda-mps-control"
  export FAKE_NVML_CONFIG=h100-80gb:off FAKE_CUDA_SMS=132 GPUSLICE_NVIDIA_PROC="$GS_TMP/nvproc"
  mkdir -p "$GS_TMP/nvproc/gpus/0000:1b:00.0"
  printf 'Model: H100\nDevice Minor: 3\nGPU UUID: GPU-fa4e0000-0000-4000-8000-000000002330\n' \
    >"$GS_TMP/nvproc/gpus/0000:1b:00.0/information"
  expect_exit 0 "soft: a 1g and a 3g" -- gs create 1g.10gb 3g.40gb
  expect_exit 0 "soft: cdi generate" -- gs cdi generate -o "$GS_TMP/soft.json"
  validate "$GS_TMP/soft.json" && pass "soft: valid against the CDI schema" ||
    fail "soft: valid against the CDI schema"
  e=$(edits "$GS_TMP/soft.json" 0:1 '" ".join(e["env"]) + " | " + " ".join(n["path"] for n in e["deviceNodes"]) + " | " + e["mounts"][0]["hostPath"] + " " + e["mounts"][0]["containerPath"]')
  contains "$e" "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=[0-9]+" "soft: the SM percentage"
  contains "$e" "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=[0-9]+M" "soft: the memory limit"
  contains "$e" "CUDA_VISIBLE_DEVICES=GPU-fa4e" "soft: the GPU"
  contains "$e" "/dev/nvidiactl /dev/nvidia-uvm /dev/nvidia-uvm-tools /dev/nvidia3 " \
    "soft: the GPU's nodes, its minor from the driver's information file"
  contains "$e" "\| ([^ ]*/pipe) \1$" "soft: the MPS pipe directory mounted where the env says"
  pipe=$(edits "$GS_TMP/soft.json" 0:1 'e["mounts"][0]["hostPath"]')
  kill -0 "$(cat "$pipe/nvidia-cuda-mps-control.pid")" 2>/dev/null &&
    pass "soft: the GPU's MPS daemon runs for the containers" || fail "soft: MPS daemon runs"
  gs destroy --all >/dev/null
  exit $((GS_FAILED - base))
)
GS_FAILED=$((GS_FAILED + $?))

# ---- mig (fake NVML, MIG on) -------------------------------------------------------
(
  base=$GS_FAILED
  export GPUSLICE_STATE_DIR="$GS_TMP/state-mig"
  export GPUSLICE_BACKEND=mig GPUSLICE_NVML_LIBRARY="$NVML"
  export FAKE_NVML_CONFIG=h100-80gb FAKE_NVML_STATE="$GS_TMP/nvml.json"
  export GPUSLICE_NVIDIA_PROC="$GS_TMP/nvproc-mig"
  expect_exit 0 "mig: two 1g and a 3g" -- gs create 1g.10gb 1g.10gb 3g.40gb
  caps="$GS_TMP/nvproc-mig/capabilities/gpu0/mig"
  for gi in 1 2 3; do
    mkdir -p "$caps/gi$gi/ci0"
    printf 'DeviceFileMinor: %d\nDeviceFileMode: 292\n' $((gi * 9 + 3)) >"$caps/gi$gi/access"
    printf 'DeviceFileMinor: %d\nDeviceFileMode: 292\n' $((gi * 9 + 4)) >"$caps/gi$gi/ci0/access"
  done
  expect_exit 0 "mig: cdi generate" -- gs cdi generate -o "$GS_TMP/mig.json"
  validate "$GS_TMP/mig.json" && pass "mig: valid against the CDI schema" ||
    fail "mig: valid against the CDI schema"
  e=$(edits "$GS_TMP/mig.json" 0:2 '" ".join(e["env"]) + " | " + " ".join(n["path"] for n in e["deviceNodes"])')
  contains "$e" "CUDA_VISIBLE_DEVICES=MIG-[0-9a-f-]+ NVIDIA_VISIBLE_DEVICES=MIG-" "mig: the MIG UUID"
  contains "$e" "/dev/nvidia0 /dev/nvidia-caps/nvidia-cap21 /dev/nvidia-caps/nvidia-cap22$" \
    "mig: the GPU node and GI 2's and CI 0's capability nodes"
  e=$(edits "$GS_TMP/mig.json" mig-1g.10gb '" ".join(e["env"]) + " | " + " ".join(n["path"] for n in e["deviceNodes"])')
  contains "$e" "NVIDIA_VISIBLE_DEVICES=MIG-[0-9a-f-]+,MIG-" "mig: the profile class holds both 1g instances"
  contains "$e" "nvidia-cap12 .*nvidia-cap21" "mig: with both instances' capability nodes"
  not_contains "$e" "nvidia-cap30" "mig: and not the 3g's"
  exit $((GS_FAILED - base))
)
GS_FAILED=$((GS_FAILED + $?))
echo "$GS_PASSED passed, $GS_FAILED failed"
[ "$GS_FAILED" -eq 0 ]
