#!/usr/bin/env bash
# The README's first command: installs what is missing, builds, and runs the
# main job on the built-in example. For now that is a moe-opt pipeline over a
# DeepSeek-V3-style MoE layer (sigmoid router with selection bias and expert
# groups, routed experts and a shared expert), printed back after
# verification, canonicalization and CSE.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${MOE_MLIR_BUILD_DIR:-$root/build}

"$root/scripts/setup.sh"
"$root/scripts/build.sh"

example="$root/examples/deepseek_v3_moe_layer.mlir"
pipeline='builtin.module(func.func(canonicalize,cse))'
echo
echo "== moe-opt --pass-pipeline='$pipeline' $(basename "$example")"
"$build/bin/moe-opt" --pass-pipeline="$pipeline" "$example"
