#!/usr/bin/env bash
# gpuslice worker's ModelStreamInfer and sequence batcher against Triton's
# Python client (tritonclient[grpc,http] from PyPI) on loopback, doing what
# Triton's sequence examples do: two int sequences and a string-id one over
# a gRPC stream (answers before the client half-closes), gRPC and HTTP sync
# sequences (START, END adding CORRID, implicit state accumulating), a stream
# of non-sequence infers matched by request id; and the bad input: garbage
# on a stream, a sequence request without an id, a request of a sequence
# that timed out, a stream reset with infers in flight; the worker stays up.
# A sequence's input and output in system shared memory (HTTP and gRPC).
# The oldest strategy: concurrent requests of 4 sequences run as one batch
# per step (statistics as Triton reports them), each sequence's state its
# own; 6 sequences on 2 candidate slots all answered (queued, not lost); a
# START for a live sequence zeroes its state.
# Skips (77) when the models cannot be generated or pip cannot install
# tritonclient.
. "$(dirname "$0")/worker_lib.sh"
. "$(dirname "$0")/triton_env.sh"
py=$(command -v python3 || echo /usr/bin/python3)
make_models "$py"
"$py" "$GS_SOURCE_DIR/scripts/make_seq_models.py" --out "$tmp/models" \
  --idle-us 300000 || { echo "SKIP: make_seq_models.py needs onnx"; exit 77; }

triton_python || { echo "SKIP: $TRITON_WHY"; exit 77; }

gport=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start_worker --grpc-port "$gport" --metrics-port 0 --threads 2
for _ in $(seq 100); do grep -q 'listening for gRPC' "$tmp/log" && break; sleep 0.1; done

"$TRITON_PY" - "$gport" "$port" <<'PY'
import queue, sys, time, uuid
from functools import partial
import grpc as g
import numpy as np
import tritonclient.grpc as tc
import tritonclient.http as th
from tritonclient.grpc import service_pb2 as pb
from tritonclient.utils import InferenceServerException

gurl, hurl = "127.0.0.1:" + sys.argv[1], "127.0.0.1:" + sys.argv[2]
fails = 0

def check(ok, what):
    global fails
    print(("ok: " if ok else "FAIL: ") + what)
    fails += not ok

def inputs(mod, v):
    i = mod.InferInput("INPUT", [1, 1], "INT32")
    i.set_data_from_numpy(np.full([1, 1], v, dtype=np.int32))
    return [i]

values = [11, 7, 5, 3, 2, 0, 1]

# 1. A gRPC stream: three sequences interleaved on one stream (two int ids,
# one uuid string id), answered while the stream stays open.
q = queue.Queue()
c = tc.InferenceServerClient(url=gurl)
c.start_stream(callback=lambda result, error: q.put(error if error else result))
seqs = {"1000": [0] + values, "1001": [100] + [-v for v in values],
        str(uuid.uuid4()): [20] + [-v for v in values]}
for sid, vals in seqs.items():
    for k, v in enumerate(vals):
        c.async_stream_infer("simple_sequence", inputs(tc, v),
                             request_id="%s_%d" % (sid, k),
                             sequence_id=int(sid) if sid.isdigit() else sid,
                             sequence_start=k == 0,
                             sequence_end=k == len(vals) - 1)
got = {}
try:
    for _ in range(24):
        r = q.get(timeout=10)
        if isinstance(r, InferenceServerException):
            check(False, "stream answer: %s" % r)
            break
        got[r.get_response().id] = int(r.as_numpy("OUTPUT")[0][0])
except queue.Empty:
    pass
check(len(got) == 24, "24 answers on the open stream before half-close (%d)" % len(got))
ok = all(got.get("%s_%d" % (sid, k)) == (v + (k == 0)) for sid, vals in seqs.items()
         for k, v in enumerate(vals))
check(ok, "stream sequences: START adds 1, READY set (Triton's expected values)")

