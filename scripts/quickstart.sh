#!/usr/bin/env bash
# The README's first command: installs what is missing, builds, and runs the
# main job on the built-in example: a small DeepSeek-V3-style model (MLA with
# q LoRA and a latent cache, sigmoid router with a correction bias and expert
# groups, routed and shared experts; random weights) is written in the real
# Hugging Face format (config.json + safetensors), compiled ahead of time to
# a shared library, and asked to generate tokens greedily.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${MOE_MLIR_BUILD_DIR:-$root/build}

"$root/scripts/setup.sh"
"$root/scripts/build.sh"

work=${MOE_MLIR_EXAMPLE_DIR:-$build/example}
model="$work/deepseek-v3-small"
rm -rf "$model"
mkdir -p "$work"
echo
echo "== writing a small DeepSeek-V3-style checkpoint to $model"
/usr/bin/python3 "$root/scripts/gen_hf_checkpoint.py" \
  --model-type deepseek_v3 --dtype bfloat16 --out "$model" --seed 1 \
  --set hidden_size=256 --set intermediate_size=512 \
  --set moe_intermediate_size=128 --set num_hidden_layers=4 \
  --set n_routed_experts=16 --set num_experts_per_tok=4 \
  --set n_group=4 --set topk_group=2 --set vocab_size=1024 \
  --set num_attention_heads=8 --set q_lora_rank=96 --set kv_lora_rank=64 \
  --set qk_nope_head_dim=32 --set qk_rope_head_dim=16 --set v_head_dim=32
echo "== moe-compile $model -o $work/deepseek-v3-small.so"
"$build/bin/moe-compile" "$model" -o "$work/deepseek-v3-small.so" \
  --header "$work/deepseek-v3-small.h"
echo "== moe-run deepseek-v3-small.so --tokens 1,2,3,4,5,6,7,8 --generate 32"
"$build/bin/moe-run" "$work/deepseek-v3-small.so" \
  --tokens 1,2,3,4,5,6,7,8 --generate 32
