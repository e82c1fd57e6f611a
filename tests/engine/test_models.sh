#!/usr/bin/env bash
# The models scripts/make_models.py builds load and run in the engine and
# match a reference at batch 1 and N: `simple` and the MLP what numpy
# computes; cnn_small and resnet50 what an independent implementation,
# onnxruntime's CPU provider (PyPI, in a venv beside run_node_tests), computes.
# Only make_models.py's exit 77 (no onnx package) skips; anything else that
# goes wrong, pip unable to install onnxruntime included, is a failure.
# env: GS_ORT_VENV (the venv; default next to RUN_NODE_TESTS), ENGINE_BENCH
# (bench/engine_bench, which runs a model on a given input; default: the
# same build's).
set -u
: "${GS_SOURCE_DIR:?}" "${RUN_NODE_TESTS:?}"
build=$(cd "$(dirname "$RUN_NODE_TESTS")/.." && pwd)
engine_bench=${ENGINE_BENCH:-$build/bench/engine_bench}
venv=${GS_ORT_VENV:-$build/tests/ort-venv}
make_models=$GS_SOURCE_DIR/scripts/make_models.py
fail() { echo "FAIL: $*"; exit 1; }

# The interpreter with the onnx package (Debian's python3-onnx), if any:
# the venv takes onnx and numpy from it and adds onnxruntime.
py=
for p in "$(command -v python3)" /usr/bin/python3; do
  if [ -x "$p" ] && "$p" -c 'import onnx, numpy' 2>/dev/null; then py=$p; break; fi
done
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"${py:-python3}" "$make_models" --out "$out/models" --test-data "$out/tests"
rc=$?
if [ $rc -eq 77 ]; then
  echo "SKIP: scripts/make_models.py needs the onnx package (python3-onnx)"
  exit 77
fi
[ $rc -eq 0 ] || fail "scripts/make_models.py exited $rc"
for m in simple mlp classifier resnet50 cnn_small; do
  [ -s "$out/models/$m/1/model.onnx" ] || fail "no models/$m/1/model.onnx"
done
[ -s "$out/models/resnet50/config.json" ] || fail "no models/resnet50/config.json"
[ -x "$engine_bench" ] || fail "no $engine_bench (build the engine_bench target)"

if ! "$venv/bin/python" -c 'import onnx, onnxruntime' 2>/dev/null; then
  { [ -x "$venv/bin/python" ] || "$py" -m venv --system-site-packages "$venv"; } &&
    "$venv/bin/pip" install -q onnxruntime >"$out/pip.log" 2>&1
  "$venv/bin/python" -c 'import onnx, onnxruntime' ||
    { tail -5 "$out/pip.log"; fail "no onnx and onnxruntime in $venv (pip install onnxruntime)"; }
fi
cnns=("$out/tests/test_model_cnn_small" "$out/tests/test_model_resnet50")
"$venv/bin/python" "$make_models" --onnxruntime-outputs "${cnns[@]}" ||
  fail "onnxruntime could not compute the expected outputs"

# Element by element, as ONNX's backend tests (|got - want| <= 1e-7 +
# 1e-3 |want|). Not resnet50: two correct FP32 runs of it (onnxruntime with
# and without its graph optimizations) already differ by more than that on
# the logits nearest 0, since each logit's error follows the size of the
# activations before it, not of the logit.
"$RUN_NODE_TESTS" --no-skip "$out/tests/test_model_simple" "$out/tests/test_model_mlp" \
  "$out/tests/test_model_cnn_small" || fail "run_node_tests"

# The issue's rule for the CNNs: every image's top-1 class identical, and
# its max relative error, max |got - want| / max |want| over its logits,
# at most 1e-3 in FP32.
"$venv/bin/python" - "$engine_bench" "${cnns[@]}" <<'PY' || fail "engine against onnxruntime"
import os, subprocess, sys
import numpy as np, onnx
from onnx import numpy_helper

def read(path):
    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return numpy_helper.to_array(t)

bench, failed = sys.argv[1], 0
for test in sys.argv[2:]:
    for data in sorted(d for d in os.listdir(test) if d.startswith("test_data_set_")):
        d = os.path.join(test, data)
        x, want = read(os.path.join(d, "input_0.pb")), read(os.path.join(d, "output_0.pb"))
        x.tofile(os.path.join(d, "input.raw"))
        subprocess.run([bench, "--model", os.path.join(test, "model.onnx"), "--batch",
                        str(len(x)), "--threads", "2", "--iters", "1", "--warmup", "0",
                        "--input", os.path.join(d, "input.raw"),
                        "--output", os.path.join(d, "output.raw")], check=True,
                       stdout=subprocess.DEVNULL)
        got = np.fromfile(os.path.join(d, "output.raw"), np.float32).reshape(want.shape)
        diff = np.abs(got - want)
        rel = (diff.max(axis=1) / np.abs(want).max(axis=1)).max()
        top1 = (got.argmax(axis=1) == want.argmax(axis=1)).sum()
        elem = (diff / np.maximum(np.abs(want), 1e-30)).max()
        ok = top1 == len(x) and rel <= 1e-3
        failed += not ok
        print("%s %s batch %d: top-1 %d/%d identical, max relative error %.2e "
              "(element-wise %.2e)" % ("PASS" if ok else "FAIL",
              os.path.basename(test), len(x), top1, len(x), rel, elem))
sys.exit(1 if failed else 0)
PY
echo "PASS: every model matches its reference"
