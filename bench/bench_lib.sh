# shellcheck shell=bash disable=SC2154
# Shared setup of the bench/ scripts (sourced, not run, once the script has
# set src, the source tree, and gpuslice, the binary). It provides:
#   tmp                    a temp dir, removed at exit
#   die MSG                "SCRIPT: MSG" on stderr, exit 1
#   stop_at_exit PID       stop PID when the script exits, however it exits
#   stop_pid PID           stop PID now (TERM, up to 10 s, then KILL)
#   forget_pid PID         PID ended (waited for): no longer stop it at exit
#   run_timed LOG CMD...   CMD, its output in LOG, its CPU time in $tmp/times
#   free_port              a free TCP port on 127.0.0.1
#   make_models            scripts/make_models.py's models in $tmp/models
#   start_worker ARGS...   `gpuslice worker --threads 2` on $tmp/models
#   wait_http_port LOG N   port, from a worker's log (N tries, 0.1 s apart)
#   host_setup             host backend, a private copy of the binary, the
#                          1g and 7g profiles (router and instances benches)
#   machine_facts TEXT     the "## machine" section of a report
#   start_serve, stop_serve  `gpuslice serve` over every instance
#   ticks PID..., child_ticks FILE, hz   CPU time, in clock ticks
#   median NAME C FIELD    the median over the repeats in $tmp/raw
#   to_us                  wrk's latencies (684.00us, 1.72ms) in microseconds
# It sets no shell options: the scripts run under `set -u` or `set -euo
# pipefail`, and everything here works under both. (SC2154, disabled above:
# src comes from the script.)

tmp=$(mktemp -d)
bench_pids=() # the processes stopped at exit

die() { echo "$(basename "$0" .sh): $*" >&2; exit 1; }

stop_at_exit() { bench_pids+=("$1"); }

forget_pid() {
  local p rest=()
  for p in "${bench_pids[@]}"; do
    if [ "$p" != "$1" ]; then rest+=("$p"); fi
  done
  bench_pids=("${rest[@]}")
}

