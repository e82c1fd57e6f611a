# Shared helpers for the CLI integration tests (sourced, not run).
# Each test gets a private state directory, removed at exit along with any
# process it started.
set -u
: "${GPUSLICE:?GPUSLICE must point to the gpuslice binary}"
GS_TMP=$(mktemp -d /tmp/gpuslice-it.XXXXXX)
export GPUSLICE_STATE_DIR="$GS_TMP/state"
export GPUSLICE_BACKEND=host
GS_PIDS=()
GS_FAILED=0
GS_PASSED=0

gs_cleanup() {
  for p in "${GS_PIDS[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$GS_TMP"
}
trap gs_cleanup EXIT

gs() { "$GPUSLICE" "$@"; }

pass() { GS_PASSED=$((GS_PASSED + 1)); echo "ok - $1"; }
fail() { GS_FAILED=$((GS_FAILED + 1)); echo "not ok - $1"; [ $# -gt 1 ] && printf '  %s\n' "${@:2}"; }

# expect_exit CODE DESC -- CMD...: runs CMD, checks its exit status, keeps
# stdout in $OUT and stderr in $ERR for further checks.
expect_exit() {
  local want=$1 desc=$2; shift 3
  OUT=$("$@" 2>"$GS_TMP/stderr"); local got=$?
  ERR=$(cat "$GS_TMP/stderr")
  if [ "$got" -eq "$want" ]; then pass "$desc"; else
    fail "$desc" "exit $got, wanted $want" "stdout: $OUT" "stderr: $ERR"; fi
}

# contains TEXT PATTERN DESC: grep -E on TEXT.
contains() {
  if printf '%s' "$1" | grep -Eq -- "$2"; then pass "$3"; else
    fail "$3" "no /$2/ in:" "$1"; fi
}

# json_get JSON PYEXPR: evaluates a Python expression on the parsed doc `d`.
json_get() {
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"
}

finish() {
  echo "$GS_PASSED passed, $GS_FAILED failed"
  [ "$GS_FAILED" -eq 0 ]
}
