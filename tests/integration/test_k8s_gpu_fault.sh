# A faulted GPU in the device plugin's health and `gpuslice k8s metrics`:
# the mig backend on the test-only fake NVML with two GPUs, faults injected
# through FAKE_NVML_EVENTS. An application XID (43) changes nothing, a
# critical XID naming one MIG instance makes it alone Unhealthy, XID 79 on
# GPU 0 all of GPU 0's, a lost GPU 1 its own; GPU 1 stays Healthy until
# then; an NVML without the event calls is said once. Read with `gpuslice
# k8s devices` (ListAndWatch, as the kubelet calls it) and by scraping the
# metrics' gpuslice_instance_healthy.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/host_env.sh"
[ -n "${GS_SANITIZE:-}" ] && export GPUSLICE_TEST_NO_ADDRESS_LIMIT=1
BUILD=$(dirname "$GPUSLICE")
export GPUSLICE_STATE_DIR="$GS_TMP/state-mig" GPUSLICE_BACKEND=mig
export GPUSLICE_NVML_LIBRARY="$BUILD/tests/fake_nvml/current/libnvidia-ml.so.1"
export FAKE_NVML_CONFIG=h100-80gb,h100-80gb FAKE_NVML_STATE="$GS_TMP/nvml.json"
export FAKE_NVML_EVENTS="$GS_TMP/faults"
: >"$FAKE_NVML_EVENTS"
expect_exit 0 "two 1g on GPU 0" -- gs create 1g.10gb 1g.10gb
expect_exit 0 "one 1g on GPU 1" -- gs create -d 1 1g.10gb
# uuids DEV: the CI UUIDs of a GPU, "GI UUID" a line.
uuids() {
  gs --json list | python3 -c 'import json,sys
for g in json.load(sys.stdin)["devices"][int(sys.argv[1])]["gpu_instances"]:
    for c in g["compute_instances"]: print(g["id"], c["uuid"])' "$1"
}
read -r gi_a uuid_a <<<"$(uuids 0 | sed -n 1p)"
read -r gi_b uuid_b <<<"$(uuids 0 | sed -n 2p)"
read -r _ uuid_c <<<"$(uuids 1 | sed -n 1p)"
[ -n "$uuid_a" ] && [ -n "$uuid_b" ] && [ -n "$uuid_c" ] ||
  { fail "three instances with UUIDs" "$(uuids 0; uuids 1)"; finish; exit 1; }

dp="$GS_TMP/dp"
mkdir -p "$dp"
"$GPUSLICE" k8s device-plugin --plugin-dir "$dp" --interval-ms 100 \
  2>"$GS_TMP/plugin.log" &
plugin=$!
GS_PIDS+=("$plugin")
sock="$dp/gpuslice-mig-1g.10gb.sock"
"$GPUSLICE" k8s metrics --listen 127.0.0.1:0 2>"$GS_TMP/metrics.log" &
metrics=$!
GS_PIDS+=("$metrics")
for _ in $(seq 100); do
  url=$(sed -n 's|.*serving \(http://[^ ]*/metrics\).*|\1|p' "$GS_TMP/metrics.log")
  [ -S "$sock" ] && [ -n "$url" ] && break
  sleep 0.1
