#!/usr/bin/env bash
# What `gpuslice serve`'s router costs, on the host backend, with wrk as the
# load generator and Triton's `simple` model (one JSON infer request, INT32
# [1,16] add/sub):
#  (a) overhead: the same request sent straight to one worker and through
#      the router with that worker alone behind it (one instance holding all
#      cores), at concurrency 1 (-t1 -c1) and 64 (-t2 -c64); nginx in
#      front of the same worker as a reference for what any proxy hop costs;
#  (b) throughput against nginx: nginx as a keep-alive reverse proxy
#      (round robin, `keepalive 64`) to the SAME two workers that the serve
#      runs (two 1-core instances), at concurrency 64 and 256 (-t2).
# Each point runs BENCH_S seconds; direct/router (or serve/nginx) alternate,
# BENCH_REPS times; the tables give the median of the repeats. Next to each
# point, the CPU each process used (from /proc/PID/stat) and the CPU used by
# everything else on the machine (other tenants), to read the numbers with.
# Prints Markdown tables. Builds nothing.
#
# usage: bench/router_bench.sh [PATH/TO/gpuslice]   (or GPUSLICE=...)
# env:   BENCH_S (10), BENCH_REPS (3), BENCH_WARMUP_S (2),
#        GPUSLICE_HOST_CGROUP_ROOT (default none: affinity only).
# needs: wrk, nginx, curl, python3 with onnx (scripts/make_models.py).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
gpuslice=${1:-${GPUSLICE:-$src/build/gpuslice}}
secs=${BENCH_S:-10}
reps=${BENCH_REPS:-3}
warm=${BENCH_WARMUP_S:-2}
die() { echo "router_bench: $*" >&2; exit 1; }
[ -x "$gpuslice" ] || die "no gpuslice binary at $gpuslice"
command -v wrk >/dev/null || die "wrk not found (apt-get install -y wrk)"
command -v nginx >/dev/null || die "nginx not found (apt-get install -y nginx)"
command -v curl >/dev/null || die "curl not found"

tmp=$(mktemp -d)
chmod 755 "$tmp" # nginx's workers may run as another user
export GPUSLICE_STATE_DIR=$tmp/state GPUSLICE_BACKEND=host
export GPUSLICE_HOST_CGROUP_ROOT=${GPUSLICE_HOST_CGROUP_ROOT:-none}
serve_pid=
nginx_pid=
wrk_pid=
worker_pids=()

