#!/usr/bin/env bash
# The models scripts/make_models.py builds for the demo (Triton's `simple`,
# the MLP classifier) load and run in the engine and match what numpy
# computes, at batch sizes 1 and N. Skips (77) when the generator cannot run
# (no python3 with the onnx package).
set -u
: "${GS_SOURCE_DIR:?}" "${RUN_NODE_TESTS:?}"
if ! command -v python3 >/dev/null && [ ! -x /usr/bin/python3 ]; then
  echo "SKIP: no python3 to run scripts/make_models.py"
  exit 77
fi
py=$(command -v python3 || echo /usr/bin/python3)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$py" "$GS_SOURCE_DIR/scripts/make_models.py" --out "$out/models" --test-data "$out/tests"
rc=$?
if [ $rc -eq 77 ]; then
  echo "SKIP: scripts/make_models.py needs the onnx package (python3-onnx)"
  exit 77
fi
[ $rc -eq 0 ] || { echo "FAIL: scripts/make_models.py exited $rc"; exit 1; }
for m in simple mlp; do
  [ -s "$out/models/$m/1/model.onnx" ] || { echo "FAIL: no models/$m/1/model.onnx"; exit 1; }
done
"$RUN_NODE_TESTS" --no-skip "$out/tests/test_model_simple" "$out/tests/test_model_mlp"
