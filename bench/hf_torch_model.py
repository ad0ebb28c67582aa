#!/usr/bin/env python3
"""PyTorch peer of the whole-model benchmark: the Hugging Face transformers
way of running an MoE decoder, with a KV cache.

The model types are those of test/Integration/reference/hf_model_reference.py
(mixtral, qwen2_moe, qwen3_moe, deepseek_v2, deepseek_v3), whose `load`
reads the checkpoint and config and whose routing and RoPE helpers define
the semantics.  The computation is laid out as HF's modeling files do it, so
that it costs what HF costs on the CPU (eager attention, no fused kernels):

* every projection is an nn.Linear-style F.linear in the model dtype (the
  checkpoint's dtype unless `dtype` says otherwise); hidden states are
  [batch=1, seq, hidden], attention states [1, heads, seq, head_dim];
* RMSNorm computes in float32 and casts back before the weight multiply;
* rotary embeddings: cos/sin built per call from the positions;
  rotate_half (Mixtral, Qwen, DeepSeek-V3 after its de-interleave) or the
  complex form (DeepSeek-V2);
* GQA: `repeat_kv` of the cached K/V, eager softmax in float32, the causal
  (and sliding-window) mask added for the prompt;
* MLA as HF's DeepseekV3Attention: q_proj or q_a/q_a_layernorm/q_b,
  kv_a_proj_with_mqa, kv_a_layernorm, kv_b_proj expanded to per-head k_nope
  and v, RoPE on the rope part, and the expanded per-head keys and values
  cached (what HF caches);
* the cache grows by torch.cat per layer (HF's DynamicCache);
* MoE: router logits, softmax (sigmoid + group-limited top-k for
  DeepSeek-V3, greedy or group-limited for V2), torch.topk, a one-hot
  expert mask and the loop `for expert in range(E)` over torch.where rows,
  scaled by the routing weights and index_add_'ed; Qwen2-MoE's sigmoid-gated
  shared expert, DeepSeek's shared experts and first_k_dense_replace dense
  layers, Qwen3's q_norm/k_norm, tied embeddings;
* generation computes the LM head on the last position only.

    /usr/bin/python3 bench/hf_torch_model.py --check [--scratch DIR]
    /usr/bin/python3 bench/hf_torch_model.py --model DIR --tokens 1,2,3 \\
        --generate 8 [--dtype bfloat16] [--threads 2]

As a module: `load(model_dir, dtype=None, threads=None)` -> model with
`prefill(ids)` (logits of the last position, float32; fills the cache),
`decode(id)` (logits of the next position) and `reset()`;
`generate(model, prompt_ids, n)` -> (n greedy token ids, prefill seconds,
decode seconds), the decode time covering the n - 1 steps after the
prefill's token (as moe-run reports it).

--check compares, in float32, each model type's tiny checkpoint (float32
and bfloat16 storage, plus YaRN, tied-embedding, sliding-window and
group-limited variants) with the reference: prefill logits within 1e-4 of
max|logit| and 8 greedy tokens equal.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "test", "Integration", "reference"))

import hf_model_reference as ref  # noqa: E402

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_STORED = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


# ---------------------------------------------------------------------------
# Building blocks (HF's functions)
# ---------------------------------------------------------------------------


class RMSNorm:
    def __init__(self, weight, eps):
        self.weight, self.eps = weight, eps

    def __call__(self, hidden_states):
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.eps)
        return self.weight * hidden_states.to(input_dtype)


class Linear:
    def __init__(self, weight, bias=None):
        self.weight, self.bias = weight, bias

    def __call__(self, x):
        return F.linear(x, self.weight, self.bias)


class MLP:
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, gate, up, down):
        self.gate_proj, self.up_proj, self.down_proj = Linear(gate), Linear(up), Linear(down)

    def __call__(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin):
    """q, k [b, heads, seq, d]; cos, sin [b, seq, d]."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return (q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)


