#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the build needs, then
#   0. the format check (scripts/check_format.sh: every C, C++ and CUDA file
#      as clang-format writes it);
#   1. gcc build with -Werror, all tests (unit, integration, fuzz replays);
#   2. clang build with ASan+UBSan, all tests again;
#   3. each libFuzzer harness for GS_FUZZ_SECONDS (default 20) on its corpus.
# A skip is a failure unless tests/expected_skips.txt lists it with a reason:
# a ctest test that did not run (exit 77, DISABLED) or a cmocka case that
# called skip() inside a unit binary that otherwise ran. Expected skips are
# printed apart and counted as skipped, never as passed.
# An integration test (real processes, ports and timing on a 2-core
# machine) that fails gets one rerun alone; passing then, it counts as
# passed and is listed under "flaky" at the end, with its first failure's
# output above. Unit tests, fuzz replays and the rest get no rerun.
# Ends with the failures and flaky tests by name, then
# "total: N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh || exit 1
jobs=$(nproc)
passed=0 failed=0 skipped=0
fail_lines=() flaky_lines=()
skip_list=tests/expected_skips.txt
log=$(mktemp)
trap 'rm -f "$log"' EXIT
skip_lines=() # what to print again at the end
step() { # step NAME CMD...: a build or fuzz run counts as one test
  echo "==> $1"
  if "${@:2}"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAILED: $1"; fail_lines+=("FAILED: $1"); fi
}

