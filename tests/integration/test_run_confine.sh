# `gpuslice run` confines a command to its instance: CPU affinity, memory
# limit (cgroup where the kernel lets us, else the per-process fallback),
# identity in the environment.
. "$(dirname "$0")/lib.sh"
unset GPUSLICE_HOST_CGROUP_ROOT
export GPUSLICE_HOST_MEMORY_MIB=8192 # 1 GiB a memory slice: 1g.1gb ... 7g.8gb

expect_exit 0 "create 1g.1gb and 3g.4gb" -- gs create 1g.1gb 3g.4gb
small=$(json_get "$(gs --json list)" '[g["id"] for g in d["devices"][0]["gpu_instances"] if g["profile"] == "1g.1gb"][0]')
expect_exit 0 "run prints its identity" -- \
  gs run -i "$small" -- sh -c 'echo "gi=$GPUSLICE_GI_ID ci=$GPUSLICE_CI_ID profile=$GPUSLICE_PROFILE cpus=$GPUSLICE_CPUS"; grep Cpus_allowed_list /proc/self/status'
contains "$OUT" "gi=$small ci=0 profile=1g\.1gb" "identity variables"
want=$(printf '%s' "$OUT" | sed -n 's/.*cpus=\([^ ]*\).*/\1/p' | head -1)
got=$(printf '%s' "$OUT" | awk '/Cpus_allowed_list/ {print $2}')
[ -n "$want" ] && [ "$want" = "$got" ] && pass "affinity is the instance's CPU set ($got)" || fail "affinity" "env $want, kernel $got"

expect_exit 0 "an allocation within the limit works" -- \
  gs run -i "$small" -- python3 -c 'x = b"x" * (256 << 20); print(len(x))'
expect_exit_nonzero() {
  "$@" >/dev/null 2>&1 && fail "$DESC" "it succeeded" || pass "$DESC"
}
DESC="an allocation past the 1 GiB limit fails" expect_exit_nonzero \
  gs run -i "$small" -- python3 -c 'x = b"x" * (1536 << 20); print(len(x))'
expect_exit 0 "list says what is enforced" -- gs list
contains "$OUT" "memory: " "the memory enforcement is stated"

expect_exit 2 "run in a missing instance" -- gs run -i 42 -- true
contains "$ERR" "no instance 42" "the instance is named"
expect_exit 127 "run a missing command" -- gs run -i "$small" -- /nonexistent/cmd
expect_exit 2 "run without a command" -- gs run -i "$small"
finish
