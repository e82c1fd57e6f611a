#!/usr/bin/env bash
# BYTES tensors, classification and requested outputs in a real worker,
# through Triton's Python client (tritonclient[http,grpc]) doing what
# Triton's string examples and image_client's --classes do: simple_string
# (STRING add/sub through Cast) with HTTP binary and JSON inputs and gRPC;
# simple_identity with a NUL character, binary blobs and non-UTF-8 bytes
# (which JSON cannot carry: 400 naming the element); a dynamic batch of
# BYTES rows split back per request; gRPC bytes_contents;
# element lengths running past the tensor and counts not matching the shape
# (400 naming input and element); class_count over HTTP and gRPC with a
# labels file; duplicate requested outputs (400 / INVALID_ARGUMENT).
# Skips (77) when the models cannot be generated or pip cannot install
# tritonclient.
. "$(dirname "$0")/worker_lib.sh"
. "$(dirname "$0")/triton_env.sh"
py=$(command -v python3 || echo /usr/bin/python3)
"$py" "$GS_SOURCE_DIR/tests/integration/make_string_models.py" --out "$tmp/models"
rc=$?
[ $rc -eq 77 ] && { echo "SKIP: make_string_models.py needs python3-onnx"; exit 77; }
[ $rc -eq 0 ] || { echo "FAIL: make_string_models.py exited $rc"; exit 1; }

triton_python || { echo "SKIP: $TRITON_WHY"; exit 77; }

gport=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start_worker --grpc-port "$gport" --metrics-port 0 --threads 2
for _ in $(seq 100); do grep -q 'listening for gRPC' "$tmp/log" && break; sleep 0.1; done
for m in simple_string simple_identity identity_batched simple_cls; do
  grep -q "model '$m' is ready" "$tmp/log" || { echo "FAIL: $m not ready"; cat "$tmp/log"; exit 1; }
done
"$TRITON_PY" "$GS_SOURCE_DIR/tests/integration/triton_strings.py" "$port" "$gport" || exit 1
kill -0 "$pid" || { echo "FAIL: the worker died"; cat "$tmp/log"; exit 1; }
echo "all passed"
