#!/usr/bin/env bash
# Runs Triton's own Python client examples, unchanged, against `gpuslice
# worker` (by hand, beside the project: CI has no GitHub). Serves Triton's
# example model repository as it ships plus the ONNX stand-ins the examples
# also call, then prints one line per script: PASS/FAIL and the last line.
# usage: run_triton_examples.sh GPUSLICE CLIENT_EXAMPLES_DIR TRITON_REPO [VENV]
# (VENV: pip install "tritonclient[http,grpc]" pillow; without it, the
# tests' triton_python makes one, with pillow, at $GS_TRITON_VENV or in OUT;
# ports 8000/8001 free; OUT=DIR keeps the logs there). Last run: README,
# "Triton's client examples".
set -u
gpuslice=$1 examples=$2 triton_repo=$3
here=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$(mktemp -d)}
if [ -n "${4:-}" ]; then
  TRITON_PY=$4/bin/python
else
  . "$here/tests/integration/triton_env.sh"
  GS_TMP=$out triton_python pillow || { echo "run_triton_examples: $TRITON_WHY" >&2; exit 1; }
fi
wpid=
trap 'kill $wpid 2>/dev/null; wait $wpid 2>/dev/null' EXIT
serve() { # REPO ARGS...: a worker on 8000/8001, its log in $out/worker.log
  "$gpuslice" worker --model-repository "$@" --threads 2 2>"$out/worker.log" &
  wpid=$!
  for _ in $(seq 100); do grep -q 'listening for gRPC' "$out/worker.log" && break; sleep 0.1; done
}
# 1. Triton's example repository exactly as it ships.
serve "$triton_repo"
sleep 1
echo "--- Triton's example repository as it ships:"
"$TRITON_PY" - <<'PY'
import tritonclient.http as h
c = h.InferenceServerClient("localhost:8000")
for m in c.get_model_repository_index():
    print("%-22s %-12s %s" % (m["name"], m.get("state", ""), m.get("reason", "")))
PY
kill $wpid; wait $wpid 2>/dev/null
# 2. The same with ONNX stand-ins where Triton's models do not load:
# simple_identity (a Python model; the string examples call it) and
# densenet_onnx's model.onnx (no weights ship; the image examples call it:
# Triton's config and labels stay, reshapes included); inception_onnx (no
# weights, no example calls it) left out: the HTTP model control example
# expects 7 models.
repo=$out/models
rm -rf "$repo" && mkdir -p "$repo" && cp -r "$triton_repo"/. "$repo"/
rm -rf "$repo/simple_identity" "$repo/inception_onnx"
python3 "$here/tests/integration/make_string_models.py" --out "$out/strings" >/dev/null
python3 "$here/tests/integration/make_example_models.py" --out "$out/ex" >/dev/null
cp -r "$out/strings/simple_identity" "$repo/"
mkdir -p "$repo/densenet_onnx/1"
cp "$out/ex/densenet_onnx/1/model.onnx" "$repo/densenet_onnx/1/"
serve "$repo" --model-control-mode explicit --load-model '*' --server-name triton
"$TRITON_PY" - "$out/mug.jpg" <<'PY'
import sys
from PIL import Image
Image.new("RGB", (320, 240), (200, 120, 40)).save(sys.argv[1])
PY
run() { # NAME ARGS...
  local s=$1; shift
  timeout 60 "$TRITON_PY" "$examples/$s" "$@" >"$out/${s%.py}$(echo "$*" | tr -dc a-z).log" 2>&1
  local rc=$? last
  last=$(grep -v '^\s*$' "$out/${s%.py}$(echo "$*" | tr -dc a-z).log" | tail -1 | cut -c1-110)
  printf '%-48s %s  %s\n' "$s $*" "$([ $rc -eq 0 ] && echo PASS || echo "FAIL($rc)")" "$last"
}
for s in simple_http_infer_client.py simple_grpc_infer_client.py \
  simple_http_async_infer_client.py simple_grpc_async_infer_client.py \
  simple_http_aio_infer_client.py simple_grpc_aio_infer_client.py \
  simple_http_string_infer_client.py simple_grpc_string_infer_client.py \
  simple_http_shm_client.py simple_grpc_shm_client.py \
  simple_http_shm_string_client.py simple_grpc_shm_string_client.py \
  simple_http_health_metadata.py simple_grpc_health_metadata.py \
  simple_http_sequence_sync_infer_client.py simple_grpc_sequence_sync_infer_client.py \
  simple_grpc_sequence_stream_infer_client.py simple_grpc_aio_sequence_stream_infer_client.py \
  simple_grpc_custom_args_client.py simple_grpc_keepalive_client.py \
  grpc_explicit_byte_content_client.py grpc_explicit_int_content_client.py \
  grpc_explicit_int8_content_client.py reuse_infer_objects_client.py \
  grpc_client.py simple_grpc_custom_repeat.py memory_growth_test.py; do
  run "$s"
done
run reuse_infer_objects_client.py -i grpc -u localhost:8001
run image_client.py -m densenet_onnx -c 3 -s INCEPTION "$out/mug.jpg"
run image_client.py -i grpc -u localhost:8001 -m densenet_onnx -c 3 -s INCEPTION "$out/mug.jpg"
run grpc_image_client.py -m densenet_onnx -c 3 -s INCEPTION "$out/mug.jpg"
# last: they unload simple
run simple_http_model_control.py
# Triton's gRPC model control example expects 8 models (its HTTP one 7):
# inception_onnx back (never loaded: neither example asks for it).
cp -r "$triton_repo/inception_onnx" "$repo/"
run simple_grpc_model_control.py
# 3. The sequence examples' -d runs: simple_dyna_sequence as Triton ships
# it, and simple_string_dyna_sequence (not in Triton's example repository:
# its QA's custom backend) from scripts/make_seq_models.py; and the image
# examples on inception_onnx (Triton's config and labels, a stand-in
# model.onnx).
kill $wpid; wait $wpid 2>/dev/null
python3 "$here/scripts/make_seq_models.py" --out "$out/seq" >/dev/null
cp -r "$out/seq/simple_string_dyna_sequence" "$repo/"
mkdir -p "$repo/inception_onnx/1"
cp "$out/ex/inception_onnx/1/model.onnx" "$repo/inception_onnx/1/"
serve "$repo" --server-name triton
run image_client.py -m inception_onnx -c 3 -s INCEPTION "$out/mug.jpg"
run image_client.py -i grpc -u localhost:8001 -m inception_onnx -c 3 -s INCEPTION "$out/mug.jpg"
for s in simple_http_sequence_sync_infer_client.py simple_grpc_sequence_sync_infer_client.py \
  simple_grpc_sequence_stream_infer_client.py simple_grpc_aio_sequence_stream_infer_client.py; do
  run "$s" -d
done
