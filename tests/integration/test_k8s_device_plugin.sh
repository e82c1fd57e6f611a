# The kubelet device plugin (gpuslice k8s device-plugin) against a test-only
# kubelet stand-in built from the v1beta1 .proto with grpcio (PyPI, in a
# venv): registration, ListAndWatch after apply, Allocate and its bad
# input, health on destroy, re-registration (tests/k8s/kubelet_standin.py).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/host_env.sh"
py=$(command -v python3)
venv=${GS_TEST_VENV:-$GS_TMP/venv}
if ! "$venv/bin/python" -c 'import grpc, grpc_tools' 2>/dev/null; then
  "$py" -m venv "$venv" && "$venv/bin/pip" install -q grpcio grpcio-tools \
    >"$GS_TMP/pip.log" 2>&1
fi
if ! "$venv/bin/python" -c 'import grpc, grpc_tools' 2>/dev/null; then
  echo "not ok - pip could not install grpcio and grpcio-tools (PyPI)"
  tail -3 "$GS_TMP/pip.log" 2>/dev/null
  exit 1
fi
gen="$GS_TMP/gen"
mkdir -p "$gen"
"$venv/bin/python" -m grpc_tools.protoc -I "$GS_SOURCE_DIR/proto" \
  --python_out="$gen" --grpc_python_out="$gen" \
  "$GS_SOURCE_DIR/proto/deviceplugin_v1beta1.proto" || exit 1
expect_exit 0 "two 1g and one 2g instance" -- gs create 1g.3gb 1g.3gb 2g.6gb

# Without a kubelet the plugin serves its sockets all the same, and
# `gpuslice k8s devices` calls ListAndWatch on one as the kubelet would.
nok="$GS_TMP/nokubelet"
mkdir -p "$nok"
"$GPUSLICE" k8s device-plugin --plugin-dir "$nok" --interval-ms 100 2>"$GS_TMP/nok.log" &
nokpid=$!
GS_PIDS+=("$nokpid")
sock="$nok/gpuslice-host-1g.3gb.sock"
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
expect_exit 0 "k8s devices, no kubelet anywhere" -- gs k8s devices --socket "$sock"
contains "$OUT" "^list 1: 2 devices" "the first list: the two 1g instances"
contains "$OUT" "HOST-[0-9a-f-]+ Healthy" "IDs with their health"
expect_exit 0 "k8s devices --json" -- gs --json k8s devices --socket "$sock"
contains "$OUT" '^\[\{"id":"HOST-[0-9a-f-]+","health":"Healthy"\},\{' "one JSON line per list"
"$GPUSLICE" k8s devices --socket "$sock" --lists 2 --wait-ms 10000 >"$GS_TMP/watch.out" 2>&1 &
watcher=$!
sleep 0.5
expect_exit 0 "a third 1g while a client watches" -- gs create 1g.3gb
wait "$watcher"
contains "$(cat "$GS_TMP/watch.out")" "list 2: 3 devices" "the watching client got the new list"
expect_exit 1 "k8s devices on a socket nobody serves" -- \
  gs k8s devices --socket "$nok/none.sock" --wait-ms 500
contains "$ERR" "none.sock: connecting" "says why"
expect_exit 2 "k8s devices without --socket" -- gs k8s devices
kill "$nokpid"
wait "$nokpid"
st=$?
[ "$st" -eq 0 ] && pass "the plugin without a kubelet stops on SIGTERM" ||
  fail "the plugin without a kubelet stops on SIGTERM" "exit $st"
expect_exit 0 "back to two 1g" -- gs destroy "$(gs --json list | python3 -c 'import json,sys; d=json.load(sys.stdin)["devices"][0]; print(max(g["id"] for g in d["gpu_instances"] if g["profile"]=="1g.3gb"))')"
# A short socket path: sun_path holds 107 characters.
"$venv/bin/python" "$GS_SOURCE_DIR/tests/k8s/kubelet_standin.py" "$gen" \
  "$GS_SOURCE_DIR" "$GPUSLICE" "$GS_TMP" host
rc=$?

# The soft backend under MPS, on the test-only fakes.
BUILD=$(dirname "$GPUSLICE")
(
  export GPUSLICE_STATE_DIR="$GS_TMP/state-soft" GPUSLICE_BACKEND=soft
  export GPUSLICE_NVML_LIBRARY="$BUILD/tests/fake_nvml/current/libnvidia-ml.so.1"
  export GPUSLICE_CUDA_LIBRARY="$BUILD/tests/fake_cuda/libcuda.so.1"
  export GPUSLICE_MPS_CONTROL="$GS_SOURCE_DIR/tests/fake_mps/nvidia-cuda-mps-control"
  export FAKE_NVML_CONFIG=h100-80gb:off FAKE_CUDA_SMS=132
  mkdir -p "$GS_TMP/soft"
  gs create 1g.10gb 1g.10gb >/dev/null || exit 1
  "$venv/bin/python" "$GS_SOURCE_DIR/tests/k8s/kubelet_standin.py" "$gen" \
    "$GS_SOURCE_DIR" "$GPUSLICE" "$GS_TMP/soft" soft
  st=$?
  gs destroy --all >/dev/null
  exit $st
)
rc=$((rc + $?))
echo "$GS_PASSED passed, $((GS_FAILED + (rc != 0))) failed"
[ "$rc" -eq 0 ] && [ "$GS_FAILED" -eq 0 ]
