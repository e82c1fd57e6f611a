#!/usr/bin/env bash
# Builds, on this (Debian 12) machine, the GPU kit: one folder that travels
# to the GPU machine (Ubuntu 24.04, glibc 2.39, no libuv, libyaml,
# protobuf-c, http-parser) and holds everything tests/gpu/run_on_device.sh
# runs there:
#   gpuslice      the full CLI (worker, serve, perf, demo, engine) from the
#                 project's CMake build, debug info stripped
#   nvml_record   the NVML recorder (CMake target, tests/CMakeLists.txt)
#   probe_sm probe_alloc probe_fault   CUDA probes, nvcc, static cudart
#   engine_bench_gpu run_node_tests   the engine's GPU check and the ONNX
#                 node test runner (tests/gpu/engine_check.sh runs both)
#   node/ node_skips_cuda.txt   the ONNX node tests of the CUDA provider's ops, copied from
#                 Debian's libonnx-testdata (GS_NODE_TESTS; the GPU machine
#                 has no such package): --list-node-tests prints them
#   lib/          every shared object those link that is neither glibc's,
#                 libstdc++/libgcc_s (Ubuntu 24.04 has newer ones) nor
#                 NVIDIA's (the GPU machine's driver and CUDA 13 provide
#                 them), plus shared objects the build makes outside tests/
#   KIT.txt       commit, build, files and sizes
# run_on_device.sh puts lib/ on LD_LIBRARY_PATH itself.
#
# usage: tests/gpu/build_carry.sh [-B BUILD_DIR] [--no-build] [OUTDIR]
#        tests/gpu/build_carry.sh --check KITDIR   (only the checks below)
#        tests/gpu/build_carry.sh --list-node-tests   (the node tests carried)
#   OUTDIR     default .gpukit (replaced as a whole)
#   BUILD_DIR  default build/gpukit, configured Release when it has no
#              CMakeCache.txt; its targets gpuslice-cli and nvml_record
#              are built unless --no-build (then they must exist: ctest
#              passes its own build dir). Sanitizer and fuzz builds are
#              refused: they cannot be carried.
# Fails (exit 1) when nvcc is missing (NVCC, PATH, /usr/local/cuda/bin), a
# dependency resolves neither to OUTDIR/lib nor to the base system, a file
# needs a glibc newer than the GPU machine's, the carried gpuslice does not
# start with only OUTDIR/lib added, or the kit exceeds GS_KIT_MAX_MIB (52:
# the device tool carries 64 MiB in all, the tree about 4 of them).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=$root/build/gpukit
do_build=1 check_only=0 list_only=0
while [[ $# -gt 0 ]]; do
  case $1 in
  -B) build=${2:?-B needs a directory}; shift 2 ;;
  --no-build) do_build=0; shift ;;
  --check) check_only=1; shift ;;
  --list-node-tests) list_only=1; shift ;;
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  -*) echo "build_carry: unknown option $1" >&2; exit 2 ;;
  *) break ;;
  esac
done
out=${1:-$root/.gpukit}
max_mib=${GS_KIT_MAX_MIB:-52}
# The GPU machine's glibc: nothing carried may need a newer symbol version.
target_glibc=2.39
# Found on every Linux the kit goes to, in versions at least Debian 12's.
# The node tests of the CUDA provider's ops (named as run_node_tests names
# an op's tests: test_<op> or test_<op>_...), BatchNormalization's too (the
# provider runs it only folded into a Conv: its own tests are expected
# skips, tests/engine/node_skips_cuda.txt).
node_src=${GS_NODE_TESTS:-/usr/share/libonnx-testdata/data/node}
node_re='^test_(conv|maxpool|averagepool|globalaveragepool|gemm|matmul|add|sub|mul|div|relu|clip|sigmoid|tanh|softmax|flatten|reshape|identity|batchnorm)(_|$)'
list_node_tests() {
  [[ -d $node_src ]] || die "no ONNX node tests at $node_src (Debian: apt-get install libonnx-testdata; or GS_NODE_TESTS)"
  find "$node_src" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | grep -E "$node_re" | sort
}
base_re='^(linux-vdso\.so|ld-linux-x86-64\.so|lib(c|m|dl|pthread|rt|resolv|util|stdc\+\+|gcc_s)\.so)'
# The GPU machine's driver and CUDA toolkit provide these.
nvidia_re='^lib(cuda|cudart|cublas|cublasLt|cudnn[a-z_]*|nvrtc|nvidia-[a-z-]*|nvJitLink|cufft|curand|cusparse|cusolver)\.so'

