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
# env:   BENCH_S (10), BENCH_REPS (3), BENCH_WARMUP_S (2), BENCH_MODELS
#        (models made elsewhere: bench_lib.sh),
#        GPUSLICE_HOST_CGROUP_ROOT (default none: affinity only),
#        BENCH_PARTS ("a b": the parts to run), BENCH_RAW (a file that the
#        per-repeat lines are appended to, each after its part's letter:
#        "b serve 64 req/s p50 p99 errors CPU%...": for
#        bench/refactor_compare.sh).
# needs: wrk, nginx, curl, python3 with onnx (scripts/make_models.py).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
gpuslice=${1:-${GPUSLICE:-$src/build/gpuslice}}
secs=${BENCH_S:-10}
reps=${BENCH_REPS:-3}
warm=${BENCH_WARMUP_S:-2}
parts=${BENCH_PARTS:-a b}
. "$src/bench/bench_lib.sh" # tmp, die, processes stopped at exit, and the rest
[ -x "$gpuslice" ] || die "no gpuslice binary at $gpuslice"
command -v wrk >/dev/null || die "wrk not found (apt-get install -y wrk)"
command -v nginx >/dev/null || die "nginx not found (apt-get install -y nginx)"
command -v curl >/dev/null || die "curl not found"

chmod 755 "$tmp" # nginx's workers may run as another user
nginx_pid=
# The host backend, state in $tmp, a private copy of the binary; the
# profiles of this host: the smallest 1g one and the one holding all cores.
host_setup
machine_facts "$(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2); $(nginx -v 2>&1)"
make_models

# serve_and_list: start_serve (bench_lib.sh), then one line per process:
# pid, port, the workers' CPUs.
serve_and_list() {
  start_serve
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
  stop_at_exit "$nginx_pid"
  for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:$nport/v2/health/live" >/dev/null 2>&1 && break
    sleep 0.1
  done
  check_infer "$nport"
  mapfile -t nginx_pids < <(echo "$nginx_pid"; pgrep -P "$nginx_pid")
  echo "- nginx master pid $nginx_pid, port $nport, $((${#nginx_pids[@]} - 1)) worker processes"
}
stop_nginx() {
  if [ -n "$nginx_pid" ]; then stop_pid "$nginx_pid"; fi
  nginx_pid=
}

# ticks PID... (bench_lib.sh): CPU time of processes in clock ticks; busy:
# non-idle ticks of the whole machine.
busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }

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
  # run_timed: wrk's own CPU time in $tmp/times.
  run_timed "$tmp/wrk.out" wrk -t "$t" -c "$c" -d "${secs}s" --latency \
    -s "$tmp/post.lua" "http://127.0.0.1:$p$infer_path" ||
    { cat "$tmp/wrk.out" >&2; die "wrk failed"; }
  b1=$(busy); w1=$(ticks "${worker_pids[@]}")
  [ ${#proxy[@]} -gt 0 ] && x1=$(ticks "${proxy[@]}")
  read -r rps p50 p99 errs status < <(awk '/^RESULT/ { print $2, $3, $4, $5, $6 }' "$tmp/wrk.out")
  [ -n "${rps:-}" ] || { cat "$tmp/wrk.out" >&2; die "no wrk result"; }
  [ "$status" = 0 ] || echo "router_bench: $name c=$c: $status non-2xx answers" >&2
  ck=$(child_ticks "$tmp/times")
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

# median NAME C FIELD (bench_lib.sh): the median over the repeats in
# $tmp/raw (FIELD: 3 rps, 4 p50, 5 p99, 6 errors, 7..10 CPU: proxy,
# workers, wrk, other).

# ---- (a) overhead: one worker, direct vs through the router -------------
part_a() {
  : >"$tmp/raw"
  echo "## (a) router overhead: one worker ($profile_all, all cores)"
  echo
  "$gpuslice" create "$profile_all" >/dev/null || die "cannot create $profile_all"
  serve_and_list
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
  [ -z "${BENCH_RAW:-}" ] || sed 's/^/a /' "$tmp/raw_a" >>"$BENCH_RAW"
}

# ---- (b) throughput: gpuslice serve vs nginx, two workers ---------------
part_b() {
  : >"$tmp/raw"
  echo "## (b) throughput: gpuslice serve vs nginx, two $profile_small workers"
  echo
  # One 1g instance per core: memory-slice start f maps to core f*cores/7.
  "$gpuslice" create "$profile_small:0" "$profile_small:4" >/dev/null ||
    "$gpuslice" create "$profile_small" "$profile_small" >/dev/null ||
    die "cannot create two $profile_small"
  serve_and_list
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
  [ -z "${BENCH_RAW:-}" ] || sed 's/^/b /' "$tmp/raw_b" >>"$BENCH_RAW"
  stop_nginx
  stop_serve
  "$gpuslice" destroy --all >/dev/null || die "cannot destroy the instances"
}

for part in $parts; do
  case $part in
  a) part_a ;;
  b) part_b ;;
  *) die "BENCH_PARTS: no part '$part' (a, b)" ;;
  esac
done
echo "Client (wrk), proxy and workers share the same $(nproc) cores; CPU% is % of"
echo "one core over the ${secs} s run (the machine has $(( $(nproc) * 100 ))); \"other\" is the machine's"
echo "busy time that neither wrk, the proxy nor the workers used (other tenants)."
