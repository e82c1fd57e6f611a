#!/usr/bin/env bash
# A Triton user's config.pbtxt and client calls the other tests leave out,
# through tritonclient[http,grpc] against a real worker (triton_config.py):
# `reshape` in inputs and outputs (Triton's densenet_onnx and inception_onnx
# configs, and one with a batch and a variable size), a reshape that
# disagrees with its dims refused naming the tensor, free-form `parameters` (execute_delay_ms, as
# Triton's simple_dyna_sequence sets) loading with a warning, --server-name
# triton, model files sent with a load request over HTTP and gRPC, and
# every model's gRPC ModelConfig (as_json) equal to its HTTP config on every
# field the proto has (dynamic_batching and its queue policy,
# instance_group, sequence_batching, reshape, label_filename).
# Skips (77) when the models cannot be generated or pip cannot install
# tritonclient.
. "$(dirname "$0")/worker_lib.sh"
. "$(dirname "$0")/triton_env.sh"
py=$(command -v python3 || echo /usr/bin/python3)
mkdir -p "$tmp/models"
"$py" "$GS_SOURCE_DIR/tests/integration/make_example_models.py" --out "$tmp/models" >/dev/null
rc=$?
[ $rc -eq 77 ] && { echo "SKIP: make_example_models.py needs python3-onnx"; exit 77; }
[ $rc -eq 0 ] || { echo "FAIL: make_example_models.py exited $rc"; exit 1; }
# sequence models too: their sequence_batching in the configs compared
"$py" "$GS_SOURCE_DIR/scripts/make_seq_models.py" --out "$tmp/models" ||
  { echo "FAIL: make_seq_models.py"; exit 1; }

triton_python || { echo "SKIP: $TRITON_WHY"; exit 77; }

gport=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start_worker --grpc-port "$gport" --metrics-port 0 --threads 2 \
  --model-control-mode explicit --load-model "*" --server-name triton
for _ in $(seq 100); do grep -q 'listening for gRPC' "$tmp/log" && break; sleep 0.1; done
for m in densenet_onnx inception_onnx reshape_batch; do
  grep -q "model '$m' is ready" "$tmp/log" || { echo "FAIL: $m not ready"; cat "$tmp/log"; exit 1; }
done
# the parameter Triton's ONNX backend ignores loads, with one warning
n=$(grep -c "model reshape_batch: parameters gpuslice does not use, ignored: execute_delay_ms" "$tmp/log")
[ "$n" = 1 ] || { echo "FAIL: execute_delay_ms warned $n times"; cat "$tmp/log"; exit 1; }
"$TRITON_PY" "$GS_SOURCE_DIR/tests/integration/triton_config.py" "$port" "$gport" "$tmp/models" ||
  { tail -20 "$tmp/log"; exit 1; }
kill -0 "$pid" || { echo "FAIL: the worker died"; cat "$tmp/log"; exit 1; }
# the files sent with loads are gone once loaded
left=$(find /tmp -maxdepth 1 -name 'gpuslice-load-*' -newer "$tmp/log" | wc -l)
[ "$left" = 0 ] || { echo "FAIL: $left load directories left in /tmp"; exit 1; }
# without --server-name: gpuslice's own name
kill "$pid"; wait "$pid" 2>/dev/null
start_worker --grpc-port 0 --metrics-port 0 --threads 1
curl -fsS "$base/v2" | grep -q '"name":"gpuslice"' || { echo "FAIL: default name"; exit 1; }
echo "all passed"
