#!/usr/bin/env bash
# gpuslice worker's dynamic batching against curl on loopback: 16 concurrent
# batch-1 infers of the MLP on a model with max_batch_size 8 and a 20 ms
# queue delay give the unbatched answers (and numpy's), and /stats shows
# batches larger than 1; a preferred batch size starts a batch without
# waiting out the delay; a request over max_batch_size is 400 and bad
# dynamic_batching configs leave the model not ready with the reason.
# Skips (77) when the models cannot be generated.
. "$(dirname "$0")/worker_lib.sh"
onnx_python
make_models "$py"
model() { # NAME CONFIG
  mkdir -p "$tmp/models/$1/1"
  cp "$tmp/models/mlp/1/model.onnx" "$tmp/models/$1/1/"
  echo "$2" >"$tmp/models/$1/config.json"
}
model mlp_batched '{"max_batch_size": 8, "dynamic_batching": {"max_queue_delay_microseconds": 20000}}'
model mlp_preferred '{"max_batch_size": 8, "dynamic_batching": {"max_queue_delay_microseconds": 5000000, "preferred_batch_size": [4]}}'
model no_max_batch '{"dynamic_batching": {}}'
model bad_preferred '{"max_batch_size": 4, "dynamic_batching": {"preferred_batch_size": [8]}}'
model bad_key '{"max_batch_size": 4, "dynamic_batching": {"priority_levels": 2}}'
# An instance memory budget: one row of the MLP's intermediates (256 + 10
# + 10 floats) fits in 4 KiB, eight rows do not.
model mlp_budget '{"max_batch_size": 8, "instance_memory_budget_bytes": 4096}'
model bad_budget '{"instance_memory_budget_bytes": -1}'

start_worker --grpc-port 0 --metrics-port 0 --threads 4
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

for m in mlp_batched mlp_preferred; do
  grep -q "model '$m' is ready" "$tmp/log" || fail "$m not ready"
done
grep -q "no_max_batch' is not ready: .*dynamic_batching needs max_batch_size > 0" "$tmp/log" ||
  fail "dynamic_batching without max_batch_size not refused"
grep -q "bad_preferred' is not ready: .*preferred_batch_size holds sizes 1..4" "$tmp/log" ||
  fail "preferred size over max_batch_size not refused"
grep -q "bad_key' is not ready: .*dynamic_batching.priority_levels is not supported" "$tmp/log" ||
  fail "unknown dynamic_batching key not refused"
# Triton shows default_queue_policy with its defaults when none is set
curl -s "$base/v2/models/mlp_batched/config" | grep -q '"dynamic_batching":{"preferred_batch_size":\[\],"max_queue_delay_microseconds":20000,"default_queue_policy":{"timeout_action":"REJECT","default_timeout_microseconds":0,"allow_timeout_override":false,"max_queue_size":0}}' ||
  fail "/config does not report dynamic_batching"

# 16 requests, each one row of 64 values, and their unbatched answers.
"$py" - "$tmp" <<'PY'
import json, sys
import numpy as np
rng = np.random.default_rng(7)
for i in range(16):
    x = rng.standard_normal((1, 64)).astype(np.float32)
    np.save(f"{sys.argv[1]}/x{i}.npy", x)
    json.dump({"id": f"r{i}", "inputs": [{"name": "input", "shape": [1, 64],
               "datatype": "FP32", "data": x.ravel().tolist()}]},
              open(f"{sys.argv[1]}/req{i}.json", "w"))
PY
for i in $(seq 0 15); do
  curl -s -o "$tmp/single$i.json" -d @"$tmp/req$i.json" "$base/v2/models/mlp/infer" ||
    fail "unbatched infer $i"
done
for i in $(seq 0 15); do
  curl -s -o "$tmp/batched$i.json" -w '%{http_code}\n' -d @"$tmp/req$i.json" \
    "$base/v2/models/mlp_batched/infer" >"$tmp/code$i" &
done
wait $(jobs -p | grep -v "^$pid$")
curl -s "$base/v2/models/mlp_batched/stats" >"$tmp/stats.json"
"$py" - "$tmp" "$GS_SOURCE_DIR/scripts" <<'PY' || fails=$((fails + 1))
import json, sys
import numpy as np
tmp = sys.argv[1]
sys.path.insert(0, sys.argv[2])
from make_models import mlp_reference
for i in range(16):
    code = open(f"{tmp}/code{i}").read().strip()
    assert code == "200", (i, code, open(f"{tmp}/batched{i}.json").read()[:300])
    b = json.load(open(f"{tmp}/batched{i}.json"))
    s = json.load(open(f"{tmp}/single{i}.json"))
    assert b["id"] == f"r{i}", b
    assert b["outputs"][0]["shape"] == [1, 10], b
    yb = np.array(b["outputs"][0]["data"], dtype=np.float32)
    ys = np.array(s["outputs"][0]["data"], dtype=np.float32)
    ref = mlp_reference(np.load(f"{tmp}/x{i}.npy")).ravel()
    assert np.allclose(yb, ys, rtol=1e-5, atol=1e-6), (i, yb, ys)
    assert np.allclose(yb, ref, rtol=1e-4, atol=1e-5), (i, yb, ref)
