#!/usr/bin/env bash
# ctest gpu_kit.build_carry: the GPU kit builds from this tree's CMake build
# (GS_BUILD_DIR, the ctest build dir, not rebuilt) and is complete: the
# binaries, every library they link that the GPU machine lacks, nothing
# resolved from this machine's /usr/lib once the kit's lib/ is on the path,
# the carried gpuslice runs `--help` and `info`, and the carried
# run_node_tests passes the carried ONNX node tests on the CPU. nvcc is required (CI has
# it): without it this fails rather than skips. Then the checker is shown to
# notice a kit with a library taken out. About 5 s (three nvcc compiles).
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=${GS_BUILD_DIR:?GS_BUILD_DIR: the CMake build directory}
tmp=$(mktemp -d /tmp/gs-kit-test-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fails=0
ok() { echo "ok: $1"; }
bad() { echo "FAIL: $1"; fails=$((fails + 1)); }

start=$SECONDS
if bash "$here/build_carry.sh" -B "$build" --no-build "$tmp/kit" >"$tmp/log" 2>&1; then
  ok "build_carry.sh made a kit in $((SECONDS - start)) s"
else
  cat "$tmp/log"
  bad "build_carry.sh failed"
  exit 1
fi
cat "$tmp/kit/KIT.txt"

# Independently of build_carry.sh's own checks: every library the build's
# gpuslice links from outside glibc/libstdc++/libgcc_s is in lib/.
while read -r name _ path _; do
  case $name in
  linux-vdso* | ld-linux* | libc.so* | libm.so* | libdl.so* | libpthread.so* | \
    librt.so* | libstdc++.so* | libgcc_s.so*) continue ;;
  esac
  if [[ -f $tmp/kit/lib/$name ]] && cmp -s "$path" "$tmp/kit/lib/$name"; then
    ok "$name carried ($(du -k "$tmp/kit/lib/$name" | cut -f1) KiB)"
  else
    bad "$name ($path) not carried"
  fi
done < <(ldd "$build/gpuslice" | grep '=> /')
out=$(LD_LIBRARY_PATH=$tmp/kit/lib ldd "$tmp/kit/gpuslice" | grep '=> /' |
  grep -v "=> $tmp/kit/lib/" | grep -Ev '^\s*lib(c|m|gcc_s|stdc\+\+)\.so')
[[ -z $out ]] && ok "carried gpuslice: no library from outside the kit but glibc's" ||
  bad "carried gpuslice resolves outside the kit: $out"
LD_LIBRARY_PATH=$tmp/kit/lib "$tmp/kit/gpuslice" --help | grep -q '^  serve ' &&
  ok "carried gpuslice --help (with serve)" || bad "carried gpuslice --help"
LD_LIBRARY_PATH=$tmp/kit/lib "$tmp/kit/gpuslice" --backend host --state-dir "$tmp/state" info |
  grep -q '^backend: *host' && ok "carried gpuslice info" || bad "carried gpuslice info"
for p in probe_sm probe_alloc probe_fault; do
  # Built for sm_90 with the static CUDA runtime: no libcudart to carry.
  if ldd "$tmp/kit/$p" | grep -q cudart; then bad "$p links libcudart"; else ok "$p: static cudart"; fi
done

# The carried node test runner runs the carried node tests (on the CPU here;
# engine_check.sh runs them with --provider cuda on the GPU machine).
n_src=$(bash "$here/build_carry.sh" --list-node-tests | wc -l)
n_kit=$(find "$tmp/kit/node" -mindepth 1 -maxdepth 1 -type d | wc -l)
[[ $n_kit -gt 0 && $n_kit -eq $n_src ]] && ok "$n_kit node tests carried ($(du -sk "$tmp/kit/node" | cut -f1) KiB)" ||
  bad "node tests: $n_kit carried, $n_src selected"
if LD_LIBRARY_PATH=$tmp/kit/lib "$tmp/kit/run_node_tests" --provider cpu \
  --expected-skips "$here/../engine/node_skips.txt" "$tmp/kit/node" >"$tmp/node.log" 2>&1; then
  ok "carried run_node_tests on the carried tests (cpu): $(tail -n 1 "$tmp/node.log")"
else
  bad "carried run_node_tests (cpu): $(grep -E '^FAIL|passed' "$tmp/node.log" | head -n 5)"
fi

# The checker notices a broken kit.
rm "$tmp/kit/lib/libyaml-0.so.2"
if bash "$here/build_carry.sh" --check "$tmp/kit" >"$tmp/check.log" 2>&1; then
  bad "--check passed a kit without libyaml"
else
  grep -q 'libyaml-0.so.2, found /' "$tmp/check.log" &&
    ok "--check names libyaml resolved from outside the kit" ||
    bad "--check failed without naming libyaml: $(cat "$tmp/check.log")"
fi

echo "test_build_carry: $fails failure(s) in $SECONDS s"
[[ $fails -eq 0 ]]