# 2. Non-sequence infers on the same stream, matched by request id; a
# request without sequence id to a sequence model answers an error message.
for k in range(16):
    a = tc.InferInput("INPUT0", [1, 16], "INT32")
    b = tc.InferInput("INPUT1", [1, 16], "INT32")
    a.set_data_from_numpy(np.full([1, 16], k, dtype=np.int32))
    b.set_data_from_numpy(np.ones([1, 16], dtype=np.int32))
    c.async_stream_infer("simple", [a, b], request_id="s%d" % k)
c.async_stream_infer("simple_sequence", inputs(tc, 1), request_id="noid")
ok, err = 0, None
for _ in range(17):
    r = q.get(timeout=10)
    if isinstance(r, InferenceServerException):
        err = str(r)
    else:
        k = int(r.get_response().id[1:])
        ok += int(r.as_numpy("OUTPUT0")[0][3]) == k + 1
check(ok == 16, "16 non-sequence infers on the stream, each by its id")
check(err is not None and "simple_sequence" in err and "correlation ID" in err,
      "no sequence id: error on the stream naming the model (%s)" % err)
c.stop_stream()

# 3. gRPC sync, implicit state: OUTPUT accumulates, START resets it.
out = []
for k, v in enumerate([3, 4, 5]):
    r = c.infer("sequence_accumulate", inputs(tc, v), sequence_id=77,
                sequence_start=k == 0)
    out.append(int(r.as_numpy("OUTPUT")[0][0]))
r = c.infer("sequence_accumulate", inputs(tc, 10), sequence_id=77, sequence_start=True)
out.append(int(r.as_numpy("OUTPUT")[0][0]))
check(out == [3, 7, 12, 10], "implicit state accumulates, START zeroes it (%s)" % out)

# 4. The idle timeout (300 ms here) frees the sequence: a later request
# without START is an error; the worker answers the next START.
time.sleep(1.0)
try:
    c.infer("sequence_accumulate", inputs(tc, 1), sequence_id=77)
    check(False, "a request of a timed-out sequence was answered")
except InferenceServerException as e:
    check("START" in str(e) and "77" in str(e), "timed-out sequence: %s" % e)

# 5. HTTP sync on the oldest-strategy model: END adds CORRID.
h = th.InferenceServerClient(url=hurl)
out = []
for k, v in enumerate([0, 4, 1]):
    r = h.infer("simple_dyna_sequence", inputs(th, v), sequence_id=1005,
                sequence_start=k == 0, sequence_end=k == 2)
    out.append(int(r.as_numpy("OUTPUT")[0][0]))
check(out == [1, 4, 1006], "HTTP dyna sequence: START +1, END + CORRID (%s)" % out)
try:
    h.infer("simple_dyna_sequence", inputs(th, 1))
    check(False, "HTTP sequence request without id was answered")
except InferenceServerException as e:
    check("correlation ID" in str(e), "HTTP: no sequence id refused")

md = h.get_model_metadata("simple_dyna_sequence")
cfg = h.get_model_config("simple_dyna_sequence")
check([t["name"] for t in md["inputs"]] == ["INPUT"] and
      "oldest" in cfg.get("sequence_batching", {}) and
      [t["name"] for t in cfg["input"]] == ["INPUT"],
      "metadata and config as Triton's: controls hidden, sequence_batching shown")

# 6. Garbage on a raw stream: an error message, and the stream goes on.
ch = g.insecure_channel(gurl)
call = ch.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer",
                        request_serializer=None, response_deserializer=None)
good = pb.ModelInferRequest(model_name="sequence_accumulate", id="after")
good.parameters["sequence_id"].int64_param = 5
good.parameters["sequence_start"].bool_param = True
t = good.inputs.add(name="INPUT", datatype="INT32", shape=[1, 1])
good.raw_input_contents.append(np.array([9], dtype=np.int32).tobytes())
msgs = iter([b"\xff\xfe garbage", good.SerializeToString()])
resp = [pb.ModelStreamInferResponse.FromString(m) for m in call(msgs, timeout=10)]
check(len(resp) == 2 and resp[0].error_message != "" and
      resp[1].infer_response.id == "after",
      "garbage: error_message, then the next request answered (%s)" %
      [x.error_message[:40] for x in resp])

