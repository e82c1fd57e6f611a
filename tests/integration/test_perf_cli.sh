#!/usr/bin/env bash
# gpuslice perf against a real gpuslice worker on loopback: HTTP and gRPC,
# concurrency and request-rate modes; the CSV header is perf_analyzer's
# column list; the requests it counts agree with the server's own success
# count; every bad input gives a message naming it and exit 2 (usage,
# input) or 1 (failure), never a crash. Short windows (-p 300) keep it
# well under a minute on 2 cores.
. "$(dirname "$0")/worker_lib.sh"
make_models
# Triton's `simple` with batching: max_batch_size 8, dims [16].
echo '{"max_batch_size": 8}' >"$tmp/models/simple/config.json"
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
gport=$(free_port) # --grpc-port 0 would turn gRPC off
start_worker --grpc-port "$gport" --metrics-port 0 --threads 2

fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok - $*"; }
# run WANT DESC ARGS...: gpuslice perf ARGS, exit status WANT; output in
# $tmp/out, stderr in $tmp/err.
run() {
  local want=$1 desc=$2 rc
  shift 2
  timeout 60 "$GPUSLICE" perf "$@" >"$tmp/out" 2>"$tmp/err"
  rc=$?
  if grep -Eq 'Sanitizer|runtime error' "$tmp/err"; then
    fail "$desc: sanitizer report"; cat "$tmp/err"
  elif [ $rc -eq "$want" ]; then ok "$desc"; else
    fail "$desc: exit $rc, wanted $want"; tail -n 5 "$tmp/out" "$tmp/err"; fi
}
success() {
  curl -s "$base/v2/models/simple/stats" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["model_stats"][0]["inference_stats"]["success"]["count"])'
}
server_cols="Network+Server Send/Recv,Server Queue,Server Compute Input,Server Compute Infer,Server Compute Output,"
want_conc="Concurrency,Inferences/Second,Client Send,${server_cols}Client Recv,p50 latency,p90 latency,p95 latency,p99 latency"

# HTTP, concurrency 1..3: perf_analyzer's console shape and CSV.
before=$(success)
run 0 "http concurrency 1:3" -m simple -u "127.0.0.1:$port" \
  --concurrency-range 1:3:2 -p 300 -s 50 -r 20 -f "$tmp/c.csv" --plot "$tmp/c.svg"
after=$(success)
grep -q '^\*\*\* Measurement Settings \*\*\*' "$tmp/out" || fail "no settings block"
grep -q '^Request concurrency: 3' "$tmp/out" || fail "no level 3 block"
grep -q '^    p99 latency: [0-9]* usec' "$tmp/out" || fail "no p99 line"
grep -q '^Concurrency: 1, throughput: .* infer/sec, latency [0-9]* usec' \
  "$tmp/out" || fail "no summary line"
[ "$(head -1 "$tmp/c.csv")" = "$want_conc" ] || fail "CSV header: $(head -1 "$tmp/c.csv")"
[ "$(tail -n +2 "$tmp/c.csv" | cut -d, -f1 | tr '\n' ' ')" = "1 3 " ] ||
  fail "CSV levels: $(cat "$tmp/c.csv")"
# --plot writes the SVG: both charts, whole (it ends with </svg>).
if [ -s "$tmp/c.svg" ] && grep -q '<svg' "$tmp/c.svg" && grep -q 'Throughput' "$tmp/c.svg" &&
  grep -q 'Latency' "$tmp/c.svg" && [ "$(tail -c 8 "$tmp/c.svg" | tr -d '\n')" = "</svg>" ]; then
  ok "--plot wrote the SVG"
else
  fail "--plot: no complete SVG in $tmp/c.svg: $(head -c 200 "$tmp/c.svg" 2>&1)"
fi
# Client request count vs the server's success count over the merged
# windows: equal but for requests in flight at window edges (3 windows x
# concurrency 3); and never more than the server counted in the whole run.
counts=$(grep -E '^    (Request count|Successful request count):' "$tmp/out" |
  awk '{print $NF}' | tr '\n' ' ')
