#!/usr/bin/env bash
# Models shaped like Triton's QA add/sub and identity ONNX models
# (scripts/make_qa_models.py, fixed- and variable-shape sets, every data type
# that generator uses: INT8..INT64, FP16, FP32, BF16, STRING via Cast to
# INT32, BOOL identity): each model version's answer from the engine checked
# against numpy's (tests/engine/run_node_tests, no skips), then every model
# loaded by `gpuslice worker` (config.pbtxt as the generator writes it,
# label_filename included) and every served version of each (STRING ones
# too) checked over HTTP with Triton's Python client against numpy.
# Skips (77) when the models cannot be generated; the client part skips
# when pip cannot install tritonclient[http].
. "$(dirname "$0")/worker_lib.sh"
. "$(dirname "$0")/triton_env.sh"
: "${RUN_NODE_TESTS:?RUN_NODE_TESTS: the run_node_tests binary}"
py=$(command -v python3 || echo /usr/bin/python3)
fails=0
for set in fixed variable; do
  flag=; [ $set = variable ] && flag=--variable
  "$py" "$GS_SOURCE_DIR/scripts/make_qa_models.py" $flag \
    --out "$tmp/$set" --test-data "$tmp/data-$set"
  rc=$?
  [ $rc -eq 77 ] && { echo "SKIP: make_qa_models.py needs python3-onnx"; exit 77; }
  [ $rc -eq 0 ] || { echo "FAIL: make_qa_models.py $flag exited $rc"; exit 1; }
done
n=$(ls -d "$tmp"/data-*/* | wc -l)
if "$RUN_NODE_TESTS" --no-skip "$tmp"/data-*/* >"$tmp/engine.log" 2>&1; then
  echo "ok: engine: $(tail -n 1 "$tmp/engine.log")"
else
  grep -v '^PASS' "$tmp/engine.log"; fails=$((fails + 1))
fi
grep -q "^$n passed, 0 skipped, 0 failed" "$tmp/engine.log" ||
  { echo "FAIL: engine: expected $n passes"; fails=$((fails + 1)); }

if ! triton_python; then
  echo "SKIP (part): $TRITON_WHY"
  [ $fails -eq 0 ]; exit
fi
for set in fixed variable; do
  ln -sfn "$tmp/$set" "$tmp/models"
  rm -f "$tmp/log" # start_worker reads the port from a fresh log
  start_worker --grpc-port 0 --metrics-port 0 --threads 1
  "$TRITON_PY" - "$port" "$tmp/$set" "$tmp/data-$set" <<'PY' || fails=$((fails + 1))
import os, sys
import numpy as np
import tritonclient.http as http
try:  # tritonclient from r26.06 wants ml_dtypes' bfloat16 for BF16
    from ml_dtypes import bfloat16 as bf16
except ImportError:
    bf16 = None

port, repo, data = sys.argv[1], sys.argv[2], sys.argv[3]
c = http.InferenceServerClient("127.0.0.1:" + port)
fails = checked = meta_only = 0
for name in sorted(os.listdir(repo)):
    if not c.is_model_ready(name):
        index = {m["name"]: m for m in c.get_model_repository_index()}
        reason = index.get(name, {}).get("reason", "")
        print("FAIL %s: not ready: %s" % (name, reason)); fails += 1
        continue
    meta = c.get_model_metadata(name)
    types = {t["name"]: t["datatype"] for t in meta["inputs"] + meta["outputs"]}
    if "BYTES" in types.values():
        meta_only += 1
    # every served version, each asked for by number (unversioned requests
    # go to the highest)
    for version in sorted(int(v) for v in meta["versions"]):
        npz = np.load(os.path.join(data, "%s_v%d" % (name, version), "data.npz"),
                      allow_pickle=True)
        try:
            inputs = []
            for t in meta["inputs"]:
                x = npz[t["name"]]
                if t["datatype"] == "BF16":  # values exact in BF16
                    x = x.astype(bf16) if bf16 else x.astype(np.float32)
                i = http.InferInput(t["name"], list(x.shape), t["datatype"])
                i.set_data_from_numpy(x, binary_data=True)
                inputs.append(i)
            outs = [http.InferRequestedOutput(t["name"], binary_data=True)
                    for t in meta["outputs"]]
            r = c.infer(name, inputs, outputs=outs, model_version=str(version))
        except Exception as e:
            print("FAIL %s v%d: %s" % (name, version, e)); fails += 1
            continue
        for t in meta["outputs"]:
            got, want = r.as_numpy(t["name"]), npz[t["name"]]
            if want.dtype == object:  # BYTES: compare as bytes
                want = np.vectorize(lambda v: v if isinstance(v, bytes)
                                    else str(v).encode(), otypes=[object])(want)
            if got is None or got.shape != want.shape or \
                    not np.array_equal(got.astype(want.dtype), want):
                print("FAIL %s v%d %s: got %s, want %s"
                      % (name, version, t["name"], got, want))
                fails += 1
        checked += 1
print("%s: %d model versions' answers checked over HTTP (%d models with "
      "BYTES tensors among them)" % (os.path.basename(repo), checked, meta_only))
sys.exit(1 if fails or checked == 0 else 0)
PY
  kill "$pid"; wait "$pid" 2>/dev/null; pid=
done
[ $fails -eq 0 ] && echo "test_qa_models: ok"
[ $fails -eq 0 ]