stop_pid() { # stop_pid PID: TERM, up to 10 s, then KILL
  local p=$1
  kill -0 "$p" 2>/dev/null || return 0
  kill "$p" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$p" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}
stop_serve() {
  [ -n "$serve_pid" ] && stop_pid "$serve_pid"
  serve_pid=
  # The serve stops its workers; any still there (a serve killed hard) go.
  local p
  for p in "${worker_pids[@]}"; do stop_pid "$p"; done
  worker_pids=()
}
cleanup() {
  set +e
  [ -n "$wrk_pid" ] && stop_pid "$wrk_pid"
  [ -n "$nginx_pid" ] && stop_pid "$nginx_pid"
  stop_serve
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# A private copy, so that a rebuild of the tree during the run cannot mix
# binaries (serve starts its workers from its own executable).
mkdir -p "$tmp/bin"
cp "$gpuslice" "$tmp/bin/gpuslice"
gpuslice_src=$gpuslice
gpuslice=$tmp/bin/gpuslice

echo "## machine"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "- nproc: $(nproc); CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1)" \
  "($(lscpu | sed -n 's/^Hypervisor vendor: *//p' | head -1) guest)"
echo "- kernel: $(uname -sr); OS: $(. /etc/os-release && echo "$PRETTY_NAME")"
echo "- gpuslice: $gpuslice_src (built $(date -u -r "$gpuslice_src" '+%H:%M UTC'), sha256 $(sha256sum "$gpuslice" | cut -c1-12)); $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2);" \
  "$(nginx -v 2>&1)"
echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

python3 "$src/scripts/make_models.py" --out "$tmp/models" >/dev/null ||
  die "make_models.py failed (needs python3-onnx)"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Profiles of this host: the smallest 1g one and the one holding all cores.
profile_small=$("$gpuslice" profiles | awk '$2 == "MIG" && $3 ~ /^1g\.[0-9]+gb$/ { print $3; exit }')
profile_all=$("$gpuslice" profiles | awk '$2 == "MIG" && $3 ~ /^7g\./ { print $3; exit }')
[ -n "$profile_small" ] && [ -n "$profile_all" ] || die "no 1g/7g host profiles"

# start_serve: gpuslice serve over every instance; sets serve_pid, port and
# worker_pids/worker_ports (from the admin endpoint).
start_serve() {
  port=$(free_port)
  "$gpuslice" serve --model-repository "$tmp/models" --http-port "$port" \
    --grpc-port 0 --policy round_robin >"$tmp/serve.log" 2>&1 &
  serve_pid=$!
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
  mapfile -t worker_ports < <(python3 -c 'import json,sys
for w in json.load(open(sys.argv[1]))["workers"]: print(w["http_port"])' "$tmp/workers.json")
  local i
  for i in "${!worker_pids[@]}"; do
    echo "- worker pid ${worker_pids[$i]}, port ${worker_ports[$i]}," \
      "CPUs $(taskset -pc "${worker_pids[$i]}" | sed 's/.*: //')"
  done
  echo "- router (gpuslice serve) pid $serve_pid, port $port"
}

cat >"$tmp/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]},{"name":"INPUT1","shape":[1,16],"datatype":"INT32","data":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}]}'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %.1f %d %d %d %d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
LUA
infer_path=/v2/models/simple/infer
check_infer() { # check_infer PORT: one request answers 200 with OUTPUT0
  curl -sf -H 'Content-Type: application/json' -d "$(sed -n "s/^wrk.body = '\(.*\)'$/\1/p" "$tmp/post.lua")" \
    "http://127.0.0.1:$1$infer_path" | grep -q OUTPUT0 || die "infer on port $1 failed"
}

# start_nginx: nginx as a keep-alive reverse proxy (round robin) to
# worker_ports; sets nginx_pid, nginx_pids (master and workers) and nport.
start_nginx() {
  nport=$(free_port)
  rm -rf "$tmp/nginx"
  mkdir -p "$tmp/nginx/logs"
  local user_line=
  [ "$(id -u)" = 0 ] && user_line="user root;"
  {
    echo "$user_line"
    cat <<NGINX
worker_processes auto;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $tmp/nginx/body;
  proxy_temp_path $tmp/nginx/proxy;
  fastcgi_temp_path $tmp/nginx/fastcgi;
  uwsgi_temp_path $tmp/nginx/uwsgi;
  scgi_temp_path $tmp/nginx/scgi;
  keepalive_requests 1000000;
  upstream gpuslice_workers {
$(for p in "${worker_ports[@]}"; do echo "    server 127.0.0.1:$p;"; done)
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$nport;
    location / {
      proxy_pass http://gpuslice_workers;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
NGINX
  } >"$tmp/nginx/nginx.conf"
  nginx -c "$tmp/nginx/nginx.conf" -p "$tmp/nginx" -g 'daemon off;' \
    >"$tmp/nginx/logs/stdout.log" 2>&1 &
  nginx_pid=$!
  for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:$nport/v2/health/live" >/dev/null 2>&1 && break
    sleep 0.1
  done
  check_infer "$nport"
  mapfile -t nginx_pids < <(echo "$nginx_pid"; pgrep -P "$nginx_pid")
  echo "- nginx master pid $nginx_pid, port $nport, $((${#nginx_pids[@]} - 1)) worker processes"
}
stop_nginx() {
  [ -n "$nginx_pid" ] && stop_pid "$nginx_pid"
  nginx_pid=
}

# ticks PID...: utime+stime of the processes (all their threads), in clock
# ticks; busy: non-idle ticks of the whole machine.
ticks() {
  local p t=0 v
  for p in "$@"; do
    v=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null || echo 0)
    t=$((t + v))
  done
  echo "$t"
}
busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
hz=$(getconf CLK_TCK)

# point NAME C THREADS PORT PROXY_PIDS: one wrk run; appends
# "name c rps p50 p99 errors cpu_proxy cpu_workers cpu_wrk cpu_other" to
# $tmp/raw (CPU in % of one core over the run; other: the machine's busy
# time that none of these used, i.e. other tenants).
point() {
  local name=$1 c=$2 t=$3 p=$4
  local -a proxy=($5)
  local b0 w0 x0=0 b1 w1 x1=0 cw cp ck co
  b0=$(busy); w0=$(ticks "${worker_pids[@]}")
  [ ${#proxy[@]} -gt 0 ] && x0=$(ticks "${proxy[@]}")
  # A subshell, so that `times` gives wrk's own CPU time.
  ( wrk -t "$t" -c "$c" -d "${secs}s" --latency -s "$tmp/post.lua" \
      "http://127.0.0.1:$p$infer_path" >"$tmp/wrk.out" 2>&1; rc=$?
    times >"$tmp/times"; exit $rc ) &
  wrk_pid=$!
  wait "$wrk_pid" || { cat "$tmp/wrk.out" >&2; die "wrk failed"; }
  wrk_pid=
  b1=$(busy); w1=$(ticks "${worker_pids[@]}")
  [ ${#proxy[@]} -gt 0 ] && x1=$(ticks "${proxy[@]}")
  read -r rps p50 p99 errs status < <(awk '/^RESULT/ { print $2, $3, $4, $5, $6 }' "$tmp/wrk.out")
  [ -n "${rps:-}" ] || { cat "$tmp/wrk.out" >&2; die "no wrk result"; }
  [ "$status" = 0 ] || echo "router_bench: $name c=$c: $status non-2xx answers" >&2
  # times' second line: children's user and system time, as 0m1.234s.
  ck=$(awk -v hz="$hz" 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) {
         split($i, a, /[ms]/); t += a[1] * 60 + a[2] } printf "%d", t * hz }' "$tmp/times")
  cw=$(( (w1 - w0) * 100 / (hz * secs) ))
  cp=$(( (x1 - x0) * 100 / (hz * secs) ))
  co=$(( (b1 - b0 - (w1 - w0) - (x1 - x0) - ck) * 100 / (hz * secs) ))
  ck=$(( ck * 100 / (hz * secs) ))
  echo "$name $c $rps $p50 $p99 $((errs + status)) $cp $cw $ck $co" >>"$tmp/raw"
  printf '  %-7s c=%-3s %9.0f req/s  p50 %6s us  p99 %6s us  errors %s  CPU%%: proxy %s, workers %s, wrk %s, other %s\n' \
    "$name" "$c" "$rps" "$p50" "$p99" "$((errs + status))" "$cp" "$cw" "$ck" "$co" >&2
}

warmup() { # warmup PORT C
  wrk -t 1 -c "$2" -d "${warm}s" -s "$tmp/post.lua" "http://127.0.0.1:$1$infer_path" >/dev/null 2>&1 || true
}

# median NAME C FIELD: the median over the repeats (FIELD: 3 rps, 4 p50, 5
# p99, 6 errors, 7..10 CPU: proxy, workers, wrk, other).
median() {
  awk -v n="$1" -v c="$2" -v f="$3" '$1 == n && $2 == c { v[++k] = $f }
    END { if (!k) { print "-"; exit }
          for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++)
            if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
          m = (k % 2) ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2
          printf "%.0f", m }' "$tmp/raw"
}

# ---- (a) overhead: one worker, direct vs through the router -------------
: >"$tmp/raw"
echo "## (a) router overhead: one worker ($profile_all, all cores)"
echo
"$gpuslice" create "$profile_all" >/dev/null || die "cannot create $profile_all"
start_serve
wport=${worker_ports[0]}
check_infer "$wport"
check_infer "$port"
start_nginx
# Whether the worker keeps an infer connection open (the router and nginx
# reconnect per request when it does not).
if curl -sD - -o /dev/null -H 'Content-Type: application/json' \
  -d "$(sed -n "s/^wrk.body = '\(.*\)'$/\1/p" "$tmp/post.lua")" \
  "http://127.0.0.1:$wport$infer_path" | grep -qi '^connection: close'; then
  echo "- NOTE: the worker answers infer with \"Connection: close\": every"
  echo "  request is a new TCP connection, wrk->worker (direct) and proxy->worker"
fi
echo
warmup "$wport" 8
warmup "$port" 8
warmup "$nport" 8
for r in $(seq "$reps"); do
  echo "repeat $r/$reps" >&2
  for c in 1 64; do
    t=2
    [ "$c" = 1 ] && t=1
    point direct "$c" "$t" "$wport" ""
    point router "$c" "$t" "$port" "$serve_pid"
    point nginx "$c" "$t" "$nport" "${nginx_pids[*]}"
  done
done
stop_nginx
stop_serve
"$gpuslice" destroy --all >/dev/null || die "cannot destroy the instance"
cp "$tmp/raw" "$tmp/raw_a"

echo "| concurrency | path | req/s | p50 (us) | p99 (us) | CPU% proxy | CPU% worker | CPU% wrk | CPU% other |"
echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|"
for c in 1 64; do
  for n in direct router nginx; do
    cpu_p=$(median "$n" "$c" 7)
    [ "$n" = direct ] && cpu_p=-
    echo "| $c | $n | $(median "$n" "$c" 3) | $(median "$n" "$c" 4) |" \
      "$(median "$n" "$c" 5) | $cpu_p | $(median "$n" "$c" 8) | $(median "$n" "$c" 9) | $(median "$n" "$c" 10) |"
  done
done
echo
echo "| concurrency | proxy | added p50 (us) | added p99 (us) | req/s vs direct |"
echo "|---:|---|---:|---:|---:|"
for c in 1 64; do
  for n in router nginx; do
    awk -v a="$(median "$n" "$c" 4)" -v b="$(median direct "$c" 4)" \
      -v x="$(median "$n" "$c" 5)" -v y="$(median direct "$c" 5)" \
      -v r="$(median "$n" "$c" 3)" -v d="$(median direct "$c" 3)" -v c="$c" -v n="$n" \
      'BEGIN { printf "| %s | %s | %+d | %+d | %+.1f %% |\n", c, n, a - b, x - y, (r / d - 1) * 100 }'
  done
done
echo
echo "Per repeat (name c req/s p50 p99 errors CPU%: proxy workers wrk other):"
echo
sed 's/^/    /' "$tmp/raw_a"
echo

# ---- (b) throughput: gpuslice serve vs nginx, two workers ---------------
: >"$tmp/raw"
echo "## (b) throughput: gpuslice serve vs nginx, two $profile_small workers"
echo
# One 1g instance per core: memory-slice start f maps to core f*cores/7.
"$gpuslice" create "$profile_small:0" "$profile_small:4" >/dev/null ||
  "$gpuslice" create "$profile_small" "$profile_small" >/dev/null ||
  die "cannot create two $profile_small"
start_serve
for p in "${worker_ports[@]}"; do check_infer "$p"; done
check_infer "$port"

start_nginx
echo
warmup "$port" 64
warmup "$nport" 64
for r in $(seq "$reps"); do
  echo "repeat $r/$reps" >&2
  for c in 64 256; do
    point serve "$c" 2 "$port" "$serve_pid"
    point nginx "$c" 2 "$nport" "${nginx_pids[*]}"
  done
done
cp "$tmp/raw" "$tmp/raw_b"

echo "| concurrency | proxy | req/s | p50 (us) | p99 (us) | CPU% proxy | CPU% workers | CPU% wrk | CPU% other |"
echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|"
for c in 64 256; do
  for n in serve nginx; do
    echo "| $c | $n | $(median "$n" "$c" 3) | $(median "$n" "$c" 4) |" \
      "$(median "$n" "$c" 5) | $(median "$n" "$c" 7) | $(median "$n" "$c" 8) | $(median "$n" "$c" 9) | $(median "$n" "$c" 10) |"
  done
done
echo
echo "| concurrency | serve req/s vs nginx | serve p50 - nginx p50 (us) | serve p99 - nginx p99 (us) |"
echo "|---:|---:|---:|---:|"
for c in 64 256; do
  awk -v a="$(median serve "$c" 3)" -v b="$(median nginx "$c" 3)" \
    -v p="$(median serve "$c" 4)" -v q="$(median nginx "$c" 4)" \
    -v x="$(median serve "$c" 5)" -v y="$(median nginx "$c" 5)" -v c="$c" \
    'BEGIN { printf "| %s | %+.1f %% | %+d | %+d |\n", c, (a / b - 1) * 100, p - q, x - y }'
done
echo
echo "Per repeat (name c req/s p50 p99 errors CPU%: proxy workers wrk other):"
echo
sed 's/^/    /' "$tmp/raw_b"
echo
echo "Client (wrk), proxy and workers share the same $(nproc) cores; CPU% is % of"
echo "one core over the ${secs} s run (the machine has $(( $(nproc) * 100 ))); \"other\" is the machine's"
echo "busy time that neither wrk, the proxy nor the workers used (other tenants)."
