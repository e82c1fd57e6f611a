#!/usr/bin/env bash
# Triton's model repository extension and model control against Triton's
# Python client (tritonclient[http,grpc]) on loopback, as Triton's
# simple_http_model_control.py and simple_grpc_model_control.py use it:
# index (and its ready filter), load, load with a config override, unload
# (unload_dependents), a load of a model that does not exist; plus bad
# overrides (not JSON, contradicting the model, a "file:" parameter that is
# not ONNX: a clear error, the old version keeps serving), versions (version_policy, infer,
# ready, metadata and statistics per version, unversioned requests on the
# highest), --model-control-mode none (load refused) and poll (a new model,
# a new version and a removed model followed). Skips (77) when the models
# cannot be generated or pip cannot install tritonclient.
. "$(dirname "$0")/worker_lib.sh"
. "$(dirname "$0")/triton_env.sh"
py=/usr/bin/python3
"$py" "$GS_SOURCE_DIR/tests/integration/make_repo_models.py" --out "$tmp/models"
rc=$?
[ $rc -eq 77 ] && { echo "SKIP: make_repo_models.py needs python3-onnx"; exit 77; }
[ $rc -eq 0 ] || { echo "FAIL: make_repo_models.py exited $rc"; exit 1; }

triton_python || { echo "SKIP: $TRITON_WHY"; exit 77; }

fails=0
# run_worker LOG ARGS...: a worker on free HTTP and gRPC ports; sets pid,
# port and gport.
run_worker() {
  local log=$1
  shift
  "$GPUSLICE" worker --model-repository "$tmp/models" --http-port 0 \
    --grpc-port any --metrics-port 0 --threads 2 "$@" 2>"$log" &
  pid=$!
  for _ in $(seq 100); do grep -q 'listening for gRPC' "$log" 2>/dev/null && break; sleep 0.1; done
  port=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$log")
  gport=$(sed -n 's/.*listening for gRPC on 127.0.0.1:\([0-9]*\).*/\1/p' "$log")
  [ -n "$port" ] && [ -n "$gport" ] || { echo "FAIL: worker did not start"; cat "$log"; exit 1; }
}
# stop_worker LOG: SIGTERM; the worker must exit 0 (under ASan: no leak,
# no error report).
stop_worker() {
  kill "$pid"
  wait "$pid" || { echo "FAIL: the worker exited $?"; tail -20 "$1"; fails=$((fails + 1)); }
  pid=
}

# ---- explicit mode ----------------------------------------------------------
run_worker "$tmp/log" --model-control-mode explicit --load-model versioned
"$TRITON_PY" - "$port" "$gport" <<'PY' || fails=$((fails + 1))
import json, sys
import numpy as np
import tritonclient.grpc as gc
import tritonclient.http as hc
from tritonclient.utils import InferenceServerException
h = hc.InferenceServerClient("127.0.0.1:" + sys.argv[1])
g = gc.InferenceServerClient("127.0.0.1:" + sys.argv[2])

def error(fn, *args, **kw):
    try:
        fn(*args, **kw)
    except InferenceServerException as e:
        return e
    raise SystemExit("FAIL: %s%r succeeded" % (fn.__name__, args))

def ok(what):
    print("ok:", what)

def infer(client, mod, name, version=""):
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.ones((1, 16), dtype=np.int32)
    ins = [mod.InferInput("INPUT0", [1, 16], "INT32"),
           mod.InferInput("INPUT1", [1, 16], "INT32")]
    ins[0].set_data_from_numpy(a)
    ins[1].set_data_from_numpy(b)
    r = client.infer(name, ins, model_version=version)
    out0 = r.as_numpy("OUTPUT0")
    resp = r.get_response()
    v = resp["model_version"] if isinstance(resp, dict) else resp.model_version
    if (out0 == a + b).all():
        return "sum", v
    assert (out0 == a - b).all(), out0
    return "difference", v

