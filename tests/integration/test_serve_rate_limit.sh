#!/usr/bin/env bash
# Rate limits per instance (serve --rate-limit [ID=]N,..., key rate_limit;
# the worker's --rate-limit): serve gives each instance's worker its limit
# (N for every instance, ID=N for one, 0 none); a limited worker starts at
# most N inferences a second, a request of batch 8 counting 8, and says so
# in /metrics (gpuslice_rate_limited_requests); an unlimited one does
# neither. A worker's waiting requests go one per turn (ten at once at
# 10/s take >= 0.9 s); one whose client left is dropped unrun, one whose
# model was unloaded meanwhile is refused (503), and a sequence's requests
# never wait (its idle timer would expire). serve gives an ID in any form
# --instances takes its limit, refuses one that is no instance ID or two
# IDs of one instance, and says so of an instance ID not served now. Under
# green isolation the one process takes a limit per instance (--instance
# ID=FIRST:COUNT,rate=N, and the "add" line of an instance added while it
# runs). Bad limits are refused with exit 2 and a message naming the item,
# starting nothing.
# Skips (77) when the models cannot be generated.
. "$(dirname "$0")/serve_lib.sh"
# The MLP with max_batch_size 8: dim 0 is the batch, counted as inferences.
mkdir -p "$tmp/models/mlp8/1"
cp "$tmp/models/mlp/1/model.onnx" "$tmp/models/mlp8/1/"
echo '{"max_batch_size": 8}' >"$tmp/models/mlp8/config.json"
python3 - "$tmp" <<'PY'
import json, sys
for rows in (1, 8):
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [rows, 64],
                        "data": [0.1] * (rows * 64)}]}
    open("%s/b%d.json" % (sys.argv[1], rows), "w").write(json.dumps(body))
PY

# refused WHAT WANT ARGS...: the command exits 2 and says WANT (a grep -E).
refused() {
  local what=$1 want=$2 rc
  shift 2
  timeout 20 "$@" >"$tmp/bad.log" 2>&1
  rc=$?
  [ $rc = 2 ] && grep -qE -- "$want" "$tmp/bad.log" ||
    fail "$what: exit $rc, not 2 with '$want': $(cat "$tmp/bad.log")"
  echo "ok: $what refused: $(grep -m1 -E -- "$want" "$tmp/bad.log")"
}
serve_bad() { refused "serve --rate-limit $1" "$2" "$GPUSLICE" serve --model-repository "$tmp/models" --http-port 0 --rate-limit "$1"; }
serve_bad abc "--rate-limit: 'abc' is not N or ID=N"
serve_bad "0:1=" "--rate-limit: '0:1=' is not N or ID=N"
serve_bad "=5" "--rate-limit: '=5' is not N or ID=N"
serve_bad "10,-3" "--rate-limit: '-3' is not N or ID=N"
serve_bad 100000001 "N in 0..100000000"
serve_bad "5,6" "two limits for every instance"
serve_bad "0:1=1,0:1=2" "instance 0:1 is named twice"
printf 'model_repository: %s\nrate_limit: fast\n' "$tmp/models" >"$tmp/bad.yaml"
refused "serve.yaml rate_limit: fast" "bad.yaml:2:[0-9]+: .*rate_limit|rate_limit.*bad.yaml:2" \
  "$GPUSLICE" serve -f "$tmp/bad.yaml" --http-port 0
grep -q "'fast' is not N or ID=N" "$tmp/bad.log" || fail "the yaml error names the value: $(cat "$tmp/bad.log")"
worker_bad() { refused "worker $*" "$1" "$GPUSLICE" worker --model-repository "$tmp/models" --http-port 0 --grpc-port 0 --metrics-port 0 "${@:2}"; }
worker_bad "rate-limit" --rate-limit abc
worker_bad "rate-limit" --rate-limit 100000001
worker_bad "rate=N is 1..100000000" --instance 0:1=0:16,rate=0
worker_bad "rate=N is 1..100000000" --instance 0:1=0:16,rate=x
worker_bad "rate=N is 1..100000000" --instance 0:1=0:16,speed=3
worker_bad "rate=N is 1..100000000" --instance 0:1=0:16,rate=4294967301
pgrep -f -- "--model-repository=$tmp/models" >/dev/null && fail "a refused serve left workers running"

