# gpuslice k8s mig-manager against a label file: a new nvidia.com/mig.config
# value is applied incrementally (a process on an instance that stays keeps
# running and the device plugin still advertises it), an unknown config
# name and a config that fails mid-apply (fake NVML, mig backend) leave
# the layout as it was and set nvidia.com/mig.config.state to failed.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/host_env.sh"
LABELS="$GS_TMP/labels"
STATE="$LABELS.state"

# wait_state CONFIG: until the state file is about CONFIG and done; prints
# the state (pending, success, failed) or "timeout".
wait_state() {
  local st=""
  for _ in $(seq 200); do
    if grep -qx "gpuslice.dev/mig.config.applied=$1" "$STATE" 2>/dev/null; then
      st=$(sed -n 's/^nvidia.com\/mig.config.state=//p' "$STATE")
      [ "$st" = success ] || [ "$st" = failed ] && { echo "$st"; return; }
    fi
    sleep 0.05
  done
  echo "timeout ($st)"
}
label() { printf '# the node labels\nnvidia.com/gpu.present=true\nnvidia.com/mig.config=%s\n' "$1" >"$LABELS"; }

expect_exit 2 "mig-manager without --label-file" -- gs k8s mig-manager --config "$CFG"
expect_exit 0 "start from seven" -- gs apply -f "$CFG" -c seven
gi=$(json_get "$(gs --json list)" '[g["id"] for g in d["devices"][0]["gpu_instances"] if g["start"] == 6][0]')
"$GPUSLICE" run -i "$gi" -- sleep 300 &
worker=$!
GS_PIDS+=("$worker")

label seven
"$GPUSLICE" k8s mig-manager --config "$CFG" --label-file "$LABELS" \
  --interval-ms 50 2>"$GS_TMP/mm.log" &
mm=$!
GS_PIDS+=("$mm")
[ "$(wait_state seven)" = success ] && pass "the label's config at start: success" ||
  fail "the label's config at start: success" "$(cat "$STATE" "$GS_TMP/mm.log")"

plug="$GS_TMP/plugin"
mkdir -p "$plug"
"$GPUSLICE" k8s device-plugin --plugin-dir "$plug" --interval-ms 100 2>"$GS_TMP/dp.log" &
dp=$!
GS_PIDS+=("$dp")
sock="$plug/gpuslice-host-1g.3gb.sock"
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
expect_exit 0 "the plugin advertises seven 1g" -- gs --json k8s devices --socket "$sock"
uuid=$(json_get "$(gs --json list)" "[g['compute_instances'][0]['uuid'] for g in d['devices'][0]['gpu_instances'] if g['id'] == $gi][0]")
contains "$OUT" "\"id\":\"$uuid\",\"health\":\"Healthy\"" "the busy instance is advertised"

before=$(state_sum)
label four-and-three
[ "$(wait_state four-and-three)" = success ] && pass "four-and-three: success" ||
  fail "four-and-three: success" "$(cat "$STATE" "$GS_TMP/mm.log")"
contains "$(cat "$GS_TMP/mm.log")" "config 'four-and-three' applied" "logged"
[ "$(state_sum)" != "$before" ] && pass "the layout changed" || fail "the layout changed"
still=$(json_get "$(gs --json list)" "[g['start'] for g in d['devices'][0]['gpu_instances'] if g['id'] == $gi]")
[ "$still" = "[6]" ] && pass "instance $gi kept its ID and place" || fail "instance $gi kept its ID and place" "$still"
kill -0 "$worker" 2>/dev/null && pass "the process on it still runs" || fail "the process on it still runs"
expect_exit 0 "assert four-and-three" -- gs assert -f "$CFG" -c four-and-three
for _ in $(seq 50); do # the plugin's next tick
  OUT=$(gs --json k8s devices --socket "$sock")
  [ "$(grep -o '"id"' <<<"$OUT" | wc -l)" = 3 ] && break
  sleep 0.1
