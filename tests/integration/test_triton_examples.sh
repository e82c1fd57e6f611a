#!/usr/bin/env bash
# What Triton's Python client examples do that no other test covers, through
# tritonclient[http,grpc] against a real worker (triton_examples.py): async
# and asyncio infers, reused infer objects, explicit gRPC contents,
# image_client's config checks and class_count, BYTES in system shared memory
# over gRPC, and Python/TensorFlow models refused naming their backend.
# Triton's own scripts run by hand: scripts/run_triton_examples.sh.
# Skips (77) when the models cannot be generated or pip cannot install
# tritonclient.
. "$(dirname "$0")/worker_lib.sh"
. "$(dirname "$0")/triton_env.sh"
py=$(command -v python3 || echo /usr/bin/python3)
make_models "$py"
for gen in tests/integration/make_string_models.py \
  "tests/integration/make_example_models.py --refused"; do
  # shellcheck disable=SC2086
  "$py" "$GS_SOURCE_DIR"/$gen --out "$tmp/models" >/dev/null
  rc=$?
  [ $rc -eq 77 ] && { echo "SKIP: $gen needs python3-onnx"; exit 77; }
  [ $rc -eq 0 ] || { echo "FAIL: $gen exited $rc"; exit 1; }
done

triton_python || { echo "SKIP: $TRITON_WHY"; exit 77; }

gport=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start_worker --grpc-port "$gport" --metrics-port 0 --threads 2 \
  --model-control-mode explicit --load-model "*"
for _ in $(seq 100); do grep -q 'listening for gRPC' "$tmp/log" && break; sleep 0.1; done
for m in simple simple_string densenet_onnx image_nhwc; do
  grep -q "model '$m' is ready" "$tmp/log" || { echo "FAIL: $m not ready"; cat "$tmp/log"; exit 1; }
done
"$TRITON_PY" "$GS_SOURCE_DIR/tests/integration/triton_examples.py" "$port" "$gport" ||
  { tail -20 "$tmp/log"; exit 1; }
kill -0 "$pid" || { echo "FAIL: the worker died"; cat "$tmp/log"; exit 1; }
echo "all passed"