# worker_args LABEL: the command line of one worker (by its pid).
worker_args() {
  tr '\0' ' ' <"/proc/$(worker_field "$1" pid)/cmdline"
}
# infer_two PORT: a batch of 8 then a batch of 1 to mlp8 on PORT; prints
# the seconds both took.
infer_two() {
  local t0 t1 b
  t0=$(date +%s.%N)
  for b in 8 1; do
    curl -sf -o /dev/null -d @"$tmp/b$b.json" "http://127.0.0.1:$1/v2/models/mlp8/infer" ||
      fail "infer (batch $b) on port $1"
  done
  t1=$(date +%s.%N)
  python3 -c 'import sys; print("%.3f" % (float(sys.argv[2]) - float(sys.argv[1])))' "$t0" "$t1"
}
# waited PORT: the worker's gpuslice_rate_limited_requests ("" when its
# /metrics has no rate limit).
waited() {
  curl -sf "http://127.0.0.1:$1/metrics" | sed -n 's/^gpuslice_rate_limited_requests \([0-9]*\)$/\1/p'
}

# ---- one worker, no serve -------------------------------------------------
python3 "$GS_SOURCE_DIR/scripts/make_seq_models.py" --out "$tmp/models" --idle-us 5000000 >/dev/null ||
  fail "make_seq_models.py"
"$GPUSLICE" worker --model-repository "$tmp/models" --http-port 0 --grpc-port 0 \
  --metrics-port 0 --model-control-mode explicit --load-model '*' --rate-limit 10 \
  2>"$tmp/worker.log" &
wpid=$!
for _ in $(seq 300); do
  wport=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$tmp/worker.log")
  [ -n "$wport" ] && break
  sleep 0.1