stop_pid() {
  local p=$1
  forget_pid "$p"
  kill -0 "$p" 2>/dev/null || return 0
  kill "$p" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$p" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}

bench_cleanup() {
  set +e
  local p
  for p in "${bench_pids[@]}"; do stop_pid "$p"; done
  rm -rf "$tmp"
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

# run_timed LOG CMD...: runs CMD (a load generator) with its stdout and
# stderr in LOG, stopped at exit should the script end first; a subshell, so
# that `times` there gives CMD's own CPU time, written to $tmp/times (read it
# with child_ticks). Returns CMD's exit status.
run_timed() {
  local log=$1 p rc=0
  shift
  ( "$@" >"$log" 2>&1; rc=$?; times >"$tmp/times"; exit $rc ) &
  p=$!
  stop_at_exit "$p"
  wait "$p" || rc=$?
  forget_pid "$p"
  return "$rc"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# make_models: scripts/make_models.py's models in $tmp/models, or a copy
# of BENCH_MODELS (models made on another machine, where this one has no
# python3-onnx).
make_models() {
  if [ -n "${BENCH_MODELS:-}" ]; then
    cp -r "$BENCH_MODELS" "$tmp/models" || die "cannot copy $BENCH_MODELS"
    return
  fi
  python3 "$src/scripts/make_models.py" --out "$tmp/models" >/dev/null ||
    die "make_models.py failed (needs python3-onnx)"
}

# start_worker ARGS...: `gpuslice worker --threads 2` on $tmp/models, HTTP on
# a free port, no metrics port, and ARGS; under `taskset -c $worker_cpus`
# when worker_cpus is set. Its log in $tmp/log. Waits for its HTTP port and
# then half a second; sets pid and port.
worker_cpus=
start_worker() {
  local pin=()
  if [ -n "$worker_cpus" ]; then pin=(taskset -c "$worker_cpus"); fi
  "${pin[@]}" "$gpuslice" worker --model-repository "$tmp/models" --http-port 0 \
    --metrics-port 0 --threads 2 "$@" 2>"$tmp/log" &
  pid=$!
  stop_at_exit "$pid"
  wait_http_port "$tmp/log" 100 || { cat "$tmp/log" >&2; die "worker did not start"; }
  sleep 0.5
}

# wait_http_port LOG TRIES: sets port from a worker's "listening on
# http://127.0.0.1:PORT" line in LOG, polling every 0.1 s up to TRIES
# times; false when it never came.
wait_http_port() {
  port=
  for _ in $(seq "$2"); do
    port=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$1")
    [ -n "$port" ] && return 0
    sleep 0.1
  done
  return 1
}

# host_setup: the host backend with its state in $tmp (cgroups only when
# GPUSLICE_HOST_CGROUP_ROOT says where; default none: affinity only); a
# private copy of the binary, so that a rebuild of the tree during the run
# cannot mix binaries (serve starts its workers from its own executable):
# gpuslice becomes the copy, gpuslice_src the original; profile_small and
# profile_all, this host's smallest 1g profile and the one holding all cores.
host_setup() {
  export GPUSLICE_STATE_DIR=$tmp/state GPUSLICE_BACKEND=host
  export GPUSLICE_HOST_CGROUP_ROOT=${GPUSLICE_HOST_CGROUP_ROOT:-none}
  mkdir -p "$tmp/bin"
  cp "$gpuslice" "$tmp/bin/gpuslice"
  gpuslice_src=$gpuslice
  gpuslice=$tmp/bin/gpuslice
  profile_small=$("$gpuslice" profiles | awk '$2 == "MIG" && $3 ~ /^1g\.[0-9]+gb$/ { print $3; exit }')
  profile_all=$("$gpuslice" profiles | awk '$2 == "MIG" && $3 ~ /^7g\./ { print $3; exit }')
  if [ -z "$profile_small" ] || [ -z "$profile_all" ]; then
    die "no 1g/7g host profiles"
  fi
}

# machine_facts TEXT: the "## machine" section: date, CPU, kernel and OS,
# the binary (after host_setup) followed by TEXT, the load average.
machine_facts() {
  echo "## machine"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- nproc: $(nproc); CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1)" \
    "($(lscpu | sed -n 's/^Hypervisor vendor: *//p' | head -1) guest)"
  echo "- kernel: $(uname -sr); OS: $(. /etc/os-release && echo "$PRETTY_NAME")"
  echo "- gpuslice: $gpuslice_src (built $(date -u -r "$gpuslice_src" '+%H:%M UTC'), sha256 $(sha256sum "$gpuslice" | cut -c1-12)); $1"
  echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
}

# start_serve: `gpuslice serve` (round robin) over every instance on
# $tmp/models, on a free HTTP port; waits until it is ready. Its log in
# $tmp/serve.log. Sets port, serve_pid, and worker_pids and worker_ports
# (from its admin endpoint).
serve_pid=
worker_pids=()
worker_ports=()
start_serve() {
  port=$(free_port)
  "$gpuslice" serve --model-repository "$tmp/models" --http-port "$port" \
    --grpc-port 0 --policy round_robin >"$tmp/serve.log" 2>&1 &
  serve_pid=$!
  stop_at_exit "$serve_pid"
  local ok=
  for _ in $(seq 600); do
    grep -q "gpuslice serve: ready" "$tmp/serve.log" && { ok=1; break; }
    kill -0 "$serve_pid" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$ok" ] || { cat "$tmp/serve.log" >&2; die "serve did not start"; }
  curl -sf "http://127.0.0.1:$port/gpuslice/v1/workers" >"$tmp/workers.json"
  mapfile -t worker_pids < <(python3 -c 'import json,sys
for w in json.load(open(sys.argv[1]))["workers"]: print(w["pid"])' "$tmp/workers.json")
  # shellcheck disable=SC2034 # worker_ports: for the script
  mapfile -t worker_ports < <(python3 -c 'import json,sys
for w in json.load(open(sys.argv[1]))["workers"]: print(w["http_port"])' "$tmp/workers.json")
  local p
  for p in "${worker_pids[@]}"; do stop_at_exit "$p"; done
}

# stop_serve: the serve stops its workers; any still there (a serve killed
# hard) go too.
stop_serve() {
  if [ -n "$serve_pid" ]; then stop_pid "$serve_pid"; fi
  serve_pid=
  local p
  for p in "${worker_pids[@]}"; do stop_pid "$p"; done
  worker_pids=()
}

# ticks PID...: utime+stime of the processes (all their threads), in clock
# ticks of hz per second.
hz=$(getconf CLK_TCK)
ticks() {
  local p t=0 v
  for p in "$@"; do
    v=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null || echo 0)
    t=$((t + v))
  done
  echo "$t"
}

# child_ticks FILE: the children's user+system time in FILE, the output of
# `times` in the subshell that ran them (its second line, as 0m1.234s), in
# clock ticks.
child_ticks() {
  awk -v hz="$hz" 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) {
         split($i, a, /[ms]/); t += a[1] * 60 + a[2] } printf "%d", t * hz }' "$1"
}

# median NAME C FIELD: the median over the repeats of FIELD in the lines
# "NAME C ..." of $tmp/raw, rounded; "-" when there are none.
median() {
  awk -v n="$1" -v c="$2" -v f="$3" '$1 == n && $2 == c { v[++k] = $f }
    END { if (!k) { print "-"; exit }
          for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++)
            if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
          m = (k % 2) ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2
          printf "%.0f", m }' "$tmp/raw"
}

# to_us: wrk's 684.00us / 1.72ms / 1.20s on stdin, in microseconds.
to_us() {
  awk '{ v = $1 + 0; if ($1 ~ /ms$/) v *= 1000; else if ($1 ~ /us$/) v *= 1;
         else if ($1 ~ /s$/) v *= 1000000; printf "%.0f", v }'
}
