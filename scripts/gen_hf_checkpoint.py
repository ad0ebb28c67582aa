#!/usr/bin/env python3
"""Writes small random checkpoints in the real Hugging Face layout.

A checkpoint is a directory with `config.json` (the field names the HF
configuration classes use for the model type) and the weights as safetensors:
either one `model.safetensors`, or `model-0000i-of-0000n.safetensors` shards
listed by `model.safetensors.index.json` (the names `save_pretrained` uses).
Tensor names and shapes are those of the published HF checkpoints
(nn.Linear weights are [out_features, in_features]).

    gen_hf_checkpoint.py --model-type deepseek_v3 --out /tmp/ds3
    gen_hf_checkpoint.py --model-type qwen2_moe --out /tmp/q2 --dtype bfloat16 --shards 3
    gen_hf_checkpoint.py --model-type deepseek_v2 --out /tmp/ds2 \\
        --set topk_method='"group_limited_greedy"'
    gen_hf_checkpoint.py --model-type deepseek_v3 --preset real --config-only --out /tmp/v3cfg

Properties the tests rely on:
* Deterministic: the bytes written depend only on the arguments.  Every
  tensor draws from its own numpy Generator seeded by (seed, model type,
  tensor name), so a tensor's values do not depend on which other tensors
  exist (e.g. --tie-word-embeddings keeps the embedding unchanged).
* Tensors are stored in a seeded random order (and spread over the shards in
  that order), so a reader cannot assume that the experts of a layer, or the
  tensors of a layer, are adjacent or in one shard.
* Well conditioned: linear weights ~ N(0, 1/fan_in), RMSNorm weights
  ~ 1 + 0.1 N(0,1), embeddings ~ N(0,1), router weights ~ N(0, 9/fan_in)
  (router logits of a normalized token have a standard deviation near 3, so
  the expert choice is rarely a near tie), lm_head ~ N(0, 4/fan_in) (greedy
  decoding has clear winners).
* bfloat16 values are the round-to-nearest-even bfloat16 of the float32
  draws (the upper 16 bits after rounding); float16 uses IEEE
  round-to-nearest-even.  DeepSeek-V3's e_score_correction_bias is always
  stored as F32, as in the published checkpoint (HF keeps it in float32).

`--set key=JSON` (repeatable) overrides or adds a config field before the
weights are made, and `--unset key` removes one, so tests can also produce
inconsistent configs; a dotted key (`rope_scaling.factor=8`) sets a field of a
nested object.  The weights always follow the final config's sizes.
"""

import argparse
import copy
import json
import math
import os
import struct
import sys
import zlib

import numpy as np

MODEL_TYPES = ("mixtral", "qwen2_moe", "qwen3_moe", "deepseek_v2", "deepseek_v3")
DTYPES = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}
ITEM_SIZE = {"F32": 4, "BF16": 2, "F16": 2}

# ---------------------------------------------------------------------------
# Configurations
# ---------------------------------------------------------------------------

