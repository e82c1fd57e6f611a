#!/usr/bin/env bash
# bench/refactor_compare.sh's table, from fixed results (the benchmarks
# themselves are not run): one row per metric in the order first seen; the
# median of each side over its rounds (odd and even counts); after/before
# to two decimals; "-" where a side has no number (a failed run's "-" is
# left out, not counted as 0); integers shown whole, ratios to 3 decimals;
# a missing results file is exit 2.
set -u
: "${GS_SOURCE_DIR:?}"
script=$GS_SOURCE_DIR/bench/refactor_compare.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

cat >"$tmp/results.csv" <<'CSV'
metric,side,value
router req/s c=64,before,1000
router req/s c=64,after,1200
router req/s c=64,before,1100
router req/s c=64,after,900
router req/s c=64,before,3000
router / nginx req/s c=64,before,0.9
router / nginx req/s c=64,after,0.95
worker gRPC req/s c=8,before,-
worker gRPC req/s c=8,after,5000
worker gRPC req/s c=8,after,5200
perf infer/s http c=8,before,2000
perf infer/s http c=8,after,-
CSV
cat >"$tmp/want.md" <<'MD'
| metric | before | after | after/before |
|---|---:|---:|---:|
| router req/s c=64 | 1100 | 1050 | 0.95 |
| router / nginx req/s c=64 | 0.900 | 0.950 | 1.06 |
| worker gRPC req/s c=8 | - | 5100 | - |
| perf infer/s http c=8 | 2000 | - | - |
MD
if ! bash "$script" --render "$tmp/results.csv" >"$tmp/got.md" 2>"$tmp/err"; then
  fail "render exited non-zero: $(cat "$tmp/err")"
elif ! diff -u "$tmp/want.md" "$tmp/got.md"; then
  fail "table differs from the expected one (diff above)"
fi

bash "$script" --render "$tmp/none.csv" >/dev/null 2>&1
rc=$?
[ "$rc" = 2 ] || fail "a missing results file exited $rc, not 2"

[ "$fails" = 0 ] || exit 1
echo "PASS: refactor_compare renders its table"