def apply_rotary_pos_emb_interleave(q, k, cos, sin):
    """DeepSeek-V3 (rope_interleave): de-interleave the pairs, then rotate_half."""
    b, h, s, d = q.shape
    q = q.view(b, h, s, d // 2, 2).transpose(4, 3).reshape(b, h, s, d)
    b, h, s, d = k.shape
    k = k.view(b, h, s, d // 2, 2).transpose(4, 3).reshape(b, h, s, d)
    return apply_rotary_pos_emb(q, k, cos, sin)


def apply_rotary_emb_complex(xq, xk, freqs_cis):
    """DeepSeek-V2: pairs as complex numbers times exp(i * pos * freq)."""
    xq_ = torch.view_as_complex(xq.float().reshape(*xq.shape[:-1], -1, 2))
    xk_ = torch.view_as_complex(xk.float().reshape(*xk.shape[:-1], -1, 2))
    freqs_cis = freqs_cis.unsqueeze(1)
    xq_out = torch.view_as_real(xq_ * freqs_cis).flatten(3)
    xk_out = torch.view_as_real(xk_ * freqs_cis).flatten(3)
    return xq_out.type_as(xq), xk_out.type_as(xk)


class RotaryEmbedding:
    """inv_freq and attention scaling from the reference's rope helpers;
    cos/sin (or the complex freqs) are computed per call, in float32."""

    def __init__(self, inv_freq, attention_scaling, complex_form=False):
        self.inv_freq = inv_freq.float()
        self.attention_scaling = attention_scaling
        self.complex_form = complex_form

    def __call__(self, x, position_ids):
        inv_freq = self.inv_freq[None, :, None].expand(position_ids.shape[0], -1, 1)
        positions = position_ids[:, None, :].float()
        freqs = (inv_freq @ positions).transpose(1, 2)          # [b, seq, d/2]
        if self.complex_form:
            return torch.polar(torch.ones_like(freqs), freqs) * self.attention_scaling
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = emb.cos() * self.attention_scaling
        sin = emb.sin() * self.attention_scaling
        return cos.to(x.dtype), sin.to(x.dtype)


def repeat_kv(hidden_states, n_rep):
    """[b, kv_heads, seq, d] -> [b, kv_heads * n_rep, seq, d]."""
    batch, kv_heads, seq, head_dim = hidden_states.shape
    if n_rep == 1:
        return hidden_states
    hidden_states = hidden_states[:, :, None, :, :].expand(batch, kv_heads, n_rep, seq, head_dim)
    return hidden_states.reshape(batch, kv_heads * n_rep, seq, head_dim)


def eager_attention(query, key, value, mask, scaling):
    """softmax(q k^T * scaling + mask) v, softmax in float32; -> [b, seq, heads, dv]."""
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if mask is not None:
        attn_weights = attn_weights + mask
    attn_weights = F.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_output = torch.matmul(attn_weights, value)
    return attn_output.transpose(1, 2).contiguous()


class DynamicCache:
    """Per-layer keys and values [b, heads, seq, d], grown by torch.cat."""

    def __init__(self):
        self.key_cache, self.value_cache = [], []

    def update(self, key_states, value_states, layer_idx):
        if len(self.key_cache) <= layer_idx:
            self.key_cache.append(key_states)
            self.value_cache.append(value_states)
        else:
            self.key_cache[layer_idx] = torch.cat([self.key_cache[layer_idx], key_states], dim=-2)
            self.value_cache[layer_idx] = torch.cat([self.value_cache[layer_idx], value_states],
                                                    dim=-2)
        return self.key_cache[layer_idx], self.value_cache[layer_idx]

    def get_seq_length(self):
        return self.key_cache[0].shape[-2] if self.key_cache else 0


def attention_mask(q_len, past, dtype, sliding_window=None):
    """Additive [1, 1, q_len, past + q_len] mask (dtype min where blocked),
    or None when nothing is blocked (a decode step without a window)."""
    kv_len = past + q_len
    i = torch.arange(past, kv_len)[:, None]
    j = torch.arange(kv_len)[None, :]
    blocked = j > i
    if sliding_window is not None:
        blocked = blocked | (i - j >= sliding_window)
    if not bool(blocked.any()):
        return None
    mask = torch.zeros(q_len, kv_len, dtype=dtype)
    mask.masked_fill_(blocked, torch.finfo(dtype).min)
    return mask[None, None]


# ---------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------


class GQAAttention:
    """Mixtral / Qwen2-MoE / Qwen3-MoE self-attention."""

    def __init__(self, model, w, layer_idx):
        cfg = model.cfg
        a = f"model.layers.{layer_idx}.self_attn"
        self.layer_idx = layer_idx
        self.head_dim = cfg.head_dim
        self.num_key_value_groups = cfg.num_heads // cfg.num_kv_heads
        self.scaling = model.softmax_scale
        self.q_proj = Linear(w[f"{a}.q_proj.weight"], w.get(f"{a}.q_proj.bias"))
        self.k_proj = Linear(w[f"{a}.k_proj.weight"], w.get(f"{a}.k_proj.bias"))
        self.v_proj = Linear(w[f"{a}.v_proj.weight"], w.get(f"{a}.v_proj.bias"))
        self.o_proj = Linear(w[f"{a}.o_proj.weight"], w.get(f"{a}.o_proj.bias"))
        self.q_norm = self.k_norm = None
        if cfg.model_type == "qwen3_moe":
            self.q_norm = RMSNorm(w[f"{a}.q_norm.weight"], cfg.eps)
            self.k_norm = RMSNorm(w[f"{a}.k_norm.weight"], cfg.eps)

    def __call__(self, hidden_states, position_embeddings, mask, cache):
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.head_dim)
        query_states = self.q_proj(hidden_states).view(hidden_shape)
        key_states = self.k_proj(hidden_states).view(hidden_shape)
        value_states = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        if self.q_norm is not None:
            query_states = self.q_norm(query_states)
            key_states = self.k_norm(key_states)
        query_states, key_states = query_states.transpose(1, 2), key_states.transpose(1, 2)
        cos, sin = position_embeddings
        query_states, key_states = apply_rotary_pos_emb(query_states, key_states, cos, sin)
        key_states, value_states = cache.update(key_states, value_states, self.layer_idx)
        key_states = repeat_kv(key_states, self.num_key_value_groups)
        value_states = repeat_kv(value_states, self.num_key_value_groups)
        attn_output = eager_attention(query_states, key_states, value_states, mask, self.scaling)
        return self.o_proj(attn_output.reshape(*input_shape, -1))


class MLAAttention:
    """DeepSeek-V2/V3 multi-head latent attention, naive (expanded) form."""

    def __init__(self, model, w, layer_idx):
        cfg = model.cfg
        a = f"model.layers.{layer_idx}.self_attn"
        self.layer_idx = layer_idx
        self.model_type = cfg.model_type
        self.kv_lora_rank = cfg.kv_lora_rank
        self.qk_nope_head_dim, self.qk_rope_head_dim = cfg.nope_dim, cfg.rope_dim
        self.v_head_dim, self.qk_head_dim = cfg.v_dim, cfg.qk_dim
        self.rope_interleave = getattr(cfg, "rope_interleave", True)
        self.scaling = model.softmax_scale
        if cfg.q_lora_rank is None:
            self.q_proj = Linear(w[f"{a}.q_proj.weight"])
        else:
            self.q_proj = None
            self.q_a_proj = Linear(w[f"{a}.q_a_proj.weight"], w.get(f"{a}.q_a_proj.bias"))
            self.q_a_layernorm = RMSNorm(w[f"{a}.q_a_layernorm.weight"], ref.MLA_EPS)
            self.q_b_proj = Linear(w[f"{a}.q_b_proj.weight"])
        self.kv_a_proj_with_mqa = Linear(w[f"{a}.kv_a_proj_with_mqa.weight"],
                                         w.get(f"{a}.kv_a_proj_with_mqa.bias"))
        self.kv_a_layernorm = RMSNorm(w[f"{a}.kv_a_layernorm.weight"], ref.MLA_EPS)
        self.kv_b_proj = Linear(w[f"{a}.kv_b_proj.weight"])
        self.o_proj = Linear(w[f"{a}.o_proj.weight"], w.get(f"{a}.o_proj.bias"))

    def __call__(self, hidden_states, position_embeddings, mask, cache):
        batch_size, seq_length = hidden_states.shape[:-1]
        query_shape = (batch_size, seq_length, -1, self.qk_head_dim)
        key_shape = (batch_size, seq_length, -1, self.qk_nope_head_dim + self.v_head_dim)
        if self.q_proj is None:
            q_states = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(hidden_states)))
        else:
            q_states = self.q_proj(hidden_states)
        q_states = q_states.view(query_shape).transpose(1, 2)
        q_pass, q_rot = torch.split(q_states, [self.qk_nope_head_dim, self.qk_rope_head_dim],
                                    dim=-1)
        compressed_kv = self.kv_a_proj_with_mqa(hidden_states)
        k_pass, k_rot = torch.split(compressed_kv, [self.kv_lora_rank, self.qk_rope_head_dim],
                                    dim=-1)
        k_pass = self.kv_b_proj(self.kv_a_layernorm(k_pass)).view(key_shape).transpose(1, 2)
        k_pass, value_states = torch.split(k_pass, [self.qk_nope_head_dim, self.v_head_dim],
                                           dim=-1)
        k_rot = k_rot.view(batch_size, 1, seq_length, self.qk_rope_head_dim)
        if self.model_type == "deepseek_v2":
            q_rot, k_rot = apply_rotary_emb_complex(q_rot, k_rot, position_embeddings)
        else:
            cos, sin = position_embeddings
            rope = apply_rotary_pos_emb_interleave if self.rope_interleave else \
                apply_rotary_pos_emb
            q_rot, k_rot = rope(q_rot, k_rot, cos, sin)
        k_rot = k_rot.expand(*k_pass.shape[:-1], -1)
        query_states = torch.cat((q_pass, q_rot), dim=-1)
        key_states = torch.cat((k_pass, k_rot), dim=-1)
        key_states, value_states = cache.update(key_states, value_states, self.layer_idx)
        attn_output = eager_attention(query_states, key_states, value_states, mask, self.scaling)
        return self.o_proj(attn_output.reshape(batch_size, seq_length, -1))


