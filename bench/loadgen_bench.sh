#!/usr/bin/env bash
# How many requests/s gpuslice perf can drive, next to wrk in the same run:
# both POST the same binary-tensor infer body to Triton's `simple` on one
# `gpuslice worker` (--threads 2), one client thread each (wrk -t1; gpuslice
# perf is one libuv thread), at concurrency 1, 8 and 32. On a 2-core box the
# clients share the CPU with the worker, so this measures the load
# generator's cost per request as much as the server.
#
# usage: bench/loadgen_bench.sh PATH/TO/gpuslice
# env:   BENCH_CONC ("1 8 32"), BENCH_S (seconds per point, 6)
set -u
gpuslice=${1:?usage: $0 PATH/TO/gpuslice}
src=$(cd "$(dirname "$0")/.." && pwd)
conc_list=${BENCH_CONC:-1 8 32}
secs=${BENCH_S:-6}
. "$src/bench/bench_lib.sh" # tmp, die, make_models, start_worker, to_us
command -v wrk >/dev/null || die "wrk not found (apt-get install wrk)"
make_models
echo '{"max_batch_size": 8}' >"$tmp/models/simple/config.json"
start_worker --grpc-port 0

# The body gpuslice perf sends (JSON header + 2 x 64 bytes of INT32), for wrk.
python3 - "$tmp" <<'PY'
import json, struct, sys
head = json.dumps({"inputs": [
    {"name": n, "shape": [1, 16], "datatype": "INT32",
     "parameters": {"binary_data_size": 64}} for n in ("INPUT0", "INPUT1")],
    "parameters": {"binary_data_output": True}}, separators=(",", ":"))
body = head.encode() + struct.pack("<16i", *range(16)) * 2
lua = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.headers["Inference-Header-Content-Length"] = "%d"
local f = io.open("%s/body.bin", "rb"); wrk.body = f:read("*a"); f:close()
""" % (len(head), sys.argv[1])
open(sys.argv[1] + "/body.bin", "wb").write(body)
open(sys.argv[1] + "/post.lua", "w").write(lua)
PY
url=http://127.0.0.1:$port/v2/models/simple/infer
window=$((secs * 1000 / 3))
echo "| concurrency | wrk -t1 requests/s | gpuslice perf requests/s | ratio | wrk p50 (us) | gpuslice perf p50 (us) |"
echo "|---|---|---|---|---|---|"
for c in $conc_list; do
  wrk -t1 -c "$c" -d "${secs}s" --latency -s "$tmp/post.lua" "$url" >"$tmp/wrk.$c" 2>&1
  w_rps=$(awk '/^Requests\/sec:/ { print $2 }' "$tmp/wrk.$c")
  w_p50=$(awk '$1 == "50%" { print $2 }' "$tmp/wrk.$c" | to_us)
  "$gpuslice" perf -m simple -u "127.0.0.1:$port" --concurrency-range "$c" \
    -p "$window" -s 20 -r 20 -f "$tmp/gs.$c.csv" >"$tmp/gs.$c.log" 2>&1
  read -r g_rps g_p50 < <(awk -F, 'NR == 2 { print $2, $(NF-3) }' "$tmp/gs.$c.csv" 2>/dev/null || echo "- -")
  ratio=$(awk -v a="${w_rps:-0}" -v b="${g_rps:-0}" 'BEGIN { if (a > 0) printf "%.2f", b / a; else print "-" }')
  echo "| $c | ${w_rps:--} | ${g_rps:--} | $ratio | ${w_p50:--} | ${g_p50:--} |"
  grep -h "warning" "$tmp/gs.$c.log" >&2 || true
done
