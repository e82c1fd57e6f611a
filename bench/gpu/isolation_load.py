#!/usr/bin/env python3
"""Timeline load for bench/isolation.sh (stdlib only): closed-loop clients,
one process each, that keep sending one-input binary infers (the raw tensor
as the body, Inference-Header-Content-Length: 0) and log every request
(wall time sent, target, ok, latency, error), so that failures and latency
can be read per instance around events the script marks in a file.

  isolation_load.py run --router H:P --model M --out DIR [--instances 0:1,..]
      [--ports P,..] [--router-clients N] [--seconds S] [--stop-file F]
      --instances: one client per instance straight at its worker, whose
      port comes from the serve's /gpuslice/v1/workers (asked again after a
      failure: a restarted worker has a new port); --ports: fixed worker
      ports; --router-clients: clients through the router.
  isolation_load.py analyze --events DIR --marks FILE [--settle S]
      FILE has lines "NAME START END" (wall seconds). Prints CSV rows
      window,target,metric,value: for the baseline (before the first mark)
      and each mark's window (its start to the next mark's start, or the
      end; a request counts where it ended): requests, failed, p50_ms and
      p99_ms of the answered ones, and recovery_s (from the mark's start to
      the first answer after the last failure; 0 with no failure; -1 when
      it never served again).
"""
import argparse
import glob
import http.client
import json
import math
import multiprocessing
import os
import sys
import time

DTYPE_BYTES = {"FP32": 4, "FP16": 2, "INT32": 4, "INT64": 8, "FP64": 8,
               "INT8": 1, "UINT8": 1, "BOOL": 1, "INT16": 2}


def http_get(host, port, path, timeout=2.0):
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def split_hostport(text):
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def input_bytes(host, port, model, batch):
    status, body = http_get(host, port, "/v2/models/" + model, timeout=10)
    if status != 200:
        raise SystemExit("isolation_load: metadata of %s: HTTP %d" % (model, status))
    inp = json.loads(body)["inputs"][0]
    n = batch
    for d in inp["shape"][1:]:
        n *= d if d > 0 else 1
    return bytes(n * DTYPE_BYTES.get(inp["datatype"], 4))


def worker_port(router, instance):
    """The http port of a ready worker of INSTANCE, from the serve."""
    try:
        status, body = http_get(*router, "/gpuslice/v1/workers", timeout=1.0)
        if status != 200:
            return None
        for w in json.loads(body)["workers"]:
            if w["instance"] == instance and w["state"] == "ready" and w["http_port"]:
                return w["http_port"]
    except (OSError, ValueError, KeyError, http.client.HTTPException):
        pass
    return None


def client(args, name, target, body, path):
    """One closed loop until the deadline or the stop file; writes its log."""
    router = split_hostport(args.router) if args.router else None
    deadline = time.time() + args.seconds
    conn, port, lines = None, None, []
    headers = {"Inference-Header-Content-Length": "0",
               "Content-Type": "application/octet-stream"}
    while time.time() < deadline and not os.path.exists(args.stop_file or "/nonexistent"):
        if port is None:
            if target.startswith("port:"):
                port = int(target[5:])
            elif target == "router":
                port = router[1]
            else:
                port = worker_port(router, target)
            if port is None:
                time.sleep(0.02)
                continue
        sent = time.time()
        t0 = time.perf_counter()
        error = ""
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=args.timeout)
            conn.request("POST", path, body, headers)
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 200:
                error = "HTTP %d %s" % (resp.status, data[:120].decode(errors="replace"))
            if resp.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
        except Exception as e:  # every failure is a logged request
            error = "%s: %s" % (type(e).__name__, e)
        ms = (time.perf_counter() - t0) * 1000.0
        if error:
            if conn:
                conn.close()
            conn = None
            if not target.startswith("port:") and target != "router":
                port = None  # ask the serve again: it may have restarted
            time.sleep(0.01)
        lines.append("%.6f,%s,%d,%.3f,%s\n" % (
            sent, target, 0 if error else 1, ms,
            error.replace(",", ";").replace("\n", " ")[:160]))
    with open(os.path.join(args.out, name + ".csv"), "w") as f:
        f.writelines(lines)


