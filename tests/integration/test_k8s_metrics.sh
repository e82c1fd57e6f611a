# gpuslice k8s metrics: this node's instances in Prometheus' text format,
# scraped with curl and read with prometheus_client's own parser (Debian's
# python3-prometheus-client): the host backend (resident memory; the
# cgroup's memory where this machine lets gpuslice make cgroups), the soft
# backend on the test-only fake NVML (per-process GPU memory and SM
# samples, a registered process and one named by GPUSLICE_INSTANCE_UUID,
# health when the MPS daemon dies) and the mig backend on it (MIG devices'
# processes; no SM series). Bad input: unknown flag, bad --listen, port in
# use, wrong path and method.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/host_env.sh"
PY=/usr/bin/python3
"$PY" -c 'import prometheus_client' 2>/dev/null ||
  { echo "not ok - python3-prometheus-client is needed (scripts/install-deps.sh)"; exit 1; }
[ -n "${GS_SANITIZE:-}" ] && export GPUSLICE_TEST_NO_ADDRESS_LIMIT=1
BUILD=$(dirname "$GPUSLICE")
NVML="$BUILD/tests/fake_nvml/current/libnvidia-ml.so.1"

# start_metrics NAME [ENV=VALUE...]: the exporter on a free loopback port;
# sets MPID and URL from its "serving" log line.
start_metrics() {
  local name=$1 log="$GS_TMP/$1.log"
  shift
  env "$@" "$GPUSLICE" k8s metrics --listen 127.0.0.1:0 2>"$log" &
  MPID=$!
  GS_PIDS+=("$MPID")
  URL=
  for _ in $(seq 100); do
    URL=$(sed -n 's|.*serving \(http://[^ ]*/metrics\).*|\1|p' "$log")
    [ -n "$URL" ] && break
    sleep 0.1
  done
  [ -n "$URL" ] && pass "$name: the exporter says where it listens" ||
    fail "$name: the exporter listens" "$(cat "$log")"
}

# scrape: curl the exporter, parse with prometheus_client; $DOC is its JSON.
scrape() {
  curl -sf -o "$GS_TMP/scrape.txt" "$URL" &&
    DOC=$("$PY" "$GS_SOURCE_DIR/tests/k8s/prom_parse.py" "$GS_TMP/scrape.txt")
}

# value FAMILY INSTANCE_ID: the sample's value ("none" when absent).
value() {
  json_get "$DOC" "next((str(v) for l, v in d.get('$1', {}).get('samples', []) if l.get('instance_id') == '$2'), 'none')"
}

stop_metrics() {
  kill "$MPID"
  wait "$MPID"
  local st=$?
  [ "$st" -eq 0 ] && pass "$1: the exporter stops on SIGTERM" ||
    fail "$1: the exporter stops on SIGTERM" "exit $st"
}

# ---- bad input ----------------------------------------------------------------
expect_exit 2 "an unknown flag" -- gs k8s metrics --port 9400
contains "$ERR" "k8s metrics: bad option" "says which verb"
expect_exit 2 "--listen without a port" -- gs k8s metrics --listen 127.0.0.1:
contains "$ERR" "--listen is \[HOST:\]PORT with PORT 0 to 65535, not '127.0.0.1:'" "names the bad value"
expect_exit 2 "--listen past 65535" -- gs k8s metrics --listen :70000
expect_exit 2 "an extra argument" -- gs k8s metrics extra
expect_exit 0 "--help" -- gs k8s metrics --help
contains "$OUT" "GET /metrics" "--help says what it serves"

