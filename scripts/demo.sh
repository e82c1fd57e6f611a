#!/usr/bin/env bash
# The main job: on a fresh Debian 12 machine as root, install what gpuslice
# needs, build it, make the demo's model and run `gpuslice demo` (NVIDIA's
# MIG flower demo on this machine: partition, serve on 1 then N instances,
# sweep concurrency, table and plot). Without a GPU it runs on the host
# backend. Extra arguments go to `gpuslice demo` (gpuslice demo --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DGS_TESTS=OFF >/dev/null
ninja -C build/release gpuslice >/dev/null
python3 scripts/make_models.py --out build/release/models
mkdir -p build/demo
exec build/release/gpuslice demo --model-repository build/release/models \
  --out build/demo "$@"
