#!/usr/bin/env bash
# dynamic_batching's default_queue_policy as Triton serves it, against a real
# worker through tritonclient[http,grpc] and plain HTTP (triton_queue_policy.py):
# max_queue_size refuses what the queue cannot hold at once (503 / gRPC
# UNAVAILABLE, "Exceeds maximum queue size"), a REJECT timeout answers
# "Request timeout expired" at its time rather than at the queue delay, a
# request's own timeout (infer(timeout=N)) counts only when smaller than the
# default, DELAY answers an expired request after the fresh ones, and
# /metrics counts both. Triton's `simple` (make_models.py) under config.pbtxt
# files with long queue delays, so that requests sit in the queue.
# Skips (77) when the models cannot be generated or pip cannot install
# tritonclient.
. "$(dirname "$0")/worker_lib.sh"
. "$(dirname "$0")/triton_env.sh"
onnx_python
make_models "$py"
model() { # NAME DYNAMIC_BATCHING
  mkdir -p "$tmp/models/$1/1"
  cp "$tmp/models/simple/1/model.onnx" "$tmp/models/$1/1/"
  printf 'max_batch_size: 8\ndynamic_batching {\n%s\n}\n' "$2" >"$tmp/models/$1/config.pbtxt"
}
model qp_full 'preferred_batch_size: [ 8 ] max_queue_delay_microseconds: 3000000
  default_queue_policy { max_queue_size: 3 }'
model qp_reject 'preferred_batch_size: [ 8 ] max_queue_delay_microseconds: 4000000
  default_queue_policy { default_timeout_microseconds: 500000 timeout_action: REJECT }'
model qp_override 'preferred_batch_size: [ 8 ] max_queue_delay_microseconds: 6000000
  default_queue_policy { default_timeout_microseconds: 2000000 allow_timeout_override: true }'
model qp_delay 'preferred_batch_size: [ 4 ] max_queue_delay_microseconds: 5000000
  default_queue_policy { default_timeout_microseconds: 1000000 timeout_action: DELAY }'
# priority queues are not served: refused by name
model qp_priority 'priority_levels: 2 default_queue_policy { max_queue_size: 2 }'

triton_python || { echo "SKIP: $TRITON_WHY"; exit 77; }

gport=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start_worker --grpc-port "$gport" --metrics-port 0 --threads 4
for _ in $(seq 100); do grep -q 'listening for gRPC' "$tmp/log" && break; sleep 0.1; done
for m in qp_full qp_reject qp_override qp_delay; do
  grep -q "model '$m' is ready" "$tmp/log" || { echo "FAIL: $m not ready"; cat "$tmp/log"; exit 1; }
done
grep -q "qp_priority' is not ready: .*'dynamic_batching.priority_levels' is not supported" "$tmp/log" ||
  { echo "FAIL: priority_levels not refused by name"; cat "$tmp/log"; exit 1; }
"$TRITON_PY" "$GS_SOURCE_DIR/tests/integration/triton_queue_policy.py" "$port" "$gport" ||
  { tail -20 "$tmp/log"; exit 1; }
kill -0 "$pid" || { echo "FAIL: the worker died"; cat "$tmp/log"; exit 1; }
echo "all passed"
