# The device plugin's health from `gpuslice serve`: while an instance's
# worker fails its health checks (SIGSTOP), the plugin lists the instance
# Unhealthy, and Healthy again once the worker answers (SIGCONT). Read with
# `gpuslice k8s devices`, as the kubelet would (no kubelet needed).
. "$(dirname "$0")/serve_lib.sh"
plugin_pid=
trap 'kill "$plugin_pid" 2>/dev/null; cleanup' EXIT
start_serve --health-interval 100
mkdir -p "$tmp/dp"
"$GPUSLICE" k8s device-plugin --plugin-dir "$tmp/dp" --interval-ms 100 \
  2>"$tmp/plugin.log" &
plugin_pid=$!
sock="$tmp/dp/gpuslice-host-1g.3gb.sock"
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
# until_listed PATTERN SECONDS: polls the plugin's list until it matches.
until_listed() {
  local end=$((SECONDS + $2)) out
  while [ "$SECONDS" -le "$end" ]; do
    out=$("$GPUSLICE" k8s devices --socket "$sock" 2>&1)
    printf '%s\n' "$out" | grep -Eq -- "$1" && return 0
    sleep 0.2
  done
  echo "$out"
  return 1
}
until_listed "^list 1: 2 devices" 10 || fail "the plugin does not list the two 1g instances"
out=$("$GPUSLICE" k8s devices --socket "$sock")
[ "$(printf '%s\n' "$out" | grep -c ' Healthy$')" = 2 ] || fail "both Healthy at first: $out"
echo "ok - both instances Healthy while their workers serve"
pid2=$(worker_field 0:2 pid)
uuid2=$(worker_field 0:2 uuid)
kill -STOP "$pid2"
wait_state 0:2 unhealthy 3 >/dev/null
until_listed "$uuid2 Unhealthy" 10 >/dev/null ||
  { kill -CONT "$pid2"; fail "worker 0:2 stopped: its instance is not listed Unhealthy"; }
out=$("$GPUSLICE" k8s devices --socket "$sock")
[ "$(printf '%s\n' "$out" | grep -c ' Healthy$')" = 1 ] ||
  { kill -CONT "$pid2"; fail "only 0:2 is Unhealthy: $out"; }
echo "ok - worker 0:2 fails its health checks: instance $uuid2 Unhealthy, the other Healthy"
kill -CONT "$pid2"
wait_state 0:2 ready 5 >/dev/null
until_listed "$uuid2 Healthy" 10 >/dev/null || fail "worker 0:2 back: still Unhealthy"
echo "ok - worker 0:2 answers again: Healthy"
kill "$plugin_pid"
wait "$plugin_pid" || fail "the plugin did not stop cleanly on SIGTERM"
plugin_pid=
echo "3 passed, 0 failed"