done
[ -n "$wport" ] || fail "worker did not start: $(cat "$tmp/worker.log")"
w=http://127.0.0.1:$wport
post() { # URL BODY_FILE [OUT [CURL ARGS]]: prints the status; the answer goes to OUT ($tmp/post.out)
  curl -s -o "${3:-$tmp/post.out}" -w '%{http_code}' -d @"$2" "${@:4}" "$1"
}
count() { # the model's inference_count
  curl -sf "$w/v2/models/$1/stats" | python3 -c 'import json,sys
print(json.load(sys.stdin)["model_stats"][0]["inference_count"])'
}
# pace: "HELD WAITING" from one scrape of the worker's /metrics: the
# requests let go after waiting for a turn, and those waiting now.
pace() {
  curl -sf "$w/metrics" | awk '$1 == "gpuslice_rate_limited_requests" {h = $2}
    $1 == "gpuslice_rate_limit_waiting" {n = $2} END {print h + 0, n + 0}'
}
# queued N: waits (up to 20 s) until N requests in all have come to wait
# for a turn (let go since, or waiting); leaves that scrape in held and
# waiting. A condition, not a sleep: what is sent next is sent after them.
queued() {
  local _
  for _ in $(seq 1000); do
    read -r held waiting <<<"$(pace)"
    [ $((held + waiting)) -ge "$1" ] && return 0
    sleep 0.02
  done
  fail "$1 requests never came to wait for a turn: $held let go, $waiting waiting"
}
# 10/s makes a batch of 8 hold the turns 0.8 s; the checks below put
# another batch of 8 in front of the request they watch (1.6 s), so that a
# loaded machine's slow client still acts before that request's turn, and
# wait for requests to be queued (queued) rather than sleep for it.
# Ten batch-1 requests at once: one starts, nine wait a turn (100 ms) each.
t0=$(date +%s.%N)
for i in $(seq 10); do post "$w/v2/models/mlp8/infer" "$tmp/b1.json" /dev/null >"$tmp/st$i" & done
wait $(jobs -p | grep -vx "$wpid")
took=$(python3 -c 'import sys,time; print("%.3f" % (time.time() - float(sys.argv[1])))' "$t0")
[ "$(cat "$tmp"/st* | tr -d '\n')" = "$(printf '200%.0s' $(seq 10))" ] || fail "ten at once: $(cat "$tmp"/st*)"
python3 -c 'import sys; sys.exit(float(sys.argv[1]) < 0.9)' "$took" || fail "ten batch-1 at 10/s in $took s"
[ "$(waited "$wport")" -ge 8 ] || fail "ten at once: $(waited "$wport") waited, want >= 8"
echo "ok: ten batch-1 at once at 10/s: $took s, $(waited "$wport") waited their turn"
# A client that gives up while its request waits: the request never runs.
# Its turn comes 1.6 s after the first batch of 8 starts; its client
# leaves 0.5 s after it starts.
sleep 1
before=$(count mlp8)
post "$w/v2/models/mlp8/infer" "$tmp/b8.json" >/dev/null # 0.8 s of turns
read -r held waiting <<<"$(pace)"
entered=$((held + waiting))
post "$w/v2/models/mlp8/infer" "$tmp/b8.json" /dev/null >/dev/null & # 0.8 s more
ahead=$!
queued $((entered + 1))
post "$w/v2/models/mlp8/infer" "$tmp/b1.json" /dev/null --max-time 0.5 >/dev/null
wait "$ahead"
queued $((entered + 2)) # the abandoned one did reach the worker and wait
[ "$(post "$w/v2/models/mlp8/infer" "$tmp/b1.json")" = 200 ] || fail "the request after the abandoned one"
after=$(count mlp8)
[ "$((after - before))" = 17 ] || fail "abandoned request: $((after - before)) inferences ran, want 17 (8 + 8 + 1, not the abandoned 1)"
echo "ok: a request whose client left while it waited did not run ($before -> $after inferences)"
# A model unloaded while its request waits: that request is refused. Its
# turn comes 1.6 s after the first batch of 8 starts (the batch ahead of
# it is refused too when the unload comes first, and its turn then passes
# to this one at once).
sleep 1
post "$w/v2/models/mlp8/infer" "$tmp/b8.json" >/dev/null
read -r held waiting <<<"$(pace)"
entered=$((held + waiting))
post "$w/v2/models/mlp8/infer" "$tmp/b8.json" /dev/null >/dev/null &
ahead=$!
queued $((entered + 1))
post "$w/v2/models/mlp8/infer" "$tmp/b1.json" "$tmp/held.out" >"$tmp/held.status" &
pending=$!
queued $((entered + 2))
curl -sf -X POST "$w/v2/repository/models/mlp8/unload" >/dev/null || fail "unload mlp8"
wait "$ahead" "$pending"
[ "$(cat "$tmp/held.status")" = 503 ] && grep -q "unloaded or reloaded while the request waited" "$tmp/held.out" ||
  fail "held across an unload: $(cat "$tmp/held.status") $(cat "$tmp/held.out")"
echo "ok: a request held across its model's unload: 503 ($(cat "$tmp/held.out"))"
curl -sf -X POST "$w/v2/repository/models/mlp8/load" >/dev/null || fail "load mlp8 again"
# A sequence's next request never waits: it comes while another model's
# batches of 8 hold the turns (one ran, four wait: 4 s). Waiting behind
# them, it would be let go last, and the pacer would count it among those
# let go after a wait: that count, not the clock, says it did not wait (a
# loaded machine makes any request slow). Its idle timer (5 s) only has to
# outlast the sending of those batches.
seq_body() { # FILE VALUE START
  printf '{"parameters": {"sequence_id": 77, "sequence_start": %s}, "inputs": [{"name": "INPUT", "datatype": "INT32", "shape": [1, 1], "data": [%s]}]}' "$3" "$2" >"$1"
}
seq_body "$tmp/s1.json" 5 true
seq_body "$tmp/s2.json" 7 false
sleep 1
[ "$(post "$w/v2/models/sequence_accumulate/infer" "$tmp/s1.json")" = 200 ] || fail "sequence start: $(cat "$tmp/post.out")"
post "$w/v2/models/mlp8/infer" "$tmp/b8.json" >/dev/null
read -r held waiting <<<"$(pace)"
entered=$((held + waiting))
ahead=()
for i in 1 2 3 4; do
  post "$w/v2/models/mlp8/infer" "$tmp/b8.json" /dev/null >/dev/null &
  ahead+=($!)
