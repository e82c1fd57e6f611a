#!/usr/bin/env bash
# Rate limits per instance (serve --rate-limit [ID=]N,..., key rate_limit;
# the worker's --rate-limit): serve gives each instance's worker its limit
# (N for every instance, ID=N for one, 0 none); a limited worker starts at
# most N inferences a second, a request of batch 8 counting 8, and says so
# in /metrics (gpuslice_rate_limited_requests); an unlimited one does
# neither. Under green isolation the one process takes a limit per
# instance (--instance ID=FIRST:COUNT,rate=N, and the "add" line of an
# instance added while it runs). Bad limits are refused with exit 2 and a
# message naming the item, starting nothing.
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

start_serve --rate-limit 0:1=0,20
labels=$(status_json | python3 -c 'import json, sys
print(" ".join(w["worker"] for w in json.load(sys.stdin)["workers"]))')
read -r -a all <<<"$labels"
[ "${#all[@]}" -ge 2 ] && [ "${all[0]}" = 0:1 ] || fail "want 0:1 and more workers: $labels"
! grep -q -- "--rate-limit" <<<"$(worker_args 0:1)" || fail "0:1=0 gave 0:1 a limit: $(worker_args 0:1)"
for w in "${all[@]:1}"; do
  grep -q -- " --rate-limit=20 " <<<"$(worker_args "$w") " || fail "worker $w has no --rate-limit=20: $(worker_args "$w")"
done
echo "ok: --rate-limit 0:1=0,20: ${all[*]:1} at 20/s, 0:1 unlimited"
# At 20 inferences a second a batch of 8 holds the next request 0.4 s.
limited=$(worker_field "${all[1]}" http_port)
took=$(infer_two "$limited")
python3 -c 'import sys; sys.exit(float(sys.argv[1]) < 0.35)' "$took" ||
  fail "worker ${all[1]} at 20/s ran batch 8 then 1 in $took s (want >= 0.35)"
[ "$(waited "$limited")" -ge 1 ] || fail "worker ${all[1]}: no request waited in /metrics"
free=$(worker_field 0:1 http_port)
took_free=$(infer_two "$free")
[ -z "$(waited "$free")" ] || fail "the unlimited worker reports a rate limit"
echo "ok: batch 8 then 1: $took s at 20/s (waited: $(waited "$limited")), $took_free s unlimited"
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
[ -z "$(waited "$(worker_field "$g2" http_port)")" ] || fail "green $g2 reports a rate limit"
echo "ok: green: $g1 at 20/s in the process's --instance ($took s), $g2 unlimited"
# Removed and added back while the process runs: the add line carries it.
pid=$(worker_field "$g2" pid)
"$GPUSLICE" serve --remove "$g1" >/dev/null || fail "serve --remove $g1"
"$GPUSLICE" serve --add "$g1" >/dev/null || fail "serve --add $g1"
for _ in $(seq 100); do
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
