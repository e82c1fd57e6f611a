# The partition verbs end to end on the host backend, with bad input.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/host_env.sh"

expect_exit 0 "info" -- gs info
contains "$OUT" "backend: +host" "info names the backend"
contains "$OUT" "compute:" "info states what is enforced"
expect_exit 0 "profiles on the host" -- gs profiles
contains "$OUT" "MIG 1g\.3gb +19 +7/7" "host catalog: 1g.3gb, 7 free"
expect_exit 0 "list with no instances" -- gs list
contains "$OUT" "no instances" "an empty layout says so"

expect_exit 0 "create 1g.3gb 1g.3gb 2g.6gb" -- gs create 1g.3gb 1g.3gb 2g.6gb
expect_exit 0 "list --json" -- gs --json list
n=$(json_get "$OUT" 'len(d["devices"][0]["gpu_instances"])')
[ "$n" = 3 ] && pass "three instances listed" || fail "three instances listed" "$n"
expect_exit 1 "7g beside others does not fit" -- gs create 7g.24gb
before=$(state_sum)
expect_exit 2 "destroy an unknown ID" -- gs destroy 42
[ "$(state_sum)" = "$before" ] && pass "failed destroy changed nothing" || fail "failed destroy changed nothing"
expect_exit 2 "destroy with IDs and --all" -- gs destroy 1 --all
expect_exit 0 "destroy --all" -- gs destroy --all

expect_exit 0 "apply seven" -- gs apply -f "$CFG" -c seven
contains "$OUT" "7 created" "seven instances created"
expect_exit 0 "assert seven" -- gs assert -f "$CFG" -c seven
expect_exit 1 "assert balanced fails" -- gs assert -f "$CFG" -c balanced
contains "$OUT" "does not match" "assert says what differs"
expect_exit 0 "apply seven again is a no-op" -- gs apply -f "$CFG" -c seven
contains "$OUT" "7 kept, 0 destroyed, 0 created" "nothing recreated"

expect_exit 0 "export yaml" -- gs export
printf '%s\n' "$OUT" >"$GS_TMP/exported.yaml"
expect_exit 0 "export json" -- gs export -o json
printf '%s\n' "$OUT" >"$GS_TMP/exported.json"
expect_exit 0 "the exported yaml asserts" -- gs assert -f "$GS_TMP/exported.yaml" -c current
expect_exit 0 "the exported json asserts" -- gs assert -f "$GS_TMP/exported.json" -c current
expect_exit 0 "apply balanced" -- gs apply -f "$CFG" -c balanced
expect_exit 0 "re-apply the export" -- gs apply -f "$GS_TMP/exported.json" -c current
expect_exit 0 "the layout is back" -- gs assert -f "$CFG" -c seven

before=$(state_sum)
expect_exit 2 "apply a typo" -- gs apply -f "$CFG" -c typo
contains "$ERR" "host.yaml:[0-9]+:[0-9]+: .*1g\.4gb" "file:line:column and the name"
contains "$ERR" "did you mean" "a suggestion"
expect_exit 2 "apply to a missing device" -- gs apply -f "$CFG" -c no-such-device
contains "$ERR" "device 3" "the device is named"
printf 'version: v1\nmig-configs:\n  x:\n    - devices: all\n      mig-enabled: maybe\n' >"$GS_TMP/bad.yaml"
expect_exit 2 "apply a bad boolean" -- gs apply -f "$GS_TMP/bad.yaml" -c x
contains "$ERR" "bad.yaml:5:" "the line of the bad value"
printf 'version: v1\nmig-configs: [\n' >"$GS_TMP/broken.yaml"
expect_exit 2 "apply broken YAML" -- gs apply -f "$GS_TMP/broken.yaml" -c x
contains "$ERR" "broken.yaml:[0-9]+:[0-9]+" "syntax errors have a position"
expect_exit 2 "apply a missing file" -- gs apply -f "$GS_TMP/nope.yaml" -c x
expect_exit 2 "apply without -c" -- gs apply -f "$CFG"
[ "$(state_sum)" = "$before" ] && pass "failed applies changed nothing" || fail "failed applies changed nothing"

expect_exit 0 "apply off" -- gs apply -f "$CFG" -c off
contains "$OUT" "disable partitioning" "partitioning disabled"
expect_exit 1 "create while disabled" -- gs create 1g.3gb
expect_exit 0 "apply whole" -- gs apply -f "$CFG" -c whole

# A corrupt state file is an error, never silently reset.
printf '{"version": 1, "backend": "host", "devices": [' >"$GPUSLICE_STATE_DIR/state.json"
before=$(state_sum)
expect_exit 1 "list with corrupt state" -- gs list
contains "$ERR" "corrupt" "the state file is called corrupt"
expect_exit 1 "apply with corrupt state" -- gs apply -f "$CFG" -c seven
[ "$(state_sum)" = "$before" ] && pass "corrupt state left as it was" || fail "corrupt state left as it was"
finish
