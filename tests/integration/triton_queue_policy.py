#!/usr/bin/env python3
"""dynamic_batching's default_queue_policy as Triton serves it (usage:
triton_queue_policy.py HTTP_PORT GRPC_PORT), on the models
test_triton_queue_policy.sh writes (Triton's `simple`: OUTPUT0 = INPUT0 +
INPUT1, OUTPUT1 = INPUT0 - INPUT1), each with a queue delay of seconds so that
requests sit in the queue:
  qp_full      max_queue_size 3, queue delay 3 s
  qp_reject    default timeout 0.5 s, REJECT, queue delay 4 s
  qp_override  default timeout 2 s, allow_timeout_override, queue delay 6 s
  qp_delay     default timeout 1 s, DELAY, preferred size 4, queue delay 5 s
Timings are checked only against those seconds, with wide margins.
Prints one line per failed check and exits 1 when any failed."""
import http.client
import json
import queue
import sys
import threading
import time

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

hport, gport = sys.argv[1], sys.argv[2]
H = httpclient.InferenceServerClient("127.0.0.1:" + hport)
G = grpcclient.InferenceServerClient("127.0.0.1:" + gport)
X = np.arange(16, dtype=np.int32).reshape(1, 16)
Y = np.full((1, 16), 3, np.int32)
fails = 0


def check(ok, what):
    global fails
    if not ok:
        fails += 1
        print("FAIL:", what)


def body(parameters=None, rows=1):
    req = {"inputs": [
        {"name": n, "shape": [rows, 16], "datatype": "INT32",
         "data": np.tile(v, (rows, 1)).ravel().tolist()}
        for n, v in (("INPUT0", X), ("INPUT1", Y))]}
    if parameters is not None:
        req["parameters"] = parameters
    return json.dumps(req)


def post(model, text):
    """(HTTP status, JSON reply, seconds taken, monotonic time done)."""
    c = http.client.HTTPConnection("127.0.0.1", int(hport), timeout=60)
    t0 = time.monotonic()
    c.request("POST", "/v2/models/%s/infer" % model, text,
              {"Content-Type": "application/json"})
    r = c.getresponse()
    reply = json.loads(r.read())
    done = time.monotonic()
    c.close()
    return r.status, reply, done - t0, done


def answered(reply, rows=1):
    """Whether an HTTP JSON reply holds `simple`'s outputs for X, Y."""
    out = {o["name"]: o["data"] for o in reply.get("outputs", [])}
    return (out.get("OUTPUT0") == np.tile(X + Y, (rows, 1)).ravel().tolist() and
            out.get("OUTPUT1") == np.tile(X - Y, (rows, 1)).ravel().tolist())


