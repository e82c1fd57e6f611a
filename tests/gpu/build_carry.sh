#!/usr/bin/env bash
# Builds, on this (Debian 12) machine, everything tests/gpu/run_on_device.sh
# runs on the GPU machine, into .carry/ (git ignores it; name it in the
# device tool's `carry`): the gpuslice CLI and nvml_record with libyaml and
# jansson linked statically (the GPU machine has no libyaml), and the CUDA
# probes with the static CUDA runtime. Checks that the results need nothing
# beyond glibc, libstdc++ and the NVIDIA driver.
# usage: tests/gpu/build_carry.sh [OUTDIR]   (default .carry)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
out=${1:-.carry}
libdir=/usr/lib/x86_64-linux-gnu

for lib in libyaml.a libjansson.a; do
  if [[ ! -f $libdir/$lib ]]; then
    echo "build_carry: $libdir/$lib missing (apt-get install libyaml-dev" \
      "libjansson-dev)" >&2
    exit 1
  fi
done
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
if ! command -v nvcc >/dev/null; then
  echo "build_carry: nvcc not found (CUDA toolkit)" >&2
  exit 1
fi

make -f tests/gpu/Makefile -j"$(nproc)" OUT="$out" all

# Only system libraries may remain dynamic: glibc's, libstdc++/libgcc_s
# (the probes' C++ runtime; Ubuntu 24.04 has newer ones) and nothing else.
status=0
for bin in gpuslice nvml_record probe_sm probe_alloc probe_fault; do
  extra=$(ldd "$out/$bin" | awk '{print $1}' |
    grep -Ev '^(linux-vdso\.|/lib64/ld-linux|lib(c|m|dl|pthread|rt|stdc\+\+|gcc_s)\.so)' ||
    true)
  if [[ -n $extra ]]; then
    echo "build_carry: $out/$bin needs $extra, which the GPU machine may lack" >&2
    status=1
  fi
done
du -sh "$out"
echo "build_carry: done; run on the GPU machine with carry [\"$out\"]:" \
  "bash tests/gpu/run_on_device.sh \$OUT"
exit "$status"
