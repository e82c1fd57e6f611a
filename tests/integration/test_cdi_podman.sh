# The CDI spec in a real container runtime: Debian's podman (with runc) runs
# a busybox container with --device gpuslice.dev/instance=0:GI on the host
# backend; inside, the environment is the instance's, the process is in the
# instance's memory cgroup (the spec's createRuntime hook put it there) and
# on the instance's CPUs. Podman 4.3 reads specs from /etc/cdi and
# /var/run/cdi only: the test writes /var/run/cdi/gpuslice-test-PID.json
# and removes it, with the image it imports, at exit.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/host_env.sh"
for tool in podman runc busybox; do
  if ! command -v "$tool" >/dev/null; then
    echo "not ok - $tool is not installed (scripts/install-deps.sh installs podman, runc and busybox-static)"
    exit 1
  fi
done
if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: podman with cgroups and /var/run/cdi needs root"
  exit 77
fi
IMAGE=localhost/gpuslice-test-busybox:$$
SPEC=/var/run/cdi/gpuslice-test-$$.json
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  CG=/sys/fs/cgroup/gpuslice-test-$$ # cgroup v2 only
else
  CG=/sys/fs/cgroup/memory/gpuslice-test-$$ # v1 or hybrid
fi
cleanup_podman() {
  rm -f "$SPEC"
  podman rmi -f "$IMAGE" >/dev/null 2>&1
  find "$CG" -depth -type d -exec rmdir {} \; 2>/dev/null
}
trap 'cleanup_podman; gs_cleanup' EXIT
if [ -e /var/run/cdi/gpuslice.json ] || [ -e /etc/cdi/gpuslice.json ]; then
  echo "not ok - a gpuslice CDI spec is installed on this machine: its devices would clash with the test's"
  exit 1
fi
mkdir -p /var/run/cdi "$GS_TMP/root/bin"
cp "$(command -v busybox)" "$GS_TMP/root/bin/"
for a in sh cat env grep awk sleep; do ln -s busybox "$GS_TMP/root/bin/$a"; done
tar -C "$GS_TMP/root" -cf "$GS_TMP/root.tar" . &&
  podman import -q "$GS_TMP/root.tar" "$IMAGE" >/dev/null ||
  { echo "not ok - podman import of a busybox rootfs failed"; exit 1; }
# crun refuses hybrid cgroup hierarchies; runc runs on v1, hybrid and v2.
# Podman's default RLIMIT_NOFILE/NPROC may exceed this session's hard limits
# (a VM's, a CI runner's): lower ones can always be set.
PODMAN=(podman --runtime runc run --rm --ulimit nofile=1024:1024
  --ulimit nproc=1024:1024)
if ! out=$("${PODMAN[@]}" "$IMAGE" /bin/sh -c 'echo up' 2>&1) || [ "$out" != up ]; then
  echo "SKIP: podman cannot run a container on this machine: $out"
  exit 77
fi
mkdir -p "$CG" || { echo "not ok - cannot make $CG"; exit 1; }
export GPUSLICE_HOST_CGROUP_ROOT=$CG
expect_exit 0 "host: a 1g and a 2g instance" -- gs create 1g.3gb 2g.6gb
expect_exit 0 "cdi generate into /var/run/cdi" -- gs cdi generate -o "$SPEC"
gi=$(gs --json list | python3 -c 'import json,sys; d=json.load(sys.stdin)["devices"][0]; print([g["id"] for g in d["gpu_instances"] if g["profile"]=="2g.6gb"][0])')
want_cpus=$(gs run -i "$gi" -- sh -c 'echo $GPUSLICE_CPUS')
gi_uuid=$(gs --json list | python3 -c "import json,sys; d=json.load(sys.stdin)['devices'][0]; print([g['uuid'] for g in d['gpu_instances'] if g['id']==$gi][0])")
expect_exit 0 "podman run --device gpuslice.dev/instance=0:$gi" -- \
  "${PODMAN[@]}" --device "gpuslice.dev/instance=0:$gi" "$IMAGE" /bin/sh -c \
  'env | grep ^GPUSLICE_; grep -E "^[0-9]+:memory:" /proc/self/cgroup; grep -E "^0::" /proc/self/cgroup; grep Cpus_allowed_list /proc/self/status'
contains "$OUT" "GPUSLICE_PROFILE=2g.6gb" "inside: the instance's profile"
contains "$OUT" "GPUSLICE_GI_ID=$gi" "inside: the instance's GI"
contains "$OUT" "GPUSLICE_MEMORY_LIMIT_BYTES=6442450944" "inside: its memory limit in the env"
contains "$OUT" "(memory|0:):/.*gpuslice/$gi_uuid" "inside: the process is in the instance's memory cgroup"
contains "$OUT" "Cpus_allowed_list:[[:space:]]+$want_cpus$" "inside: on the instance's CPUs ($want_cpus)"
limit=$(cat "$CG/gpuslice/$gi_uuid/memory.limit_in_bytes" 2>/dev/null || cat "$CG/gpuslice/$gi_uuid/memory.max")
[ "$limit" = 6442450944 ] && pass "that cgroup holds 6 GiB" || fail "that cgroup holds 6 GiB" "$limit"
expect_exit 126 "an unknown device is refused by podman" -- \
  "${PODMAN[@]}" --device gpuslice.dev/instance=0:99 "$IMAGE" /bin/sh -c true
contains "$ERR" "unresolvable CDI devices gpuslice.dev/instance=0:99" "podman says which"
gs destroy --all >/dev/null
echo "$GS_PASSED passed, $GS_FAILED failed"
[ "$GS_FAILED" -eq 0 ]