# 7. Flow control: 8 answers of 4 MiB on one stream (past the 1 MiB stream
# window and the pump's 4 MiB high water), and 4 streams at once on one
# connection.
big = np.arange(1 << 20, dtype=np.float32).reshape(1, -1)
c.start_stream(callback=lambda result, error: q.put(error if error else result))
for k in range(8):
    i = tc.InferInput("INPUT", list(big.shape), "FP32")
    i.set_data_from_numpy(big + k)
    c.async_stream_infer("big_identity", [i], request_id="b%d" % k)
ok = 0
for _ in range(8):
    r = q.get(timeout=30)
    if not isinstance(r, InferenceServerException):
        k = int(r.get_response().id[1:])
        ok += bool(np.array_equal(r.as_numpy("OUTPUT"), big + k))
c.stop_stream()
check(ok == 8, "8 answers of 4 MiB on one stream, each whole (%d)" % ok)
import threading
def raw_stream(n, res):
    reqs = []
    for k in range(5):
        m = pb.ModelInferRequest(model_name="sequence_accumulate", id="%d_%d" % (n, k))
        m.parameters["sequence_id"].int64_param = 500 + n
        m.parameters["sequence_start"].bool_param = k == 0
        m.inputs.add(name="INPUT", datatype="INT32", shape=[1, 1])
        m.raw_input_contents.append(np.array([1], dtype=np.int32).tobytes())
        reqs.append(m.SerializeToString())
    out = [pb.ModelStreamInferResponse.FromString(x) for x in call(iter(reqs), timeout=20)]
    res[n] = [np.frombuffer(x.infer_response.raw_output_contents[0], dtype=np.int32)[0]
              for x in out if not x.error_message]
res = {}
ts = [threading.Thread(target=raw_stream, args=(n, res)) for n in range(4)]
[t.start() for t in ts]
[t.join() for t in ts]
check(all(res.get(n) == [1, 2, 3, 4, 5] for n in range(4)),
      "4 streams at once on one connection, each sequence in order (%s)" % res)

# 8. A reset with infers in flight: the worker forgets their answers.
c2 = tc.InferenceServerClient(url=gurl)
c2.start_stream(callback=lambda result, error: None)
for k in range(64):
    c2.async_stream_infer("sequence_accumulate", inputs(tc, 1), sequence_id=900 + k,
                          sequence_start=True, sequence_end=True)
c2.stop_stream(cancel_requests=True)
time.sleep(0.5)
check(c.is_server_live() and h.is_server_live(), "worker live after the reset stream")

# 9. System shared memory: a sequence's input read from a region and its
# output written to one, over HTTP and gRPC (the sequence batcher resolved
# no region before: HTTP 400 "4 bytes of data for 1 elements", gRPC 0s).
import tritonclient.utils.shared_memory as shm
for mod, cl, sid in ((th, h, 61), (tc, c, 62)):
    cl.unregister_system_shared_memory()
    key = "/gs_seq_%d_%d" % (sid, __import__("os").getpid())
    hin = shm.create_shared_memory_region("seq_in", key + "_in", 4)
    hout = shm.create_shared_memory_region("seq_out", key + "_out", 4)
    cl.register_system_shared_memory("seq_in", key + "_in", 4)
    cl.register_system_shared_memory("seq_out", key + "_out", 4)
    i = mod.InferInput("INPUT", [1, 1], "INT32")
    i.set_shared_memory("seq_in", 4)
    o = mod.InferRequestedOutput("OUTPUT")
    o.set_shared_memory("seq_out", 4)
    out = []
    try:
        for k, v in enumerate([5, 6, 7]):
            shm.set_shared_memory_region(hin, [np.array([[v]], dtype=np.int32)])
            cl.infer("sequence_accumulate", [i], outputs=[o], sequence_id=sid,
                     sequence_start=k == 0, sequence_end=k == 2)
            out.append(int(shm.get_contents_as_numpy(hout, np.int32, [1, 1])[0][0]))
    except InferenceServerException as e:
        out.append(str(e))
    cl.unregister_system_shared_memory()
    shm.destroy_shared_memory_region(hin)
    shm.destroy_shared_memory_region(hout)
    check(out == [5, 11, 18], "%s: sequence input and output in system shared "
          "memory, state accumulates (%s)" % (mod.__name__, out))