# The expected skips: "name  reason" per line, '#' comments. A name is a
# ctest test (integration.test_x), or TEST/CASE for a cmocka case; "gcc:" or
# "asan:" in front limits it to that build.
declare -A expected=() expected_line=() expected_seen=()
load_expected() {
  local line name reason n=0
  if [ ! -f "$skip_list" ]; then
    echo "FAILED: no $skip_list"; failed=$((failed + 1)); fail_lines+=("FAILED: no $skip_list"); return
  fi
  while IFS= read -r line || [ -n "$line" ]; do
    n=$((n + 1))
    [[ $line =~ ^[[:space:]]*(#|$) ]] && continue
    read -r name reason <<<"$line"
    if [ -z "$reason" ] || [ -n "${expected[$name]+set}" ]; then
      echo "FAILED: $skip_list:$n: '$name' needs one entry with a reason"
      fail_lines+=("FAILED: $skip_list:$n: '$name' needs one entry with a reason")
      failed=$((failed + 1))
      continue
    fi
    expected[$name]=$reason expected_line[$name]=$n
  done <"$skip_list"
}

# skips_of CTEST_LOG LASTTEST_LOG: one "kind<TAB>name<TAB>why" line per skip:
# kind "test" (ctest ran it, it skipped: counted in ctest's total as
# passed), "disabled" (not in the total) or "case" (a cmocka skip() in a
# test that ran). The why is the test's last output line that says "skip",
# or the line a cmocka case printed before skip().
skips_of() {
  awk '
    FNR == NR {
      if (match($0, /^[0-9]+\/[0-9]+ Test: /)) { test = substr($0, RLENGTH + 1); out = 0; next }
      if (!out && $0 == "Output:") { out = 1; last = ""; getline; next }
      if ($0 == "<end of output>") { out = 0; next }
      if (!out) next
      if (/^\[ RUN +\] /) { last = ""; next }
      if (/^\[  SKIPPED \] / && !/test\(s\), listed below:$/) {
        c = test "/" substr($0, 14)
        if (!(c in seen)) { seen[c] = 1; print "case\t" c "\t" (last != "" ? last : "skip()") }
        next
      }
      if (/[Ss][Kk][Ii][Pp]/) why[test] = $0
      if ($0 != "" && !/^\[/) last = $0
      next
    }
    /^The following tests did not run:/ { block = 1; next }
    block && /^\t/ {
      name = $0; sub(/^\t *[0-9]+ - /, "", name)
      status = name; sub(/.* \(/, "", status); sub(/\)$/, "", status)
      sub(/ \([^()]*\)$/, "", name)
      if (status == "Disabled") print "disabled\t" name "\tDISABLED"
      else print "test\t" name "\t" (name in why ? why[name] : status)
      next
    }
    { block = 0 }
  ' "$2" "$1"
}

# judge_skips BUILD DIR: each skip of the ctest run just done in DIR is
# expected (counted as skipped) or not (counted as failed); sets ran_skips
# to the number of skipped tests ctest counted as passed.
judge_skips() {
  local build=$1 dir=$2 kind name why key line
  ran_skips=0
  while IFS=$'\t' read -r kind name why; do
    [ "$kind" = test ] && ran_skips=$((ran_skips + 1))
    key=
    [ -n "${expected[$build:$name]+set}" ] && key=$build:$name
    [ -z "$key" ] && [ -n "${expected[$name]+set}" ] && key=$name
    if [ -n "$key" ]; then
      expected_seen[$key]=1 skipped=$((skipped + 1))
      line="skipped, expected ($skip_list:${expected_line[$key]}: ${expected[$key]}): $build:$name: $why"
    else
      failed=$((failed + 1))
      line="FAILED: unexpected skip: $build:$name: $why (not in $skip_list)"
      fail_lines+=("$line")
    fi
    echo "$line"
    skip_lines+=("$line")
  done < <(skips_of "$log" "$dir/Testing/Temporary/LastTest.log")
}

ctest_step() { # ctest_step BUILD DIR ARGS...: counts ctest's own tests and judges skips
  echo "==> tests ($1)"
  rm -f "$2/Testing/Temporary/LastTest.log"
  ctest --test-dir "$2" "${@:3}" 2>&1 | tee "$log"
  local line total bad
  line=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -1)
  if [ -z "$line" ]; then failed=$((failed + 1)); echo "FAILED: tests ($1) (no ctest summary)"; fail_lines+=("FAILED: tests ($1) (no ctest summary)"); return; fi
  total=$(printf '%s' "$line" | sed -E 's/.* out of ([0-9]+).*/\1/')
  bad=$(printf '%s' "$line" | sed -E 's/.* ([0-9]+) tests? failed.*/\1/')
  judge_skips "$1" "$2"
  # ctest's list: "<TAB>  12 - integration.test_x (Failed)"
  local name out recovered=0
  while read -r name; do
    if [[ $name == integration.* ]]; then
      echo "==> rerun of $1:$name, alone"
      out=$(ctest --test-dir "$2" -R "^${name//./\\.}\$" --output-on-failure </dev/null 2>&1)
      echo "$out"
      if grep -qE '100% tests passed, 0 tests failed out of 1$' <<<"$out" &&
        ! grep -q '(Skipped)' <<<"$out"; then
        recovered=$((recovered + 1))
        flaky_lines+=("flaky: $1:$name failed, then passed its one rerun")
        continue
      fi
    fi
    fail_lines+=("FAILED: $1:$name")
  done < <(sed -nE 's/^[[:space:]]+[0-9]+ - ([^ ]+) \((Failed|Timeout|SEGFAULT|Subprocess aborted|Exception|Child aborted|Not Run)\).*/\1/p' "$log")
  bad=$((bad - recovered))
  passed=$((passed + total - bad - ran_skips)); failed=$((failed + bad))
}

load_expected
step "format (clang-format)" bash scripts/check_format.sh
step "build (gcc, -Werror)" sh -c "cmake -S . -B build/gcc -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGS_WERROR=ON >/dev/null && ninja -C build/gcc"
ctest_step gcc build/gcc --output-on-failure -j "$jobs"
step "build (clang, ASan+UBSan, fuzzers)" sh -c "CC=clang cmake -S . -B build/asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DGS_WERROR=ON -DGS_SANITIZE=ON -DGS_FUZZ=ON >/dev/null && ninja -C build/asan"
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1
ctest_step asan build/asan --output-on-failure -j "$jobs"

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

echo "==> skips"
for l in "${skip_lines[@]}"; do echo "$l"; done
for key in "${!expected[@]}"; do
  [ -n "${expected_seen[$key]+set}" ] ||
    echo "note: $skip_list:${expected_line[$key]} lists $key, which did not skip here"
done
echo "==> failures and flaky tests"
for l in "${fail_lines[@]}" "${flaky_lines[@]}"; do echo "$l"; done
echo "total: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
