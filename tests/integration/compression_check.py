"""Request and response compression against one gpuslice server (a worker,
or the router of `gpuslice serve`), as Triton's clients use it: the HTTP
client's request_compression_algorithm / response_compression_algorithm
(gzip, deflate) on JSON and binary tensors, the gRPC client's
compression_algorithm, then the edges on raw connections: a gzip bomb is
413 / RESOURCE_EXHAUSTED naming the 64 MiB limit, corrupt data 400 /
INTERNAL, an unknown coding 400 / UNIMPLEMENTED, a body or message over the
limit 413 / RESOURCE_EXHAUSTED, and a compressed gRPC request gets a
compressed answer (grpc-encoding) when the client accepts it.
Usage: compression_check.py HTTP_PORT GRPC_PORT LABEL"""
import gzip
import http.client
import socket
import struct
import subprocess
import sys
import tempfile
import zlib

import grpc
import numpy as np
import tritonclient.grpc as tg
import tritonclient.http as th
from tritonclient.grpc import service_pb2 as pb, service_pb2_grpc as pbg

http_port, grpc_port, label = sys.argv[1], sys.argv[2], sys.argv[3]
LIMIT = 64 << 20
a = np.arange(16, dtype=np.int32).reshape(1, 16)
b = np.full((1, 16), 3, dtype=np.int32)


def ok(what):
    print(f"ok: {label}: {what}")


def http_infer(client, req_alg, resp_alg, binary):
    ins = [th.InferInput("INPUT0", [1, 16], "INT32"),
           th.InferInput("INPUT1", [1, 16], "INT32")]
    ins[0].set_data_from_numpy(a, binary_data=binary)
    ins[1].set_data_from_numpy(b, binary_data=binary)
    outs = [th.InferRequestedOutput("OUTPUT0", binary_data=binary),
            th.InferRequestedOutput("OUTPUT1", binary_data=binary)]
    r = client.infer("simple", ins, outputs=outs,
                     request_compression_algorithm=req_alg,
                     response_compression_algorithm=resp_alg)
    assert (r.as_numpy("OUTPUT0") == a + b).all(), r.get_response()
    assert (r.as_numpy("OUTPUT1") == a - b).all(), r.get_response()


hc = th.InferenceServerClient(f"127.0.0.1:{http_port}")
for req_alg in (None, "gzip", "deflate"):
    for resp_alg in (None, "gzip", "deflate"):
        for binary in (False, True):
            http_infer(hc, req_alg, resp_alg, binary)
ok("HTTP infers, every request x response compression, JSON and binary")

gc = tg.InferenceServerClient(f"127.0.0.1:{grpc_port}")
for alg in (None, "gzip", "deflate"):
    ins = [tg.InferInput("INPUT0", [1, 16], "INT32"),
           tg.InferInput("INPUT1", [1, 16], "INT32")]
    ins[0].set_data_from_numpy(a)
    ins[1].set_data_from_numpy(b)
    r = gc.infer("simple", ins, compression_algorithm=alg)
    assert (r.as_numpy("OUTPUT0") == a + b).all()
    assert gc.is_model_ready("simple")
ok("gRPC infers with compression_algorithm None, gzip, deflate")


def raw_http(head, body):
    """Status and body of one request on a raw connection."""
    c = http.client.HTTPConnection("127.0.0.1", int(http_port), timeout=60)
    c.putrequest("POST", "/v2/models/simple/infer")
    for k, v in head.items():
        c.putheader(k, v)
    c.putheader("Content-Length", str(len(body)))
    c.endheaders()
    c.send(body)
    r = c.getresponse()
    return r.status, r.read().decode(errors="replace")


# Only successful infer answers are compressed, as Triton does: aiohttp
# (tritonclient.http.aio) sends Accept-Encoding on every request and reads
# the other answers, and errors, as plain JSON.
for method, path, body in (("GET", "/v2/models/simple/stats", None),
                           ("POST", "/v2/models/nope/infer", b"{}")):
    c = http.client.HTTPConnection("127.0.0.1", int(http_port), timeout=60)
    c.request(method, path, body, {"Accept-Encoding": "gzip, deflate"})
    r = c.getresponse()
    assert r.getheader("Content-Encoding") is None, (path, r.getheaders())
    assert r.read().startswith(b"{"), path
ok("HTTP: statistics and an infer error are answered uncompressed")