# Tiny configurations: hidden 64, 4 heads, vocab 256, 3-4 layers, chosen so
# that every model exercises its unusual paths (see the comments).
TINY = {
    "mixtral": {
        "architectures": ["MixtralForCausalLM"],
        "model_type": "mixtral",
        "vocab_size": 256,
        "hidden_size": 64,
        # Mixtral's experts use intermediate_size (there is no separate
        # moe_intermediate_size); every layer is a MoE layer.
        "intermediate_size": 96,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,          # GQA, 2 query heads per KV head
        "num_local_experts": 6,            # not a multiple of 8
        "num_experts_per_tok": 2,
        "hidden_act": "silu",
        "max_position_embeddings": 512,
        "rms_norm_eps": 1e-5,
        "rope_theta": 1000000.0,
        "rope_scaling": None,
        "sliding_window": None,
        "attention_dropout": 0.0,
        "router_aux_loss_coef": 0.02,
        "router_jitter_noise": 0.0,
        "output_router_logits": False,
        "initializer_range": 0.02,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "tie_word_embeddings": False,
        "use_cache": True,
    },
    "qwen2_moe": {
        "architectures": ["Qwen2MoeForCausalLM"],
        "model_type": "qwen2_moe",
        "vocab_size": 256,
        "hidden_size": 64,
        "intermediate_size": 128,          # the dense MLP of mlp_only_layers
        "moe_intermediate_size": 32,
        "shared_expert_intermediate_size": 64,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "num_experts": 12,
        "num_experts_per_tok": 3,
        "norm_topk_prob": False,           # Qwen1.5/Qwen2 MoE do not renormalize
        "decoder_sparse_step": 1,
        "mlp_only_layers": [2],            # layers 0, 1, 3 MoE; layer 2 dense
        # No "qkv_bias" field, as in the published Qwen1.5-MoE / Qwen2-57B
        # configs: HF defaults it to true (q/k/v biases, none on o_proj).
        "hidden_act": "silu",
        "max_position_embeddings": 512,
        "max_window_layers": 4,
        "use_sliding_window": False,
        "sliding_window": None,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "rope_scaling": None,
        "attention_dropout": 0.0,
        "router_aux_loss_coef": 0.001,
        "output_router_logits": False,
        "initializer_range": 0.02,
        "bos_token_id": 0,
        "eos_token_id": 0,
        "tie_word_embeddings": False,
        "use_cache": True,
    },
    "qwen3_moe": {
        "architectures": ["Qwen3MoeForCausalLM"],
        "model_type": "qwen3_moe",
        "vocab_size": 256,
        "hidden_size": 64,
        "intermediate_size": 128,
        "moe_intermediate_size": 32,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 32,                    # != hidden_size / heads, as in Qwen3
        "num_experts": 10,
        "num_experts_per_tok": 2,
        "norm_topk_prob": True,
        "decoder_sparse_step": 2,          # layers 1 and 3 MoE, 0 and 2 dense
        "mlp_only_layers": [],
        "attention_bias": False,
        "hidden_act": "silu",
        "max_position_embeddings": 512,
        "max_window_layers": 4,
        "use_sliding_window": False,
        "sliding_window": None,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "rope_scaling": None,
        "attention_dropout": 0.0,
        "router_aux_loss_coef": 0.001,
        "output_router_logits": False,
        "initializer_range": 0.02,
        "bos_token_id": 0,
        "eos_token_id": 0,
        "tie_word_embeddings": False,
        "use_cache": True,
    },
    "deepseek_v2": {
        "architectures": ["DeepseekV2ForCausalLM"],
        "model_type": "deepseek_v2",
        "vocab_size": 256,
        "hidden_size": 64,
        "intermediate_size": 128,
        "moe_intermediate_size": 32,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "q_lora_rank": None,               # q_proj directly, as DeepSeek-V2-Lite
        "kv_lora_rank": 32,
        "qk_nope_head_dim": 16,
        "qk_rope_head_dim": 8,
        "v_head_dim": 16,
        "n_routed_experts": 10,
        "n_shared_experts": 2,
        "num_experts_per_tok": 3,
        "first_k_dense_replace": 1,
        "moe_layer_freq": 1,
        "topk_method": "greedy",
        # Groups only matter for topk_method "group_limited_greedy"; they
        # are set so that --set topk_method='"group_limited_greedy"' is enough.
        "n_group": 5,
        "topk_group": 2,
        "norm_topk_prob": False,
        "routed_scaling_factor": 2.0,
        "scoring_func": "softmax",
        "hidden_act": "silu",
        "max_position_embeddings": 512,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000,
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "aux_loss_alpha": 0.001,
        "seq_aux": True,
        "ep_size": 1,
        "pretraining_tp": 1,
        "initializer_range": 0.02,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "tie_word_embeddings": False,
        "use_cache": True,
    },
    "deepseek_v3": {
        "architectures": ["DeepseekV3ForCausalLM"],
        "model_type": "deepseek_v3",
        "vocab_size": 256,
        "hidden_size": 64,
        "intermediate_size": 128,
        "moe_intermediate_size": 32,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "q_lora_rank": 48,
        "kv_lora_rank": 32,
        "qk_nope_head_dim": 16,
        "qk_rope_head_dim": 8,
        "v_head_dim": 16,
        "n_routed_experts": 12,            # 4 groups of 3
        "n_shared_experts": 1,
        "num_experts_per_tok": 3,
        "n_group": 4,
        "topk_group": 2,
        "topk_method": "noaux_tc",
        "scoring_func": "sigmoid",
        "norm_topk_prob": True,
        "routed_scaling_factor": 2.5,
        "first_k_dense_replace": 1,
        "moe_layer_freq": 1,
        # One multi-token-prediction layer, stored as model.layers.3.* like
        # the published checkpoint's model.layers.61.*: HF ignores it.
        "num_nextn_predict_layers": 1,
        # No "rope_interleave" field, as in the published config: HF defaults
        # it to true (the rope dims are de-interleaved before rotate_half).
        "hidden_act": "silu",
        "max_position_embeddings": 512,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000,
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "aux_loss_alpha": 0.001,
        "seq_aux": True,
        "ep_size": 1,
        "pretraining_tp": 1,
        "initializer_range": 0.02,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "tie_word_embeddings": False,
        "use_cache": True,
    },
}

