#!/usr/bin/env python3
"""Steady closed-loop load for gpuslice serve's integration tests: THREADS
keep-alive HTTP clients sending `simple` infers to the router until the stop
file appears (or SECONDS pass), checking every answer's sums. Prints one JSON
line: ok, failed, statuses and the first errors, so the test can say which
requests failed and why."""
import argparse
import http.client
import json
import os
import threading
import time

BODY = json.dumps({"inputs": [
    {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32",
     "data": list(range(16))},
    {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32",
     "data": [1] * 16}]})
WANT = [i + 1 for i in range(16)]


def client(args, stats, lock):
    conn = None
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline and not os.path.exists(args.stop_file):
        status, error = None, None
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", args.port,
                                                  timeout=30)
            conn.request("POST", "/v2/models/simple/infer", BODY,
                         {"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            status = resp.status
            if status == 200:
                out = json.loads(data)["outputs"][0]["data"]
                if out != WANT:
                    error = "wrong sums %r" % out[:4]
            else:
                error = "%d %s" % (status, data[:200].decode(errors="replace"))
            if resp.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
        except Exception as e:  # a failed request, counted and shown
            error = "%s: %s" % (type(e).__name__, e)
            if conn:
                conn.close()
            conn = None
        with lock:
            key = str(status)
            stats["statuses"][key] = stats["statuses"].get(key, 0) + 1
            if error:
                stats["failed"] += 1
                if len(stats["errors"]) < 10:
                    stats["errors"].append(
                        "%.3f %s" % (time.monotonic() - stats["t0"], error))
            else:
                stats["ok"] += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--stop-file", required=True)
    args = ap.parse_args()
    stats = {"ok": 0, "failed": 0, "statuses": {}, "errors": [],
             "t0": time.monotonic()}
    lock = threading.Lock()
    threads = [threading.Thread(target=client, args=(args, stats, lock))
               for _ in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    del stats["t0"]
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
