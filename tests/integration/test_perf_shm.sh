#!/usr/bin/env bash
# gpuslice perf --shared-memory system|cuda (perf_analyzer's flag) against
# a real gpuslice worker, over HTTP and gRPC: every request names a region
# perf made and registered (the worker's statistics count the successes,
# its /metrics count CUDA tensors), no request fails, and at the end no
# region is left registered with the worker nor in /dev/shm. CUDA goes
# through the test-only fake driver's IPC (tests/fake_cuda, GS_FAKE_CUDA_DIR:
# its "device" memory is a POSIX object) into a CPU model: the host path.
# Not a measurement (short windows, no stability asked).
. "$(dirname "$0")/worker_lib.sh"
py=$(command -v python3 || echo /usr/bin/python3)
make_models "$py"
rm -rf "$tmp/models/classifier" "$tmp/models/cnn_small"
echo '{"max_batch_size": 8, "instance_group": [{"kind": "KIND_CPU"}]}' \
  >"$tmp/models/simple/config.json"
fake=${GS_FAKE_CUDA_DIR:?GS_FAKE_CUDA_DIR: the fake CUDA driver directory}
gport=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export LD_LIBRARY_PATH=$fake${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
start_worker --grpc-port "$gport" --metrics-port 0 --threads 2
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
successes() {
  curl -s "$base/v2/models/simple/stats" |
    "$py" -c 'import json,sys; print(json.load(sys.stdin)["model_stats"][0]["inference_stats"]["success"]["count"])'
}
cuda_tensors() { # DIRECTION PATH
  curl -s "$base/metrics" |
    sed -n "s/^gpuslice_cuda_shm_tensors{direction=\"$1\",path=\"$2\"} //p"
}
for mode in system cuda; do
  for proto in http grpc; do
    [ "$proto" = grpc ] && u=127.0.0.1:$gport || u=127.0.0.1:$port
    f0=$fails
    before=$(successes)
    in_before=$(cuda_tensors input host)
    timeout 60 "$GPUSLICE" perf -m simple -u "$u" -i "$proto" \
      --shared-memory "$mode" --output-shared-memory-size 64 \
      --concurrency-range 2 -p 300 -r 3 -s 1000 >"$tmp/out" 2>"$tmp/err"
    rc=$?
    # not a measurement: an unstable one (a loaded or sanitizer machine) is fine
    [ $rc -eq 1 ] && grep -q "stable measurement" "$tmp/err" && rc=0
    n=$(($(successes) - before))
    if [ $rc -ne 0 ] || [ "$n" -lt 10 ]; then
      fail "$mode/$proto: perf exited $rc, $n successes: $(tail -3 "$tmp/err")"
      continue
    fi
    # CUDA: every request's 2 inputs came from a CUDA region (host path:
    # a CPU model); system: none did.
    in_n=$(($(cuda_tensors input host) - in_before))
    if [ "$mode" = cuda ] && [ "$in_n" -lt $((2 * n)) ]; then
      fail "$mode/$proto: $in_n CUDA input tensors for $n requests"
    elif [ "$mode" = system ] && [ "$in_n" -ne 0 ]; then
      fail "$mode/$proto: $in_n CUDA input tensors without CUDA"
    fi
    st=$(curl -s "$base/v2/${mode}sharedmemory/status")
    [ "$st" = "[]" ] || fail "$mode/$proto: regions left registered: $st"
    left=$(ls /dev/shm | grep -c "^gs_perf_\|^fakecuda_" || true)
    [ "$left" -eq 0 ] || fail "$mode/$proto: $left objects left in /dev/shm"
    [ $fails -eq $f0 ] &&
      echo "ok: --shared-memory $mode over $proto: $n requests, $in_n CUDA inputs"
  done
done
# a region too small for the output: perf fails naming the output
timeout 60 "$GPUSLICE" perf -m simple -u "127.0.0.1:$port" \
  --shared-memory system --output-shared-memory-size 8 \
  --concurrency-range 1 -p 300 -r 3 >"$tmp/out" 2>"$tmp/err"
rc=$?
if [ $rc -ne 0 ] && grep -q "should be at least 64 bytes" "$tmp/err"; then
  echo "ok: an output region too small fails: $(grep -m1 'at least' "$tmp/err")"
else
  fail "a too-small output region: exit $rc: $(tail -2 "$tmp/err")"
fi
[ "$(curl -s "$base/v2/systemsharedmemory/status")" = "[]" ] ||
  fail "regions left registered after the failed run"
kill -0 "$pid" 2>/dev/null || fail "the worker died"
[ $fails -eq 0 ] && echo "PASS" || exit 1
