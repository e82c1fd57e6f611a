#!/usr/bin/env bash
# A tour of partitioning (the main job before `gpuslice demo`): on a Debian 12
# machine as root, build gpuslice and show a partition of this machine
# being applied, listed, used and changed incrementally on the host backend.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C build/release gpuslice >/dev/null
gs=build/release/gpuslice
export GPUSLICE_STATE_DIR=${GPUSLICE_STATE_DIR:-$(mktemp -d /tmp/gpuslice-demo.XXXXXX)}
export GPUSLICE_BACKEND=host

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { say "gpuslice $*"; "$gs" "$@"; }

# Profile names follow this machine's memory; write the example config for it.
names=$("$gs" --json profiles | python3 -c '
import json, sys
p = {x["id"]: x["name"] for x in json.load(sys.stdin)["devices"][0]["profiles"]}
print(p[19], p[14], p[9], p[5])')
read -r p1 p2 p3 p4 <<<"$names"
cfg="$GPUSLICE_STATE_DIR/demo.yaml"
sed -e "s/1g\.3gb/$p1/g" -e "s/2g\.6gb/$p2/g" -e "s/3g\.12gb/$p3/g" examples/host.yaml >"$cfg"
cat >>"$cfg" <<YAML
  four-and-three:
    - devices: all
      mig-enabled: true
      mig-devices:
        "$p4": 1
        "$p1": 3
YAML

run info
run profiles
run create --dry-run --gpu a100-40gb 1g.5gb 1g.5gb 2g.10gb 3g.20gb
run apply -f "$cfg" -c all-1g
run list
gi=$("$gs" --json list | python3 -c '
import json, sys
print([g["id"] for g in json.load(sys.stdin)["devices"][0]["gpu_instances"] if g["start"] == 6][0])')
say "gpuslice run -i $gi -- sleep 60 &   (a workload in the instance at slice 6)"
"$gs" run -i "$gi" -- sleep 60 &
worker=$!
trap 'kill $worker 2>/dev/null || true' EXIT
sleep 0.5
run list
run apply -f "$cfg" -c four-and-three
say "the workload in instance $gi is still running: $(kill -0 $worker && echo yes)"
run assert -f "$cfg" -c four-and-three
run export
say "gpuslice apply -f $cfg -c all-disabled   (refused: instance $gi is busy)"
"$gs" apply -f "$cfg" -c all-disabled || true
kill $worker; wait $worker 2>/dev/null || true
run apply -f "$cfg" -c all-disabled
rm -rf "$GPUSLICE_STATE_DIR"