# 10. The oldest strategy batches across sequences: 4 sequences sent at
# once (a client each) run as one batch per step (preferred_batch_size 4),
# each row with its own START/END/CORRID and state: Triton's statistics
# count 20 inferences in 5 executions of batch size 4.
def stats(model):
    s = h.get_inference_statistics(model)["model_stats"][0]
    sizes = {b["batch_size"]: b["compute_infer"]["count"] for b in s.get("batch_stats", [])}
    return s["inference_count"], s["execution_count"], sizes

def expected(sid, vals):
    out, acc = [], 0
    for k, v in enumerate(vals):
        acc += v + (1000 if k == 0 else 0)
        out.append(acc + (sid if k == len(vals) - 1 else 0))
    return out

def run_sequences(model, sids, steps, mod):
    res = {}
    def one(sid):
        cl = mod.InferenceServerClient(url=hurl if mod is th else gurl, **(
            {"network_timeout": 20.0} if mod is th else {}))
        vals = [sid % 100 * 10 + k for k in range(steps)]
        got = []
        try:
            for k, v in enumerate(vals):
                kw = {} if mod is th else {"client_timeout": 20}
                r = cl.infer(model, inputs(mod, v), sequence_id=sid,
                             sequence_start=k == 0, sequence_end=k == steps - 1, **kw)
                got.append(int(r.as_numpy("OUTPUT")[0][0]))
        except Exception as e:
            got.append(str(e)[:80])
        res[sid] = (got, expected(sid, vals))
    ts = [threading.Thread(target=one, args=(sid,)) for sid in sids]
    [t.start() for t in ts]
    [t.join() for t in ts]
    return res

res = run_sequences("sequence_oldest", [3001, 3002, 3003, 3004], 5, tc)
check(all(g == e for g, e in res.values()),
      "oldest: 4 concurrent sequences, each its own state and controls (%s)" %
      {k: v[0] for k, v in res.items()})
inf, exe, sizes = stats("sequence_oldest")
check(inf == 20 and exe == 5 and sizes == {4: 5},
      "oldest: 20 inferences in 5 executions of batch size 4 (inference_count "
      "%d, execution_count %d, batch_stats %s)" % (inf, exe, sizes))

# 11. More sequences than max_candidate_sequences (2): the others wait for
# a slot, queued, none lost; the two holding slots batch together.
res = run_sequences("sequence_oldest_two", list(range(4001, 4007)), 3, th)
check(all(g == e for g, e in res.values()),
      "6 sequences on 2 candidate slots: all answered, each right (%s)" %
      {k: v[0] for k, v in res.items()})
inf, exe, sizes = stats("sequence_oldest_two")
check(inf == 18 and exe == 9 and sizes == {2: 9},
      "2 slots: 18 inferences in 9 executions of 2 (%d, %d, %s)" % (inf, exe, sizes))

# 12. A START for a live sequence (oldest strategy) starts it again, as
# Triton ends the previous one early: its state is zeroed.
out = []
for k, (v, st, en) in enumerate([(5, True, False), (3, False, False),
                                 (4, True, False), (1, False, True)]):
    r = h.infer("simple_string_dyna_sequence", inputs(th, v), sequence_id=7001,
                sequence_start=st, sequence_end=en)
    out.append(int(r.as_numpy("OUTPUT")[0][0]))
check(out == [5, 8, 4, 7006], "START on a live sequence zeroes its state (%s)" % out)
check(h.is_server_live(), "worker live after the oldest-strategy batches")
sys.exit(1 if fails else 0)
PY
rc=$?
kill -0 "$pid" 2>/dev/null || { echo "FAIL: worker exited"; rc=1; }
# Stopped, so that a sanitizer build reports what shutdown leaks or breaks.
kill "$pid" 2>/dev/null && wait "$pid"
pid=
grep -q "Sanitizer\|runtime error" "$tmp/log" && { echo "FAIL: sanitizer report"; cat "$tmp/log"; rc=1; }
exit $rc
