#!/usr/bin/env bash
# A worker's 503 is a request it did not run (its device failed, the model
# is not ready there, its queue refused it): the router tries it once on
# another worker, as Envoy's retriable-status-codes, and counts a retry.
# Here the `simple` model is unloaded on worker 0:1 only (its own
# repository API, behind serve's back): that worker answers 503 "not
# ready"; every request through the router still gets 200, and the
# router's retry count grows by about the half that went to 0:1 (a 503
# does not count toward ejection, so 0:1 keeps its turn). A request that
# every worker refuses gets the 503 after one retry, not a loop; many of
# them eject no worker: another model (mlp) is still served. The router's
# gRPC front does the same with a worker's UNAVAILABLE (Triton's
# tritonclient.grpc as the client).
. "$(dirname "$0")/serve_lib.sh"
. "$(dirname "$0")/triton_env.sh"

start_serve --policy round_robin --model-control-mode explicit --load-model simple,mlp
w1=$(worker_field 0:1 http_port)
[ -n "$w1" ] && [ "$w1" != 0 ] || fail "no port for worker 0:1: $(status_json)"
code=$(curl -s -o "$tmp/unload.out" -w '%{http_code}' -X POST \
  "http://127.0.0.1:$w1/v2/repository/models/simple/unload")
[ "$code" = 200 ] || fail "unload on worker 0:1: $code $(cat "$tmp/unload.out")"
code=$(infer "$w1")
[ "$code" = 503 ] || fail "worker 0:1 without simple answered $code, not 503: $(cat "$tmp/infer.out")"
echo "ok: worker 0:1 alone answers 503: $(head -c 160 "$tmp/infer.out")"

retries() { status_json | python3 -c "import json,sys; print(json.load(sys.stdin)['retries'])"; }
r0=$(retries)
ok=0 bad=
for _ in $(seq 20); do
  code=$(infer)
  if [ "$code" = 200 ]; then ok=$((ok + 1)); else bad="$code $(head -c 200 "$tmp/infer.out")"; fi
done
r1=$(retries)
[ "$ok" = 20 ] || fail "$ok of 20 requests through the router got 200; one got $bad"
[ "$r1" -ge $((r0 + 5)) ] || fail "the router's retries went from $r0 to $r1, not 5 or more"
echo "ok: 20 of 20 through the router got 200; retries $r0 -> $r1"

# The same over gRPC: a worker's UNAVAILABLE is retried on another worker.
triton_python || fail "cannot install tritonclient[grpc] from PyPI: $TRITON_WHY"
grpc_infer() { # N: N infers of simple through the router's gRPC port
  "$TRITON_PY" - "$grpc_port" "$1" <<'PY'
import sys, numpy as np, tritonclient.grpc as g
c = g.InferenceServerClient("127.0.0.1:%s" % sys.argv[1])
a = np.arange(16, dtype=np.int32).reshape(1, 16)
b = np.ones((1, 16), dtype=np.int32)
ok, errs = 0, []
for _ in range(int(sys.argv[2])):
    i0 = g.InferInput("INPUT0", [1, 16], "INT32"); i0.set_data_from_numpy(a)
    i1 = g.InferInput("INPUT1", [1, 16], "INT32"); i1.set_data_from_numpy(b)
    try:
        r = c.infer("simple", [i0, i1])
        ok += (r.as_numpy("OUTPUT0") == a + b).all()
    except g.InferenceServerException as e:
        errs.append("%s %s" % (e.status(), e.message()))
print(ok, errs[0] if errs else "")
PY
}
r0=$(retries)
got=$(grpc_infer 20)
r1=$(retries)
[ "${got%% *}" = 20 ] || fail "gRPC: ${got%% *} of 20 through the router succeeded; one got: ${got#* }"
[ "$r1" -ge $((r0 + 5)) ] || fail "gRPC: the router's retries went from $r0 to $r1, not 5 or more"
echo "ok: gRPC 20 of 20 through the router; retries $r0 -> $r1"

# Every worker refuses: one retry, then the 503.
for wk in $(status_json | python3 -c "import json,sys
for w in json.load(sys.stdin)['workers']: print(w['http_port'])"); do
  curl -s -o /dev/null -X POST "http://127.0.0.1:$wk/v2/repository/models/simple/unload"
done
r0=$(retries)
code=$(infer)
r1=$(retries)
[ "$code" = 503 ] || fail "with simple on no worker the router answered $code: $(cat "$tmp/infer.out")"
[ "$r1" = $((r0 + 1)) ] || fail "retries went from $r0 to $r1 for one request, not one more"
echo "ok: no worker has the model: 503 after one retry: $(head -c 160 "$tmp/infer.out")"
r0=$(retries)
got=$(grpc_infer 1)
r1=$(retries)
case "$got" in
  "0 StatusCode.UNAVAILABLE"*) ;;
  *) fail "gRPC with simple on no worker: '$got', not UNAVAILABLE" ;;
esac
[ "$r1" = $((r0 + 1)) ] || fail "gRPC: retries went from $r0 to $r1 for one call, not one more"
echo "ok: gRPC, no worker has the model: UNAVAILABLE after one retry: ${got#* }"
for _ in $(seq 7); do infer >/dev/null; done
code=$(curl -s -o "$tmp/mlp.out" -w '%{http_code}' "http://127.0.0.1:$port/v2/models/mlp/infer" \
  -d "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,64],\"datatype\":\"FP32\",\"data\":[$(python3 -c 'print(",".join(["0.1"]*64))')]}]}")
[ "$code" = 200 ] || fail "after 8 more refusals for simple, mlp got $code: $(cat "$tmp/mlp.out")"
echo "ok: nine refusals (503, UNAVAILABLE) for an unloaded model ejected no worker: mlp still 200"
echo PASS
