#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the build needs, then
#   1. gcc build with -Werror, all tests (unit, integration, fuzz replays);
#   2. clang build with ASan+UBSan, all tests again;
#   3. each libFuzzer harness for GS_FUZZ_SECONDS (default 20) on its corpus.
# Ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh || exit 1
jobs=$(nproc)
passed=0 failed=0
log=$(mktemp)
step() { # step NAME CMD...: a build or fuzz run counts as one test
  echo "==> $1"
  if "${@:2}"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAILED: $1"; fi
}
ctest_step() { # ctest_step NAME ARGS...: counts ctest's own tests
  echo "==> $1"
  ctest "${@:2}" 2>&1 | tee "$log"
  local line total bad
  line=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -1)
  if [ -z "$line" ]; then failed=$((failed + 1)); echo "FAILED: $1 (no ctest summary)"; return; fi
  total=$(printf '%s' "$line" | sed -E 's/.* out of ([0-9]+).*/\1/')
  bad=$(printf '%s' "$line" | sed -E 's/.* ([0-9]+) tests? failed.*/\1/')
  passed=$((passed + total - bad)); failed=$((failed + bad))
}

step "build (gcc, -Werror)" sh -c "cmake -S . -B build/gcc -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGS_WERROR=ON >/dev/null && ninja -C build/gcc"
ctest_step "tests (gcc)" --test-dir build/gcc --output-on-failure -j "$jobs"
step "build (clang, ASan+UBSan, fuzzers)" sh -c "CC=clang cmake -S . -B build/asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DGS_WERROR=ON -DGS_SANITIZE=ON -DGS_FUZZ=ON >/dev/null && ninja -C build/asan"
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1
ctest_step "tests (clang, ASan+UBSan)" --test-dir build/asan --output-on-failure -j "$jobs"

secs=${GS_FUZZ_SECONDS:-20}
for h in build/asan/tests/fuzz_*; do
  [ -x "$h" ] || continue
  case "$h" in *_replay) continue ;; esac
  name=$(basename "$h"); corpus=tests/fuzz/corpus/${name#fuzz_}
  scratch=$(mktemp -d)
  cp -r "$corpus"/. "$scratch"/ 2>/dev/null
  step "fuzz $name for ${secs}s" "$h" -max_total_time="$secs" -timeout=10 -print_final_stats=0 "$scratch" \
    -artifact_prefix="build/asan/$name-"
  rm -rf "$scratch"
done
rm -f "$log"
echo "total: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