# ---------------------------------------------------------------------------
# MoE blocks
# ---------------------------------------------------------------------------


class SparseMoeBlock:
    """Mixtral / Qwen2-MoE / Qwen3-MoE: softmax router, top-k, expert loop."""

    def __init__(self, model, w, prefix):
        cfg = model.cfg
        self.num_experts, self.top_k = cfg.num_experts, cfg.top_k
        self.norm_topk_prob = cfg.renormalize
        self.gate = Linear(w[f"{prefix}.gate.weight"])
        names = ("w1", "w3", "w2") if cfg.model_type == "mixtral" else \
            ("gate_proj", "up_proj", "down_proj")
        self.experts = [MLP(*(w[f"{prefix}.experts.{e}.{n}.weight"] for n in names))
                        for e in range(self.num_experts)]
        self.shared_expert = self.shared_expert_gate = None
        if cfg.model_type == "qwen2_moe":
            self.shared_expert = MLP(*(w[f"{prefix}.shared_expert.{n}.weight"]
                                       for n in ("gate_proj", "up_proj", "down_proj")))
            self.shared_expert_gate = Linear(w[f"{prefix}.shared_expert_gate.weight"])

    def __call__(self, hidden_states):
        batch_size, sequence_length, hidden_dim = hidden_states.shape
        hidden_states = hidden_states.view(-1, hidden_dim)
        router_logits = self.gate(hidden_states)
        routing_weights = F.softmax(router_logits, dim=1, dtype=torch.float)
        routing_weights, selected_experts = torch.topk(routing_weights, self.top_k, dim=-1)
        if self.norm_topk_prob:
            routing_weights /= routing_weights.sum(dim=-1, keepdim=True)
        routing_weights = routing_weights.to(hidden_states.dtype)
        final_hidden_states = torch.zeros_like(hidden_states)
        expert_mask = F.one_hot(selected_experts, num_classes=self.num_experts).permute(2, 1, 0)
        for expert_idx in range(self.num_experts):
            idx, top_x = torch.where(expert_mask[expert_idx])
            if top_x.numel() == 0:
                continue
            current_state = hidden_states[None, top_x].reshape(-1, hidden_dim)
            current_hidden_states = (self.experts[expert_idx](current_state)
                                     * routing_weights[top_x, idx, None])
            final_hidden_states.index_add_(0, top_x,
                                           current_hidden_states.to(hidden_states.dtype))
        if self.shared_expert is not None:
            shared_output = self.shared_expert(hidden_states)
            shared_output = torch.sigmoid(self.shared_expert_gate(hidden_states)) * shared_output
            final_hidden_states = final_hidden_states + shared_output
        return final_hidden_states.reshape(batch_size, sequence_length, hidden_dim)


