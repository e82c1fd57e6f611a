#!/usr/bin/env bash
# Triton's config.pbtxt in a real worker, as a new Triton user tries it:
# `simple` with max_batch_size 8 serves batches of 8 and refuses 9; a model
# without a config is autocompleted as Triton does (max_batch_size 4, dims
# without the batch dimension, dynamic batching); a syntax error, an unknown
# field, an unsupported field, a config that contradicts the model, and
# config.pbtxt beside config.json each leave that model not ready with the
# reason while the worker serves the others; version_policy picks the
# version. Then the same through Triton's Python client.
. "$(dirname "$0")/worker_lib.sh"
. "$(dirname "$0")/triton_env.sh"
py=$(command -v python3 || echo /usr/bin/python3)
make_models "$py"
data=$GS_SOURCE_DIR/tests/data/pbtxt
m=$tmp/models
# model NAME SOURCE_MODEL [CONFIG_PBTXT]: NAME/1/model.onnx, its config.pbtxt
model() {
  mkdir -p "$m/$1/1"
  cp "$m/$2/1/model.onnx" "$m/$1/1/"
  [ -z "${3-}" ] || cp "$3" "$m/$1/config.pbtxt"
}
rm "$m/simple/config.json" "$m/mlp/config.json"
cp "$data/simple.pbtxt" "$m/simple/config.pbtxt"
model auto mlp
sed 's/name: "simple"/name: "syntax"/' "$data/syntax_error.pbtxt" >"$tmp/s.pbtxt"
model syntax simple "$tmp/s.pbtxt"
model unknown simple "$data/unknown_field.pbtxt"
sed 's/name: "simple"/name: "sequence"/' "$data/sequence.pbtxt" >"$tmp/q.pbtxt"
model sequence simple "$tmp/q.pbtxt"
printf 'max_batch_size: 8\ninput [{ name: "INPUT0" data_type: TYPE_INT32 dims: [ 15 ] }]\n' >"$tmp/c.pbtxt"
model contra simple "$tmp/c.pbtxt"
model both simple
echo 'max_batch_size: 8' >"$m/both/config.pbtxt"
echo '{"max_batch_size": 8}' >"$m/both/config.json"
model versions simple
mkdir -p "$m/versions/2" && cp "$m/mlp/1/model.onnx" "$m/versions/2/"
echo 'version_policy: { specific: { versions: [ 1 ] } }' >"$m/versions/config.pbtxt"

start_worker --threads 2
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
# not_ready NAME REGEX: the worker's log gives NAME's reason, matching REGEX.
not_ready() {
  if grep -Eq "model '$1' is not ready: .*$2" "$tmp/log"; then
    echo "ok: $1 not ready: $(grep -o "model '$1' is not ready: .*" "$tmp/log" | cut -c1-140)"
  else
    fail "$1: no reason matching '$2'"; grep "'$1'" "$tmp/log"
  fi
}
not_ready syntax "[^ ]*/syntax/config.pbtxt:9:1: Expected"
not_ready unknown "[^ ]*/unknown/config.pbtxt:5:[0-9]+: .*no field named \"max_queue_delay_milliseconds\""
not_ready sequence "config.pbtxt: sequence_batching control_input 'START' is not one of the model's inputs"
not_ready contra "'INPUT0' has dims \[15\] in the config but \[16\] in the model"
not_ready both "has both config.pbtxt and config.json"

# get PATH: the body of GET base/PATH; fails the test unless 200.
get() {
  local code
  code=$(curl -s -o "$tmp/body" -w '%{http_code}' "$base/$1")
  [ "$code" = 200 ] || fail "GET $1: $code $(cat "$tmp/body")"
  cat "$tmp/body"
}
# infer MODEL ROWS: status of an infer of ROWS rows of simple's inputs.
infer() {
  local data
  data=$(python3 -c "import json; print(json.dumps([list(range(16))]*$2))")
  curl -s -o "$tmp/body" -w '%{http_code}' -d '{"inputs":[{"name":"INPUT0","shape":['"$2"',16],"datatype":"INT32","data":'"$data"'},{"name":"INPUT1","shape":['"$2"',16],"datatype":"INT32","data":'"$data"'}]}' "$base/v2/models/$1/infer"
}
cfg=$(get v2/models/simple/config)
grep -q '"max_batch_size":8' <<<"$cfg" && grep -q '"preferred_batch_size":\[4,8\]' <<<"$cfg" &&
  grep -q '"dims":\[16\]' <<<"$cfg" && echo "ok: simple's config.pbtxt served" ||
  fail "simple's config: $cfg"
[ "$(infer simple 8)" = 200 ] && echo "ok: a batch of 8" || fail "batch of 8: $(cat "$tmp/body")"
[ "$(infer simple 9)" = 400 ] && grep -q 'batch-size must be <= 8' "$tmp/body" &&
  echo "ok: a batch of 9 refused" || fail "batch of 9: $(cat "$tmp/body")"
cfg=$(get v2/models/auto/config)
grep -q '"max_batch_size":4' <<<"$cfg" && grep -q '"dims":\[64\]' <<<"$cfg" &&
  grep -q '"dynamic_batching"' <<<"$cfg" && echo "ok: config-less model autocompleted" ||
  fail "autocomplete: $cfg"
meta=$(get v2/models/versions)
grep -q '"versions":\["1"\]' <<<"$meta" && grep -q '"INPUT0"' <<<"$meta" &&
  echo "ok: version_policy specific serves version 1" || fail "versions: $meta"
get v2/health/live >/dev/null && echo "ok: the worker is up"

if ! triton_python; then
  echo "SKIP (part): $TRITON_WHY"
  [ $fails -eq 0 ] && exit 77
else
  "$TRITON_PY" - "$port" <<'PY' || fails=$((fails + 1))
import sys
import numpy as np
import tritonclient.http as http
c = http.InferenceServerClient(url="127.0.0.1:" + sys.argv[1])
cfg = c.get_model_config("simple")
assert cfg["max_batch_size"] == 8, cfg
assert cfg["input"][0]["dims"] == [16], cfg
def infer(model, rows):
    a = np.arange(16 * rows, dtype=np.int32).reshape(rows, 16)
    ins = [http.InferInput("INPUT0", [rows, 16], "INT32"),
           http.InferInput("INPUT1", [rows, 16], "INT32")]
    for i in ins:
        i.set_data_from_numpy(a, binary_data=True)
    r = c.infer(model, ins)
    assert (r.as_numpy("OUTPUT0") == 2 * a).all()
infer("simple", 8)
try:
    infer("simple", 9)
    raise SystemExit("a batch of 9 was served by a model of max_batch_size 8")
except http.InferenceServerException as e:
    assert "batch-size must be <= 8" in str(e), e
auto = c.get_model_config("auto")
assert auto["max_batch_size"] == 4 and auto["input"][0]["dims"] == [64], auto
assert "dynamic_batching" in auto, auto
assert not c.is_model_ready("contra")
print("ok: tritonclient sees max_batch_size 8 and the autocompleted config")
PY
fi
[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "all passed"
