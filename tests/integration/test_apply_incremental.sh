# apply is incremental: an instance outside the difference keeps its ID
# and a process running in it survives; an apply that would destroy a busy
# instance fails and changes nothing.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/host_env.sh"

expect_exit 0 "apply seven" -- gs apply -f "$CFG" -c seven
gi=$(json_get "$(gs --json list)" '[g["id"] for g in d["devices"][0]["gpu_instances"] if g["start"] == 6][0]')
# The binary itself, not the shell function: run execs, so $! is the sleep.
"$GPUSLICE" run -i "$gi" -- sleep 300 &
GS_PIDS+=($!)
worker=$!
for _ in $(seq 50); do
  n=$(json_get "$(gs --json list)" "len([g for g in d['devices'][0]['gpu_instances'] if g['id'] == $gi][0].get('processes', []))")
  [ "$n" -ge 1 ] && break
  sleep 0.1
done
[ "$n" -ge 1 ] && pass "the process shows in its instance" || fail "the process shows in its instance"

expect_exit 0 "apply four-and-three (keeps the 1g at 6)" -- gs apply -f "$CFG" -c four-and-three
contains "$OUT" "keep +GPU instance $gi " "instance $gi is kept"
kill -0 "$worker" 2>/dev/null && pass "the process survived the apply" || fail "the process survived the apply"
still=$(json_get "$(gs --json list)" "[g['start'] for g in d['devices'][0]['gpu_instances'] if g['id'] == $gi]")
[ "$still" = "[6]" ] && pass "instance $gi has its ID and place" || fail "instance $gi has its ID and place" "$still"
expect_exit 0 "assert four-and-three" -- gs assert -f "$CFG" -c four-and-three

before=$(state_sum)
expect_exit 1 "apply whole while busy" -- gs apply -f "$CFG" -c whole
contains "$ERR" "in use" "busy is the reason"
contains "$ERR" "sleep" "the process is named"
expect_exit 1 "destroy the busy instance" -- gs destroy "$gi"
[ "$(state_sum)" = "$before" ] && pass "nothing changed" || fail "nothing changed"
kill -0 "$worker" 2>/dev/null && pass "the process still runs" || fail "the process still runs"

kill -9 "$worker"; wait "$worker" 2>/dev/null
expect_exit 0 "apply whole once idle" -- gs apply -f "$CFG" -c whole
finish