die() { echo "build_carry: $*" >&2; exit 1; }

# ---- checks --------------------------------------------------------------
# check_kit DIR: 0 when DIR is fit to carry, else 1 with the reasons.
check_kit() {
  local out=$1 status=0 f line name path need state kib elves
  elves=("$out"/gpuslice "$out"/nvml_record "$out"/engine_bench_gpu "$out"/run_node_tests "$out"/probe_* "$out"/lib/*)
  for f in "${elves[@]}"; do
    # With lib/ first on the path, everything not base or NVIDIA must come
    # from the kit, not from this machine's /usr/lib.
    while read -r line; do
      name=${line%% *}
      [[ $name =~ $base_re || $name =~ ^/ ]] && continue
      path=$(sed -n 's/.*=> \([^ ]*\).*/\1/p' <<<"$line")
      [[ $path == not ]] && path=""
      if [[ $name =~ $nvidia_re ]]; then
        continue
      elif [[ $path == "$out/lib/"* ]]; then
        continue
      fi
      echo "build_carry: ${f#"$out"/} needs $name, found ${path:-nowhere} (not in the kit)" >&2
      status=1
    done < <(LD_LIBRARY_PATH=$out/lib ldd "$f" | sed 's/^[[:space:]]*//')
    need=$(objdump -T "$f" 2>/dev/null | grep -o 'GLIBC_2\.[0-9.]*' | sort -uV | tail -n 1)
    if [[ -n $need ]] && [[ $(printf '%s\n' "${need#GLIBC_}" "$target_glibc" | sort -V | tail -n 1) != "$target_glibc" ]]; then
      echo "build_carry: ${f#"$out"/} needs $need, newer than the GPU machine's $target_glibc" >&2
      status=1
    fi
  done
  state=$(mktemp -d)
  if ! LD_LIBRARY_PATH=$out/lib "$out/gpuslice" --help >/dev/null ||
    ! LD_LIBRARY_PATH=$out/lib "$out/gpuslice" --backend host \
      --state-dir "$state" info >/dev/null; then
    echo "build_carry: the carried gpuslice does not run (--help, info)" >&2
    status=1
  fi
  rm -rf "$state"
  for f in gpuslice nvml_record engine_bench_gpu run_node_tests probe_sm probe_alloc probe_fault; do
    [[ -x $out/$f ]] || { echo "build_carry: $f missing from $out" >&2; status=1; }
  done
  if ! ls "$out"/node/*/model.onnx >/dev/null 2>&1; then
    echo "build_carry: no ONNX node tests in $out/node" >&2
    status=1
  fi
  kib=$(du -sk "$out" | cut -f1)
  if [[ $kib -gt $((max_mib * 1024)) ]]; then
    echo "build_carry: the kit is $((kib / 1024)) MiB, over $max_mib MiB" >&2
    status=1
  fi
  return $status
}
if [[ $list_only -eq 1 ]]; then
  list_node_tests
  exit 0
fi
if [[ $check_only -eq 1 ]]; then
  [[ -d $out ]] || die "no kit at $out"
  check_kit "$(cd "$out" && pwd)" || die "the kit in $out is not fit to carry"
  echo "build_carry: $out is fit to carry"
  exit 0
fi

nvcc=${NVCC:-$(command -v nvcc || true)}
[[ -n $nvcc ]] || nvcc=/usr/local/cuda/bin/nvcc
[[ -x $nvcc ]] || die "nvcc not found ($nvcc; NVCC, PATH, /usr/local/cuda/bin): the probes need the CUDA toolkit"

# ---- the project's build -------------------------------------------------
build=$(mkdir -p "$build" && cd "$build" && pwd)
if [[ $do_build -eq 1 ]]; then
  if [[ ! -f $build/CMakeCache.txt ]]; then
    gen=()
    command -v ninja >/dev/null && gen=(-G Ninja)
    cmake -S "$root" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
      -DGS_TESTS=ON -DGS_SANITIZE=OFF -DGS_FUZZ=OFF >/dev/null
  fi
  nice -n 10 cmake --build "$build" --target gpuslice-cli nvml_record engine_bench_gpu run_node_tests
fi
[[ -f $build/CMakeCache.txt ]] || die "$build is not a CMake build directory"
if grep -Eq '^GS_(SANITIZE|FUZZ):BOOL=ON' "$build/CMakeCache.txt"; then
  die "$build is a sanitizer or fuzz build: carry a plain one"
fi
gpuslice_bin=$build/gpuslice
nvml_bin=$build/tests/nvml_record
engine_bin=$build/engine_bench_gpu
node_bin=$build/tests/run_node_tests
for f in "$gpuslice_bin" "$nvml_bin" "$engine_bin" "$node_bin"; do
  [[ -x $f ]] || die "$f missing: build the targets gpuslice-cli, nvml_record, engine_bench_gpu and run_node_tests"
done
node_tests=$(list_node_tests)

# ---- the kit -------------------------------------------------------------
if [[ -d $out && ! -f $out/KIT.txt && -n $(ls -A "$out") ]]; then
  die "$out holds something other than a kit: not replacing it"
fi
rm -rf "$out"
mkdir -p "$out/lib"
out=$(cd "$out" && pwd)
objcopy --strip-debug "$gpuslice_bin" "$out/gpuslice"
objcopy --strip-debug "$nvml_bin" "$out/nvml_record"
# The engine's GPU check (tests/gpu/engine_check.sh) runs these two.
objcopy --strip-debug "$engine_bin" "$out/engine_bench_gpu"
cp "$root/bench/gpu/torch_resnet50.py" "$out/"
objcopy --strip-debug "$node_bin" "$out/run_node_tests"
mkdir -p "$out/node"
cp "$root/tests/engine/node_skips_cuda.txt" "$out/"
for t in $node_tests; do cp -r "$node_src/$t" "$out/node/"; done

pids=()
for p in sm alloc fault; do
  "$nvcc" -O2 -gencode 'arch=compute_90,code=[sm_90,compute_90]' \
    -cudart static -o "$out/probe_$p" "$root/tests/gpu/probe_$p.cu" &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || die "nvcc failed"; done
strip "$out"/probe_* # the static CUDA runtime's symbols: 0.3 MiB each

# Shared objects the build makes outside tests/ (loaded with dlopen, which
# ldd does not see); none today. Only CMake's own outputs: a build
# directory also holds the tests' Python venvs, full of .so files.
if [[ -f $build/build.ninja ]]; then
  built_so=$(ninja -C "$build" -t targets all |
    sed -n 's/^\([^:]*\.so[.0-9]*\): [A-Z]*_\(SHARED\|MODULE\)_LIBRARY_LINKER.*/\1/p' | grep -v '^tests/' || true)
else
  built_so=$(cd "$build" && find . -maxdepth 1 -name '*.so*' -type f)
fi
for so in $built_so; do
  cp -L "$build/$so" "$out/lib/"
done

# Every dependency that is not base or NVIDIA goes into lib/, under the
# name the loader asks for; ldd lists the whole closure (openblas brings
# libgfortran, which brings libquadmath).
declare -A device_libs=()
for f in "$out"/gpuslice "$out"/nvml_record "$out"/engine_bench_gpu "$out"/run_node_tests "$out"/probe_* "$out"/lib/*; do
  [[ -f $f ]] || continue
  while read -r name _ path _; do
    [[ $name =~ $base_re || -z $path || $path != /* ]] && continue
    if [[ $name =~ $nvidia_re ]]; then
      device_libs[$name]=1
      continue
    fi
    [[ -f $out/lib/$name ]] || cp -L "$path" "$out/lib/$name"
  done < <(ldd "$f" | grep '=>')
done
chmod -R u+w,a+rX "$out"

status=0
check_kit "$out" || status=1
kib=$(du -sk "$out" | cut -f1)

{
  echo "gpuslice GPU kit (tests/gpu/build_carry.sh)"
  echo "commit:  $(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)$(
    git -C "$root" diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "built:   $(date -u '+%Y-%m-%d %H:%M UTC') on $(. /etc/os-release && echo "$PRETTY_NAME")"
  echo "build:   $build ($(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$build/CMakeCache.txt"))"
  echo "nvcc:    $("$nvcc" --version | tail -n 1)"
  device=${!device_libs[*]}
  echo "device:  ${device:-no NVIDIA library linked} (from the GPU machine)"
  echo "size:    $((kib / 1024)) MiB"
  echo "node/:   $(find "$out/node" -mindepth 1 -maxdepth 1 -type d | wc -l) ONNX node tests, $(du -sk "$out/node" | cut -f1) KiB, from $node_src"
  (cd "$out" && find . -type f ! -name KIT.txt ! -path './node/*' -printf '%P %s\n' | sort)
} >"$out/KIT.txt"
cat "$out/KIT.txt"
[[ $status -eq 0 ]] || die "the kit in $out is not fit to carry"
echo "build_carry: done: $out ($((kib / 1024)) MiB); on the GPU machine:" \
  "GS_CARRY=$out bash tests/gpu/run_on_device.sh \$OUT"
