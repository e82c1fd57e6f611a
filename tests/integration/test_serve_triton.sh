#!/usr/bin/env bash
# Triton's clients through gpuslice serve with two workers (tritonclient
# from PyPI): gRPC RepositoryModelLoad/Unload reach every worker (each
# worker's own port then says so); system shared memory registered through
# the router over HTTP and gRPC is on every worker (infers reading the
# region reach both workers, unregister leaves none); a sequence of
# sequence_accumulate requests (OUTPUT = STATE + INPUT: right only when
# every request reaches the same worker) over HTTP and gRPC; and
# ModelStreamInfer through the router answered before the client
# half-closes; model files sent with a load reach every worker; serve's
# --server-name is the workers' name. Skips (77) when the models cannot be
# generated or pip cannot install tritonclient[http,grpc].
. "$(dirname "$0")/serve_lib.sh"
. "$(dirname "$0")/triton_env.sh"
gen_models "$GS_SOURCE_DIR/scripts/make_seq_models.py" --idle-us 60000000
triton_python || { echo "SKIP: $TRITON_WHY"; exit 77; }

start_serve --policy round_robin --model-control-mode explicit --load-model '*' \
  --server-name triton
w1=$(worker_field 0:1 http_port)
w2=$(worker_field 0:2 http_port)
"$TRITON_PY" - "$port" "$grpc_port" "$w1" "$w2" "${GS_SERVE_TRITON_ONLY:-}" <<'PY' || fail "tritonclient through serve"
import os, queue, sys, threading, time
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

hport, gport, w1, w2, only = sys.argv[1:6]
hc = httpclient.InferenceServerClient(url="127.0.0.1:" + hport)
gc = grpcclient.InferenceServerClient(url="127.0.0.1:" + gport)
workers = [httpclient.InferenceServerClient(url="127.0.0.1:" + w) for w in (w1, w2)]
fails = []

def check(cond, what):
    if not cond:
        fails.append(what)
        print("FAIL:", what)

def part(name):
    return not only or name in only.split(",")

# --- gRPC load/unload on every worker
if part("load"):
    gc.unload_model("sequence_accumulate")
    check([w.is_model_ready("sequence_accumulate") for w in workers] == [False, False],
          "gRPC unload did not reach every worker")
    gc.load_model("sequence_accumulate")
    check([w.is_model_ready("sequence_accumulate") for w in workers] == [True, True],
          "gRPC load did not reach every worker")
    try:
        gc.load_model("no_such_model")
        check(False, "gRPC load of a missing model answered OK")
    except InferenceServerException as e:
        check("no_such_model" in str(e), "gRPC load error: %s" % e)
    # model files sent with the load (Triton's "file:1/model.onnx"), over
    # gRPC and HTTP through the router: on every worker
    onnx = open(os.path.join(os.environ["GS_TMP"], "models", "simple", "1",
                             "model.onnx"), "rb").read()
    for c, name in ((gc, "sent_grpc"), (hc, "sent_http")):
        c.load_model(name, config="{}", files={"file:1/model.onnx": onnx})
        check([w.is_model_ready(name) for w in workers] == [True, True],
              "%s: a load with files did not reach every worker" % name)
        c.unload_model(name)

# --- the workers' --server-name, through the router
check(hc.get_server_metadata()["name"] == "triton" and
      gc.get_server_metadata().name == "triton",
      "serve --server-name triton: %s" % hc.get_server_metadata())

# --- sequences: every request of a sequence on one worker
def acc_http(seq, values):
    out = []
    for i, v in enumerate(values):
        inp = httpclient.InferInput("INPUT", [1, 1], "INT32")
        inp.set_data_from_numpy(np.array([[v]], dtype=np.int32))
        r = hc.infer("sequence_accumulate", [inp], sequence_id=seq,
                     sequence_start=i == 0, sequence_end=i == len(values) - 1)
        out.append(int(r.as_numpy("OUTPUT")[0][0]))
    return out

