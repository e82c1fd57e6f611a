# `gpuslice worker --instance ID=FIRST:COUNT ...`: one process hosting
# several instances' workers (green isolation's process), each on its own
# free ports, announced one ready line per instance, each serving the
# repository; one SIGTERM ends them all. On the CPU engine here (the SM
# partition only reaches CUDA sessions); bad partitions are usage errors.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/worker_lib.sh"
make_models

expect_exit 2 "a malformed --instance" -- gs worker --model-repository "$tmp/models" --instance 0:1
expect_exit 2 "a zero-SM partition" -- gs worker --model-repository "$tmp/models" --sm-partition 0:0
GPUSLICE_SM_PARTITION=x expect_exit 2 "a malformed GPUSLICE_SM_PARTITION" -- \
  gs worker --model-repository "$tmp/models"
contains "$ERR" "GPUSLICE_SM_PARTITION is FIRST:COUNT" "the variable is named"

"$GPUSLICE" worker --model-repository "$tmp/models" --ready-fd 3 \
  --instance 0:1=0:16 --instance 0:2=16:16 --instance 0:3=32:16 \
  3>"$tmp/ready" 2>"$tmp/log" &
pid=$!
for _ in $(seq 100); do
  [ "$(grep -c '^ready id=' "$tmp/ready" 2>/dev/null)" = 3 ] && break
  sleep 0.1
done
lines=$(grep -c '^ready id=0:[123] http=[0-9]* grpc=[0-9]*$' "$tmp/ready")
[ "$lines" = 3 ] && pass "one ready line per instance" || fail "one ready line per instance" "$(cat "$tmp/ready" "$tmp/log")"
ports=$(sed -n 's/^ready id=[^ ]* http=\([0-9]*\).*/\1/p' "$tmp/ready" | sort -u | wc -l)
[ "$ports" = 3 ] && pass "each instance has its own port" || fail "each instance has its own port"
for p in $(sed -n 's/^ready id=[^ ]* http=\([0-9]*\).*/\1/p' "$tmp/ready"); do
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$p/v2/models/simple/ready")
  [ "$code" = 200 ] && pass "instance on port $p serves" || fail "instance on port $p serves" "HTTP $code"
done
# The instances' loops run at once in one process: requests to all of them
# together must each get their own answer (a shared parser state, such as
# strtok's, mixed their paths: 404s and "use GET" on a GPU machine).
for p in $(sed -n 's/^ready id=[^ ]* http=\([0-9]*\).*/\1/p' "$tmp/ready"); do
  curl -s -o /dev/null -w '%{http_code}\n' \
    "http://127.0.0.1:$p/v2/models/simple/versions/1/ready?n=[1-1500]" >"$tmp/codes.$p" &
done
wait $(jobs -p | grep -v "^$pid$")
bad=$(cat "$tmp"/codes.* | grep -vc '^200$')
total=$(cat "$tmp"/codes.* | wc -l)
[ "$bad" = 0 ] && [ "$total" = 4500 ] && pass "4500 requests to three instances at once: every one answered 200" ||
  fail "4500 requests to three instances at once" "$bad of $total not 200: $(cat "$tmp"/codes.* | sort | uniq -c | tr '\n' ' ')"
kill -TERM "$pid"
wait "$pid"
rc=$?
pid=
[ $rc -eq 0 ] && pass "SIGTERM ends every hosted worker" || fail "SIGTERM ends every hosted worker" "exit $rc" "$(tail -5 "$tmp/log")"
finish