done
contains "$OUT" "\"id\":\"$uuid\",\"health\":\"Healthy\"" "the busy instance is still advertised, same ID"
n=$(echo "$OUT" | python3 -c 'import json,sys; print(len(json.loads(sys.stdin.readline())))')
[ "$n" = 3 ] && pass "three 1g advertised now" || fail "three 1g advertised now" "$n"

before=$(state_sum)
label no-such-config
[ "$(wait_state no-such-config)" = failed ] && pass "an unknown config name: failed" ||
  fail "an unknown config name: failed" "$(cat "$STATE")"
contains "$(cat "$GS_TMP/mm.log")" "failed: .*no config 'no-such-config' in .*[(]it has: seven," "the log says why"
[ "$(state_sum)" = "$before" ] && pass "the layout is unchanged" || fail "the layout is unchanged"

label whole
[ "$(wait_state whole)" = failed ] && pass "whole, over a busy instance: failed" ||
  fail "whole, over a busy instance: failed" "$(cat "$STATE")"
[ "$(state_sum)" = "$before" ] && pass "the layout is unchanged" || fail "the layout is unchanged"
kill -0 "$worker" 2>/dev/null && pass "the process still runs" || fail "the process still runs"

kill "$mm"
wait "$mm"
st=$?
[ "$st" -eq 0 ] && pass "the manager stops on SIGTERM" || fail "the manager stops on SIGTERM" "exit $st"
kill "$dp"
wait "$dp" 2>/dev/null
kill -9 "$worker"
wait "$worker" 2>/dev/null

# Mid-apply failure on the mig backend (fake NVML): the second GPU instance
# created fails; the change is rolled back and the state is failed.
BUILD=$(dirname "$GPUSLICE")
(
  export GPUSLICE_STATE_DIR="$GS_TMP/state-mig" GPUSLICE_BACKEND=mig
  export GPUSLICE_NVML_LIBRARY="$BUILD/tests/fake_nvml/current/libnvidia-ml.so.1"
  export FAKE_NVML_CONFIG=h100-80gb FAKE_NVML_STATE="$GS_TMP/nvml.json"
  mkdir -p "$GPUSLICE_STATE_DIR"
  cat >"$GS_TMP/mig.yaml" <<'YAML'
version: v1
mig-configs:
  two-3g:
    - devices: all
      mig-enabled: true
      mig-devices:
        "3g.40gb": 2
  seven:
    - devices: all
      mig-enabled: true
      mig-devices:
        "1g.10gb": 7
YAML
  gs apply -f "$GS_TMP/mig.yaml" -c two-3g >/dev/null || exit 1
  # GI IDs may change in a rollback (destroyed GIs are made anew): the
  # profiles and places are the layout.
  sum() { json_get "$(gs --json list)" 'sorted((g["profile"], g["start"]) for g in d["devices"][0]["gpu_instances"])'; }
  before=$(sum)
  label seven
  FAKE_NVML_FAIL_AFTER=2 "$GPUSLICE" k8s mig-manager --config "$GS_TMP/mig.yaml" \
    --label-file "$LABELS" --interval-ms 50 2>"$GS_TMP/mm-mig.log" &
  m=$!
  r=0
  st=$(wait_state seven)
  [ "$st" = failed ] && echo "ok - mig: seven failing at its 2nd create: failed" ||
    { echo "not ok - mig: seven failing at its 2nd create: failed ($st)"; r=1; }
  [ "$(sum)" = "$before" ] && echo "ok - mig: rolled back to two 3g" ||
    { echo "not ok - mig: rolled back to two 3g"; r=1; }
  gs assert -f "$GS_TMP/mig.yaml" -c two-3g >/dev/null &&
    echo "ok - mig: assert two-3g" || { echo "not ok - mig: assert two-3g"; r=1; }
  grep -q "failed: .*creat" "$GS_TMP/mm-mig.log" &&
    echo "ok - mig: the log names the failed create" ||
    { echo "not ok - mig: the log names the failed create"; cat "$GS_TMP/mm-mig.log"; r=1; }
  kill "$m"
  wait "$m"
  exit $r
)
rc=$?
[ "$rc" -eq 0 ] && pass "mig backend: mid-apply failure" || fail "mig backend: mid-apply failure"
finish