class DeepseekMoE:
    """DeepSeek-V2/V3 MoE: float32 router (V2 softmax greedy or
    group-limited; V3 sigmoid + correction bias, group-limited), expert loop,
    shared experts on the block's input."""

    def __init__(self, model, w, prefix):
        cfg, sem = model.cfg, model.semantics
        self.model_type = cfg.model_type
        self.num_experts, self.top_k = cfg.num_experts, cfg.top_k
        self.n_group, self.topk_group = getattr(cfg, "n_group", None), getattr(cfg, "topk_group",
                                                                               None)
        self.norm_topk_prob = cfg.norm_topk_prob
        self.routed_scaling_factor = cfg.routed_scaling_factor
        self.topk_method = getattr(cfg, "topk_method", "noaux_tc")
        self.v3_masked_fill = sem.v3_masked_fill
        self.v2_deepseek_routing = sem.v2_deepseek_routing
        self.gate_weight = w[f"{prefix}.gate.weight"]
        bias = w.get(f"{prefix}.gate.e_score_correction_bias")
        self.e_score_correction_bias = (bias if bias is not None
                                        else torch.zeros(cfg.num_experts)).float()
        self.experts = [MLP(*(w[f"{prefix}.experts.{e}.{n}.weight"]
                              for n in ("gate_proj", "up_proj", "down_proj")))
                        for e in range(self.num_experts)]
        self.shared_experts = None
        if cfg.shared_size:
            self.shared_experts = MLP(*(w[f"{prefix}.shared_experts.{n}.weight"]
                                        for n in ("gate_proj", "up_proj", "down_proj")))

    def _group_mask(self, group_scores, tokens):
        group_idx = torch.topk(group_scores, k=self.topk_group, dim=-1, sorted=False)[1]
        group_mask = torch.zeros_like(group_scores)
        group_mask.scatter_(1, group_idx, 1)
        return (group_mask.unsqueeze(-1)
                .expand(tokens, self.n_group, self.num_experts // self.n_group)
                .reshape(tokens, -1).bool())

    def route(self, hidden_states):
        """(topk_indices, topk_weights) for hidden_states [T, H]."""
        router_logits = F.linear(hidden_states.type(torch.float32),
                                 self.gate_weight.type(torch.float32))
        tokens = router_logits.shape[0]
        if self.model_type == "deepseek_v3":
            scores = router_logits.sigmoid()
            scores_for_choice = scores + self.e_score_correction_bias.unsqueeze(0)
            group_scores = (scores_for_choice.view(tokens, self.n_group, -1)
                            .topk(2, dim=-1)[0].sum(dim=-1))
            score_mask = self._group_mask(group_scores, tokens)
            tmp_scores = scores_for_choice.masked_fill(~score_mask, self.v3_masked_fill)
            topk_indices = torch.topk(tmp_scores, k=self.top_k, dim=-1, sorted=False)[1]
            topk_weights = scores.gather(1, topk_indices)
            if self.norm_topk_prob:
                topk_weights = topk_weights / (topk_weights.sum(dim=-1, keepdim=True) + 1e-20)
            return topk_indices, topk_weights * self.routed_scaling_factor
        scores = router_logits.softmax(dim=-1, dtype=torch.float32)
        if self.topk_method == "group_limited_greedy":
            group_scores = scores.view(tokens, self.n_group, -1).max(dim=-1).values
            score_mask = self._group_mask(group_scores, tokens)
            scores = scores.masked_fill(~score_mask, 0.0)
        topk_weights, topk_indices = torch.topk(scores, k=self.top_k, dim=-1, sorted=False)
        if self.v2_deepseek_routing and self.top_k > 1 and self.norm_topk_prob:
            return topk_indices, topk_weights / (topk_weights.sum(dim=-1, keepdim=True) + 1e-20)
        return topk_indices, topk_weights * self.routed_scaling_factor

    def moe(self, hidden_states, topk_indices, topk_weights):
        final_hidden_states = torch.zeros_like(hidden_states, dtype=topk_weights.dtype)
        expert_mask = F.one_hot(topk_indices, num_classes=self.num_experts).permute(2, 0, 1)
        for expert_idx in range(self.num_experts):
            token_indices, weight_indices = torch.where(expert_mask[expert_idx])
            if token_indices.numel() == 0:
                continue
            expert_weights = topk_weights[token_indices, weight_indices]
            expert_output = self.experts[expert_idx](hidden_states[token_indices])
            final_hidden_states.index_add_(0, token_indices,
                                           expert_output * expert_weights.unsqueeze(-1))
        return final_hidden_states.type(hidden_states.dtype)

    def __call__(self, hidden_states):
        residuals = hidden_states
        orig_shape = hidden_states.shape
        flat = hidden_states.view(-1, hidden_states.shape[-1])
        topk_indices, topk_weights = self.route(flat)
        hidden_states = self.moe(flat, topk_indices, topk_weights).view(*orig_shape)
        if self.shared_experts is not None:
            hidden_states = hidden_states + self.shared_experts(residuals)
        return hidden_states


# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------


class DecoderLayer:
    def __init__(self, model, w, layer_idx):
        cfg = model.cfg
        p = f"model.layers.{layer_idx}"
        self.input_layernorm = RMSNorm(w[f"{p}.input_layernorm.weight"], cfg.eps)
        self.post_attention_layernorm = RMSNorm(w[f"{p}.post_attention_layernorm.weight"],
                                                cfg.eps)
        self.self_attn = (MLAAttention if cfg.is_deepseek else GQAAttention)(model, w, layer_idx)
        if cfg.model_type == "mixtral":
            self.mlp = SparseMoeBlock(model, w, f"{p}.block_sparse_moe")
        elif not cfg.is_moe_layer(layer_idx):
            self.mlp = MLP(*(w[f"{p}.mlp.{n}.weight"] for n in ("gate_proj", "up_proj",
                                                                 "down_proj")))
        elif cfg.is_deepseek:
            self.mlp = DeepseekMoE(model, w, f"{p}.mlp")
        else:
            self.mlp = SparseMoeBlock(model, w, f"{p}.mlp")

    def __call__(self, hidden_states, position_embeddings, mask, cache):
        residual = hidden_states
        hidden_states = self.input_layernorm(hidden_states)
        hidden_states = self.self_attn(hidden_states, position_embeddings, mask, cache)
        hidden_states = residual + hidden_states
        residual = hidden_states
        hidden_states = self.post_attention_layernorm(hidden_states)
        hidden_states = self.mlp(hidden_states)
        return residual + hidden_states


class HFTorchModel:
    """A causal LM with a DynamicCache; see the module docstring."""

    def __init__(self, ref_model, dtype):
        cfg = ref_model.cfg
        self.cfg, self.dtype = cfg, dtype
        self.semantics = ref_model.semantics
        self.softmax_scale = ref_model.softmax_scale
        # The weights in the model dtype, once; the V3 correction bias stays
        # float32 as HF keeps it.
        w = {}
        for name, tensor in ref_model.tensors.items():
            keep_f32 = name.endswith("e_score_correction_bias")
            w[name] = tensor.float() if keep_f32 else tensor.to(dtype).contiguous()
        self.embed_tokens = w["model.embed_tokens.weight"]
        self.layers = [DecoderLayer(self, w, i) for i in range(cfg.num_layers)]
        self.norm = RMSNorm(w["model.norm.weight"], cfg.eps)
        self.lm_head = Linear(self.embed_tokens if cfg.tie_word_embeddings
                              else w["lm_head.weight"])
        self.rotary_emb = RotaryEmbedding(ref_model.inv_freq, ref_model.attention_factor,
                                          complex_form=cfg.model_type == "deepseek_v2")
        self.sliding_window = getattr(cfg, "sliding_window", None)
        self.cache = DynamicCache()

    def reset(self):
        self.cache = DynamicCache()

    def forward(self, input_ids):
        """Runs `input_ids` [1, q] after the cached positions; returns the
        float32 logits [vocab] of the last position."""
        past = self.cache.get_seq_length()
        q_len = input_ids.shape[1]
        position_ids = torch.arange(past, past + q_len).unsqueeze(0)
        hidden_states = F.embedding(input_ids, self.embed_tokens)
        mask = attention_mask(q_len, past, hidden_states.dtype, self.sliding_window)
        position_embeddings = self.rotary_emb(hidden_states, position_ids)
        for layer in self.layers:
            hidden_states = layer(hidden_states, position_embeddings, mask, self.cache)
        hidden_states = self.norm(hidden_states)
        logits = self.lm_head(hidden_states[:, -1:, :])      # logits_to_keep = 1
        return logits[0, -1].float()

    @torch.no_grad()
    def prefill(self, token_ids):
        self.reset()
        ids = torch.as_tensor(list(token_ids), dtype=torch.int64).reshape(1, -1)
        return self.forward(ids)

    @torch.no_grad()
    def decode(self, token_id):
        return self.forward(torch.tensor([[int(token_id)]], dtype=torch.int64))


def checkpoint_dtype(ref_model):
    """The dtype the checkpoint stores its weights in (of the embedding)."""
    stored = getattr(ref_model.tensors["model.embed_tokens.weight"], "stored_dtype", "F32")
    return _STORED.get(stored, torch.float32)


def load(model_dir, dtype=None, threads=None):
    """The model of a checkpoint directory; dtype: a torch dtype or a name
    (float32, bfloat16), default the checkpoint's."""
    if threads:
        torch.set_num_threads(int(threads))
    ref_model = ref.load(model_dir)
    if isinstance(dtype, str):
        dtype = DTYPES[dtype]
    return HFTorchModel(ref_model, dtype or checkpoint_dtype(ref_model))


def generate(model, prompt_ids, n):
    """Greedy decoding: (n new token ids, prefill seconds, decode seconds).
    The prefill yields the first token; the decode time is that of the
    n - 1 following steps.  Only the computation is timed."""
    new = []
    if n <= 0:
        return new, 0.0, 0.0
    with torch.no_grad():
        t0 = time.perf_counter()
        logits = model.prefill(prompt_ids)
        token = int(torch.argmax(logits))
        t1 = time.perf_counter()
        new.append(token)
        for _ in range(n - 1):
            token = int(torch.argmax(model.decode(token)))
            new.append(token)
        t2 = time.perf_counter()
    return new, t1 - t0, t2 - t1


# ---------------------------------------------------------------------------
# Check against the reference
# ---------------------------------------------------------------------------

CHECK_VARIANTS = [
    # (label, model type, generator arguments)
    ("mixtral", "mixtral", []),
    ("mixtral bf16 storage", "mixtral", ["--dtype", "bfloat16"]),
    ("mixtral sliding_window=5", "mixtral", ["--set", "sliding_window=5"]),
    ("qwen2_moe", "qwen2_moe", []),
    ("qwen2_moe bf16 storage", "qwen2_moe", ["--dtype", "bfloat16"]),
    ("qwen2_moe tied", "qwen2_moe", ["--tie-word-embeddings"]),
    ("qwen3_moe", "qwen3_moe", []),
    ("qwen3_moe bf16 storage", "qwen3_moe", ["--dtype", "bfloat16"]),
    ("deepseek_v2", "deepseek_v2", []),
    ("deepseek_v2 bf16 storage", "deepseek_v2", ["--dtype", "bfloat16"]),
    ("deepseek_v2 group_limited", "deepseek_v2",
     ["--set", 'topk_method="group_limited_greedy"']),
    ("deepseek_v2 yarn", "deepseek_v2", ["--yarn"]),
    ("deepseek_v3", "deepseek_v3", []),
    ("deepseek_v3 bf16 storage", "deepseek_v3", ["--dtype", "bfloat16"]),
    ("deepseek_v3 yarn", "deepseek_v3", ["--yarn"]),
    ("deepseek_v3 q_lora_rank=null", "deepseek_v3", ["--set", "q_lora_rank=null"]),
]


def check_model(model_dir, prompt_len=12, n=8, seed=0):
    """(relative prefill-logit error, tokens equal, ours, reference's) in
    float32 against hf_model_reference."""
    reference = ref.load(model_dir)
    ours = HFTorchModel(reference, torch.float32)
    vocab = reference.cfg.vocab_size
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, vocab, (prompt_len,), generator=g).tolist()
    expected = ref.forward(reference, prompt)[-1]
    got = ours.prefill(prompt)
    err = float((got - expected).abs().max() / expected.abs().max())
    # The decode path too: every step's logits against the full recompute.
    tokens, _, _ = generate(ours, prompt, n)
    ref_tokens = ref.generate(reference, prompt, n)
    ours.prefill(prompt)
    decode_err = 0.0
    seq = list(prompt)
    for t in ref_tokens[:-1]:
        seq.append(t)
        step = ours.decode(t)
        full = ref.forward(reference, seq)[-1]
        decode_err = max(decode_err, float((step - full).abs().max() / full.abs().max()))
    return err, decode_err, tokens == ref_tokens, tokens, ref_tokens