done
queued $((entered + 4)) # sets held and waiting: s2 comes after all four
t0=$(date +%s.%N)
st=$(post "$w/v2/models/sequence_accumulate/infer" "$tmp/s2.json")
took=$(python3 -c 'import sys,time; print("%.3f" % (time.time() - float(sys.argv[1])))' "$t0")
[ "$st" = 200 ] && grep -q '"data":\[12\]' "$tmp/post.out" || fail "sequence's next request: $st $(cat "$tmp/post.out")"
wait "${ahead[@]}"
read -r held_after waiting_after <<<"$(pace)"
[ "$held_after" = $((held + waiting)) ] && [ "$waiting_after" = 0 ] ||
  fail "the sequence's request waited for a turn: $held_after let go after a wait, want $held + $waiting"
echo "ok: a sequence's next request did not wait for a turn ($took s, 5 + 7 = 12, $waiting waited ahead of it)"
kill "$wpid" && wait "$wpid"
rm -rf "$tmp/models/simple_sequence" "$tmp/models/"*sequence* "$tmp/models/big_identity"

refused "serve --rate-limit zz:1=5 (no instance ID)" "names zz:1: instance 'zz:1' is not GI" \
  "$GPUSLICE" serve --model-repository "$tmp/models" --http-port 0 --rate-limit zz:1=5
refused "serve --rate-limit 1=5,0:1=7 (one instance twice)" "names one instance twice \(as 1 and 0:1\)" \
  "$GPUSLICE" serve --model-repository "$tmp/models" --http-port 0 --rate-limit 1=5,0:1=7
# "1" is instance 0:1 as --instances takes it (GI alone); 0:99 is no
# instance yet: said, and the serve starts
start_serve --rate-limit 1=0,20,0:99=5
grep -q "rate-limit names 0:99, which is no instance served now" "$tmp/serve.log" ||
  fail "no word on 0:99: $(head -5 "$tmp/serve.log")"
