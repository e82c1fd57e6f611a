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
