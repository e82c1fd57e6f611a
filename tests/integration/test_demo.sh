#!/usr/bin/env bash
# gpuslice demo end to end on the host backend, made short (two levels,
# 300 ms windows, 2 instances): the table has both runs, the SVG parses as
# XML with both series and the budget line, and nothing is left behind (no
# workers, no state directory). Then Ctrl-C in the middle: exit 130, the
# instances' processes gone. Bad input: a missing model, a bad level list.
# Skips (77) only when make_models.py finds no python3-onnx; CI installs it
# (scripts/install-deps.sh), so scripts/test.sh fails on that skip there.
set -u
: "${GPUSLICE:?}" "${GS_SOURCE_DIR:?}"
tmp=$(mktemp -d)
export TMPDIR=$tmp GPUSLICE_BACKEND=host GPUSLICE_STATE_DIR=$tmp/unused
# a host of a fixed shape, as the other host tests use
export GPUSLICE_HOST_CPUS=2 GPUSLICE_HOST_MEMORY_MIB=24576
export GPUSLICE_HOST_CGROUP_ROOT=${GPUSLICE_HOST_CGROUP_ROOT:-none}
[ -n "${GS_SANITIZE:-}" ] && export GPUSLICE_TEST_NO_ADDRESS_LIMIT=1
# the demo's serve and workers all name $tmp/models on their command line
trap 'pkill -9 -f "$tmp/models" 2>/dev/null; rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; cat "$tmp/err" 2>/dev/null | tail -20; exit 1; }

# Only make_models.py's own 77 (no python3-onnx anywhere) is a skip; any
# other failure of the generator fails the test.
py=$(command -v python3 || echo /usr/bin/python3)
"$py" "$GS_SOURCE_DIR/scripts/make_models.py" --out "$tmp/models" >/dev/null
rc=$?
[ $rc -eq 77 ] && { echo "SKIP: make_models.py needs python3-onnx"; exit 77; }
[ $rc -eq 0 ] || { echo "FAIL: make_models.py exited $rc"; exit 1; }
mkdir -p "$tmp/out"
"$GPUSLICE" demo --model-repository "$tmp/models" --out "$tmp/out" \
  --instances 2 --concurrency 1,4 --window 300 >"$tmp/table" 2>"$tmp/err" ||
  fail "demo exited $?"
cat "$tmp/table"
grep -q "1 x 1g" "$tmp/table" && grep -q "2 x 1g" "$tmp/table" || fail "table lacks a run"
[ "$(grep -cE '^(1|4) +\|' "$tmp/table")" = 2 ] || fail "table lacks a level"
grep -q "p99 budget\|keeps p99 within" "$tmp/table" || fail "no budget line"
"$py" - "$tmp/out/gpuslice-demo.svg" <<'PY' || fail "bad plot"
import sys, xml.dom.minidom
text = open(sys.argv[1]).read()
xml.dom.minidom.parseString(text)
for want in ("1 x 1g", "2 x 1g", "budget 50 ms", "Throughput", "p99 latency"):
    assert want in text, want
PY
ls "$tmp" | grep -q gpuslice-demo && fail "state directory left behind"
pgrep -f "$tmp/models" >/dev/null && fail "processes left behind"

# Ctrl-C while the first run measures.
"$GPUSLICE" demo --model-repository "$tmp/models" --out "$tmp/out" \
  --instances 2 --concurrency 1,2,4,8,16 --window 2000 >/dev/null 2>"$tmp/err" &
pid=$!
for _ in $(seq 300); do
  grep -q "sweeping" "$tmp/err" && break
  sleep 0.1
done
kill -INT "$pid"
wait "$pid"
rc=$?
[ "$rc" = 130 ] || fail "Ctrl-C: exit $rc, want 130"
grep -q "interrupted" "$tmp/err" || fail "Ctrl-C not reported"
sleep 0.5
pgrep -f "$tmp/models" >/dev/null && fail "workers left after Ctrl-C"
ls "$tmp" | grep -q gpuslice-demo && fail "state directory left after Ctrl-C"

out=$("$GPUSLICE" demo --model-repository "$tmp/nothing" 2>&1)
[ $? = 2 ] && echo "$out" | grep -q "make_models.py" || fail "missing model: $out"
out=$("$GPUSLICE" demo --concurrency 4,2 2>&1)
[ $? = 2 ] && echo "$out" | grep -q "rising" || fail "bad levels: $out"
echo "PASS"
