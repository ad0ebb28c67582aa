#!/usr/bin/env bash
# Configures (once) and builds moe-mlir with Ninja, clang-22, lld and the
# shared libMLIR.so. Warnings are errors: the build is kept warnings-free.
# Environment: MOE_MLIR_BUILD_DIR (default: build), CMAKE_BUILD_TYPE (Release).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${MOE_MLIR_BUILD_DIR:-$root/build}

if [[ ! -f "$build/build.ninja" ]]; then
  cmake -G Ninja -S "$root" -B "$build" \
    -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-Release}" \
    -DCMAKE_C_COMPILER=clang-22 -DCMAKE_CXX_COMPILER=clang++-22 \
    -DLLVM_USE_LINKER=lld \
    -DMLIR_DIR=/usr/lib/llvm-22/lib/cmake/mlir \
    -DLLVM_EXTERNAL_LIT=/usr/lib/llvm-22/bin/lit \
    -DMLIR_LINK_MLIR_DYLIB=ON \
    -DPython3_EXECUTABLE=/usr/bin/python3 \
    -DMOE_MLIR_WERROR=ON
fi
cmake --build "$build"