done
# health: "A B C" for the three instances, in ListAndWatch; mhealth: the
# same from the metrics (1 Healthy, 0 Unhealthy).
health() {
  local out
  out=$("$GPUSLICE" k8s devices --socket "$sock" 2>&1)
  for u in "$uuid_a" "$uuid_b" "$uuid_c"; do
    printf '%s\n' "$out" | sed -n "s|^ *$u \([A-Za-z]*\)$|\1|p" | head -1
  done | paste -sd' '
}
mhealth() {
  local text
  text=$(curl -sf "$url")
  for u in "$uuid_a" "$uuid_b" "$uuid_c"; do
    printf '%s\n' "$text" | grep '^gpuslice_instance_healthy{' |
      grep "instance_uuid=\"$u\"" | awk '{print $NF == 1 ? "Healthy" : "Unhealthy"}'
  done | paste -sd' '
}
# expect_health WHAT "A B C" LOGLINE: waits until both logs have LOGLINE
# (the fault was read), then compares both views.
expect_health() {
  local got mgot
  for _ in $(seq 100); do
    grep -q -- "$3" "$GS_TMP/plugin.log" && { mgot=$(mhealth); grep -q -- "$3" "$GS_TMP/metrics.log"; } && break
    sleep 0.1
  done
  got=$(health)
  mgot=$(mhealth)
  [ "$got" = "$2" ] && pass "$1: ListAndWatch says $2" ||
    fail "$1: ListAndWatch" "want $2, got $got" "$(tail -5 "$GS_TMP/plugin.log")"
  [ "$mgot" = "$2" ] && pass "$1: the metrics agree" ||
    fail "$1: metrics" "want $2, got $mgot" "$(tail -5 "$GS_TMP/metrics.log")"
}
expect_health "no fault" "Healthy Healthy Healthy" "serving"

echo "xid 0 43" >>"$FAKE_NVML_EVENTS"
expect_health "XID 43 (an application's) on GPU 0" "Healthy Healthy Healthy" "XID 43 .*ignored"
echo "xid 0 48 $gi_b 0" >>"$FAKE_NVML_EVENTS"
expect_health "XID 48 naming GPU 0's GI $gi_b" "Healthy Unhealthy Healthy" "critical XID 48"
echo "xid 0 79" >>"$FAKE_NVML_EVENTS"
expect_health "XID 79 on GPU 0" "Unhealthy Unhealthy Healthy" "critical XID 79"
contains "$(cat "$GS_TMP/plugin.log")" "critical XID 79 on GPU GPU-[0-9a-f-]+: Unhealthy" "the plugin logs the XID and the GPU"

# A lost GPU fails the layout's reading too: the plugin keeps the last
# layout, so only ListAndWatch is checked.
echo "lost 1" >>"$FAKE_NVML_EVENTS"
for _ in $(seq 100); do grep -q "its instances are Unhealthy" "$GS_TMP/plugin.log" && break; sleep 0.1; done
got=$(health)
[ "$got" = "Unhealthy Unhealthy Unhealthy" ] && pass "GPU 1 lost: its instance Unhealthy too" ||
  fail "GPU 1 lost" "got $got" "$(tail -5 "$GS_TMP/plugin.log")"
# Both stop cleanly on SIGTERM (the fault watch closed; sanitizer builds
# report leaks and errors here).
for p in "$plugin" "$metrics"; do kill "$p"; done
wait "$plugin"; st1=$?
wait "$metrics"; st2=$?
[ "$st1.$st2" = 0.0 ] && ! grep -q Sanitizer "$GS_TMP/plugin.log" "$GS_TMP/metrics.log" &&
  pass "the plugin and the metrics stop cleanly on SIGTERM" ||
  fail "clean stop" "exit $st1 and $st2" "$(grep -h -A5 Sanitizer "$GS_TMP"/*.log | head -20)"

# An NVML without the event calls (the fake's legacy build): the plugin
# says once that it has no XID watch and serves all the same.
: >"$FAKE_NVML_EVENTS"
GPUSLICE_NVML_LIBRARY="$BUILD/tests/fake_nvml/legacy/libnvidia-ml.so.1" \
  "$GPUSLICE" k8s device-plugin --plugin-dir "$dp" --interval-ms 100 \
  2>"$GS_TMP/legacy.log" &
plugin=$!
GS_PIDS+=("$plugin")
for _ in $(seq 100); do grep -q "serving" "$GS_TMP/legacy.log" && break; sleep 0.1; done
sleep 0.5
kill "$plugin"
wait "$plugin"
n=$(grep -c "no XID watch: .* lacks nvmlEventSetWait_v2" "$GS_TMP/legacy.log")
[ "$n" = 1 ] && pass "no event calls in NVML: said once, the plugin runs" ||
  fail "no event calls" "$n lines" "$(cat "$GS_TMP/legacy.log")"
finish