bomb = gzip.compress(b"\0" * (LIMIT + 1))
status, text = raw_http({"Content-Encoding": "gzip"}, bomb)
assert status == 413 and "limit of 67108864 bytes" in text, (status, text)
status, text = raw_http({"Content-Encoding": "deflate"}, b"\x78\x9cnot zlib")
assert status == 400 and "deflate data is not valid" in text, (status, text)
status, text = raw_http({"Content-Encoding": "br"}, b"{}")
assert status == 400 and "unsupported Content-Encoding" in text, (status, text)
ok(f"HTTP: gzip bomb 413 ({len(bomb)} bytes), corrupt 400, unknown coding 400")

# A body over the limit: refused on its Content-Length, before it is sent.
s = socket.create_connection(("127.0.0.1", int(http_port)), timeout=30)
s.sendall(b"POST /v2/models/simple/infer HTTP/1.1\r\nHost: x\r\n"
          b"Content-Length: %d\r\n\r\n" % (LIMIT + 1))
reply = s.recv(4096).decode(errors="replace")
s.close()
assert reply.startswith("HTTP/1.1 413 ") and "(67108864 bytes)" in reply, reply
ok("HTTP: a body over 64 MiB is 413 naming the limit")

stub = pbg.GRPCInferenceServiceStub(
    grpc.insecure_channel(f"127.0.0.1:{grpc_port}"))


def big_request(n):
    req = pb.ModelInferRequest(model_name="simple")
    for name in ("INPUT0", "INPUT1"):
        t = req.inputs.add(name=name, datatype="INT32")
        t.shape.extend([1, 16])
    req.raw_input_contents.append(b"\0" * n)
    req.raw_input_contents.append(b"\0" * 64)
    return req


for comp, what in ((grpc.Compression.Gzip, "gzip bomb"),
                   (grpc.Compression.NoCompression, "message over 64 MiB")):
    try:
        stub.ModelInfer(big_request(LIMIT + 16), compression=comp)
        raise SystemExit(f"{what} accepted")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (what, e)
        assert "67108864" in e.details() or "64 MiB" in e.details(), e.details()
ok("gRPC: gzip bomb and a message over 64 MiB are RESOURCE_EXHAUSTED")


def grpc_raw(message, encoding, flag=1):
    """One ModelInfer over curl's HTTP/2: response headers (and trailers)
    and body bytes."""
    with tempfile.NamedTemporaryFile() as f, \
            tempfile.NamedTemporaryFile() as h:
        f.write(struct.pack(">BI", flag, len(message)) + message)
        f.flush()
        body = subprocess.run(
            ["curl", "-s", "--http2-prior-knowledge", "-D", h.name,
             "-H", "content-type: application/grpc", "-H", "te: trailers",
             "-H", f"grpc-encoding: {encoding}",
             "-H", "grpc-accept-encoding: identity,deflate,gzip",
             "--data-binary", "@" + f.name,
             f"http://127.0.0.1:{grpc_port}"
             "/inference.GRPCInferenceService/ModelInfer"],
            capture_output=True, check=True).stdout
        return open(h.name).read().lower(), body


req = pb.ModelInferRequest(model_name="simple")
for name, arr in (("INPUT0", a), ("INPUT1", b)):
    t = req.inputs.add(name=name, datatype="INT32")
    t.shape.extend([1, 16])
    req.raw_input_contents.append(arr.tobytes())
plain = req.SerializeToString()
for enc, pack, unpack in (("gzip", gzip.compress, gzip.decompress),
                          ("deflate", zlib.compress, zlib.decompress)):
    head, body = grpc_raw(pack(plain), enc)
    assert f"grpc-encoding: {enc}" in head, head
    assert body[0] == 1, body[:5]  # the compressed flag
    resp = pb.ModelInferResponse.FromString(unpack(body[5:]))
    out = np.frombuffer(resp.raw_output_contents[0], dtype=np.int32)
    assert (out == (a + b).ravel()).all(), out
ok("gRPC: a gzip or deflate request is answered compressed the same way")
head, _ = grpc_raw(b"\x1f\x8b not gzip at all", "gzip")
assert "grpc-status: 13" in head and "gzip data is not valid" in head, head
head, _ = grpc_raw(plain, "snappy")
assert "grpc-status: 12" in head and "grpc-accept-encoding" in head, head
ok("gRPC: corrupt data INTERNAL, an unknown grpc-encoding UNIMPLEMENTED")