# The published configurations (--preset real; config only).  deepseek_v3 is
# deepseek-ai/DeepSeek-V3's config.json; the others are, in order,
# mistralai/Mixtral-8x7B-v0.1, Qwen/Qwen1.5-MoE-A2.7B, Qwen/Qwen3-30B-A3B and
# deepseek-ai/DeepSeek-V2-Lite.
REAL = {
    "deepseek_v3": {
        "architectures": ["DeepseekV3ForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "auto_map": {
            "AutoConfig": "configuration_deepseek.DeepseekV3Config",
            "AutoModel": "modeling_deepseek.DeepseekV3Model",
            "AutoModelForCausalLM": "modeling_deepseek.DeepseekV3ForCausalLM",
        },
        "aux_loss_alpha": 0.001,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "ep_size": 1,
        "first_k_dense_replace": 3,
        "hidden_act": "silu",
        "hidden_size": 7168,
        "initializer_range": 0.02,
        "intermediate_size": 18432,
        "kv_lora_rank": 512,
        "max_position_embeddings": 163840,
        "model_type": "deepseek_v3",
        "moe_intermediate_size": 2048,
        "moe_layer_freq": 1,
        "n_group": 8,
        "n_routed_experts": 256,
        "n_shared_experts": 1,
        "norm_topk_prob": True,
        "num_attention_heads": 128,
        "num_experts_per_tok": 8,
        "num_hidden_layers": 61,
        "num_key_value_heads": 128,
        "num_nextn_predict_layers": 1,
        "pretraining_tp": 1,
        "q_lora_rank": 1536,
        "qk_nope_head_dim": 128,
        "qk_rope_head_dim": 64,
        "quantization_config": {
            "activation_scheme": "dynamic",
            "fmt": "e4m3",
            "quant_method": "fp8",
            "weight_block_size": [128, 128],
        },
        "rms_norm_eps": 1e-06,
        "rope_scaling": {
            "beta_fast": 32,
            "beta_slow": 1,
            "factor": 40,
            "mscale": 1.0,
            "mscale_all_dim": 1.0,
            "original_max_position_embeddings": 4096,
            "type": "yarn",
        },
        "rope_theta": 10000,
        "routed_scaling_factor": 2.5,
        "scoring_func": "sigmoid",
        "seq_aux": True,
        "tie_word_embeddings": False,
        "topk_group": 4,
        "topk_method": "noaux_tc",
        "torch_dtype": "bfloat16",
        "transformers_version": "4.33.1",
        "use_cache": True,
        "v_head_dim": 128,
        "vocab_size": 129280,
    },
    "mixtral": {
        "architectures": ["MixtralForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": 4096,
        "initializer_range": 0.02,
        "intermediate_size": 14336,
        "max_position_embeddings": 32768,
        "model_type": "mixtral",
        "num_attention_heads": 32,
        "num_experts_per_tok": 2,
        "num_hidden_layers": 32,
        "num_key_value_heads": 8,
        "num_local_experts": 8,
        "output_router_logits": False,
        "rms_norm_eps": 1e-05,
        "rope_theta": 1000000.0,
        "router_aux_loss_coef": 0.02,
        "sliding_window": None,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.36.0.dev0",
        "use_cache": True,
        "vocab_size": 32000,
    },
    "qwen2_moe": {
        "architectures": ["Qwen2MoeForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": 151643,
        "eos_token_id": 151643,
        "hidden_act": "silu",
        "hidden_size": 2048,
        "initializer_range": 0.02,
        "intermediate_size": 5632,
        "max_position_embeddings": 8192,
        "max_window_layers": 21,
        "model_type": "qwen2_moe",
        "num_attention_heads": 16,
        "num_hidden_layers": 24,
        "num_key_value_heads": 16,
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0,
        "sliding_window": 32768,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.39.0.dev0",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": 151936,
        "decoder_sparse_step": 1,
        "moe_intermediate_size": 1408,
        "shared_expert_intermediate_size": 5632,
        "num_experts_per_tok": 4,
        "num_experts": 60,
        "norm_topk_prob": False,
        "output_router_logits": False,
        "router_aux_loss_coef": 0.001,
    },
    "qwen3_moe": {
        "architectures": ["Qwen3MoeForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 151643,
        "decoder_sparse_step": 1,
        "eos_token_id": 151645,
        "head_dim": 128,
        "hidden_act": "silu",
        "hidden_size": 2048,
        "initializer_range": 0.02,
        "intermediate_size": 6144,
        "max_position_embeddings": 40960,
        "max_window_layers": 48,
        "mlp_only_layers": [],
        "model_type": "qwen3_moe",
        "moe_intermediate_size": 768,
        "norm_topk_prob": True,
        "num_attention_heads": 32,
        "num_experts": 128,
        "num_experts_per_tok": 8,
        "num_hidden_layers": 48,
        "num_key_value_heads": 4,
        "output_router_logits": False,
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 1000000.0,
        "router_aux_loss_coef": 0.001,
        "sliding_window": None,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.51.0",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": 151936,
    },
    "deepseek_v2": {
        "architectures": ["DeepseekV2ForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "aux_loss_alpha": 0.001,
        "bos_token_id": 100000,
        "eos_token_id": 100001,
        "first_k_dense_replace": 1,
        "hidden_act": "silu",
        "hidden_size": 2048,
        "initializer_range": 0.02,
        "intermediate_size": 10944,
        "kv_lora_rank": 512,
        "max_position_embeddings": 163840,
        "model_type": "deepseek_v2",
        "moe_intermediate_size": 1408,
        "moe_layer_freq": 1,
        "n_group": 1,
        "n_routed_experts": 64,
        "n_shared_experts": 2,
        "norm_topk_prob": False,
        "num_attention_heads": 16,
        "num_experts_per_tok": 6,
        "num_hidden_layers": 27,
        "num_key_value_heads": 16,
        "pretraining_tp": 1,
        "q_lora_rank": None,
        "qk_nope_head_dim": 128,
        "qk_rope_head_dim": 64,
        "rms_norm_eps": 1e-06,
        "rope_scaling": {
            "beta_fast": 32,
            "beta_slow": 1,
            "factor": 40,
            "mscale": 0.707,
            "mscale_all_dim": 0.707,
            "original_max_position_embeddings": 4096,
            "type": "yarn",
        },
        "rope_theta": 10000,
        "routed_scaling_factor": 1.0,
        "scoring_func": "softmax",
        "seq_aux": True,
        "tie_word_embeddings": False,
        "topk_group": 1,
        "topk_method": "greedy",
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "v_head_dim": 128,
        "vocab_size": 102400,
    },
}

TRANSFORMERS_VERSION = "4.51.3"


def yarn_rope_scaling(model_type):
    """A YaRN rope_scaling entry shaped like DeepSeek's published ones (both
    the legacy "type" and the current "rope_type" key).  The DeepSeek models
    get their published values (V3: factor 40, mscale = mscale_all_dim = 1;
    V2: mscale = mscale_all_dim = 0.707); Mixtral/Qwen get a generic YaRN
    entry (no mscale fields, so HF's attention factor is 0.1 ln(factor) + 1).
    max_position_embeddings is set to factor * original, as HF expects."""
    if model_type.startswith("deepseek"):
        mscale = 1.0 if model_type == "deepseek_v3" else 0.707
        scaling = {"type": "yarn", "rope_type": "yarn", "factor": 40,
                   "original_max_position_embeddings": 4096, "beta_fast": 32,
                   "beta_slow": 1, "mscale": mscale, "mscale_all_dim": mscale}
        return scaling, 40 * 4096
    scaling = {"type": "yarn", "rope_type": "yarn", "factor": 4.0,
               "original_max_position_embeddings": 128, "beta_fast": 32,
               "beta_slow": 1}
    return scaling, 4 * 128


def set_field(config, dotted_key, value):
    keys = dotted_key.split(".")
    node = config
    for key in keys[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[keys[-1]] = value


def unset_field(config, dotted_key):
    keys = dotted_key.split(".")
    node = config
    for key in keys[:-1]:
        node = node.get(key)
        if not isinstance(node, dict):
            return
    node.pop(keys[-1], None)


def parse_set(text):
    """`key=JSON` -> (key, value).  The value must be JSON (strings quoted)."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--set expects key=JSON, got {text!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(f"--set {key}: value {raw!r} is not JSON ({err}); "
                         f"quote strings, e.g. {key}='\"text\"'") from err


def build_config(model_type, preset="tiny", dtype="float32", yarn=False,
                 tie_word_embeddings=False, sets=(), unsets=()):
    """The config.json dict.  `sets` is a sequence of (dotted key, value),
    applied after the preset and the flags; `unsets` removes keys last."""
    if model_type not in MODEL_TYPES:
        raise ValueError(f"unknown model type {model_type!r}; expected one of {MODEL_TYPES}")
    table = {"tiny": TINY, "real": REAL}.get(preset)
    if table is None:
        raise ValueError(f"unknown preset {preset!r}; expected tiny or real")
    config = copy.deepcopy(table[model_type])
    if preset == "tiny":
        config["torch_dtype"] = dtype
        config["transformers_version"] = TRANSFORMERS_VERSION
    if yarn:
        config["rope_scaling"], config["max_position_embeddings"] = yarn_rope_scaling(model_type)
    if tie_word_embeddings:
        config["tie_word_embeddings"] = True
    for key, value in sets:
        set_field(config, key, value)
    for key in unsets:
        unset_field(config, key)
    return config


# ---------------------------------------------------------------------------
# Tensor layout per model type
# ---------------------------------------------------------------------------

# Initialization kinds (see the module docstring for the scales).
EMBED, LINEAR, NORM, ROUTER, BIAS, HEAD, CORRECTION_BIAS = (
    "embed", "linear", "norm", "router", "bias", "head", "correction_bias")


def _get(config, key, default=None):
    value = config.get(key, default)
    return default if value is None else value


def _int(config, key):
    value = config.get(key)
    if value is None:
        raise ValueError(f"config field {key!r} is needed to lay out the weights")
    return int(value)


def _swiglu(prefix, hidden, inter, names=("gate_proj", "up_proj", "down_proj")):
    gate, up, down = names
    return [(f"{prefix}.{gate}.weight", (inter, hidden), LINEAR),
            (f"{prefix}.{up}.weight", (inter, hidden), LINEAR),
            (f"{prefix}.{down}.weight", (hidden, inter), LINEAR)]


def _gqa_attention(prefix, config, qkv_bias, qk_norm):
    hidden = _int(config, "hidden_size")
    heads = _int(config, "num_attention_heads")
    kv_heads = int(_get(config, "num_key_value_heads", heads))
    head_dim = int(_get(config, "head_dim", hidden // heads))
    specs = [(f"{prefix}.q_proj.weight", (heads * head_dim, hidden), LINEAR),
             (f"{prefix}.k_proj.weight", (kv_heads * head_dim, hidden), LINEAR),
             (f"{prefix}.v_proj.weight", (kv_heads * head_dim, hidden), LINEAR),
             (f"{prefix}.o_proj.weight", (hidden, heads * head_dim), LINEAR)]
    if qkv_bias:
        specs += [(f"{prefix}.q_proj.bias", (heads * head_dim,), BIAS),
                  (f"{prefix}.k_proj.bias", (kv_heads * head_dim,), BIAS),
                  (f"{prefix}.v_proj.bias", (kv_heads * head_dim,), BIAS)]
    if qk_norm:
        specs += [(f"{prefix}.q_norm.weight", (head_dim,), NORM),
                  (f"{prefix}.k_norm.weight", (head_dim,), NORM)]
    return specs


def _mla_attention(prefix, config):
    hidden = _int(config, "hidden_size")
    heads = _int(config, "num_attention_heads")
    nope, rope = _int(config, "qk_nope_head_dim"), _int(config, "qk_rope_head_dim")
    v_dim, kv_rank = _int(config, "v_head_dim"), _int(config, "kv_lora_rank")
    q_rank = config.get("q_lora_rank")
    bias = bool(config.get("attention_bias", False))
    specs = []
    if q_rank is None:
        specs.append((f"{prefix}.q_proj.weight", (heads * (nope + rope), hidden), LINEAR))
    else:
        q_rank = int(q_rank)
        specs += [(f"{prefix}.q_a_proj.weight", (q_rank, hidden), LINEAR),
                  (f"{prefix}.q_a_layernorm.weight", (q_rank,), NORM),
                  (f"{prefix}.q_b_proj.weight", (heads * (nope + rope), q_rank), LINEAR)]
        if bias:
            specs.append((f"{prefix}.q_a_proj.bias", (q_rank,), BIAS))
    specs += [(f"{prefix}.kv_a_proj_with_mqa.weight", (kv_rank + rope, hidden), LINEAR),
              (f"{prefix}.kv_a_layernorm.weight", (kv_rank,), NORM),
              (f"{prefix}.kv_b_proj.weight", (heads * (nope + v_dim), kv_rank), LINEAR),
              (f"{prefix}.o_proj.weight", (hidden, heads * v_dim), LINEAR)]
    if bias:
        specs += [(f"{prefix}.kv_a_proj_with_mqa.bias", (kv_rank + rope,), BIAS),
                  (f"{prefix}.o_proj.bias", (hidden,), BIAS)]
    return specs


def _is_qwen_moe_layer(config, layer):
    experts = int(_get(config, "num_experts", 0))
    step = int(_get(config, "decoder_sparse_step", 1))
    return (layer not in _get(config, "mlp_only_layers", [])
            and experts > 0 and (layer + 1) % step == 0)


def _is_deepseek_moe_layer(config, layer):
    # DeepSeek's own rule; HF drops moe_layer_freq (same result when it is 1).
    return (config.get("n_routed_experts") is not None
            and layer >= int(_get(config, "first_k_dense_replace", 0))
            and layer % int(_get(config, "moe_layer_freq", 1)) == 0)


def _decoder_layer(config, layer):
    model_type = config["model_type"]
    hidden = _int(config, "hidden_size")
    prefix = f"model.layers.{layer}"
    specs = [(f"{prefix}.input_layernorm.weight", (hidden,), NORM),
             (f"{prefix}.post_attention_layernorm.weight", (hidden,), NORM)]
    if model_type == "mixtral":
        specs += _gqa_attention(f"{prefix}.self_attn", config, qkv_bias=False, qk_norm=False)
        experts = _int(config, "num_local_experts")
        inter = _int(config, "intermediate_size")
        moe = f"{prefix}.block_sparse_moe"
        specs.append((f"{moe}.gate.weight", (experts, hidden), ROUTER))
        for e in range(experts):
            specs += _swiglu(f"{moe}.experts.{e}", hidden, inter, names=("w1", "w3", "w2"))
        return specs
    if model_type in ("qwen2_moe", "qwen3_moe"):
        qwen2 = model_type == "qwen2_moe"
        specs += _gqa_attention(
            f"{prefix}.self_attn", config,
            qkv_bias=bool(_get(config, "qkv_bias", True)) if qwen2
            else bool(_get(config, "attention_bias", False)),
            qk_norm=not qwen2)
        if not qwen2 and config.get("attention_bias"):
            specs.append((f"{prefix}.self_attn.o_proj.bias", (hidden,), BIAS))
        if not _is_qwen_moe_layer(config, layer):
            return specs + _swiglu(f"{prefix}.mlp", hidden, _int(config, "intermediate_size"))
        experts, inter = _int(config, "num_experts"), _int(config, "moe_intermediate_size")
        specs.append((f"{prefix}.mlp.gate.weight", (experts, hidden), ROUTER))
        for e in range(experts):
            specs += _swiglu(f"{prefix}.mlp.experts.{e}", hidden, inter)
        if qwen2:
            specs += _swiglu(f"{prefix}.mlp.shared_expert", hidden,
                             _int(config, "shared_expert_intermediate_size"))
            specs.append((f"{prefix}.mlp.shared_expert_gate.weight", (1, hidden), LINEAR))
        return specs
    # deepseek_v2 / deepseek_v3
    specs += _mla_attention(f"{prefix}.self_attn", config)
    if not _is_deepseek_moe_layer(config, layer):
        return specs + _swiglu(f"{prefix}.mlp", hidden, _int(config, "intermediate_size"))
    experts, inter = _int(config, "n_routed_experts"), _int(config, "moe_intermediate_size")
    specs.append((f"{prefix}.mlp.gate.weight", (experts, hidden), ROUTER))
    if model_type == "deepseek_v3":
        specs.append((f"{prefix}.mlp.gate.e_score_correction_bias", (experts,), CORRECTION_BIAS))
    for e in range(experts):
        specs += _swiglu(f"{prefix}.mlp.experts.{e}", hidden, inter)
    shared = config.get("n_shared_experts")
    if shared:
        specs += _swiglu(f"{prefix}.mlp.shared_experts", hidden, inter * int(shared))
    return specs


def _mtp_layer(config, layer):
    """DeepSeek-V3's multi-token-prediction module as stored in the published
    checkpoint (a full decoder layer plus these extras)."""
    hidden, vocab = _int(config, "hidden_size"), _int(config, "vocab_size")
    prefix = f"model.layers.{layer}"
    return _decoder_layer(config, layer) + [
        (f"{prefix}.embed_tokens.weight", (vocab, hidden), EMBED),
        (f"{prefix}.enorm.weight", (hidden,), NORM),
        (f"{prefix}.hnorm.weight", (hidden,), NORM),
        (f"{prefix}.eh_proj.weight", (hidden, 2 * hidden), LINEAR),
        (f"{prefix}.shared_head.norm.weight", (hidden,), NORM),
        (f"{prefix}.shared_head.head.weight", (vocab, hidden), HEAD),
    ]


def tensor_specs(config):
    """[(name, shape, init kind)] in model order, following the config."""
    model_type = config.get("model_type")
    if model_type not in MODEL_TYPES:
        raise ValueError(f"config model_type {model_type!r} is not one of {MODEL_TYPES}")
    hidden, vocab = _int(config, "hidden_size"), _int(config, "vocab_size")
    layers = _int(config, "num_hidden_layers")
    specs = [("model.embed_tokens.weight", (vocab, hidden), EMBED)]
    for layer in range(layers):
        specs += _decoder_layer(config, layer)
    if model_type == "deepseek_v3":
        for extra in range(int(_get(config, "num_nextn_predict_layers", 0))):
            specs += _mtp_layer(config, layers + extra)
    specs.append(("model.norm.weight", (hidden,), NORM))
    if not config.get("tie_word_embeddings", False):
        specs.append(("lm_head.weight", (vocab, hidden), HEAD))
    names = [name for name, _, _ in specs]
    if len(set(names)) != len(names):
        raise ValueError("duplicate tensor names in the layout (inconsistent config?)")
    return specs


# ---------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------


def tensor_rng(seed, model_type, name):
    key = f"{model_type}:{name}".encode("utf-8")
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(key)])


def init_tensor(seed, model_type, name, shape, kind):
    rng = tensor_rng(seed, model_type, name)
    draw = rng.standard_normal(shape, dtype=np.float32)
    fan_in = shape[-1] if len(shape) > 1 else 1
    if kind == EMBED:
        return draw
    if kind == LINEAR:
        return draw * np.float32(1.0 / math.sqrt(fan_in))
    if kind == ROUTER:
        return draw * np.float32(3.0 / math.sqrt(fan_in))
    if kind == HEAD:
        return draw * np.float32(2.0 / math.sqrt(fan_in))
    if kind == NORM:
        return np.float32(1.0) + np.float32(0.1) * draw
    if kind == BIAS:
        return np.float32(0.1) * draw
    if kind == CORRECTION_BIAS:
        return np.float32(0.1) * draw
    raise ValueError(f"unknown init kind {kind}")


def random_tensors(config, seed):
    """{name: (float32 array, init kind)} for every tensor of the config."""
    model_type = config["model_type"]
    return {name: (init_tensor(seed, model_type, name, shape, kind), kind)
            for name, shape, kind in tensor_specs(config)}


# ---------------------------------------------------------------------------
# safetensors
# ---------------------------------------------------------------------------


def to_bf16_bits(values):
    """float32 -> bfloat16 bit patterns (uint16), round to nearest even."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def encode(values, tag):
    """Little-endian bytes of a float32 array stored as `tag`."""
    if tag == "F32":
        return np.ascontiguousarray(values, dtype="<f4").tobytes()
    if tag == "F16":
        return np.ascontiguousarray(values, dtype=np.float32).astype("<f2").tobytes()
    if tag == "BF16":
        return to_bf16_bits(values).astype("<u2").tobytes()
    raise ValueError(f"cannot encode dtype {tag}")


def write_safetensors(path, entries, metadata=None):
    """entries: [(name, dtype tag, shape, raw bytes)] written in that order.
    The header is padded with spaces to a multiple of 8 bytes."""
    header = {}
    offset = 0
    for name, tag, shape, raw in entries:
        header[name] = {"dtype": tag, "shape": [int(d) for d in shape],
                        "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    header["__metadata__"] = dict(metadata if metadata is not None else {"format": "pt"})
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(text)))
        out.write(text)
        for _, _, _, raw in entries:
            out.write(raw)


def storage_tag(kind, dtype_tag):
    return "F32" if kind == CORRECTION_BIAS else dtype_tag


def split_shards(entries, shards):
    """Splits entries (in order) into `shards` consecutive groups of about the
    same byte size; every group gets at least one tensor."""
    shards = max(1, min(int(shards), len(entries)))
    total = sum(len(raw) for _, _, _, raw in entries)
    groups, current, done = [], [], 0
    for index, entry in enumerate(entries):
        current.append(entry)
        done += len(entry[3])
        left_entries = len(entries) - index - 1
        left_groups = shards - len(groups) - 1
        if left_groups > 0 and (done >= total * (len(groups) + 1) / shards
                                or left_entries == left_groups):
            groups.append(current)
            current = []
    groups.append(current)
    return [g for g in groups if g]


def write_checkpoint(out_dir, config, tensors, dtype="float32", shards=1, seed=0):
    """Writes config.json and the weights.  `tensors` is {name: array} or
    {name: (array, init kind)} (float32 values); the storage order is a
    seeded permutation of the names."""
    dtype_tag = DTYPES[dtype]
    os.makedirs(out_dir, exist_ok=True)
    write_config(out_dir, config)
    names = sorted(tensors)
    order = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x5EED]).permutation(len(names))
    entries = []
    for index in order:
        name = names[index]
        value = tensors[name]
        values, kind = value if isinstance(value, tuple) else (value, LINEAR)
        values = np.asarray(values, dtype=np.float32)
        tag = storage_tag(kind, dtype_tag)
        entries.append((name, tag, values.shape, encode(values, tag)))
    if int(shards) <= 1:
        write_safetensors(os.path.join(out_dir, "model.safetensors"), entries)
        return
    groups = split_shards(entries, shards)
    weight_map, total = {}, 0
    for index, group in enumerate(groups, start=1):
        file_name = f"model-{index:05d}-of-{len(groups):05d}.safetensors"
        write_safetensors(os.path.join(out_dir, file_name), group)
        for name, _, _, raw in group:
            weight_map[name] = file_name
            total += len(raw)
    index_doc = {"metadata": {"total_size": total},
                 "weight_map": dict(sorted(weight_map.items()))}
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as out:
        json.dump(index_doc, out, indent=2)
        out.write("\n")


def write_config(out_dir, config):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as out:
        json.dump(config, out, indent=2, sort_keys=True)
        out.write("\n")


def generate(out_dir, model_type, dtype="float32", shards=1, seed=0, yarn=False,
             tie_word_embeddings=False, sets=(), unsets=(), config_only=False, preset="tiny"):
    """The whole CLI as a function; returns the config written."""
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(DTYPES)}")
    if preset == "real" and not config_only:
        raise ValueError("--preset real describes full-size models: use it with --config-only")
    config = build_config(model_type, preset, dtype, yarn, tie_word_embeddings, sets, unsets)
    if config_only:
        write_config(out_dir, config)
        return config
    write_checkpoint(out_dir, config, random_tensors(config, seed), dtype, shards, seed)
    return config


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Write a small random Hugging Face MoE checkpoint (config.json + safetensors).")
    parser.add_argument("--model-type", required=True, choices=MODEL_TYPES)
    parser.add_argument("--out", required=True, help="output directory (created)")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    parser.add_argument("--shards", type=int, default=1,
                        help="number of safetensors files (>1 writes model.safetensors.index.json)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--yarn", action="store_true", help="add a YaRN rope_scaling entry")
    parser.add_argument("--tie-word-embeddings", action="store_true",
                        help="tie lm_head to the embedding (no lm_head.weight is written)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=JSON",
                        help="override/add a config field (dotted keys reach nested objects)")
    parser.add_argument("--unset", dest="unsets", action="append", default=[], metavar="KEY",
                        help="remove a config field")
    parser.add_argument("--config-only", action="store_true", help="write config.json only")
    parser.add_argument("--preset", default="tiny", choices=("tiny", "real"))
    args = parser.parse_args(argv)
    try:
        sets = [parse_set(text) for text in args.sets]
        generate(args.out, args.model_type, dtype=args.dtype, shards=args.shards, seed=args.seed,
                 yarn=args.yarn, tie_word_embeddings=args.tie_word_embeddings, sets=sets,
                 unsets=args.unsets, config_only=args.config_only, preset=args.preset)
    except (ValueError, OSError) as err:
        print(f"gen_hf_checkpoint: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