def acc_grpc(seq, values):
    out = []
    for i, v in enumerate(values):
        inp = grpcclient.InferInput("INPUT", [1, 1], "INT32")
        inp.set_data_from_numpy(np.array([[v]], dtype=np.int32))
        r = gc.infer("sequence_accumulate", [inp], sequence_id=seq,
                     sequence_start=i == 0, sequence_end=i == len(values) - 1)
        out.append(int(r.as_numpy("OUTPUT")[0][0]))
    return out

if part("seq"):
    vals = list(range(1, 9))
    want = list(np.cumsum(vals))
    got = acc_http(1001, vals)
    check(got == want, "HTTP sequence: %s, want %s" % (got, want))
    got = acc_grpc(1002, vals)
    check(got == want, "gRPC sequence: %s, want %s" % (got, want))
    got = acc_http("str_seq", vals)
    check(got == want, "HTTP string-id sequence: %s, want %s" % (got, want))

# --- a stream: answers before the half-close
if part("stream"):
    answers = queue.Queue()
    sc = grpcclient.InferenceServerClient(url="127.0.0.1:" + gport)
    sc.start_stream(callback=lambda result, error: answers.put((result, error)))
    total = 0
    for i in range(1, 6):
        inp = grpcclient.InferInput("INPUT", [1, 1], "INT32")
        inp.set_data_from_numpy(np.array([[i]], dtype=np.int32))
        sc.async_stream_infer("sequence_accumulate", [inp], sequence_id=2001,
                              sequence_start=i == 1, sequence_end=i == 5)
        total += i
        try:
            result, error = answers.get(timeout=10)
        except queue.Empty:
            check(False, "no stream answer %d before the half-close" % i)
            break
        check(error is None and int(result.as_numpy("OUTPUT")[0][0]) == total,
              "stream answer %d: %s" % (i, error or result.as_numpy("OUTPUT")))
    sc.stop_stream()
    sc.close()

# --- system shared memory registered through the router on every worker
if part("shm"):
    pid = str(os.getpid())
    for proto, cl in (("http", hc), ("grpc", gc)):
        ih = shm.create_shared_memory_region("in_" + proto, "/gs_in_" + proto + pid, 4)
        shm.set_shared_memory_region(ih, [np.array([[7]], dtype=np.float32)])
        cl.register_system_shared_memory("in_" + proto, "/gs_in_" + proto + pid, 4)
        for w in workers:
            names = [r["name"] for r in w.get_system_shared_memory_status()]
            check("in_" + proto in names, "%s register missed a worker: %s" % (proto, names))
        mod = httpclient if proto == "http" else grpcclient
        for k in range(4):  # round robin: both workers read the region
            inp = mod.InferInput("INPUT", [1, 1], "FP32")
            inp.set_shared_memory("in_" + proto, 4)
            r = cl.infer("big_identity", [inp])
            check(float(r.as_numpy("OUTPUT")[0][0]) == 7.0, "%s shm infer %d" % (proto, k))
        cl.unregister_system_shared_memory("in_" + proto)
        for w in workers:
            check(not w.get_system_shared_memory_status(), "%s unregister missed a worker" % proto)
        shm.destroy_shared_memory_region(ih)
    # a register refused by one worker (the name is taken there) is undone
    # on the other: no worker keeps the region the client was told failed
    ih = shm.create_shared_memory_region("taken", "/gs_taken" + pid, 4)
    workers[0].register_system_shared_memory("taken", "/gs_taken" + pid, 4)
    for proto, cl in (("http", hc), ("grpc", gc)):
        try:
            cl.register_system_shared_memory("taken", "/gs_taken" + pid, 4)
            check(False, "%s: a register refused by a worker answered OK" % proto)
        except InferenceServerException:
            pass
        time.sleep(0.5)  # the undo is sent after the answer
        check(not workers[1].get_system_shared_memory_status(),
              "%s: a partly failed register was not undone on the other worker" % proto)
    workers[0].unregister_system_shared_memory("taken")
    shm.destroy_shared_memory_region(ih)

sys.exit(1 if fails else 0)
PY
echo PASS
