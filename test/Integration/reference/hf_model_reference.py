#!/usr/bin/env python3
"""Independent float32 reference of Hugging Face transformers' MoE decoders.

Covers the model types mixtral, qwen2_moe, qwen3_moe, deepseek_v2 and
deepseek_v3, read from a checkpoint directory (config.json plus
model.safetensors, or shards listed by model.safetensors.index.json).
Written from the semantics of HF's modeling files (and DeepSeek's own code
where noted), not from anything in this repository's compiler: it is the
oracle the compiled models are compared with.

Everything is computed in float32 on the CPU; F16 and BF16 weights are
upcast exactly.  The forward pass is the full-sequence one with a causal
mask (no KV cache); `generate` recomputes the whole sequence at every step.

    hf_model_reference.py --model DIR --tokens 1,2,3 --logits-out logits.npy
    hf_model_reference.py --model DIR --tokens 1,2,3 --generate 8
    hf_model_reference.py --model DIR --tokens 1,2,3 --trace-out trace.npz

With neither --generate, --logits-out nor --trace-out, the argmax token of
every position is printed (comma-separated).  Errors (unreadable or
inconsistent checkpoint, unsupported feature) exit with status 1 and one
line on stderr.

As a module: `load(dir)`, `forward(model, ids) -> [seq, vocab]` float32
tensor, `generate(model, ids, n) -> list`.  The router functions
(`route_softmax_topk`, `route_deepseek_v2`, `route_deepseek_v3`) and the RoPE
helpers are usable on their own.

Conventions where HF leaves a choice open or its versions differ:
* Top-k ties: the lower index wins (a stable descending sort), for expert,
  group and argmax selections alike.
* DeepSeek-V3 group masking: experts of the groups that are not kept get
  -inf before the final top-k (DeepSeek's reference code and current HF);
  HF releases up to 4.5x filled 0.0, which differs only when a masked expert
  could outrank a kept one (bias-corrected scores can be negative).
  `Semantics.v3_masked_fill = 0.0` selects the old behaviour.
* DeepSeek-V2 routing: HF always multiplies the top-k softmax weights by
  routed_scaling_factor and never renormalizes (it ignores norm_topk_prob).
  DeepSeek's own code renormalizes instead of scaling when top_k > 1 and
  norm_topk_prob; `Semantics.v2_deepseek_routing` selects that.  (Current HF
  also lost `self.num_experts` in DeepseekV2Moe, so its group_limited_greedy
  path raises; this reference implements the working semantics of the
  earlier HF gate: group score = max, other groups' scores set to 0.0.)
* DeepSeek-V2 + YaRN: HF's V2 attention uses qk_head_dim^-0.5 without the
  mscale(factor, mscale_all_dim)^2 factor that DeepSeek's V2 code and HF's V3
  apply; `Semantics.v2_yarn_softmax_mscale = True` applies it.
* Arithmetic: float32 on the stored weights (bf16/f16 values widened), as
  HF computes in float32.  `Semantics.bf16_dot_products = True` models
  moe-mlir's bf16 dot products (--bf16-dot, the default on CPUs with
  AVX512-BF16) instead: the input of each expert, shared-expert and dense
  MLP projection and of the attention projections q/k/v/o (GQA) and
  q_a/kv_a (MLA) whose weight is stored as BF16 with an input size that is a
  multiple of 32 is rounded to bfloat16 first; routers, the shared-expert
  gate, q_b/kv_b/o (MLA) and the LM head stay exact.
* moe_layer_freq: DeepSeek's rule (MoE iff layer >= first_k_dense_replace and
  layer % moe_layer_freq == 0).  HF ignores moe_layer_freq, which is the same
  for the published value 1.
* YaRN follows current HF: the correction range uses
  original_max_position_embeddings (older HF used max_position_embeddings),
  `truncate` (default true) floors/ceils it, the cos/sin factor is
  mscale(f, mscale)/mscale(f, mscale_all_dim) when both are set and
  0.1 ln(f) + 1 otherwise.
* The MLA latent norms (q_a_layernorm, kv_a_layernorm) use eps 1e-6 whatever
  rms_norm_eps says, as in HF and DeepSeek's code.
* Tensors of layers >= num_hidden_layers (DeepSeek-V3's multi-token
  prediction layer) and `*.rotary_emb.inv_freq` buffers are ignored, like HF
  does; any other unexpected or missing tensor, or a shape mismatch, is an
  error.
"""

import argparse
import json
import math
import os
import re
import struct
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

SUPPORTED_MODEL_TYPES = ("mixtral", "qwen2_moe", "qwen3_moe", "deepseek_v2", "deepseek_v3")
MLA_EPS = 1e-6


class CheckpointError(ValueError):
    """The checkpoint directory, its config or its weights cannot be used."""


@dataclass
class Semantics:
    """Switches between documented variants (defaults: current HF)."""
    v3_masked_fill: float = float("-inf")
    v2_deepseek_routing: bool = False
    v2_yarn_softmax_mscale: bool = False
    bf16_dot_products: bool = False


# ---------------------------------------------------------------------------
# safetensors
# ---------------------------------------------------------------------------

_FLOAT_DTYPES = {"F32": ("<f4", 4), "F16": ("<f2", 2), "BF16": ("<u2", 2)}
_FP8_DTYPES = ("F8_E4M3", "F8_E5M2", "F8_E4M3FN", "F8_E8M0")


def _decode(raw, dtype, shape, name, path):
    if dtype in _FP8_DTYPES:
        raise CheckpointError(
            f"{path}: tensor {name!r} has dtype {dtype}: FP8 weights (e.g. DeepSeek-V3's released "
            "checkpoint with weight_scale_inv block scales) are not supported by this reference; "
            "dequantize the checkpoint to BF16/F32 first")
    if dtype not in _FLOAT_DTYPES:
        raise CheckpointError(f"{path}: tensor {name!r} has unsupported dtype {dtype} "
                              "(supported: F32, F16, BF16)")
    numpy_type, size = _FLOAT_DTYPES[dtype]
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if len(raw) != count * size:
        raise CheckpointError(f"{path}: tensor {name!r}: {len(raw)} bytes for shape {shape} "
                              f"of {dtype} (expected {count * size})")
    values = np.frombuffer(raw, dtype=numpy_type)
    if dtype == "BF16":
        values = (values.astype(np.uint32) << 16).view(np.float32)
    tensor = torch.from_numpy(values.astype(np.float32).reshape(shape))
    tensor.stored_dtype = dtype   # read by project() (bf16 dot products)
    return tensor