set -- $counts
for i in 1 3; do
  c=$1 s=$2; shift 2
  d=$((c > s ? c - s : s - c))
  [ "$d" -le 9 ] && ok "client $c vs server $s at concurrency $i" ||
    fail "client count $c vs server $s at concurrency $i"
  total=$(( ${total:-0} + c ))
done
[ "$total" -le $((after - before)) ] ||
  fail "client counted $total, server succeeded $((after - before))"

# gRPC, concurrency 2, with --json.
run 0 "grpc concurrency 2" -m simple -i grpc -u "127.0.0.1:$gport" \
  --concurrency-range 2 -p 300 -s 50 -r 20 --json
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); l=d["levels"][0]
assert d["protocol"]=="grpc" and l["level"]==2 and l["throughput"]>0 and l["stable"]
assert abs(l["request_count"]-l["server"]["success"]) <= 6, l' "$tmp/out" ||
  fail "grpc json: $(cat "$tmp/out")"

# Request rate, constant and Poisson, HTTP and gRPC; CSV leads with it.
run 0 "http request rate" -m simple -u "127.0.0.1:$port" \
  --request-rate-range 200:400:200 -p 300 -s 50 -r 20 -f "$tmp/r.csv"
head -1 "$tmp/r.csv" | grep -q '^Request Rate,Inferences/Second,' ||
  fail "rate CSV header: $(head -1 "$tmp/r.csv")"
grep -q '^Request Rate: 400 inference requests per seconds' "$tmp/out" ||
  fail "no rate block"
awk -F, 'NR > 1 && ($2 < 0.8 * $1 || $2 > 1.2 * $1) { bad = 1 } END { exit bad }' \
  "$tmp/r.csv" || fail "rate not achieved: $(cat "$tmp/r.csv")"
run 0 "grpc poisson rate" -m simple -i grpc -u "127.0.0.1:$gport" \
  --request-rate-range 300 --request-distribution poisson -p 300 -s 60 -r 20

# Latency budget: a generous one holds the highest level, a tiny one none.
run 0 "budget met" -m simple -u "127.0.0.1:$port" --concurrency-range 1:2 \
  -p 300 -s 50 -r 20 --latency-budget 1000
grep -q 'highest concurrency within it: 2' "$tmp/out" || fail "budget: $(tail -2 "$tmp/out")"
run 0 "budget missed" -m simple -u "127.0.0.1:$port" -p 300 -s 50 -r 20 \
  --latency-budget 0.001
grep -q 'no concurrency within it' "$tmp/out" || fail "tiny budget: $(tail -2 "$tmp/out")"

# Bad input: exit 2 with the reason; failures exit 1.
bad() {
  local want=$1 pattern=$2
  shift 2
  run "$want" "rejects: $*" "$@"
  grep -Eq -- "$pattern" "$tmp/err" || fail "no /$pattern/ in: $(cat "$tmp/err")"
}
free_port=$(free_port)
bad 1 "cannot connect to 127.0.0.1:$free_port" -m simple -u "127.0.0.1:$free_port"
bad 2 "unknown model: 'nosuch'" -m nosuch -u "127.0.0.1:$port"
bad 2 "unknown model: 'nosuch'" -m nosuch -i grpc -u "127.0.0.1:$gport"
bad 2 "max_batch_size of model .simple. \(8\)" -m simple -u "127.0.0.1:$port" -b 9
bad 2 "refused an infer request \(HTTP 400\).*dimension 1 is 17" -m simple \
  -u "127.0.0.1:$port" --shape INPUT0:17 -p 100
bad 2 "refused an infer request \(gRPC status 3\)" -m simple -i grpc \
  -u "127.0.0.1:$gport" --shape INPUT0:17 -p 100
