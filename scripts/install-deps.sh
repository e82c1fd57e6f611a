#!/usr/bin/env bash
# Installs what gpuslice needs to build and test on Debian 12 (run as root).
# Each package and why: docs/DEPENDENCIES.md.
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config clang clang-format libclang-rt-14-dev
      libyaml-dev libjansson-dev libcurl4-openssl-dev libcmocka-dev python3 libb64-0d
      libprotobuf-c-dev protobuf-c-compiler libprotobuf-dev protobuf-compiler
      libonnx-dev libonnx-testdata
      libopenblas-dev python3-onnx python3-numpy
      libuv1-dev libhttp-parser-dev python3-venv curl libnghttp2-dev procps
      zlib1g-dev python3-jsonschema python3-yaml podman runc busybox-static
      python3-prometheus-client)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages (${missing[*]}); run as root" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