# ---- host backend: resident memory, no cgroups ---------------------------------
expect_exit 0 "host: a 1g and a 2g" -- gs create 1g.3gb 2g.6gb
"$GPUSLICE" run -i 1 -- "$PY" -c 'import time; x = b"x" * (64 << 20); time.sleep(60)' &
work=$!
GS_PIDS+=("$work")
start_metrics host
taken=$(sed -n 's|.*http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$GS_TMP/host.log")
expect_exit 1 "a port in use" -- gs k8s metrics --listen "127.0.0.1:$taken"
contains "$ERR" "cannot listen on 127.0.0.1 port $taken: address already in use" "says the port is taken"
ok=0
for _ in $(seq 50); do # the workload allocates after it starts
  scrape && [ "$(value gpuslice_instance_memory_used_bytes 0:1:0)" != none ] &&
    "$PY" -c "import sys; sys.exit(float(sys.argv[1]) < 64 << 20)" \
      "$(value gpuslice_instance_memory_used_bytes 0:1:0)" && { ok=1; break; }
  sleep 0.2
done
[ "$ok" -eq 1 ] && pass "host: prometheus_client reads it; 0:1:0 uses >= 64 MiB (resident)" ||
  fail "host: 0:1:0's memory" "$(cat "$GS_TMP/scrape.txt")"
info=$(json_get "$DOC" "sorted((l['instance_id'], l['profile'], l['backend'], l['gpu'], l['gpu_instance'], l['compute_instance'], l['instance_uuid'][:5], l['gpu_uuid'][:5]) for l, v in d['gpuslice_instance_info']['samples'] if v == 1)")
[ "$info" = "[('0:1:0', '1g.3gb', 'host', '0', '1', '0', 'HOST-', 'HOST-'), ('0:2:0', '2g.6gb', 'host', '0', '2', '0', 'HOST-', 'HOST-')]" ] &&
  pass "host: one info series per instance, with its layout" || fail "host: info series" "$info"
[ "$(value gpuslice_instance_processes 0:1:0) $(value gpuslice_instance_processes 0:2:0)" = "1.0 0.0" ] &&
  pass "host: the workload counts in its instance only" ||
  fail "host: processes" "$(value gpuslice_instance_processes 0:1:0) $(value gpuslice_instance_processes 0:2:0)"
[ "$(value gpuslice_instance_memory_used_bytes 0:2:0)" = 0.0 ] &&
  pass "host: the idle instance uses nothing" || fail "host: idle memory" "$(value gpuslice_instance_memory_used_bytes 0:2:0)"
[ "$(value gpuslice_instance_memory_total_bytes 0:2:0)" = "$((6 << 30)).0" ] &&
  pass "host: 2g.6gb has 6 GiB" || fail "host: memory total" "$(value gpuslice_instance_memory_total_bytes 0:2:0)"
[ "$(value gpuslice_instance_healthy 0:1:0)" = 1.0 ] && pass "host: healthy" || fail "host: healthy"
types=$(json_get "$DOC" "' '.join(n + ':' + f['type'] for n, f in sorted(d.items()))")
[ "$types" = "gpuslice_instance_cpu_seconds:counter gpuslice_instance_healthy:gauge gpuslice_instance_info:gauge gpuslice_instance_memory_total_bytes:gauge gpuslice_instance_memory_used_bytes:gauge gpuslice_instance_processes:gauge gpuslice_instance_sm_utilization_ratio:gauge" ] &&
  pass "host: every family has its type" || fail "host: families" "$types"
[ "$(value gpuslice_instance_sm_utilization_ratio 0:1:0)" = none ] &&
  pass "host: no SM series on a CPU host" || fail "host: SM series" "$(value gpuslice_instance_sm_utilization_ratio 0:1:0)"
expect_exit 0 "host: destroy the 2g" -- gs destroy 2
scrape
[ "$(json_get "$DOC" "len(d['gpuslice_instance_info']['samples'])")" = 1 ] &&
  pass "host: the layout follows a destroy" || fail "host: layout after destroy" "$(cat "$GS_TMP/scrape.txt")"
st=$(curl -s -o /dev/null -w '%{http_code}' "${URL%/metrics}/other")
[ "$st" = 404 ] && pass "another path: 404" || fail "another path" "$st"
st=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$URL")
[ "$st" = 405 ] && pass "POST /metrics: 405" || fail "POST /metrics" "$st"
stop_metrics host
kill "$work" 2>/dev/null
wait "$work" 2>/dev/null
gs destroy --all >/dev/null

# ---- host backend with cgroups, where this machine lets gpuslice make them ----
(
  base=$GS_FAILED
  export GPUSLICE_STATE_DIR="$GS_TMP/state-cg"
  unset GPUSLICE_HOST_CGROUP_ROOT
  gs create 1g.3gb >/dev/null || exit 1
  if ! gs list | grep -q "memory: hard limit.*cgroup"; then
    echo "ok - host cgroups: none here ($(gs list | grep 'memory:')): the cgroup path is not checked"
    gs destroy --all >/dev/null
    exit 0
  fi
  # 128 MiB written to a file: page cache the cgroup is charged for, not
  # resident memory, so only the cgroup's count holds it
  "$GPUSLICE" run -i 1 -- "$PY" -c "import time; open('$GS_TMP/cache', 'wb').write(b'x' * (128 << 20)); time.sleep(60)" &
  work=$!
  GS_PIDS+=("$work")
  start_metrics cgroup
  ok=0
  for _ in $(seq 50); do
    scrape && "$PY" -c "import sys; sys.exit(float(sys.argv[1]) < 96 << 20)" \
      "$(value gpuslice_instance_memory_used_bytes 0:1:0)" 2>/dev/null && { ok=1; break; }
    sleep 0.2
  done
  [ "$ok" -eq 1 ] && pass "host cgroups: 0:1:0's memory is its cgroup's (page cache included), >= 96 MiB" ||
    fail "host cgroups: memory" "$(cat "$GS_TMP/scrape.txt")"
  cpu=$(value gpuslice_instance_cpu_seconds_total 0:1:0)
  if [ "$cpu" = none ]; then
    echo "ok - host cgroups: no CPU time series (its CPU time has no cgroup here: $(gs list | grep 'compute:'))"
  else
    "$PY" -c "import sys; sys.exit(not float(sys.argv[1]) > 0)" "$cpu" &&
      pass "host cgroups: CPU seconds from cpu.stat ($cpu)" || fail "host cgroups: CPU seconds" "$cpu"
  fi
  stop_metrics cgroup
  kill "$work" 2>/dev/null
  wait "$work" 2>/dev/null
  gs destroy --all >/dev/null
  exit $((GS_FAILED - base))
)
GS_FAILED=$((GS_FAILED + $?))

# ---- soft backend on the fakes: NVML memory and SM per process ----------------
(
  base=$GS_FAILED
  export GPUSLICE_STATE_DIR="$GS_TMP/state-soft" GPUSLICE_BACKEND=soft
  export GPUSLICE_NVML_LIBRARY="$NVML"
  export GPUSLICE_CUDA_LIBRARY="$BUILD/tests/fake_cuda/libcuda.so.1"
  export GPUSLICE_MPS_CONTROL="$GS_SOURCE_DIR/tests/fake_mps/nvidia-cuda-mps-control"
  export FAKE_NVML_CONFIG=h100-80gb:off FAKE_CUDA_SMS=132
  expect_exit 0 "soft: two 1g and a 2g" -- gs create 1g.10gb 1g.10gb 2g.20gb
  # a process registered by run (the state file's pids) in GI 1, and one
  # that names GI 2's compute instance in its environment
  "$GPUSLICE" run -i 1 --memory 1G -- sleep 60 &
  reg=$!
  GS_PIDS+=("$reg")
  ci2=$(json_get "$(gs --json list)" "[c['uuid'] for g in d['devices'][0]['gpu_instances'] if g['id'] == 2 for c in g['compute_instances']][0]")
  GPUSLICE_INSTANCE_UUID="$ci2" sleep 60 &
  envp=$!
  GS_PIDS+=("$envp")
  sleep 0.5 # run execs sleep in the same process
  start_metrics soft FAKE_NVML_PROCS="0:$reg:300:40,0:$envp:700:25"
  scrape || fail "soft: scrape"
  got="$(value gpuslice_instance_memory_used_bytes 0:1:0) $(value gpuslice_instance_memory_used_bytes 0:2:0) $(value gpuslice_instance_memory_used_bytes 0:3:0)"
  [ "$got" = "$((300 << 20)).0 $((700 << 20)).0 0.0" ] &&
    pass "soft: each instance's GPU memory from NVML (registered 300 MiB, by env 700 MiB, idle 0)" ||
    fail "soft: memory" "$got" "$(cat "$GS_TMP/scrape.txt")"
  got="$(value gpuslice_instance_sm_utilization_ratio 0:1:0) $(value gpuslice_instance_sm_utilization_ratio 0:2:0) $(value gpuslice_instance_sm_utilization_ratio 0:3:0)"
  [ "$got" = "0.4 0.25 0.0" ] && pass "soft: SM utilisation per instance from NVML's samples" ||
    fail "soft: SM utilisation" "$got"
  got=$(json_get "$DOC" "sorted(set((l['gpu'], l['gpu_uuid'][:4], l['backend']) for l, v in d['gpuslice_instance_info']['samples']))")
  [ "$got" = "[('0', 'GPU-', 'soft')]" ] && pass "soft: labelled by the GPU's NVML index and UUID" ||
    fail "soft: GPU labels" "$got"
  got="$(value gpuslice_instance_healthy 0:1:0) $(value gpuslice_instance_healthy 0:2:0) $(value gpuslice_instance_healthy 0:3:0)"
  [ "$got" = "1.0 1.0 1.0" ] && pass "soft: all healthy" || fail "soft: healthy" "$got"
  pidfile=$(find "$GPUSLICE_STATE_DIR" -name nvidia-cuda-mps-control.pid | head -1)
  if [ -n "$pidfile" ] && kill -9 "$(cat "$pidfile")"; then
    sleep 0.3
    scrape
    got="$(value gpuslice_instance_healthy 0:1:0) $(value gpuslice_instance_healthy 0:2:0) $(value gpuslice_instance_healthy 0:3:0)"
    [ "$got" = "0.0 0.0 0.0" ] && pass "soft: the MPS daemon killed: every instance unhealthy (the device plugin's rule)" ||
      fail "soft: unhealthy after the MPS daemon died" "$got"
  else
    fail "soft: the MPS daemon's pid file" "none under $GPUSLICE_STATE_DIR"
  fi
  stop_metrics soft
  kill "$reg" "$envp" 2>/dev/null
  wait "$reg" "$envp" 2>/dev/null
  gs destroy --all >/dev/null
  exit $((GS_FAILED - base))
)
GS_FAILED=$((GS_FAILED + $?))

# ---- mig backend on the fake: the MIG devices' processes ----------------------
(
  base=$GS_FAILED
  export GPUSLICE_STATE_DIR="$GS_TMP/state-mig" GPUSLICE_BACKEND=mig
  export GPUSLICE_NVML_LIBRARY="$NVML"
  export FAKE_NVML_CONFIG=h100-80gb FAKE_NVML_STATE="$GS_TMP/nvml.json"
  expect_exit 0 "mig: two 1g" -- gs create 1g.10gb 1g.10gb
  sleep 60 &
  busy=$!
  GS_PIDS+=("$busy")
  start_metrics mig FAKE_NVML_BUSY="gi:2=$busy"
  scrape || fail "mig: scrape"
  got="$(value gpuslice_instance_processes 0:1:0) $(value gpuslice_instance_processes 0:2:0) $(value gpuslice_instance_memory_used_bytes 0:2:0)"
  [ "$got" = "0.0 1.0 $((512 << 20)).0" ] && pass "mig: GI 2's process and its memory from its MIG device" ||
    fail "mig: processes" "$got" "$(cat "$GS_TMP/scrape.txt")"
  [ "$(value gpuslice_instance_sm_utilization_ratio 0:2:0)" = none ] &&
    pass "mig: no SM series where NVML does not sample" || fail "mig: SM series" "$(value gpuslice_instance_sm_utilization_ratio 0:2:0)"
  got=$(json_get "$DOC" "sorted(l['instance_uuid'][:4] + ' ' + l['backend'] for l, v in d['gpuslice_instance_info']['samples'])")
  [ "$got" = "['MIG- mig', 'MIG- mig']" ] && pass "mig: instances by their MIG UUIDs" || fail "mig: info" "$got"
  stop_metrics mig
  kill "$busy" 2>/dev/null
  wait "$busy" 2>/dev/null
  exit $((GS_FAILED - base))
)
GS_FAILED=$((GS_FAILED + $?))
finish
