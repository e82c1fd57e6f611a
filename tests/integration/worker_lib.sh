# Shared setup of the worker's integration tests (sourced, not run): a temp
# dir removed at exit with the worker, the models of scripts/make_models.py,
# and a worker started on a free port.
set -u
: "${GPUSLICE:?}" "${GS_SOURCE_DIR:?}"
tmp=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

# onnx_python: py, the first of python3 and /usr/bin/python3 with numpy and
# onnx (make_models.py's interpreter rule); the test skips (77) when
# neither has them.
onnx_python() {
  local p
  py=
  for p in python3 /usr/bin/python3; do
    "$p" -c 'import numpy, onnx' 2>/dev/null && { py=$p; return; }
  done
  echo "SKIP: no python3 with numpy and onnx"
  exit 77
}

# make_models [PYTHON]: Triton's `simple` and the MLP into $tmp/models; the
# test skips (77) when the generator cannot run.
make_models() {
  local py=${1:-$(command -v python3 || echo /usr/bin/python3)} rc
  "$py" "$GS_SOURCE_DIR/scripts/make_models.py" --out "$tmp/models"
  rc=$?
  [ $rc -eq 77 ] && { echo "SKIP: make_models.py needs python3-onnx"; exit 77; }
  [ $rc -eq 0 ] || { echo "FAIL: make_models.py exited $rc"; exit 1; }
}

# start_worker ARGS...: `gpuslice worker` on $tmp/models with a free HTTP
# port, no gRPC or metrics port (their defaults, 8001 and 8002, would clash
# between tests running at once: ARGS may ask for them), and ARGS; its log
# in $tmp/log; sets pid, port and base, or fails the test when it does not
# start.
start_worker() {
  "$GPUSLICE" worker --model-repository "$tmp/models" --http-port 0 \
    --grpc-port 0 --metrics-port 0 "$@" \
    2>"$tmp/log" &
  pid=$!
  port=
  for _ in $(seq 100); do
    port=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$tmp/log")
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { echo "FAIL: worker did not start"; cat "$tmp/log"; exit 1; }
  base=http://127.0.0.1:$port
}