st = json.load(open(f"{tmp}/stats.json"))["model_stats"][0]
sizes = {e["batch_size"]: e["compute_infer"]["count"] for e in st["batch_stats"]}
assert st["inference_count"] == 16, st
assert sum(n * c for n, c in sizes.items()) == 16, sizes
assert max(sizes) > 1, f"no batch larger than 1: {sizes}"
assert max(sizes) <= 8, sizes
assert st["execution_count"] == sum(sizes.values()) < 16, st
assert st["inference_stats"]["queue"]["count"] == 16, st
for k in ("compute_input", "compute_infer", "compute_output"):
    assert set(st["batch_stats"][0][k]) == {"count", "ns"}, st["batch_stats"]
print(f"ok: 16 concurrent batch-1 infers match unbatched and numpy; "
      f"batch sizes {sizes}")
PY

# A preferred size starts the batch at once, not after the 5 s delay.
start=$(date +%s%N)
for i in 0 1 2 3; do
  curl -s -o /dev/null -w '%{http_code}\n' -d @"$tmp/req$i.json" \
    "$base/v2/models/mlp_preferred/infer" >"$tmp/pcode$i" &
done
wait $(jobs -p | grep -v "^$pid$")
ms=$((($(date +%s%N) - start) / 1000000))
cat "$tmp"/pcode* | grep -vq 200 && fail "preferred-size infers failed"
[ $ms -lt 3000 ] || fail "preferred batch of 4 waited ${ms} ms"
curl -s "$base/v2/models/mlp_preferred/stats" | grep -q '"batch_size":4' ||
  fail "no batch of the preferred size 4: $(curl -s "$base/v2/models/mlp_preferred/stats")"
echo "ok: preferred batch size 4 ran after ${ms} ms"

# Larger than max_batch_size: 400, as Triton answers.
big=$("$py" -c 'import json; print(json.dumps({"inputs":[{"name":"input","shape":[9,64],"datatype":"FP32","data":[0.5]*576}]}))')
got=$(curl -s -o "$tmp/body" -w '%{http_code}' -d "$big" "$base/v2/models/mlp_batched/infer")
[ "$got" = 400 ] && grep -q 'batch-size must be <= 8' "$tmp/body" ||
  fail "batch 9: $got $(cat "$tmp/body")"
# Several rows in one request share a batch with others and come back whole.
two=$("$py" -c 'import json; print(json.dumps({"inputs":[{"name":"input","shape":[2,64],"datatype":"FP32","data":[0.25]*128}]}))')
got=$(curl -s -o "$tmp/body" -w '%{http_code}' -d "$two" "$base/v2/models/mlp_batched/infer")
[ "$got" = 200 ] && grep -q '"shape":\[2,10\]' "$tmp/body" ||
  fail "batch 2: $got $(head -c 300 "$tmp/body")"

# The instance memory budget: a batch within it runs, a larger one is
# refused with a message, the model keeps serving.
grep -q "bad_budget' is not ready: .*instance_memory_budget_bytes must be a positive integer" "$tmp/log" ||
  fail "a negative memory budget not refused"
one=$("$py" -c 'import json; print(json.dumps({"inputs":[{"name":"input","shape":[1,64],"datatype":"FP32","data":[0.5]*64}]}))')
eight=$("$py" -c 'import json; print(json.dumps({"inputs":[{"name":"input","shape":[8,64],"datatype":"FP32","data":[0.5]*512}]}))')
got=$(curl -s -o "$tmp/body" -w '%{http_code}' -d "$one" "$base/v2/models/mlp_budget/infer")
[ "$got" = 200 ] || fail "batch 1 within the budget: $got $(head -c 300 "$tmp/body")"
got=$(curl -s -o "$tmp/body" -w '%{http_code}' -d "$eight" "$base/v2/models/mlp_budget/infer")
[ "$got" != 200 ] && grep -qi 'memory\|bytes' "$tmp/body" ||
  fail "batch 8 over the budget: $got $(head -c 300 "$tmp/body")"
echo "ok: memory budget: batch 1 runs, batch 8 refused: $(head -c 200 "$tmp/body")"
got=$(curl -s -o /dev/null -w '%{http_code}' -d "$one" "$base/v2/models/mlp_budget/infer")
[ "$got" = 200 ] || fail "the model stopped serving after a refused batch: $got"

kill "$pid"
wait "$pid"
rc=$?
pid=
[ $rc -eq 0 ] || fail "worker exited $rc on SIGTERM"
[ $fails -eq 0 ] || { echo "$fails check(s) failed"; cat "$tmp/log"; exit 1; }
echo "PASS"