def read_safetensors(path):
    """{name: float32 tensor} of one safetensors file."""
    with open(path, "rb") as stream:
        data = stream.read()
    if len(data) < 8:
        raise CheckpointError(f"{path}: too short to be a safetensors file")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > len(data) - 8:
        raise CheckpointError(f"{path}: header length {header_len} exceeds the file size")
    try:
        header = json.loads(data[8:8 + header_len].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: header is not valid JSON: {err}") from err
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: header is not a JSON object")
    body = memoryview(data)[8 + header_len:]
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape = entry["dtype"], [int(d) for d in entry["shape"]]
            begin, end = (int(v) for v in entry["data_offsets"])
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(
                f"{path}: malformed header entry for {name!r}: {entry!r}") from err
        if not 0 <= begin <= end <= len(body):
            raise CheckpointError(f"{path}: tensor {name!r} data_offsets [{begin}, {end}] "
                                  f"outside the {len(body)}-byte data section")
        tensors[name] = _decode(bytes(body[begin:end]), dtype, shape, name, path)
    return tensors


def read_weights(model_dir):
    """All tensors of a checkpoint directory (single file or sharded)."""
    index_path = os.path.join(model_dir, "model.safetensors.index.json")
    single_path = os.path.join(model_dir, "model.safetensors")
    if os.path.exists(index_path):
        with open(index_path) as stream:
            index = json.load(stream)
        weight_map = index.get("weight_map")
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{index_path}: no weight_map object")
        tensors = {}
        for file_name in sorted(set(weight_map.values())):
            shard = read_safetensors(os.path.join(model_dir, file_name))
            for name, value in shard.items():
                if weight_map.get(name) != file_name:
                    raise CheckpointError(f"{file_name} holds {name!r}, which the index maps to "
                                          f"{weight_map.get(name)!r}")
                tensors[name] = value
        missing = sorted(set(weight_map) - set(tensors))
        if missing:
            raise CheckpointError(f"{index_path}: tensors listed but not found in their shard: "
                                  f"{missing[:5]}")
        return tensors
    if os.path.exists(single_path):
        return read_safetensors(single_path)
    raise CheckpointError(f"{model_dir}: neither model.safetensors nor "
                          "model.safetensors.index.json")


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------

# Defaults of HF's configuration classes for fields the published configs
# may omit.  Sizes are never defaulted: a config without them is rejected.
_DEFAULTS = {
    "mixtral": {"rms_norm_eps": 1e-5, "rope_theta": 1e6, "sliding_window": None},
    "qwen2_moe": {"rms_norm_eps": 1e-6, "rope_theta": 10000.0, "qkv_bias": True,
                  "decoder_sparse_step": 1, "mlp_only_layers": [], "norm_topk_prob": False,
                  "use_sliding_window": False},
    "qwen3_moe": {"rms_norm_eps": 1e-6, "rope_theta": 10000.0, "attention_bias": False,
                  "decoder_sparse_step": 1, "mlp_only_layers": [], "norm_topk_prob": False,
                  "use_sliding_window": False},
    "deepseek_v2": {"rms_norm_eps": 1e-6, "rope_theta": 10000.0, "attention_bias": False,
                    "first_k_dense_replace": 0, "moe_layer_freq": 1, "topk_method": "greedy",
                    "norm_topk_prob": False, "routed_scaling_factor": 1.0,
                    "n_shared_experts": 2, "q_lora_rank": 1536},
    "deepseek_v3": {"rms_norm_eps": 1e-6, "rope_theta": 10000.0, "attention_bias": False,
                    "first_k_dense_replace": 3, "moe_layer_freq": 1, "n_group": 8,
                    "topk_group": 4, "norm_topk_prob": True, "routed_scaling_factor": 2.5,
                    "n_shared_experts": 1, "q_lora_rank": 1536, "rope_interleave": True},
}


class ModelConfig:
    """config.json with the HF defaults applied and the sizes checked."""

    def __init__(self, raw):
        if not isinstance(raw, dict):
            raise CheckpointError("config.json is not a JSON object")
        self.raw = raw
        self.model_type = raw.get("model_type")
        if self.model_type not in SUPPORTED_MODEL_TYPES:
            raise CheckpointError(f"config.json: model_type {self.model_type!r} is not supported "
                                  f"(supported: {', '.join(SUPPORTED_MODEL_TYPES)})")
        self.defaults = _DEFAULTS[self.model_type]
        self.hidden_size = self.size("hidden_size")
        self.vocab_size = self.size("vocab_size")
        self.num_layers = self.size("num_hidden_layers")
        self.num_heads = self.size("num_attention_heads")
        self.eps = float(self.get("rms_norm_eps"))
        self.tie_word_embeddings = bool(self.get("tie_word_embeddings", False))
        act = self.get("hidden_act", "silu")
        if act != "silu":
            raise CheckpointError(f"config.json: hidden_act {act!r} is not supported (only silu)")
        if self.is_deepseek:
            self._read_deepseek()
        else:
            self._read_gqa()
        self.rope = rope_parameters(raw, self.get("rope_theta"))

    # -- field access -------------------------------------------------------
    def get(self, key, fallback=None):
        if key in self.raw:
            return self.raw[key]
        return self.defaults.get(key, fallback)

    def size(self, key, minimum=1):
        value = self.raw.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise CheckpointError(f"config.json: {key!r} must be an integer, got {value!r}")
        if value < minimum:
            raise CheckpointError(f"config.json: {key!r} must be >= {minimum}, got {value}")
        return value

    @property
    def is_deepseek(self):
        return self.model_type.startswith("deepseek")

    # -- per family ---------------------------------------------------------
    def _read_gqa(self):
        self.num_kv_heads = self.size("num_key_value_heads")
        if self.num_heads % self.num_kv_heads:
            raise CheckpointError(f"config.json: num_attention_heads {self.num_heads} is not a "
                                  f"multiple of num_key_value_heads {self.num_kv_heads}")
        head_dim = self.raw.get("head_dim")
        if head_dim is None:
            if self.hidden_size % self.num_heads:
                raise CheckpointError("config.json: hidden_size is not a multiple of "
                                      "num_attention_heads and no head_dim is given")
            head_dim = self.hidden_size // self.num_heads
        self.head_dim = int(head_dim)
        self.rope_dim = self.head_dim
        self.intermediate_size = self.size("intermediate_size")
        self.sliding_window = None
        if self.model_type == "mixtral":
            self.num_experts = self.size("num_local_experts")
            self.expert_size = self.intermediate_size
            self.renormalize = True
            window = self.get("sliding_window")
            self.sliding_window = None if window is None else self.size("sliding_window")
            self.qkv_bias = self.o_bias = False
        else:
            if self.get("use_sliding_window"):
                raise CheckpointError("config.json: use_sliding_window=true is not supported by "
                                      "this reference")
            self.num_experts = self.size("num_experts", minimum=0)
            self.expert_size = self.size("moe_intermediate_size")
            self.renormalize = bool(self.get("norm_topk_prob"))
            if self.model_type == "qwen2_moe":
                self.qkv_bias, self.o_bias = bool(self.get("qkv_bias")), False
                self.shared_size = self.size("shared_expert_intermediate_size")
            else:
                self.qkv_bias = self.o_bias = bool(self.get("attention_bias"))
            self.sparse_step = int(self.get("decoder_sparse_step"))
            if self.sparse_step < 1:
                raise CheckpointError("config.json: decoder_sparse_step must be >= 1")
            self.mlp_only_layers = set(int(i) for i in (self.get("mlp_only_layers") or []))
        self.top_k = self.size("num_experts_per_tok")
        if self.num_experts and self.top_k > self.num_experts:
            raise CheckpointError(f"config.json: num_experts_per_tok {self.top_k} exceeds the "
                                  f"{self.num_experts} experts")

    def _read_deepseek(self):
        if "q_lora_rank" in self.raw:
            self.q_lora_rank = None if self.raw["q_lora_rank"] is None else self.size("q_lora_rank")
        else:
            self.q_lora_rank = self.defaults["q_lora_rank"]
        self.kv_lora_rank = self.size("kv_lora_rank")
        self.nope_dim = self.size("qk_nope_head_dim", minimum=0)
        self.rope_dim = self.size("qk_rope_head_dim")
        if self.rope_dim % 2:
            raise CheckpointError("config.json: qk_rope_head_dim must be even")
        self.v_dim = self.size("v_head_dim")
        self.qk_dim = self.nope_dim + self.rope_dim
        self.attention_bias = bool(self.get("attention_bias"))
        self.intermediate_size = self.size("intermediate_size")
        self.first_dense = int(self.get("first_k_dense_replace"))
        self.moe_freq = int(self.get("moe_layer_freq"))
        if self.moe_freq < 1:
            raise CheckpointError("config.json: moe_layer_freq must be >= 1")
        self.num_experts = self.raw.get("n_routed_experts")
        if self.num_experts is not None:
            self.num_experts = self.size("n_routed_experts")
            self.expert_size = self.size("moe_intermediate_size")
            self.top_k = self.size("num_experts_per_tok")
            if self.top_k > self.num_experts:
                raise CheckpointError(f"config.json: num_experts_per_tok {self.top_k} exceeds "
                                      f"n_routed_experts {self.num_experts}")
            shared = self.get("n_shared_experts")
            self.shared_size = self.expert_size * int(shared) if shared else 0
            self.routed_scaling_factor = float(self.get("routed_scaling_factor"))
            self.norm_topk_prob = bool(self.get("norm_topk_prob"))
            if self.model_type == "deepseek_v3":
                self._check_groups("noaux_tc", minimum_group=2)
            else:
                self.topk_method = self.get("topk_method")
                if self.topk_method not in ("greedy", "group_limited_greedy"):
                    raise CheckpointError(f"config.json: deepseek_v2 topk_method "
                                          f"{self.topk_method!r} is not supported (greedy or "
                                          "group_limited_greedy)")
                if self.topk_method == "group_limited_greedy":
                    self._check_groups("group_limited_greedy", minimum_group=1)
        self.rope_interleave = bool(self.get("rope_interleave", True))

    def _check_groups(self, method, minimum_group):
        n_group, topk_group = self.get("n_group"), self.get("topk_group")
        if not isinstance(n_group, int) or not isinstance(topk_group, int):
            raise CheckpointError(f"config.json: {method} routing needs integer n_group and "
                                  f"topk_group, got {n_group!r} and {topk_group!r}")
        if n_group < 1 or self.num_experts % n_group:
            raise CheckpointError(f"config.json: n_group {n_group} does not divide "
                                  f"n_routed_experts {self.num_experts}")
        group = self.num_experts // n_group
        if group < minimum_group:
            raise CheckpointError(f"config.json: groups of {group} expert(s); {method} sums the "
                                  f"top {minimum_group} scores of a group")
        if not 1 <= topk_group <= n_group:
            raise CheckpointError(f"config.json: topk_group {topk_group} not in [1, {n_group}]")
        if topk_group * group < self.top_k:
            raise CheckpointError(f"config.json: topk_group {topk_group} groups of {group} "
                                  f"experts cannot supply num_experts_per_tok {self.top_k}")
        self.n_group, self.topk_group = n_group, topk_group

    # -- layer rules --------------------------------------------------------
    def is_moe_layer(self, layer):
        if self.model_type == "mixtral":
            return True
        if self.is_deepseek:
            return (self.num_experts is not None and layer >= self.first_dense
                    and layer % self.moe_freq == 0)
        return (layer not in self.mlp_only_layers and self.num_experts > 0
                and (layer + 1) % self.sparse_step == 0)


# ---------------------------------------------------------------------------
# Expected tensors (the HF module tree, per config)
# ---------------------------------------------------------------------------


def _mlp_shapes(prefix, hidden, inter, names=("gate_proj", "up_proj", "down_proj")):
    gate, up, down = names
    return {f"{prefix}.{gate}.weight": (inter, hidden), f"{prefix}.{up}.weight": (inter, hidden),
            f"{prefix}.{down}.weight": (hidden, inter)}


def expected_shapes(cfg):
    """{tensor name: shape} the config implies (layers < num_hidden_layers)."""
    H = cfg.hidden_size
    shapes = {"model.embed_tokens.weight": (cfg.vocab_size, H), "model.norm.weight": (H,)}
    if not cfg.tie_word_embeddings:
        shapes["lm_head.weight"] = (cfg.vocab_size, H)
    for layer in range(cfg.num_layers):
        p = f"model.layers.{layer}"
        shapes[f"{p}.input_layernorm.weight"] = (H,)
        shapes[f"{p}.post_attention_layernorm.weight"] = (H,)
        a = f"{p}.self_attn"
        if cfg.is_deepseek:
            heads = cfg.num_heads
            if cfg.q_lora_rank is None:
                shapes[f"{a}.q_proj.weight"] = (heads * cfg.qk_dim, H)
            else:
                shapes[f"{a}.q_a_proj.weight"] = (cfg.q_lora_rank, H)
                shapes[f"{a}.q_a_layernorm.weight"] = (cfg.q_lora_rank,)
                shapes[f"{a}.q_b_proj.weight"] = (heads * cfg.qk_dim, cfg.q_lora_rank)
                if cfg.attention_bias:
                    shapes[f"{a}.q_a_proj.bias"] = (cfg.q_lora_rank,)
            shapes[f"{a}.kv_a_proj_with_mqa.weight"] = (cfg.kv_lora_rank + cfg.rope_dim, H)
            shapes[f"{a}.kv_a_layernorm.weight"] = (cfg.kv_lora_rank,)
            shapes[f"{a}.kv_b_proj.weight"] = (heads * (cfg.nope_dim + cfg.v_dim),
                                               cfg.kv_lora_rank)
            shapes[f"{a}.o_proj.weight"] = (H, heads * cfg.v_dim)
            if cfg.attention_bias:
                shapes[f"{a}.kv_a_proj_with_mqa.bias"] = (cfg.kv_lora_rank + cfg.rope_dim,)
                shapes[f"{a}.o_proj.bias"] = (H,)
        else:
            q_out, kv_out = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
            shapes.update({f"{a}.q_proj.weight": (q_out, H), f"{a}.k_proj.weight": (kv_out, H),
                           f"{a}.v_proj.weight": (kv_out, H), f"{a}.o_proj.weight": (H, q_out)})
            if cfg.qkv_bias:
                shapes.update({f"{a}.q_proj.bias": (q_out,), f"{a}.k_proj.bias": (kv_out,),
                               f"{a}.v_proj.bias": (kv_out,)})
            if cfg.o_bias:
                shapes[f"{a}.o_proj.bias"] = (H,)
            if cfg.model_type == "qwen3_moe":
                shapes[f"{a}.q_norm.weight"] = (cfg.head_dim,)
                shapes[f"{a}.k_norm.weight"] = (cfg.head_dim,)
        if cfg.model_type == "mixtral":
            m = f"{p}.block_sparse_moe"
            shapes[f"{m}.gate.weight"] = (cfg.num_experts, H)
            for e in range(cfg.num_experts):
                shapes.update(_mlp_shapes(f"{m}.experts.{e}", H, cfg.expert_size,
                                          names=("w1", "w3", "w2")))
            continue
        m = f"{p}.mlp"
        if not cfg.is_moe_layer(layer):
            shapes.update(_mlp_shapes(m, H, cfg.intermediate_size))
            continue
        shapes[f"{m}.gate.weight"] = (cfg.num_experts, H)
        for e in range(cfg.num_experts):
            shapes.update(_mlp_shapes(f"{m}.experts.{e}", H, cfg.expert_size))
        if cfg.model_type == "qwen2_moe":
            shapes.update(_mlp_shapes(f"{m}.shared_expert", H, cfg.shared_size))
            shapes[f"{m}.shared_expert_gate.weight"] = (1, H)
        elif cfg.is_deepseek:
            if cfg.model_type == "deepseek_v3":
                shapes[f"{m}.gate.e_score_correction_bias"] = (cfg.num_experts,)
            if cfg.shared_size:
                shapes.update(_mlp_shapes(f"{m}.shared_experts", H, cfg.shared_size))
    return shapes


_LAYER_RE = re.compile(r"^model\.layers\.(\d+)\.")


def check_tensors(cfg, tensors):
    """Raises CheckpointError on missing, unexpected or misshapen tensors."""
    expected = expected_shapes(cfg)
    problems = []
    for name, shape in expected.items():
        if name not in tensors:
            problems.append(f"missing tensor {name} (shape {list(shape)})")
        elif tuple(tensors[name].shape) != tuple(shape):
            problems.append(f"tensor {name} has shape {list(tensors[name].shape)}, the config "
                            f"implies {list(shape)}")
    for name in sorted(set(tensors) - set(expected)):
        match = _LAYER_RE.match(name)
        if match and int(match.group(1)) >= cfg.num_layers:
            continue  # multi-token-prediction layers: HF ignores them
        if name.endswith("rotary_emb.inv_freq"):
            continue
        if name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue  # tied: HF uses the embedding
        problems.append(f"unexpected tensor {name}")
    if problems:
        more = f" (and {len(problems) - 8} more)" if len(problems) > 8 else ""
        raise CheckpointError("checkpoint does not match config.json: "
                              + "; ".join(problems[:8]) + more)


# ---------------------------------------------------------------------------
# Model loading
# ---------------------------------------------------------------------------


class Model:
    def __init__(self, cfg, tensors, semantics):
        self.cfg = cfg
        self.tensors = tensors
        self.semantics = semantics
        self.inv_freq, self.attention_factor = rope_inv_freq(cfg.rope, cfg.rope_dim,
                                                             cfg.get("max_position_embeddings"))
        self.softmax_scale = attention_softmax_scale(cfg, semantics)

    @property
    def config(self):
        return self.cfg.raw

    def w(self, name):
        try:
            return self.tensors[name]
        except KeyError:
            raise CheckpointError(f"missing tensor {name}") from None

    def maybe(self, name):
        return self.tensors.get(name)


def load(model_dir, semantics=None, strict=True):
    """Reads config.json and the weights of `model_dir`."""
    config_path = os.path.join(model_dir, "config.json")
    try:
        with open(config_path) as stream:
            raw = json.load(stream)
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{config_path}: {err}") from err
    try:
        cfg = ModelConfig(raw)
    except CheckpointError:
        raise
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(f"{config_path}: invalid field value: {err!r}") from err
    tensors = read_weights(model_dir)
    if strict:
        check_tensors(cfg, tensors)
    return Model(cfg, tensors, semantics or Semantics())


# ---------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------


def rms_norm(x, weight, eps):
    """HF's RMSNorm in float32: weight * (x * rsqrt(mean(x^2) + eps))."""
    variance = x.pow(2).mean(-1, keepdim=True)
    return weight * (x * torch.rsqrt(variance + eps))


def linear(x, weight, bias=None):
    return F.linear(x, weight, bias)


def swiglu(x, gate, up, down):
    return linear(F.silu(linear(x, gate)) * linear(x, up), down)


def project(model, x, weight_name, bias=None):
    """linear() of a projection that moe-mlir computes with bf16 dot products
    under Semantics.bf16_dot_products (see the module notes)."""
    weight = model.w(weight_name)
    if (model.semantics.bf16_dot_products
            and getattr(weight, "stored_dtype", None) == "BF16"
            and weight.shape[-1] % 32 == 0):
        x = x.to(torch.bfloat16).to(torch.float32)
    return linear(x, weight, bias)


def mlp(model, x, gate, up, down):
    """The SwiGLU MLP of the named weights."""
    hidden = F.silu(project(model, x, gate)) * project(model, x, up)
    return project(model, hidden, down)


def yarn_get_mscale(scale=1.0, mscale=1.0):
    if scale <= 1:
        return 1.0
    return 0.1 * mscale * math.log(scale) + 1.0


def rope_parameters(raw, rope_theta):
    """The RoPE settings of a config: {"rope_type", "rope_theta", ...}.
    Accepts the legacy `rope_scaling` (+ top-level rope_theta) and the
    current `rope_parameters` object."""
    params = raw.get("rope_parameters")
    if isinstance(params, dict) and params:
        params = dict(params)
    else:
        params = dict(raw.get("rope_scaling") or {})
    params.setdefault("rope_theta", rope_theta)
    params["rope_type"] = params.get("rope_type", params.get("type", "default"))
    if params["rope_theta"] is None:
        raise CheckpointError("config.json: no rope_theta")
    if params.get("partial_rotary_factor", 1.0) != 1.0:
        raise CheckpointError("config.json: partial_rotary_factor is not supported")
    return params


def default_inv_freq(base, dim):
    """1 / base^(2i/dim) in float32, as HF computes it."""
    exponent = torch.arange(0, dim, 2, dtype=torch.int64).float() / dim
    return 1.0 / (base ** exponent)


def yarn_inv_freq(params, dim, max_position_embeddings):
    """(inv_freq, attention_factor) of HF's current _compute_yarn_parameters."""
    base = float(params["rope_theta"])
    original = params.get("original_max_position_embeddings", max_position_embeddings)
    if original is None:
        raise CheckpointError("config.json: yarn needs original_max_position_embeddings")
    factor = params.get("factor")
    if factor is None:
        factor = max_position_embeddings / original
    factor = float(factor)
    mscale, mscale_all_dim = params.get("mscale"), params.get("mscale_all_dim")
    attention_factor = params.get("attention_factor")
    if attention_factor is None:
        if mscale and mscale_all_dim:
            attention_factor = yarn_get_mscale(factor, mscale) / yarn_get_mscale(factor,
                                                                                 mscale_all_dim)
        else:
            attention_factor = yarn_get_mscale(factor)
    beta_fast = params.get("beta_fast") or 32
    beta_slow = params.get("beta_slow") or 1

    def correction_dim(rotations):
        return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if params.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = torch.clamp((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low), 0, 1)
    pos_freqs = base ** (torch.arange(0, dim, 2).float() / dim)
    extrapolation = 1.0 / pos_freqs
    interpolation = 1.0 / (factor * pos_freqs)
    extrapolation_factor = 1 - ramp
    inv_freq = interpolation * (1 - extrapolation_factor) + extrapolation * extrapolation_factor
    return inv_freq, float(attention_factor)


def rope_inv_freq(params, dim, max_position_embeddings=None):
    """(inv_freq [dim/2] float32, attention_factor) for the RoPE settings."""
    rope_type = params["rope_type"]
    if rope_type == "default":
        return default_inv_freq(float(params["rope_theta"]), dim), 1.0
    if rope_type == "linear":
        return default_inv_freq(float(params["rope_theta"]), dim) / float(params["factor"]), 1.0
    if rope_type == "yarn":
        return yarn_inv_freq(params, dim, max_position_embeddings)
    raise CheckpointError(f"config.json: rope type {rope_type!r} is not supported "
                          "(default, linear, yarn)")


def rope_cos_sin(inv_freq, positions, attention_factor=1.0):
    """cos, sin of shape [seq, dim] in HF's layout (the dim/2 frequencies
    repeated twice), scaled by the attention factor."""
    freqs = positions.float()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos() * attention_factor, emb.sin() * attention_factor


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope_half(x, cos, sin):
    """Rotate-half RoPE (Llama/Mixtral/Qwen layout); x [seq, heads, d],
    cos/sin [seq, d]."""
    return x * cos[:, None, :] + rotate_half(x) * sin[:, None, :]


def deinterleave(x):
    """[x0, x1, x2, x3, ...] -> [x0, x2, ..., x1, x3, ...] on the last dim
    (HF DeepSeek-V3 with rope_interleave)."""
    shape = x.shape
    return x.reshape(*shape[:-1], shape[-1] // 2, 2).transpose(-1, -2).reshape(shape)


def apply_rope_pairs(x, inv_freq, positions, attention_factor=1.0):
    """DeepSeek-V2's complex form: the pair (x[2i], x[2i+1]) is multiplied by
    attention_factor * exp(i * pos * inv_freq[i]); the output stays
    interleaved.  x [seq, heads, d]."""
    freqs = positions.float()[:, None] * inv_freq[None, :]
    cos = (freqs.cos() * attention_factor)[:, None, :]
    sin = (freqs.sin() * attention_factor)[:, None, :]
    even, odd = x[..., 0::2], x[..., 1::2]
    out = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
    return out.reshape(x.shape)


def causal_mask(seq, sliding_window=None):
    """Boolean [seq, seq], True where query i may NOT attend key j."""
    i = torch.arange(seq)[:, None]
    j = torch.arange(seq)[None, :]
    blocked = j > i
    if sliding_window is not None:
        blocked = blocked | (i - j >= sliding_window)
    return blocked


def attention_core(q, k, v, scale, blocked):
    """q [seq, heads, dq], k [seq, heads, dq], v [seq, heads, dv] ->
    [seq, heads * dv]; float32 softmax over the unmasked keys."""
    scores = torch.einsum("ihd,jhd->hij", q, k) * scale
    scores = scores.masked_fill(blocked[None], float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    out = torch.einsum("hij,jhd->ihd", probs, v)
    return out.reshape(out.shape[0], -1)


def attention_softmax_scale(cfg, semantics):
    if not cfg.is_deepseek:
        return cfg.head_dim ** -0.5
    scale = cfg.qk_dim ** -0.5
    rope = cfg.rope
    applies = cfg.model_type == "deepseek_v3" or semantics.v2_yarn_softmax_mscale
    if applies and rope["rope_type"] != "default":
        mscale_all_dim = rope.get("mscale_all_dim", 0)
        if mscale_all_dim:
            mscale = yarn_get_mscale(float(rope["factor"]), mscale_all_dim)
            scale = scale * mscale * mscale
    return scale


# ---------------------------------------------------------------------------
# Routers (logits [T, E] float32 -> indices [T, k] int64, weights [T, k])
# ---------------------------------------------------------------------------


def topk_stable(scores, k):
    """Top-k along the last dim; among equal scores the lower index first."""
    values, indices = torch.sort(scores, dim=-1, descending=True, stable=True)
    return values[..., :k], indices[..., :k]


def route_softmax_topk(logits, k, renormalize):
    """Mixtral (renormalize=True) and Qwen2/3-MoE (renormalize=norm_topk_prob)."""
    probs = torch.softmax(logits.float(), dim=-1)
    weights, indices = topk_stable(probs, k)
    if renormalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return indices, weights


def _group_mask(group_scores, topk_group, experts_per_group):
    _, kept = topk_stable(group_scores, topk_group)
    mask = torch.zeros_like(group_scores, dtype=torch.bool)
    mask.scatter_(1, kept, True)
    return mask.repeat_interleave(experts_per_group, dim=1)


def route_deepseek_v2(logits, k, method="greedy", n_group=None, topk_group=None,
                      routed_scaling_factor=1.0, norm_topk_prob=False, deepseek_routing=False):
    """Softmax scores; greedy top-k, or group_limited_greedy (groups ranked by
    their best score, the experts of the other groups set to 0.0).  HF: the
    weights are the scores times routed_scaling_factor.  deepseek_routing:
    DeepSeek's code, which renormalizes (+1e-20) instead of scaling when
    k > 1 and norm_topk_prob."""
    scores = torch.softmax(logits.float(), dim=-1)
    if method == "greedy":
        weights, indices = topk_stable(scores, k)
    elif method == "group_limited_greedy":
        tokens, experts = scores.shape
        group_scores = scores.view(tokens, n_group, -1).max(dim=-1).values
        keep = _group_mask(group_scores, topk_group, experts // n_group)
        weights, indices = topk_stable(scores.masked_fill(~keep, 0.0), k)
    else:
        raise ValueError(f"unknown topk_method {method!r}")
    if deepseek_routing and k > 1 and norm_topk_prob:
        return indices, weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
    return indices, weights * routed_scaling_factor


def route_deepseek_v3(logits, correction_bias, k, n_group, topk_group, norm_topk_prob=True,
                      routed_scaling_factor=1.0, masked_fill=float("-inf")):
    """Sigmoid scores s; choice scores c = s + correction_bias; groups ranked
    by the sum of their two best c; the experts of the other groups get
    `masked_fill`; top-k of c chooses; weights are s at the chosen experts,
    divided by their sum + 1e-20 if norm_topk_prob, times the scaling."""
    scores = torch.sigmoid(logits.float())
    choice = scores + correction_bias[None, :].float()
    tokens, experts = choice.shape
    group_scores = choice.view(tokens, n_group, -1).topk(2, dim=-1).values.sum(dim=-1)
    keep = _group_mask(group_scores, topk_group, experts // n_group)
    _, indices = topk_stable(choice.masked_fill(~keep, masked_fill), k)
    weights = scores.gather(1, indices)
    if norm_topk_prob:
        weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
    return indices, weights * routed_scaling_factor


def combine_experts(x, indices, weights, expert_fn):
    """sum_k weights[t, k] * expert_{indices[t, k]}(x[t]), accumulated expert
    by expert (HF's loop order)."""
    out = torch.zeros_like(x)
    for expert in torch.unique(indices).tolist():
        token, slot = torch.where(indices == expert)
        out.index_add_(0, token, expert_fn(expert, x[token]) * weights[token, slot, None])
    return out


# ---------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------


def gqa_attention(model, prefix, x, positions, blocked):
    cfg = model.cfg
    seq = x.shape[0]
    a = f"{prefix}.self_attn"
    q = project(model, x, f"{a}.q_proj.weight", model.maybe(f"{a}.q_proj.bias"))
    k = project(model, x, f"{a}.k_proj.weight", model.maybe(f"{a}.k_proj.bias"))
    v = project(model, x, f"{a}.v_proj.weight", model.maybe(f"{a}.v_proj.bias"))
    q = q.view(seq, cfg.num_heads, cfg.head_dim)
    k = k.view(seq, cfg.num_kv_heads, cfg.head_dim)
    v = v.view(seq, cfg.num_kv_heads, cfg.head_dim)
    if cfg.model_type == "qwen3_moe":
        q = rms_norm(q, model.w(f"{a}.q_norm.weight"), cfg.eps)
        k = rms_norm(k, model.w(f"{a}.k_norm.weight"), cfg.eps)
    cos, sin = rope_cos_sin(model.inv_freq, positions, model.attention_factor)
    q, k = apply_rope_half(q, cos, sin), apply_rope_half(k, cos, sin)
    groups = cfg.num_heads // cfg.num_kv_heads
    k = k.repeat_interleave(groups, dim=1)   # query head h reads KV head h // groups
    v = v.repeat_interleave(groups, dim=1)
    out = attention_core(q, k, v, model.softmax_scale, blocked)
    return project(model, out, f"{a}.o_proj.weight", model.maybe(f"{a}.o_proj.bias"))


def mla_attention(model, prefix, x, positions, blocked):
    cfg = model.cfg
    seq, heads = x.shape[0], cfg.num_heads
    a = f"{prefix}.self_attn"
    if cfg.q_lora_rank is None:
        q = linear(x, model.w(f"{a}.q_proj.weight"))
    else:
        q_latent = project(model, x, f"{a}.q_a_proj.weight", model.maybe(f"{a}.q_a_proj.bias"))
        q = linear(rms_norm(q_latent, model.w(f"{a}.q_a_layernorm.weight"), MLA_EPS),
                   model.w(f"{a}.q_b_proj.weight"))
    q = q.view(seq, heads, cfg.qk_dim)
    q_nope, q_rot = q[..., :cfg.nope_dim], q[..., cfg.nope_dim:]
    compressed = project(model, x, f"{a}.kv_a_proj_with_mqa.weight",
                         model.maybe(f"{a}.kv_a_proj_with_mqa.bias"))
    latent, k_rot = compressed[:, :cfg.kv_lora_rank], compressed[:, cfg.kv_lora_rank:]
    kv = linear(rms_norm(latent, model.w(f"{a}.kv_a_layernorm.weight"), MLA_EPS),
                model.w(f"{a}.kv_b_proj.weight")).view(seq, heads, cfg.nope_dim + cfg.v_dim)
    k_nope, v = kv[..., :cfg.nope_dim], kv[..., cfg.nope_dim:]
    k_rot = k_rot.view(seq, 1, cfg.rope_dim)
    if cfg.model_type == "deepseek_v2":
        q_rot = apply_rope_pairs(q_rot, model.inv_freq, positions, model.attention_factor)
        k_rot = apply_rope_pairs(k_rot, model.inv_freq, positions, model.attention_factor)
    else:
        if cfg.rope_interleave:
            q_rot, k_rot = deinterleave(q_rot), deinterleave(k_rot)
        cos, sin = rope_cos_sin(model.inv_freq, positions, model.attention_factor)
        q_rot, k_rot = apply_rope_half(q_rot, cos, sin), apply_rope_half(k_rot, cos, sin)
    query = torch.cat((q_nope, q_rot), dim=-1)
    key = torch.cat((k_nope, k_rot.expand(seq, heads, cfg.rope_dim)), dim=-1)
    out = attention_core(query, key, v, model.softmax_scale, blocked)
    return linear(out, model.w(f"{a}.o_proj.weight"), model.maybe(f"{a}.o_proj.bias"))


def dense_mlp(model, prefix, x):
    return mlp(model, x, f"{prefix}.gate_proj.weight", f"{prefix}.up_proj.weight",
               f"{prefix}.down_proj.weight")


def route(model, prefix, x):
    """(router logits, indices, weights) of the MoE block at `prefix`."""
    cfg, sem = model.cfg, model.semantics
    logits = linear(x, model.w(f"{prefix}.gate.weight"))
    if cfg.model_type in ("mixtral", "qwen2_moe", "qwen3_moe"):
        indices, weights = route_softmax_topk(logits, cfg.top_k, cfg.renormalize)
    elif cfg.model_type == "deepseek_v2":
        indices, weights = route_deepseek_v2(
            logits, cfg.top_k, cfg.topk_method, getattr(cfg, "n_group", None),
            getattr(cfg, "topk_group", None), cfg.routed_scaling_factor, cfg.norm_topk_prob,
            sem.v2_deepseek_routing)
    else:
        bias = model.maybe(f"{prefix}.gate.e_score_correction_bias")
        if bias is None:
            bias = torch.zeros(cfg.num_experts)   # HF's buffer default (non-strict loads)
        indices, weights = route_deepseek_v3(
            logits, bias, cfg.top_k, cfg.n_group, cfg.topk_group, cfg.norm_topk_prob,
            cfg.routed_scaling_factor, sem.v3_masked_fill)
    return logits, indices, weights


def moe_block(model, prefix, x, trace=None, layer=None):
    cfg = model.cfg
    logits, indices, weights = route(model, prefix, x)
    if trace is not None:
        trace[f"layer{layer}.router_logits"] = logits
        trace[f"layer{layer}.topk_indices"] = indices
        trace[f"layer{layer}.topk_weights"] = weights
    if cfg.model_type == "mixtral":
        names = ("w1", "w3", "w2")
    else:
        names = ("gate_proj", "up_proj", "down_proj")

    def expert(e, tokens):
        p = f"{prefix}.experts.{e}"
        return mlp(model, tokens, *(f"{p}.{n}.weight" for n in names))

    out = combine_experts(x, indices, weights, expert)
    if cfg.model_type == "qwen2_moe":
        gate = torch.sigmoid(linear(x, model.w(f"{prefix}.shared_expert_gate.weight")))
        out = out + gate * dense_mlp(model, f"{prefix}.shared_expert", x)
    elif cfg.is_deepseek and cfg.shared_size:
        out = out + dense_mlp(model, f"{prefix}.shared_experts", x)
    return out


def decoder_layer(model, layer, x, positions, blocked, trace=None):
    cfg = model.cfg
    p = f"model.layers.{layer}"
    h = rms_norm(x, model.w(f"{p}.input_layernorm.weight"), cfg.eps)
    attend = mla_attention if cfg.is_deepseek else gqa_attention
    x = x + attend(model, p, h, positions, blocked)
    h = rms_norm(x, model.w(f"{p}.post_attention_layernorm.weight"), cfg.eps)
    if cfg.model_type == "mixtral":
        mlp = moe_block(model, f"{p}.block_sparse_moe", h, trace, layer)
    elif cfg.is_moe_layer(layer):
        mlp = moe_block(model, f"{p}.mlp", h, trace, layer)
    else:
        mlp = dense_mlp(model, f"{p}.mlp", h)
    return x + mlp


# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------


def _token_tensor(model, token_ids):
    ids = torch.as_tensor(token_ids, dtype=torch.int64).reshape(-1)
    if ids.numel() == 0:
        raise ValueError("no tokens")
    if int(ids.min()) < 0 or int(ids.max()) >= model.cfg.vocab_size:
        raise ValueError(f"token ids must be in [0, {model.cfg.vocab_size})")
    return ids


@torch.no_grad()
def forward(model, token_ids, trace=None):
    """Logits [seq, vocab] (float32) of the full causal forward pass
    (positions 0..seq-1).  If `trace` is a dict it receives, per layer l,
    "layer{l}.hidden" (the residual stream after the layer, [seq, H]) and for
    MoE layers "layer{l}.router_logits" [seq, E], "layer{l}.topk_indices" and
    "layer{l}.topk_weights" [seq, k] (in selection order)."""
    cfg = model.cfg
    ids = _token_tensor(model, token_ids)
    seq = ids.numel()
    positions = torch.arange(seq)
    blocked = causal_mask(seq, getattr(cfg, "sliding_window", None))
    embed = model.w("model.embed_tokens.weight")
    x = embed[ids]
    for layer in range(cfg.num_layers):
        x = decoder_layer(model, layer, x, positions, blocked, trace)
        if trace is not None:
            trace[f"layer{layer}.hidden"] = x
    x = rms_norm(x, model.w("model.norm.weight"), cfg.eps)
    head = embed if cfg.tie_word_embeddings else model.w("lm_head.weight")
    return linear(x, head)


def generate(model, token_ids, n):
    """Greedy decoding of n tokens (full recompute per step); ties in the
    argmax go to the lower token id."""
    ids = [int(t) for t in _token_tensor(model, token_ids).tolist()]
    new = []
    for _ in range(int(n)):
        logits = forward(model, ids)[-1]
        token = int(torch.argmax(logits).item())   # first maximum
        new.append(token)
        ids.append(token)
    return new


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------


def _parse_tokens(text):
    try:
        return [int(t) for t in text.split(",") if t.strip() != ""]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--tokens expects comma-separated integers: {err}")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Float32 reference forward/generation of a Hugging Face MoE checkpoint.")
    parser.add_argument("--model", required=True, help="checkpoint directory")
    parser.add_argument("--tokens", required=True, type=_parse_tokens,
                        help="comma-separated prompt token ids")
    parser.add_argument("--logits-out", help="write the prompt's logits [seq, vocab] (.npy)")
    parser.add_argument("--generate", type=int, metavar="N",
                        help="greedy-decode N tokens; prints them comma-separated")
    parser.add_argument("--trace-out", help="write router decisions and hidden states (.npz)")
    parser.add_argument("--v3-masked-fill", choices=("-inf", "0"), default="-inf",
                        help="value for experts of dropped groups in DeepSeek-V3 routing "
                             "(-inf: current HF / DeepSeek; 0: HF <= 4.5x)")
    parser.add_argument("--v2-deepseek-routing", action="store_true",
                        help="DeepSeek-V2 routing as DeepSeek's code (renormalize instead of "
                             "scaling when norm_topk_prob)")
    parser.add_argument("--v2-yarn-softmax-mscale", action="store_true",
                        help="DeepSeek-V2 with YaRN: multiply the softmax scale by mscale^2 "
                             "(DeepSeek's code; HF does not)")
    parser.add_argument("--non-strict", action="store_true",
                        help="do not reject missing/unexpected tensors at load time")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    semantics = Semantics(
        v3_masked_fill=float("-inf") if args.v3_masked_fill == "-inf" else 0.0,
        v2_deepseek_routing=args.v2_deepseek_routing,
        v2_yarn_softmax_mscale=args.v2_yarn_softmax_mscale)
    try:
        model = load(args.model, semantics, strict=not args.non_strict)
        trace = {} if args.trace_out else None
        logits = forward(model, args.tokens, trace)
        if args.logits_out:
            np.save(args.logits_out, logits.numpy().astype(np.float32))
        if trace is not None:
            np.savez(args.trace_out, **{k: v.numpy() for k, v in trace.items()})
        if args.generate is not None:
            print(",".join(str(t) for t in generate(model, args.tokens, args.generate)))
        elif not args.logits_out and not args.trace_out:
            print(",".join(str(int(t)) for t in torch.argmax(logits, dim=-1).tolist()))
    except (CheckpointError, ValueError, OSError) as err:
        print(f"hf_model_reference: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
