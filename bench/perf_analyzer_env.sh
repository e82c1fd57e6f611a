# Finds or makes a working perf_analyzer (sourced, not run) and sets
# PERF_ANALYZER to its path, or PA_WHY to why there is none.
#
# Where the binary comes from: the PyPI package `perf-analyzer` is a 0.1.0
# placeholder (`Summary: Placeholder`, no binary). The real binary ships in
# the manylinux1 wheels of `tritonclient` (tritonclient-X.data/data/bin/).
# 2.51.0 is the newest one that loads on Debian 12 (glibc 2.36): 2.52.0 to
# 2.60.0 need GLIBC_2.38 and GLIBCXX_3.4.32, and 2.73.0 is pure Python with
# no binary. It links libb64.so.0d (Debian: libb64-0d) and libcudart.so.12
# (PyPI: nvidia-cuda-runtime-cu12; loaded, never used without a GPU).
#
# In: PA_VENV (venv to reuse or create), PERF_ANALYZER (use as is if set).
PA_TRITONCLIENT=${PA_TRITONCLIENT:-tritonclient[http]==2.51.0}
PA_WHY=

pa_find() {
  local venv=$1 py cudart
  if [ -z "${PERF_ANALYZER:-}" ]; then
    py=$(command -v python3 || echo /usr/bin/python3)
    if [ ! -x "$venv/bin/perf_analyzer" ]; then
      "$py" -m venv "$venv" &&
        "$venv/bin/pip" install -q "$PA_TRITONCLIENT" nvidia-cuda-runtime-cu12 \
          >"$venv.pip.log" 2>&1
    fi
    if [ ! -x "$venv/bin/perf_analyzer" ]; then
      PA_WHY="pip could not install $PA_TRITONCLIENT: $(tail -2 "$venv.pip.log" 2>/dev/null)"
      return 1
    fi
    PERF_ANALYZER=$venv/bin/perf_analyzer
    cudart=$(ls -d "$venv"/lib/python3*/site-packages/nvidia/cuda_runtime/lib 2>/dev/null | head -1)
    [ -n "$cudart" ] && export LD_LIBRARY_PATH=$cudart${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  fi
  local missing
  missing=$(ldd "$PERF_ANALYZER" 2>&1 | grep -E 'not found' | tr -s ' \t' ' ')
  if [ -n "$missing" ]; then
    PA_WHY="perf_analyzer cannot load:$missing (libb64.so.0d: apt-get install libb64-0d)"
    return 1
  fi
  if ! "$PERF_ANALYZER" --version >/dev/null 2>&1; then
    PA_WHY="perf_analyzer does not run: $("$PERF_ANALYZER" --version 2>&1 | head -2)"
    return 1
  fi
  export PERF_ANALYZER
}