def concurrently(calls):
    """Runs each call on its own thread; their results, in order."""
    results = [None] * len(calls)

    def run(i):
        results[i] = calls[i]()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def grpc_inputs():
    ins = [grpcclient.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
    ins[0].set_data_from_numpy(X)
    ins[1].set_data_from_numpy(Y)
    return ins


def http_inputs():
    ins = [httpclient.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
    ins[0].set_data_from_numpy(X)
    ins[1].set_data_from_numpy(Y)
    return ins


def queue_full_http():
    """5 at once into a queue of 3: 2 refused at once, 3 answered."""
    res = concurrently([lambda: post("qp_full", body())] * 5)
    refused = [r for r in res if r[0] == 503]
    ok = [r for r in res if r[0] == 200]
    check(len(refused) == 2 and len(ok) == 3,
          "http queue full: statuses %s" % [r[0] for r in res])
    for r in refused:
        check(r[1].get("error") == "Exceeds maximum queue size",
              "http queue full message %s" % r[1])
        check(r[2] < 2.0, "http queue full refused after %.2f s, not at once" % r[2])
    for r in ok:
        check(answered(r[1]), "http queued request answered %s" % r[1])


def queue_full_grpc():
    results = queue.Queue()
    for _ in range(5):
        t0 = time.monotonic()
        G.async_infer("qp_full", grpc_inputs(),
                      lambda result, error, t0=t0: results.put(
                          (result, error, time.monotonic() - t0)))
    res = [results.get(timeout=60) for _ in range(5)]
    errors = [e for r, e, s in res if e is not None]
    check(len(errors) == 2, "grpc queue full: %d errors (%s)" % (len(errors), errors))
    for e in errors:
        check(e.status() == "StatusCode.UNAVAILABLE" and
              "Exceeds maximum queue size" in e.message(),
              "grpc queue full error %s %s" % (e.status(), e.message()))
    for r, e, s in res:
        if e is None:
            check(np.array_equal(r.as_numpy("OUTPUT0"), X + Y),
                  "grpc queued request answered")
        else:
            check(s < 2.0, "grpc queue full refused after %.2f s" % s)


def reject():
    """A lone request times out at 0.5 s, well before the 4 s queue delay."""
    status, reply, secs, _ = post("qp_reject", body())
    check(status == 503 and reply.get("error") == "Request timeout expired",
          "reject: %d %s" % (status, reply))
    check(0.4 <= secs < 2.5, "reject answered after %.2f s (timeout 0.5 s, "
          "queue delay 4 s)" % secs)


def timed_error(call):
    t0 = time.monotonic()
    try:
        call()
    except InferenceServerException as e:
        return e, time.monotonic() - t0
    return None, time.monotonic() - t0


def override():
    """infer(timeout=N): a smaller timeout than the default 2 s wins, a
    larger one does not (the default still applies), over both protocols."""
    for name, client, inputs in (("http", H, http_inputs), ("grpc", G, grpc_inputs)):
        e, secs = timed_error(lambda: client.infer("qp_override", inputs(),
                                                   timeout=300000))
        check(e is not None and "Request timeout expired" in e.message(),
              "%s timeout=0.3 s: %s" % (name, e))
        check(secs < 1.5, "%s timeout=0.3 s answered after %.2f s" % (name, secs))
        e, secs = timed_error(lambda: client.infer("qp_override", inputs(),
                                                   timeout=20000000))
        check(e is not None and "Request timeout expired" in e.message(),
              "%s timeout=20 s: %s" % (name, e))
        check(1.5 <= secs < 5, "%s timeout=20 s answered after %.2f s, not at "
              "the default 2 s" % (name, secs))
        if name == "grpc" and e is not None:
            check(e.status() == "StatusCode.UNAVAILABLE", "grpc %s" % e.status())
    for bad in ("soon", -5):
        status, reply, _, _ = post("qp_override", body({"timeout": bad}))
        check(status == 400 and "timeout" in reply.get("error", ""),
              "timeout %r: %d %s" % (bad, status, reply))


def delay():
    """A (one row) times out (1 s) in the queue; two fresh requests of two
    rows sent after that make the preferred batch of 4 on their own, which
    they could not behind A (1 + 2 + 2); A is answered after them, at its
    queue delay. (Behind fresh requests, an expired one still joins a batch
    they leave room in, as in Triton.)"""
    a = {}
    t = threading.Thread(target=lambda: a.update(r=post("qp_delay", body())))
    t0 = time.monotonic()
    t.start()
    time.sleep(2.0)
    fresh = concurrently([lambda: post("qp_delay", body(rows=2))] * 2)
    t.join()
    check(a["r"][0] == 200 and answered(a["r"][1]), "delayed request: %s" % (a["r"],))
    check(all(r[0] == 200 and answered(r[1], 2) for r in fresh),
          "fresh requests: %s" % fresh)
    last_fresh = max(r[3] for r in fresh)
    check(a["r"][3] > last_fresh, "the expired request was answered %.2f s "
          "before the last fresh one" % (last_fresh - a["r"][3]))
    check(last_fresh - t0 < 4.5, "the fresh requests waited for A's queue delay "
          "(%.2f s)" % (last_fresh - t0))


def metrics_and_config():
    c = http.client.HTTPConnection("127.0.0.1", int(hport), timeout=60)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    for family, model, n in (("queue_full", "qp_full", 4),
                             ("queue_timeout", "qp_reject", 1),
                             ("queue_timeout", "qp_override", 4),
                             ("queue_timeout", "qp_delay", 1)):
        line = 'gpuslice_%s_requests{model="%s",version="1"} %d' % (family, model, n)
        check(line in text.splitlines(), "metrics lack %s" % line)
    policy = H.get_model_config("qp_override")["dynamic_batching"]
    check(policy.get("default_queue_policy") == {
        "timeout_action": "REJECT", "default_timeout_microseconds": 2000000,
        "allow_timeout_override": True, "max_queue_size": 0},
        "config shows %s" % policy)


for step in (queue_full_http, queue_full_grpc, reject, override, delay,
             metrics_and_config):
    step()
print("%d failed" % fails if fails else "ok: queue policy")
sys.exit(1 if fails else 0)
