# Edge cases found in review, each once a real bug: IDs when an instance
# lands below another, strict numbers, run's arguments, concurrent applies,
# re-applying an export, the RLIMIT_AS fallback.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/host_env.sh"

# Instance IDs stay unique when a new instance starts below an existing one.
expect_exit 0 "create 1g.3gb" -- gs create 1g.3gb
expect_exit 0 "create another 1g.3gb (lands below the first)" -- gs create 1g.3gb
ids=$(json_get "$(gs --json list)" 'sorted(g["id"] for g in d["devices"][0]["gpu_instances"])')
[ "$ids" = "[1, 2]" ] && pass "IDs 1 and 2" || fail "IDs 1 and 2" "$ids"
expect_exit 0 "destroy --all" -- gs destroy --all
printf 'version: v1\nmig-configs:\n  low:\n    - devices: all\n      mig-enabled: true\n      mig-devices: {"1g.3gb": 1, "4g.12gb": 1}\n' >"$GS_TMP/low.yaml"
expect_exit 0 "apply 1g + 4g (the 4g lands below)" -- gs apply -f "$GS_TMP/low.yaml" -c low
expect_exit 0 "dry-run 19,14,5" -- gs --json create --dry-run --gpu a100-40gb 19,14,5
ids=$(json_get "$OUT" 'sorted(g["id"] for g in d["devices"][0]["gpu_instances"])')
[ "$ids" = "[1, 2, 3]" ] && pass "dry-run IDs are distinct" || fail "dry-run IDs are distinct" "$ids"
expect_exit 0 "destroy --all" -- gs destroy --all

# Strict numbers and arguments: exit 2, nothing changed.
before=$(state_sum)
for args in "create -d abc 1g.3gb" "create -d 4294967296 1g.3gb" "destroy 4294967297" \
            "destroy +1" "destroy -d x 1" "profiles -d -1" "create 3g.12gb --ci ," \
            "create ," ; do
  # shellcheck disable=SC2086
  expect_exit 2 "rejects: $args" -- gs $args
done
expect_exit 2 "rejects an empty profile" -- gs create ""
expect_exit 2 "rejects: destroy ' 1'" -- gs destroy " 1"
[ "$(state_sum)" = "$before" ] && pass "rejected commands changed nothing" || fail "rejected commands changed nothing"
expect_exit 0 "options after profiles" -- gs create 1g.10gb --dry-run --gpu h100-80gb --ci 1c
expect_exit 2 "--gpu with -d" -- gs create --dry-run --gpu h100-80gb -d 0 1g.10gb
GPUSLICE_HOST_MEMORY_MIB=abc expect_exit 2 "a bad GPUSLICE_HOST_MEMORY_MIB" -- gs list
GPUSLICE_HOST_MEMORY_MIB=1 expect_exit 2 "a tiny GPUSLICE_HOST_MEMORY_MIB" -- gs list
GPUSLICE_HOST_CPUS=0 expect_exit 2 "GPUSLICE_HOST_CPUS=0" -- gs list

# run's arguments belong to the workload, global options included.
expect_exit 0 "create for run" -- gs create 1g.3gb
gi=$(json_get "$(gs --json list)" 'd["devices"][0]["gpu_instances"][0]["id"]')
expect_exit 0 "run passes --json on" -- gs run -i "$gi" echo a --json b
contains "$OUT" "^a --json b$" "the workload got --json"

# Re-applying an export never rebuilds: CIs grouped differently still match.
expect_exit 0 "destroy --all" -- gs destroy --all
expect_exit 0 "create two 1c in one 3g" -- gs create 3g.12gb --ci 1c,1c
gs export >"$GS_TMP/e.yaml"
expect_exit 0 "assert the export" -- gs assert -f "$GS_TMP/e.yaml" -c current
expect_exit 0 "apply the export" -- gs apply -f "$GS_TMP/e.yaml" -c current
contains "$OUT" "0 destroyed, 0 created" "nothing rebuilt"

# An assert that selects no device fails rather than passing vacuously.
printf 'version: v1\nmig-configs:\n  h100:\n    - devices: all\n      device-filter: "0x233010DE"\n      mig-enabled: true\n      mig-devices: {}\n' >"$GS_TMP/f.yaml"
expect_exit 1 "assert with a filter matching nothing" -- gs assert -f "$GS_TMP/f.yaml" -c h100
contains "$ERR" "selects no device" "says why"

# Concurrent applies serialize: none crashes, each ends 0 or 1.
crashes=0
for _ in $(seq 10); do
  pids=()
  for c in seven whole off; do gs apply -f "$CFG" -c "$c" >/dev/null 2>&1 & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p"; st=$?; [ "$st" -gt 1 ] && crashes=$((crashes + 1)); done
done
[ "$crashes" -eq 0 ] && pass "30 concurrent applies, no crash" || fail "concurrent applies crashed $crashes times"
expect_exit 0 "list after the race" -- gs list

# Without cgroups the memory limit falls back to RLIMIT_AS for the workload.
expect_exit 0 "apply seven" -- gs apply -f "$CFG" -c seven
gi=$(json_get "$(gs --json list)" 'd["devices"][0]["gpu_instances"][0]["id"]')
GPUSLICE_HOST_CGROUP_ROOT=none expect_exit 0 "RLIMIT_AS is set" -- gs run -i "$gi" -- sh -c 'ulimit -v'
[ "$OUT" != "unlimited" ] && [ "$OUT" -le $((3 * 1024 * 1024)) ] 2>/dev/null \
  && pass "ulimit -v is the instance's memory ($OUT KiB)" || fail "ulimit -v" "$OUT"
# Without cgroups, a workload's children count as the instance's, also
# once their parent has exited (re-parented orphans).
export GPUSLICE_HOST_CGROUP_ROOT=none
gs run -i "$gi" -- sh -c 'sleep 30 >/dev/null 2>&1 &' >/dev/null 2>&1
sleep 0.3
expect_exit 1 "destroy refuses an instance whose orphaned child still runs" -- gs destroy "$gi"
contains "$ERR" "sleep" "the child is named"
# Only this test's orphan (its environment names this test's state dir).
for p in $(pgrep -x sleep); do grep -qxzF "GPUSLICE_STATE_DIR=$GPUSLICE_STATE_DIR" "/proc/$p/environ" 2>/dev/null && kill "$p"; done; sleep 0.3
expect_exit 0 "destroy once it is gone" -- gs destroy "$gi"
finish