def run_check(scratch, tolerance=1e-4):
    generator = os.path.join(ROOT, "scripts", "gen_hf_checkpoint.py")
    failures = 0
    print("| checkpoint | prefill max|err|/max|logit| | decode steps (worst) | 8 greedy tokens |")
    print("|---|---|---|---|")
    for label, model_type, extra in CHECK_VARIANTS:
        out = os.path.join(scratch, label.replace(" ", "_").replace("=", "-"))
        subprocess.run([sys.executable, generator, "--model-type", model_type, "--out", out,
                        *extra], check=True, stdout=subprocess.DEVNULL)
        err, decode_err, same, tokens, ref_tokens = check_model(out)
        ok = err <= tolerance and decode_err <= tolerance and same
        failures += not ok
        verdict = "equal" if same else f"DIFFER {tokens} vs reference {ref_tokens}"
        print(f"| {label} | {err:.2e} | {decode_err:.2e} | {verdict} |"
              + ("" if ok else " FAIL"))
    print()
    print("all match" if not failures else f"{failures} mismatch(es)")
    return failures == 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="compare with hf_model_reference on the tiny checkpoints")
    ap.add_argument("--scratch", help="--check: directory for the checkpoints (default: a "
                                      "temporary one)")
    ap.add_argument("--model", help="checkpoint directory")
    ap.add_argument("--tokens", help="comma-separated prompt token ids")
    ap.add_argument("--generate", type=int, default=8)
    ap.add_argument("--dtype", choices=sorted(DTYPES), help="default: the checkpoint's")
    ap.add_argument("--threads", type=int)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.check:
        if args.scratch:
            os.makedirs(args.scratch, exist_ok=True)
            return 0 if run_check(args.scratch) else 1
        with tempfile.TemporaryDirectory() as tmp:
            return 0 if run_check(tmp) else 1
    if not args.model or not args.tokens:
        ap.error("--model and --tokens (or --check) are required")
    model = load(args.model, args.dtype, args.threads)
    prompt = [int(t) for t in args.tokens.split(",") if t.strip()]
    tokens, prefill_s, decode_s = generate(model, prompt, args.generate)
    print(",".join(str(t) for t in tokens))
    steps = max(0, len(tokens) - 1)
    print(f"hf_torch_model: prefill {len(prompt)} tokens {prefill_s * 1e3:.2f} ms; decode "
          f"{steps} tokens {decode_s * 1e3:.2f} ms "
          f"({steps / decode_s if decode_s > 0 else 0.0:.1f} tokens/s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
