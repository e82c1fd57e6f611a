#!/usr/bin/env bash
# ctest engine.onnx_node_tests_cuda_skips: tests/engine/node_skips_cuda.txt
# says exactly which node tests of the CUDA provider's ops it refuses. The
# provider checks every node before it loads a GPU library, so on a machine
# without a GPU its refusals are the real ones, and every test it accepts
# must fail with the reason the provider cannot start (not pass, not skip).
# Exit 77 where a GPU is usable (tests/gpu/engine_check.sh runs them there)
# or libonnx-testdata is missing.
set -u
src=${GS_SOURCE_DIR:?GS_SOURCE_DIR: the source tree}
run=${RUN_NODE_TESTS:?RUN_NODE_TESTS: the run_node_tests binary}
data=${GS_NODE_TESTS:-/usr/share/libonnx-testdata/data/node}
[[ -d $data ]] || { echo "no libonnx-testdata: skip"; exit 77; }
tmp=$(mktemp -d /tmp/gs-cuda-skips-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# The same tests as the GPU kit carries, as one directory of tests.
mkdir "$tmp/node"
for t in $(bash "$src/tests/gpu/build_carry.sh" --list-node-tests); do
  ln -s "$data/$t" "$tmp/node/$t"
done
"$run" --provider cuda --expected-skips "$src/tests/engine/node_skips_cuda.txt" \
  "$tmp/node" >"$tmp/log" 2>&1
rc=$?
grep -q '^provider cuda: no usable GPU here' "$tmp/log" || {
  echo "a GPU is usable here: tests/gpu/engine_check.sh runs these tests"; exit 77; }
fails=0
bad() { echo "FAIL: $1"; fails=$((fails + 1)); }
[[ $rc -eq 1 ]] || bad "run_node_tests --provider cuda without a GPU exited $rc, not 1"
# A refusal the list lacks, or a listed test the provider now accepts.
grep -E '^FAIL .*(does not list it|lists it as an expected skip)' "$tmp/log" &&
  bad "node_skips_cuda.txt is out of step with the provider's refusals"
grep '^note:' "$tmp/log" && bad "node_skips_cuda.txt lists tests that were not run"
# Every other failure is the provider failing to start.
other=$(grep '^FAIL ' "$tmp/log" | grep -v -e ': session (cuda): ' -e 'does not list it' -e 'lists it as an expected skip' || true)
[[ -z $other ]] || bad "failures other than 'no GPU': $other"
n_fail=$(grep -c '^FAIL ' "$tmp/log")
[[ $n_fail -gt 0 ]] || bad "no test failed: without a GPU, accepted tests must fail"
tail -n 1 "$tmp/log"
echo "test_cuda_skips: $n_fail tests accepted by the provider failed for want of a GPU; $fails failure(s)"
[[ $fails -eq 0 ]]