# Index: every model directory, loaded versions with their state.
idx = h.get_model_repository_index()
names = sorted((m["name"], m.get("version", ""), m.get("state", "")) for m in idx)
assert names == [("simple", "", ""), ("versioned", "1", "READY"),
                 ("versioned", "2", "READY")], names
gidx = g.get_model_repository_index().models
assert sorted((m.name, m.version, m.state) for m in gidx) == names, gidx
ready_only = h._post("v2/repository/index", json.dumps({"ready": True}), None, None)
assert sorted(m["name"] for m in json.loads(ready_only.read())) == ["versioned", "versioned"]
gready = g._client_stub.RepositoryIndex(
    gc.service_pb2.RepositoryIndexRequest(ready=True)).models
assert [m.name for m in gready] == ["versioned", "versioned"], gready
ok("index over HTTP and gRPC, and its ready filter")

# Load, as simple_*_model_control.py does.
assert not h.is_model_ready("simple")
h.load_model("simple")
assert h.is_model_ready("simple") and g.is_model_ready("simple")
assert h.get_model_config("simple")["max_batch_size"] == 8
ok("load over HTTP")

# Bad overrides: a clear error, and the old version keeps serving.
for client, mod in ((h, hc), (g, gc)):
    e = error(client.load_model, "simple",
              config='"parameters": {"config": {{"max_batch_size": "16"}}}')
    assert "failed to load" in e.message() and "not a model configuration in JSON" in e.message(), e
    e = error(client.load_model, "simple", config=json.dumps(
        {"input": [{"name": "NOPE", "data_type": "TYPE_INT32", "dims": [16]}]}))
    assert "failed to load" in e.message() and "'NOPE'" in e.message(), e
    e = error(client.load_model, "simple", config=json.dumps({"model_transaction_policy": {}}))
    assert "'model_transaction_policy' is not supported" in e.message(), e
    # a model file sent with the load that is not ONNX: refused naming it
    e = error(client.load_model, "simple", config="{}", files={"file:1/model.onnx": b"x"})
    assert "failed to load 'simple'" in e.message() and "'file:1/model.onnx'" in e.message(), e
    assert e.status() in ("400", "StatusCode.INVALID_ARGUMENT"), e.status()
    assert client.is_model_ready("simple")
    assert infer(client, mod, "simple") == ("sum", "1")
    assert client.is_server_live()
ok("bad overrides refused by name over HTTP and gRPC, the old version serving")

# A good override, over each protocol.
g.load_model("simple", config='{"max_batch_size":"16"}')
assert g.get_model_config("simple").config.max_batch_size == 16
h.load_model("simple", config='{"max_batch_size":"12"}')
assert h.get_model_config("simple")["max_batch_size"] == 12
assert infer(h, hc, "simple") == ("sum", "1")
ok("load with a config override (gRPC 16, HTTP 12)")

# Unload (unload_dependents accepted), then the model is not ready.
g.unload_model("simple", unload_dependents=True)
assert not g.is_model_ready("simple") and not h.is_model_ready("simple")
e = error(h.infer, "simple", [])
h.load_model("simple")
h.unload_model("simple")
assert not h.is_model_ready("simple")
ok("unload over gRPC and HTTP")

for client in (h, g):
    e = error(client.load_model, "wrong_model_name")
    assert "failed to load 'wrong_model_name', failed to poll from model repository" in e.message(), e
    assert e.status() in ("500", "StatusCode.INTERNAL"), e.status()
ok("a model that does not exist: failed to load (HTTP 500, gRPC INTERNAL)")

# Versions: policy specific [1, 2] of 1, 2, 3; 2 answers the difference.
for client, mod in ((h, hc), (g, gc)):
    assert infer(client, mod, "versioned") == ("difference", "2")
    assert infer(client, mod, "versioned", "1") == ("sum", "1")
    assert infer(client, mod, "versioned", "2") == ("difference", "2")
    assert client.is_model_ready("versioned", "1")
    assert not client.is_model_ready("versioned", "3")
    e = error(infer, client, mod, "versioned", "3")
    assert "version 3 is not found" in e.message(), e
