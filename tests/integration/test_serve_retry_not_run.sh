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
# them eject no worker: another model (mlp) is still served.
. "$(dirname "$0")/serve_lib.sh"

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
for _ in $(seq 8); do infer >/dev/null; done
code=$(curl -s -o "$tmp/mlp.out" -w '%{http_code}' "http://127.0.0.1:$port/v2/models/mlp/infer" \
  -d "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,64],\"datatype\":\"FP32\",\"data\":[$(python3 -c 'print(",".join(["0.1"]*64))')]}]}")
[ "$code" = 200 ] || fail "after 8 more 503s for simple, mlp got $code: $(cat "$tmp/mlp.out")"
echo "ok: nine 503s for an unloaded model ejected no worker: mlp still 200"
echo PASS
