#!/usr/bin/env bash
# The format check of the test command: every tracked C, header and CUDA
# file is as clang-format (the checked-in .clang-format) writes it. Lists
# each file that drifts, with clang-format's first complaint, and exits 1;
# `clang-format -i FILE` fixes one. Exit 0 when none drifts.
set -uo pipefail
cd "$(dirname "$0")/.."
command -v clang-format >/dev/null || { echo "check_format: clang-format not found" >&2; exit 1; }
bad=0
while IFS= read -r f; do
  out=$(clang-format --dry-run --Werror "$f" 2>&1) && continue
  bad=$((bad + 1))
  echo "check_format: $f is not clang-formatted: $(printf '%s\n' "$out" | head -n 1)"
done < <(git ls-files '*.c' '*.h' '*.cc' '*.cu')
if ((bad > 0)); then
  echo "check_format: $bad file(s) drift; run clang-format -i on them"
  exit 1
fi
echo "check_format: $(git ls-files '*.c' '*.h' '*.cc' '*.cu' | wc -l) files formatted"
