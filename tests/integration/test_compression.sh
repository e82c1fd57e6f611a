#!/usr/bin/env bash
# Request and response compression (gzip, deflate) on HTTP and gRPC with
# Triton's Python clients and raw connections (tests/integration/
# compression_check.py): against a worker, then through `gpuslice serve`'s
# router (which decodes HTTP bodies at its front and compresses its answers
# there, and relays gRPC messages as they are). Needs tritonclient[http,grpc]
# from PyPI: a venv in the build dir; a client that cannot be installed is
# a failure, never a skip.
. "$(dirname "$0")/serve_lib.sh"
. "$(dirname "$0")/triton_env.sh"
triton_python || fail "cannot install tritonclient[http,grpc] from PyPI: $TRITON_WHY"
check=$GS_SOURCE_DIR/tests/integration/compression_check.py

# A worker on its own.
hport=$(free_port)
gport=$(free_port)
"$GPUSLICE" worker --model-repository "$tmp/models" --http-port "$hport" \
  --grpc-port "$gport" --metrics-port 0 --threads 2 2>"$tmp/worker.log" &
wpid=$!
for _ in $(seq 100); do grep -q 'listening for gRPC' "$tmp/worker.log" && break; sleep 0.1; done
grep -q "listening for gRPC" "$tmp/worker.log" || fail "worker did not start: $(cat "$tmp/worker.log")"
"$TRITON_PY" "$check" "$hport" "$gport" worker || fail "worker"
kill "$wpid"; wait "$wpid"

# The same through the router.
start_serve
"$TRITON_PY" "$check" "$port" "$grpc_port" serve || fail "through serve"
echo "PASS"