bad 2 "start 4 is above end 2" -m simple --concurrency-range 4:2
bad 2 "step must be > 0" -m simple --concurrency-range 1:4:0
bad 2 "start must be > 0" -m simple --request-rate-range 0:10
bad 2 "start must be > 0" -m simple --request-rate-range -5
bad 2 "expected http or grpc" -m simple -i foo
bad 2 "-m MODEL is needed" --concurrency-range 1
bad 2 "nonexistent.json" -m simple -u "127.0.0.1:$port" --input-data "$tmp/nonexistent.json"
bad 1 "Failed to obtain stable measurement within 3 measurement windows for concurrency 1\. Please try to increase the --measurement-interval\." \
  -m simple -u "127.0.0.1:$port" -p 10 -s 0.001 -r 3

# perf_analyzer's input-data file.
python3 -c 'import json; print(json.dumps({"data": [{"INPUT0": list(range(16)), "INPUT1": [1]*16}]}))' >"$tmp/data.json"
run 0 "input data file" -m simple -u "127.0.0.1:$port" --input-data "$tmp/data.json" \
  -p 200 -s 60 -r 20
# perf_analyzer's --input-tensor-format / --output-tensor-format json,
# through a relay that keeps what perf sends: JSON "data" arrays holding
# the data file's values, no binary data, no binary outputs asked for; and
# the worker answered every one (its success count).
rport=$(free_port)
python3 -c '
import socket, sys, threading
lst = socket.socket(); lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lst.bind(("127.0.0.1", int(sys.argv[1]))); lst.listen(16)
log = open(sys.argv[3], "ab", buffering=0)
def pump(a, b, keep):
    while True:
        d = a.recv(65536)
        if not d: break
        if keep: log.write(d)
        b.sendall(d)
    b.close()
while True:
    c, _ = lst.accept()
    u = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
    threading.Thread(target=pump, args=(c, u, True), daemon=True).start()
    threading.Thread(target=pump, args=(u, c, False), daemon=True).start()
' "$rport" "$port" "$tmp/relay.log" &
relay=$!
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/"$rport") 2>/dev/null && break; sleep 0.1; done
before=$(success)
run 0 "json tensors both ways" -m simple -u "127.0.0.1:$rport" --input-data "$tmp/data.json" \
  --input-tensor-format json --output-tensor-format json -p 200 -s 60 -r 20
after=$(success)
kill "$relay" 2>/dev/null
counted=$(awk '/^    Request count:/ { n += $NF } END { print n + 0 }' "$tmp/out")
[ "$counted" -gt 0 ] && [ $((after - before)) -ge "$counted" ] ||
  fail "json tensors: client counted $counted, server succeeded $((after - before))"
python3 -c '
import json, sys
raw = open(sys.argv[1], "rb").read()
posts = [p for p in raw.split(b"POST ")[1:] if b"/infer" in p.split(b"\r\n")[0]]
assert posts, "no infer request relayed"
head, body = posts[0].split(b"\r\n\r\n", 1)
assert b"content-type: application/json" in head.lower(), head
assert b"inference-header-content-length" not in head.lower(), head
length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0].split(b":")[1])
req = json.loads(body[:length])
data = {i["name"]: i["data"] for i in req["inputs"]}
assert data == {"INPUT0": list(range(16)), "INPUT1": [1] * 16}, data
assert "parameters" not in req and "outputs" not in req, req
' "$tmp/relay.log" && ok "json tensors: the relayed request carries the data as JSON" ||
  fail "json tensors: the relayed request: $(head -c 600 "$tmp/relay.log")"
bad 2 "expected binary or json" -m simple --input-tensor-format xml

echo '{"data": [{"INPUT0": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]}]}' >"$tmp/short.json"
bad 2 "no input 'INPUT1'" -m simple -u "127.0.0.1:$port" --input-data "$tmp/short.json"

kill -0 "$pid" 2>/dev/null || fail "the worker died"
[ $fails -eq 0 ] || { echo "$fails check(s) failed"; exit 1; }
echo "PASS"
