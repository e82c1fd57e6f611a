#!/usr/bin/env python3
"""TEST-ONLY stand-in for the Kubernetes API server (plain HTTP, loopback):
serves one Node at /api/v1/nodes/NAME for test_k8s_mig_manager_api.sh.

Files in DIR steer it: DIR/label holds nvidia.com/mig.config's value (no
file: no label); DIR/mode is "ok" (default), "401" or "500". Each PATCH's
body is appended as one JSON line to DIR/patches and merged into the
node's labels; every request line goes to DIR/requests. It writes its port
to DIR/port (PORT argument: that port, else any free one)."""
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DIR, NODE, TOKEN = sys.argv[1], sys.argv[2], sys.argv[3]
PORT = int(sys.argv[4]) if len(sys.argv) > 4 else 0
labels = {"kubernetes.io/hostname": NODE}


def read(name, default=None):
    try:
        with open(os.path.join(DIR, name)) as f:
            return f.read().strip()
    except FileNotFoundError:
        return default


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def status(self, code, msg):
        self.reply(code, {"kind": "Status", "apiVersion": "v1",
                          "status": "Failure", "message": msg, "code": code})

    def check(self):
        with open(os.path.join(DIR, "requests"), "a") as f:
            f.write("%s %s %s\n" % (self.command, self.path,
                                    self.headers.get("Content-Type", "-")))
        mode = read("mode", "ok")
        if mode == "500":
            self.status(500, "etcdserver: request timed out")
            return False
        if mode == "401" or self.headers.get("Authorization") != "Bearer " + TOKEN:
            self.status(401, "Unauthorized")
            return False
        if self.path != "/api/v1/nodes/" + NODE:
            self.status(404, 'nodes "%s" not found' % self.path.rsplit("/", 1)[-1])
            return False
        return True

    def node(self):
        cur = dict(labels)
        value = read("label")
        if value is not None:
            cur["nvidia.com/mig.config"] = value
        return {"kind": "Node", "apiVersion": "v1",
                "metadata": {"name": NODE, "resourceVersion": "1", "labels": cur},
                "status": {"capacity": {"cpu": "2"}}}

    def do_GET(self):
        if self.check():
            self.reply(200, self.node())

    def do_PATCH(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if not self.check():
            return
        if self.headers.get("Content-Type") != "application/merge-patch+json":
            self.status(415, "unsupported media type")
            return
        patch = json.loads(body)
        labels.update(patch["metadata"]["labels"])
        with open(os.path.join(DIR, "patches"), "a") as f:
            f.write(json.dumps(patch, sort_keys=True) + "\n")
        self.reply(200, self.node())


srv = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
with open(os.path.join(DIR, "port.tmp"), "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(os.path.join(DIR, "port.tmp"), os.path.join(DIR, "port"))
srv.serve_forever()