def run(args):
    os.makedirs(args.out, exist_ok=True)
    targets = ["router"] * args.router_clients
    if args.instances:
        targets += args.instances.split(",")
    if args.ports:
        targets += ["port:" + p for p in args.ports.split(",")]
    if not targets:
        raise SystemExit("isolation_load: no targets")
    first = args.ports.split(",")[0] if args.ports else None
    host, port = ("127.0.0.1", int(first)) if first else split_hostport(args.router)
    body = input_bytes(host, port, args.model, 1)
    path = "/v2/models/%s/infer" % args.model
    procs = [multiprocessing.Process(target=client,
                                     args=(args, "client%02d" % i, t, body, path))
             for i, t in enumerate(targets)]
    for p in procs:
        p.start()
    print("isolation_load: %d clients started" % len(procs), flush=True)
    for p in procs:
        p.join()


def percentile(sorted_ms, pct):
    if not sorted_ms:
        return float("nan")
    k = max(0, math.ceil(pct / 100.0 * len(sorted_ms)) - 1)
    return sorted_ms[k]


def window_rows(name, events, start, end):
    rows = []
    by_target = {}
    for e in events:
        by_target.setdefault(e[1], []).append(e)
    for target in sorted(by_target):
        # a request belongs to the window it ended in: one in flight when
        # a worker dies fails because of it
        done = lambda e: e[0] + e[3] / 1000.0
        evs = [e for e in by_target[target] if start <= done(e) < end]
        ok = sorted(e[3] for e in evs if e[2])
        failed = [e for e in evs if not e[2]]
        recovery = 0.0
        if failed:
            last_fail = max(done(e) for e in failed)
            after = [done(e) for e in evs if e[2] and done(e) > last_fail]
            recovery = (min(after) - start) if after else -1.0
        rows += [(name, target, "requests", len(evs)),
                 (name, target, "failed", len(failed)),
                 (name, target, "p50_ms", percentile(ok, 50)),
                 (name, target, "p99_ms", percentile(ok, 99)),
                 (name, target, "recovery_s", recovery)]
    return rows


def analyze(args):
    events = []
    for path in sorted(glob.glob(os.path.join(args.events, "client*.csv"))):
        with open(path) as f:
            for line in f:
                p = line.rstrip("\n").split(",", 4)
                if len(p) == 5:
                    events.append((float(p[0]), p[1], p[2] == "1", float(p[3])))
    marks = []
    if os.path.exists(args.marks):
        with open(args.marks) as f:
            for line in f:
                p = line.split()
                if len(p) >= 3:
                    marks.append((p[0], float(p[1]), float(p[2])))
    if not events:
        raise SystemExit("isolation_load: no requests logged in %s" % args.events)
    t_first = min(e[0] for e in events) + args.settle
    t_end = max(e[0] for e in events) + 1.0
    starts = [m[1] for m in marks] + [t_end]
    rows = window_rows("baseline", events, t_first, starts[0])
    for i, (name, start, _) in enumerate(marks):
        rows += window_rows(name, events, start, starts[i + 1])
    print("window,target,metric,value")
    for r in rows:
        v = r[3]
        print("%s,%s,%s,%s" % (r[0], r[1], r[2],
                               ("%.3f" % v) if isinstance(v, float) else v))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--router")
    r.add_argument("--model", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--instances", default="")
    r.add_argument("--ports", default="")
    r.add_argument("--router-clients", type=int, default=0)
    r.add_argument("--seconds", type=float, default=60)
    r.add_argument("--stop-file")
    r.add_argument("--timeout", type=float, default=10)
    a = sub.add_parser("analyze")
    a.add_argument("--events", required=True)
    a.add_argument("--marks", required=True)
    a.add_argument("--settle", type=float, default=0.5)
    args = ap.parse_args()
    if args.cmd == "run":
        if args.instances and not args.router:
            ap.error("--instances needs --router (the serve's port)")
        run(args)
    else:
        analyze(args)


if __name__ == "__main__":
    sys.exit(main())
