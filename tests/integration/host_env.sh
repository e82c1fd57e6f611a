# A host of a fixed shape (2 cores, 24 GiB: 1g.3gb ... 7g.24gb) so that
# profile names in the tests do not depend on the machine (sourced).
export GPUSLICE_HOST_CPUS=2 GPUSLICE_HOST_MEMORY_MIB=24576
export GPUSLICE_HOST_CGROUP_ROOT=${GPUSLICE_HOST_CGROUP_ROOT:-none}
CFG="$GS_TMP/host.yaml"
cat >"$CFG" <<'YAML'
version: v1
mig-configs:
  seven:
    - devices: all
      mig-enabled: true
      mig-devices:
        "1g.3gb": 7
  balanced:
    - devices: all
      mig-enabled: true
      mig-devices:
        "1g.3gb": 2
        "2g.6gb": 1
        "3g.12gb": 1
  four-and-three:
    - devices: all
      mig-enabled: true
      mig-devices:
        "4g.12gb": 1
        "1g.3gb": 3
  whole:
    - devices: [0]
      mig-enabled: true
      mig-devices:
        "7g.24gb": 1
  off:
    - devices: all
      mig-enabled: false
  typo:
    - devices: all
      mig-enabled: true
      mig-devices:
        "1g.4gb": 1
  no-such-device:
    - devices: [3]
      mig-enabled: true
      mig-devices: {}
YAML
# state_sum: a fingerprint of the state file, "none" when there is none,
# "unreadable" when it cannot be read (a pipeline's status is its last
# command's, so the file's existence is tested, not md5sum's status).
state_sum() {
  local f="$GPUSLICE_STATE_DIR/state.json" sum
  [ -e "$f" ] || { echo none; return; }
  sum=$(md5sum <"$f" 2>/dev/null) && echo "${sum%% *}" || echo unreadable
}