labels=$(status_json | python3 -c 'import json, sys
print(" ".join(w["worker"] for w in json.load(sys.stdin)["workers"]))')
read -r -a all <<<"$labels"
[ "${#all[@]}" -ge 2 ] && [ "${all[0]}" = 0:1 ] || fail "want 0:1 and more workers: $labels"
! grep -q -- "--rate-limit" <<<"$(worker_args 0:1)" || fail "0:1=0 gave 0:1 a limit: $(worker_args 0:1)"
for w in "${all[@]:1}"; do
  grep -q -- " --rate-limit=20 " <<<"$(worker_args "$w") " || fail "worker $w has no --rate-limit=20: $(worker_args "$w")"
done
echo "ok: --rate-limit 1=0,20: ${all[*]:1} at 20/s, 0:1 unlimited"
# At 20 inferences a second a batch of 8 holds the next request 0.4 s.
limited=$(worker_field "${all[1]}" http_port)
took=$(infer_two "$limited")
python3 -c 'import sys; sys.exit(float(sys.argv[1]) < 0.35)' "$took" ||
  fail "worker ${all[1]} at 20/s ran batch 8 then 1 in $took s (want >= 0.35)"
[ "$(waited "$limited")" -ge 1 ] || fail "worker ${all[1]}: no request waited in /metrics"
free=$(worker_field 0:1 http_port)
took_free=$(infer_two "$free")
curl -sf "http://127.0.0.1:$free/metrics" | grep -q '^nv_inference_request_success' &&
  [ -z "$(waited "$free")" ] || fail "the unlimited worker reports a rate limit (or no metrics)"
echo "ok: batch 8 then 1: $took s at 20/s (waited: $(waited "$limited")), $took_free s unlimited"
kill "$serve_pid" && wait "$serve_pid"
serve_pid=
# Two workers an instance share its limit: 25 each of 50.
start_serve --rate-limit 50 --workers-per-instance 2 --instances 0:1
args=$(for p in $(pgrep -f -- "worker --model-repository=$tmp/models"); do tr '\0' ' ' <"/proc/$p/cmdline"; echo; done)
[ "$(grep -c -- ' --rate-limit=25 ' <<<"$args")" = 2 ] || fail "two workers of 0:1 at 50: $args"
echo "ok: --rate-limit 50 with two workers an instance: --rate-limit=25 each"
kill "$serve_pid" && wait "$serve_pid"
serve_pid=

# Green isolation: one process, a limit per instance.
BUILD=$(dirname "$GPUSLICE")
NVML="$BUILD/tests/fake_nvml/current/libnvidia-ml.so.1"
CUDA="$BUILD/tests/fake_cuda/libcuda.so.1"
if [ ! -f "$NVML" ] || [ ! -f "$CUDA" ]; then
  fail "the fakes are not built next to $GPUSLICE"
fi
export GPUSLICE_BACKEND=soft GPUSLICE_NVML_LIBRARY="$NVML" GPUSLICE_CUDA_LIBRARY="$CUDA"
export GPUSLICE_MPS_CONTROL="$GS_SOURCE_DIR/tests/fake_mps/nvidia-cuda-mps-control"
export FAKE_NVML_CONFIG=h100-80gb:off FAKE_CUDA_SMS=132
export GPUSLICE_STATE_DIR=$tmp/green-state
"$GPUSLICE" --isolation green create 1g.10gb 1g.10gb >/dev/null || fail "cannot create green instances"
read -r g1 g2 <<<"$("$GPUSLICE" --json list | python3 -c "import json,sys
print(' '.join('0:%d' % g['id'] for g in json.load(sys.stdin)['devices'][0]['gpu_instances']))")"
cat >"$tmp/serve.yaml" <<YAML
rate_limit: ["$g1=20"]
YAML
start_serve -f "$tmp/serve.yaml"
args=$(worker_args "$g1")
grep -qE -- "--instance=$g1=[0-9]+:[0-9]+,rate=20 " <<<"$args " || fail "no --instance $g1=...,rate=20: $args"
grep -qE -- "--instance=$g2=[0-9]+:[0-9]+ " <<<"$args " || fail "$g2 has a rate: $args"
took=$(infer_two "$(worker_field "$g1" http_port)")
python3 -c 'import sys; sys.exit(float(sys.argv[1]) < 0.35)' "$took" ||
  fail "green $g1 at 20/s ran batch 8 then 1 in $took s"
g2port=$(worker_field "$g2" http_port)
curl -sf "http://127.0.0.1:$g2port/metrics" | grep -q '^nv_inference_request_success' &&
  [ -z "$(waited "$g2port")" ] || fail "green $g2 reports a rate limit (or no metrics)"
echo "ok: green: $g1 at 20/s in the process's --instance ($took s), $g2 unlimited"
# Removed and added back while the process runs: the add line carries it.
pid=$(worker_field "$g2" pid)
"$GPUSLICE" serve --remove "$g1" >/dev/null || fail "serve --remove $g1"
"$GPUSLICE" serve --add "$g1" >/dev/null || fail "serve --add $g1"
for _ in $(seq 300); do
  [ "$(worker_field "$g1" state)" = running ] && [ -n "$(worker_field "$g1" http_port)" ] && break
  sleep 0.1
done
[ "$(worker_field "$g1" pid)" = "$pid" ] || fail "$g1 came back in another process"
port1=$(worker_field "$g1" http_port)
took=$(infer_two "$port1")
python3 -c 'import sys; sys.exit(float(sys.argv[1]) < 0.35)' "$took" ||
  fail "green $g1 added back ran batch 8 then 1 in $took s"
[ "$(waited "$port1")" -ge 1 ] || fail "green $g1 added back: no request waited"
echo "ok: green: $g1 removed and added back keeps 20/s ($took s, same process $pid)"
echo "PASS"
