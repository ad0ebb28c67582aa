#!/usr/bin/env bash
# The README's first command: installs what is missing, builds, and runs the
# main job on the built-in example. For now that is a moe-opt pipeline over a
# DeepSeek-V3-style MoE layer (sigmoid router with selection bias and expert
# groups, routed experts and a shared expert): the router's logits matmul is
# materialized as linalg (the first step of lowering), then canonicalized.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${MOE_MLIR_BUILD_DIR:-$root/build}

"$root/scripts/setup.sh"
"$root/scripts/build.sh"

example="$root/examples/deepseek_v3_moe_layer.mlir"
pipeline='builtin.module(func.func(moe-materialize-router-logits,canonicalize,cse))'
echo
echo "== moe-opt --pass-pipeline='$pipeline' $(basename "$example")"
"$build/bin/moe-opt" --pass-pipeline="$pipeline" "$example"
