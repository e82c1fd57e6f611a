#!/usr/bin/env bash
# The mutation pass of issue 11, re-run: each mutant of mutants.txt is
# applied alone to a scratch copy of the sources, built, and the tests that
# should catch it are run; the table says which test caught it, if any.
# A tool, not a CI test: it is slow. On 2 shared cores the first build takes
# 3-5 minutes, the check that the unmutated code passes every test named
# 2-3 minutes, and the 47 mutants 15-20 minutes more (each serve mutant runs
# test_serve_faults, ~25 s, twice when it fails; test_apply_kill ~25 s;
# rebuilds and unit tests a few seconds).
#
#   tests/mutation/run.sh [--ref REF] [--only ID[,ID...]] [--scratch DIR]
#
# --ref REF      sources from commit REF (default HEAD); the mutants are
#                always read from this script's mutants.txt, so
#                `--ref e14ed09` shows the pass before its new tests.
# --only IDS     just these mutants.
# --scratch DIR  use DIR, an existing clean copy with a build in
#                DIR/build/gcc (kept afterwards; each mutated file is
#                restored); default: a fresh copy under /tmp, removed at
#                the end.
# The caller's tree is never written: sources come from `git archive`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(git -C "$here" rev-parse --show-toplevel)
mutants="$here/mutants.txt"
ref=HEAD only="" scratch="" own_scratch=0
while [ $# -gt 0 ]; do
  case "$1" in
  --ref) ref=$2; shift 2 ;;
  --only) only=$2; shift 2 ;;
  --scratch) scratch=$2; shift 2 ;;
  *) echo "usage: $0 [--ref REF] [--only IDS] [--scratch DIR]" >&2; exit 2 ;;
  esac
done

if [ -z "$scratch" ]; then
  scratch=$(mktemp -d /tmp/gs-mutation.XXXXXX)
  own_scratch=1
  trap '[ $own_scratch = 1 ] && rm -rf "$scratch"' EXIT
  git -C "$repo" archive "$ref" | tar -x -C "$scratch"
  echo "sources of $(git -C "$repo" rev-parse --short "$ref") in $scratch; building..." >&2
  cmake -S "$scratch" -B "$scratch/build/gcc" -G Ninja \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGS_WERROR=ON >/dev/null
fi
build="$scratch/build/gcc"
logs="$build/mutation"
mkdir -p "$logs"
nice -n 10 ninja -C "$build" >/dev/null

# id<TAB>file<TAB>old<TAB>new<TAB>tests, one line per mutant.
list=$(python3 - "$mutants" "$only" <<'EOF'
import sys
blocks, cur = [], {}
for line in open(sys.argv[1]).read().split("\n") + [""]:
    if line.startswith("#"):
        continue
    if not line.strip():
        if cur: blocks.append(cur); cur = {}
        continue
    k, _, v = line.partition(": ")
    cur[k] = v
only = set(filter(None, sys.argv[2].split(",")))
for b in blocks:
    if not only or b["id"] in only:
        print("\t".join([b["id"], b["file"], b["old"], b["new"], b["tests"]]))
EOF
)

# Every test named must pass on the unmutated code, or the pass means nothing.
union=$(printf '%s\n' "$list" | cut -f5 | tr '\n' '|' | sed 's/|$//')
# The serve tests are timing-sensitive on a loaded machine: a failure is
# retried once, here and for each mutant (a mutant counts as caught only
# when its failing tests fail again; "flaky" otherwise, counted as not).
if ! (cd "$build" && nice -n 10 ctest -R "$union" --timeout 300 >"$logs/baseline.log" 2>&1) &&
   ! (cd "$build" && nice -n 10 ctest --rerun-failed --output-on-failure --timeout 300 >>"$logs/baseline.log" 2>&1); then
  echo "the unmutated code fails its tests (see below): no pass" >&2
  grep -A20 "tests FAILED" "$logs/baseline.log" >&2 || tail -20 "$logs/baseline.log" >&2
  exit 1
fi

mutate() { # file old new: replaces the one occurrence of old (\n = newline)
  python3 - "$@" <<'EOF'
import sys
path, old, new = sys.argv[1], *(s.replace("\\n", "\n") for s in sys.argv[2:4])
text = open(path).read()
if text.count(old) != 1:
    sys.exit("%s: old text found %d times" % (path, text.count(old)))
open(path, "w").write(text.replace(old, new))
EOF
}

results="$logs/results.tsv"
: >"$results"
printf '%-4s %-28s %-9s %s\n' id file result "caught by"
while IFS=$'\t' read -r id file old new tests; do
  src="$scratch/$file"
  cp -p "$src" "$src.orig"
  result="" by=""
  if ! mutate "$src" "$old" "$new"; then
    result=invalid
  elif ! nice -n 10 ninja -C "$build" >"$logs/$id.build.log" 2>&1; then
    result=stillborn # does not compile: not counted
  elif (cd "$build" && nice -n 10 ctest -R "$tests" --output-on-failure --timeout 300 >"$logs/$id.test.log" 2>&1); then
    result=SURVIVED
    grep -q "No tests were found" "$logs/$id.test.log" && by="(no test matches)"
  else
    by=$(sed -n '/tests FAILED/,$p' "$logs/$id.test.log" |
      sed -n 's/.* - \([^ ]*\) (.*/\1/p' | tr '\n' ' ')
    if (cd "$build" && nice -n 10 ctest --rerun-failed --output-on-failure --timeout 300 >>"$logs/$id.test.log" 2>&1); then
      result=flaky # failed once, passed again: not counted as caught
    else
      result=caught
    fi
  fi
  mv "$src.orig" "$src"
  touch "$src" # rebuilt from the original next time
  printf '%-4s %-28s %-9s %s\n' "$id" "$file" "$result" "$by"
  printf '%s\t%s\t%s\t%s\n' "$id" "$file" "$result" "$by" >>"$results"
done <<<"$list"
nice -n 10 ninja -C "$build" >/dev/null

awk -F'\t' '$3=="caught"{c++} $3=="caught"||$3=="SURVIVED"||$3=="flaky"{n++}
  END {printf "caught %d of %d mutants (%.0f%%)\n", c, n, n ? 100*c/n : 0}' "$results"
