#!/usr/bin/env bash
# Installs every system dependency of moe-mlir from Debian's own packages.
# Idempotent: when everything is present it changes nothing and exits quickly.
# Usage: scripts/setup.sh [--with-onnxruntime]
#   --with-onnxruntime  also install the optional ONNX Runtime oracle (npm, ~290 MB)
set -euo pipefail

REQUIRED_PACKAGES=(
  # Compiler toolchain and MLIR/LLVM 22 (bookworm-security).
  llvm-22-dev llvm-22-tools libmlir-22-dev mlir-22-tools clang-22 lld
  # clang's sanitizer and libFuzzer runtimes (the runtime's fuzz targets).
  libclang-rt-22-dev
  cmake ninja-build
  # Python: Debian's interpreter and the packages the tests use as references.
  python3 python3-numpy python3-pytest python3-torch python3-onnx
  # OpenBLAS for PyTorch (the reference runs faster; the benchmark peer).
  libopenblas0-pthread
  # The moe_mlir Python module (python-bindings/): pybind11 and the headers.
  pybind11-dev python3-pybind11 python3-dev
  # ONNX importer.
  libonnx-dev libprotobuf-dev protobuf-compiler
  # Expert-parallel runtime (MPI backend).
  openmpi-bin libopenmpi-dev
)

missing=()
for pkg in "${REQUIRED_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing packages: ${missing[*]} (run as root to install them)" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "setup: all system packages present"
fi

# The optional ONNX Runtime oracle (npm onnxruntime-node, ~290 MB). Its
# post-install step downloads GPU binaries, which this machine cannot reach:
# skip it, the CPU build is in the package. A failure here is not fatal: the
# tests that need ONNX Runtime are then reported as skipped.
if [[ "${1:-}" == "--with-onnxruntime" ]]; then
  here=$(cd "$(dirname "$0")/.." && pwd)
  if [[ ! -f "$here/third_party/ort/node_modules/onnxruntime-node/package.json" ]]; then
    if ! command -v npm >/dev/null 2>&1 && [[ $(id -u) -eq 0 ]]; then
      apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null || true
    fi
    mkdir -p "$here/third_party/ort"
    if ! (cd "$here/third_party/ort" &&
          npm install --silent --no-audit --no-fund onnxruntime-node@1.30.0 \
            --onnxruntime-node-install=skip >/dev/null 2>&1); then
      echo "setup: WARNING: could not install onnxruntime-node; ONNX Runtime comparisons will be skipped" >&2
    fi
  fi
fi
