#!/usr/bin/env bash
# gpuslice serve --busy-poll-us (key busy_poll_us) reaches every worker:
# their command lines carry --busy-poll-us=300 and an infer through the
# router is answered right. Skips (77) when the models cannot be generated.
. "$(dirname "$0")/serve_lib.sh"
start_serve --busy-poll-us 300
pids=$(pgrep -f -- "--model-repository=$tmp/models")
[ -n "$pids" ] || fail "no worker found"
for p in $pids; do
  tr '\0' ' ' <"/proc/$p/cmdline" | grep -q -- "--busy-poll-us=300" ||
    fail "worker $p lacks --busy-poll-us=300: $(tr '\0' ' ' <"/proc/$p/cmdline")"
done
echo "ok: $(echo "$pids" | wc -w) workers got --busy-poll-us=300"
body='{"inputs": [
  {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": [0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]},
  {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": [1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}]}'
for _ in 1 2 3 4; do
  out=$(curl -s -d "$body" "127.0.0.1:$port/v2/models/simple/infer")
  echo "$out" | python3 -c '
import json, sys
o = {t["name"]: t["data"] for t in json.load(sys.stdin)["outputs"]}
assert o["OUTPUT0"] == [i + 1 for i in range(16)], o' || fail "answer through the router: $out"
done
echo "ok: answered through the router"
echo PASS