assert h.get_model_metadata("versioned")["versions"] == ["1", "2"]
assert list(g.get_model_metadata("versioned").versions) == ["1", "2"]
st = h.get_inference_statistics("versioned", "1")["model_stats"]
assert [(s["version"], s["inference_count"]) for s in st] == [("1", 2)], st
st = g.get_inference_statistics("versioned").model_stats
assert sorted((s.version, s.inference_count) for s in st) == [("1", 2), ("2", 4)], st
ok("versions: infer, ready, metadata and statistics per version; unversioned on the highest")

# Policy by override: latest 1 serves version 3 alone.
h.load_model("versioned", config=json.dumps(
    {"max_batch_size": 8, "version_policy": {"latest": {"num_versions": 1}}}))
assert h.is_model_ready("versioned", "3") and not h.is_model_ready("versioned", "1")
assert infer(g, gc, "versioned") == ("sum", "3")
h.load_model("versioned")
assert h.get_model_metadata("versioned")["versions"] == ["1", "2"]
ok("version_policy from an override, and back from config.pbtxt")
assert h.is_server_live() and g.is_server_live()
PY
stop_worker "$tmp/log"

# ---- mode none: everything loads, load and unload are refused ------------------
run_worker "$tmp/log_none"
"$TRITON_PY" - "$port" "$gport" <<'PY' || fails=$((fails + 1))
import sys
import tritonclient.grpc as gc
import tritonclient.http as hc
from tritonclient.utils import InferenceServerException
h = hc.InferenceServerClient("127.0.0.1:" + sys.argv[1])
g = gc.InferenceServerClient("127.0.0.1:" + sys.argv[2])
assert h.is_model_ready("simple") and h.is_model_ready("versioned", "2")
for client, code in ((h, "503"), (g, "StatusCode.UNAVAILABLE")):
    for call in (client.load_model, client.unload_model):
        try:
            call("simple")
            raise SystemExit("FAIL: %s in mode none succeeded" % call.__name__)
        except InferenceServerException as e:
            assert "explicit model load / unload is not allowed" in e.message(), e
            assert e.status() == code, e.status()
assert h.is_model_ready("simple")
print("ok: mode none: load and unload refused (HTTP 503, gRPC UNAVAILABLE)")
PY
stop_worker "$tmp/log_none"

# ---- mode poll: the repository followed ------------------------------------------
run_worker "$tmp/log_poll" --model-control-mode poll --repository-poll-secs 1
cp -r "$tmp/models/simple" "$tmp/models/added"
sed -i 's/name: "simple"/name: "added"/' "$tmp/models/added/config.pbtxt"
mkdir "$tmp/models/simple/2" && cp "$tmp/models/versioned/2/model.onnx" "$tmp/models/simple/2/"
rm -r "$tmp/models/versioned"
"$TRITON_PY" - "$port" <<'PY' || fails=$((fails + 1))
import sys, time
import tritonclient.http as hc
from tritonclient.utils import InferenceServerException
h = hc.InferenceServerClient("127.0.0.1:" + sys.argv[1])
for _ in range(100):
    if (h.is_model_ready("added") and h.is_model_ready("simple", "2")
            and not h.is_model_ready("versioned")):
        break
    time.sleep(0.1)
else:
    raise SystemExit("FAIL: poll: added %s, simple/2 %s, versioned %s" % (
        h.is_model_ready("added"), h.is_model_ready("simple", "2"),
        h.is_model_ready("versioned")))
assert not h.is_model_ready("simple", "1")  # latest 1: version 2 replaced it
try:
    h.load_model("added")
    raise SystemExit("FAIL: load in mode poll succeeded")
except InferenceServerException as e:
    assert "explicit model load / unload is not allowed" in e.message(), e
print("ok: mode poll: a new model, a new version and a removed model followed")
PY
stop_worker "$tmp/log_poll"

if [ "$fails" -ne 0 ]; then
  echo "$fails part(s) failed"
  for f in log log_none log_poll; do echo "--- $f"; tail -5 "$tmp/$f"; done
  exit 1
fi
echo "all passed"
