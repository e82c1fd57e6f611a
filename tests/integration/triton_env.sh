# shellcheck shell=bash
# Triton's Python client for the integration tests (sourced, not run).
#
# triton_python [PKG...]: sets TRITON_PY to a Python with
# tritonclient[http,grpc] and numpy from PyPI (plus each pip spec PKG), or
# leaves it empty, sets TRITON_WHY to why (the last lines of pip's log) and
# returns 1. What a test does then is its own: most skip (77), the serve
# tests fail (PyPI is reachable on CI, where every skip must be listed in
# tests/expected_skips.txt).
#
# One venv serves every test: $GS_TRITON_VENV (tests/CMakeLists.txt sets
# the build dir's pyenv-triton), else a private one in the test's temp dir.
# It is made and added to under flock on $venv.lock, so tests started
# together (ctest -j) wait for the first maker instead of racing it. Each
# spec installed is a line of $venv/gs-installed, written only once pip and
# an import of the client succeeded: a venv without it, or whose client no
# longer imports, is made again; a spec not listed is installed into it.
# GS_TRITONCLIENT replaces the client's spec (default tritonclient[http,grpc]).
TRITON_PY=
TRITON_WHY=

triton_python() {
  local venv=${GS_TRITON_VENV:-${tmp:-${GS_TMP:?}}/triton-venv}
  local stamp log fd spec rc=0 want=()
  local imports='import numpy, tritonclient.http.aio, tritonclient.grpc.aio'
  stamp=$venv/gs-installed log=$venv.pip.log
  TRITON_PY='' TRITON_WHY=''
  mkdir -p "$(dirname "$venv")" || { TRITON_WHY="cannot make $(dirname "$venv")"; return 1; }
  { exec {fd}>"$venv.lock" && flock "$fd"; } 2>/dev/null ||
    { TRITON_WHY="cannot lock $venv.lock"; return 1; }
  if [ -f "$stamp" ] && "$venv/bin/python" -c "$imports" 2>/dev/null; then
    for spec in "${GS_TRITONCLIENT:-tritonclient[http,grpc]}" numpy "$@"; do
      grep -qxF -- "$spec" "$stamp" || want+=("$spec")
    done
  else
    want=("${GS_TRITONCLIENT:-tritonclient[http,grpc]}" numpy "$@")
    rm -rf "$venv"
    "$(command -v python3 || echo /usr/bin/python3)" -m venv "$venv" >"$log" 2>&1 || rc=1
  fi
  if [ $rc -eq 0 ] && [ ${#want[@]} -gt 0 ]; then
    if "$venv/bin/pip" install -q "${want[@]}" >>"$log" 2>&1 &&
      "$venv/bin/python" -c "$imports" >>"$log" 2>&1; then
      printf '%s\n' "${want[@]}" >>"$stamp"
    else
      rc=1
    fi
  fi
  exec {fd}>&-
  if [ $rc -ne 0 ]; then
    TRITON_WHY="pip could not install ${want[*]} into $venv: $(tail -3 "$log" 2>/dev/null)"
    return 1
  fi
  TRITON_PY=$venv/bin/python
}
