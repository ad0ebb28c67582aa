"""Independent numerical reference for the `moe` and `mla` dialects.

Written from the op descriptions only:

* include/moe-mlir/Dialect/MoE/IR/MoEOps.td (and the enum comments in
  MoEAttrs.td) for `route`, `dispatch`, `expert_ffn`, `combine` and
  `shared_expert`;
* include/moe-mlir/Dialect/MLA/IR/MLAOps.td and MLAAttrs.td for
  `mla_attention`;
* docs/semantics.md (shared) for the model facts behind the "model-style"
  references at the end of the file.

Conventions
-----------
* Every function takes and returns numpy arrays.  numpy has no bf16, so bf16
  or f16 tensors are passed as float32 arrays holding representable values;
  where an op rounds to an element type, the function takes a dtype string
  ("f32", "bf16", "f16") and rounds through torch (see `round_to`).
* Attributes that the ops store as f32 (`activation_alpha`, `clamp_limit`,
  `routed_scaling_factor`, `rms_norm_eps`, ...) are rounded to f32 before
  use, as the compiler sees them.
* `route` and `combine` compute in float32, as their descriptions fix;
  exact intermediate values (logits, softmax, sigmoid) are evaluated in
  float64 and rounded once to float32, i.e. they are the correctly rounded
  f32 values.  The FFN ops and `mla_attention` compute in float64 and return
  float32; the caller rounds to bf16/f16 if the op's result type asks for it.
* The op-level functions are deterministic: top-k selections are stable
  sorts on (-score, index), so ties go to the lower index.

The model-style references (`hf_mixtral_block`, `deepseek_v3_gate`,
`switch_top1_capacity`, `mla_full_forward`) are written the way Hugging Face
transformers writes these layers (torch ops, masks, per-expert loops); they
exist to cross-check the op-level functions, not to define semantics.
"""

import math
from fractions import Fraction

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "round_to",
    "capacity",
    "route",
    "dispatch",
    "expert_ffn",
    "combine",
    "shared_expert",
    "mla_attention",
    "hf_mixtral_block",
    "deepseek_v3_gate",
    "switch_top1_capacity",
    "mla_full_forward",
]

_TORCH_DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}

# f32 epsilon, the floor of NLLB-MoE's renormalization after dropping.
_F32_EPS = np.float32(1.1920929e-07)


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------


def round_to(x, dtype):
    """Rounds `x` to element type `dtype` ("f32", "bf16" or "f16").

    The value goes through float32 first (the ops compute in f32 and round
    once to the result type), then to `dtype` with round-to-nearest-even.
    Returns a float32 numpy array holding the rounded values.
    """
    if dtype not in _TORCH_DTYPES:
        raise ValueError(f"unknown element type {dtype!r}")
    x32 = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if dtype == "f32":
        return x32
    return torch.from_numpy(x32).to(_TORCH_DTYPES[dtype]).to(torch.float32).numpy()


def _f32(value):
    """The f32 value of an f32 attribute, as a Python float."""
    return float(np.float32(value))


def _sigmoid64(x):
    """Overflow-free sigmoid in float64."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


def _softmax64(x, axis=-1):
    """Softmax in float64 (max-subtracted)."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _topk_desc(scores, k):
    """Indices of the k largest entries along the last axis, in decreasing
    order of score; equal scores are ordered by increasing index (a stable
    sort on -score).  Returns int64 [..., k]."""
    order = np.argsort(-np.asarray(scores), axis=-1, kind="stable")
    return order[..., :k]


def capacity(expert_capacity, capacity_factor, num_tokens, k, num_experts):
    """Per-expert capacity C: `expert_capacity`, else
    `ceil(((f * T) * k) / E)` evaluated in f64 in that order, with f the f32
    value of `capacity_factor` (moe.route / moe.dispatch).  Returns None when
    neither is given.
    """
    if expert_capacity is not None:
        return int(expert_capacity)
    if capacity_factor is None:
        return None
    value = float(_f32(capacity_factor)) * float(num_tokens)
    value = value * float(k)
    value = value / float(num_experts)
    return int(math.ceil(value))


# ---------------------------------------------------------------------------
# moe.route
# ---------------------------------------------------------------------------


def _router_logits(x, router_weight, router_bias, input_dtype, round_logits):
    """The `Logits` paragraph of moe.route: f32 [T, E]."""
    x = np.asarray(x, dtype=np.float64)
    if router_weight is None:
        if router_bias is not None:
            raise ValueError("router_bias needs router_weight")
        logits = x
    else:
        logits = x @ np.asarray(router_weight, dtype=np.float64).T
        if router_bias is not None:
            logits = logits + np.asarray(router_bias, dtype=np.float64)
    logits = logits.astype(np.float32)
    if round_logits:
        logits = round_to(logits, input_dtype)
    return logits


def _scores(logits, scoring):
    """The `Scores` paragraph of moe.route: f32 [T, E]."""
    if scoring == "softmax":
        return _softmax64(logits).astype(np.float32)
    if scoring == "sigmoid":
        return _sigmoid64(logits).astype(np.float32)
    if scoring == "topk_softmax":
        return logits.astype(np.float32)
    raise ValueError(f"unknown scoring {scoring!r}")


def _mask_groups(c, n_group, topk_group, group_score, group_mask_fill):
    """Group-limited selection of moe.route: keeps the `topk_group` best of
    `n_group` contiguous expert groups (ties to the lower group index) and
    replaces the selection score of every other expert by -inf or 0."""
    T, E = c.shape
    if E % n_group:
        raise ValueError("n_group must divide the number of experts")
    if group_score is None:
        raise ValueError("n_group > 1 needs group_score")
    kept = n_group if topk_group is None else int(topk_group)
    grouped = c.reshape(T, n_group, E // n_group)
    if group_score == "max":
        gscore = grouped.max(axis=-1)
    elif group_score == "top2_sum":
        if E // n_group < 2:
            raise ValueError("top2_sum needs at least two experts per group")
        top2 = -np.sort(-grouped, axis=-1)[..., :2]
        gscore = top2[..., 0] + top2[..., 1]  # f32 add
    else:
        raise ValueError(f"unknown group_score {group_score!r}")
    keep = np.zeros((T, n_group), dtype=bool)
    np.put_along_axis(keep, _topk_desc(gscore, kept), True, axis=-1)
    fills = {"neg_inf": -np.inf, "zero": 0.0}
    if group_mask_fill not in fills:
        raise ValueError(f"unknown group_mask_fill {group_mask_fill!r}")
    keep = np.repeat(keep, E // n_group, axis=-1)
    return np.where(keep, c, np.float32(fills[group_mask_fill])).astype(np.float32)


def _admit_slot_major(indices, num_experts, cap):
    """Slot-major admission (moe.route capacity, moe.dispatch capacity):
    slot 0 of every token in token order, then slot 1, ...; an assignment
    finding its expert full, or with an id outside [0, E), is not admitted.
    Returns (slot [T, k] int64 with the position inside the expert or -1,
    counts [E])."""
    T, k = indices.shape
    slot = np.full((T, k), -1, dtype=np.int64)
    counts = np.zeros(num_experts, dtype=np.int64)
    for j in range(k):
        for t in range(T):
            e = int(indices[t, j])
            if 0 <= e < num_experts and counts[e] < cap:
                slot[t, j] = counts[e]
                counts[e] += 1
    return slot, counts


def route(input, *, k, scoring, router_weight=None, router_bias=None,
          selection_bias=None, mode="token_choice", input_dtype="f32",
          round_logits=False, renormalize=False, renormalize_epsilon=0.0,
          renormalize_after_drop=False, routed_scaling_factor=1.0, n_group=1,
          topk_group=None, group_score=None, group_mask_fill="neg_inf",
          expert_capacity=None, capacity_factor=None):
    """moe.route (MoEOps.td, MoE_RouteOp; enums Scoring, RoutingMode,
    GroupScore, MaskFill of MoEAttrs.td).

    `input` is the hidden states [T, H] when `router_weight` [E, H] is given,
    else the logits [T, E]; `input_dtype` is the element type of `input`
    (used by `round_logits`).  All router math is f32.

    Token choice returns (indices [T, k] int32 expert ids, -1 where dropped by
    the capacity; weights [T, k] float32), experts in decreasing order of the
    selection score.  Expert choice returns (indices [E, C] int32 token ids,
    -1 padding; weights [E, C] float32, 0 padding).
    """
    logits = _router_logits(input, router_weight, router_bias, input_dtype,
                            round_logits)
    T, E = logits.shape
    s = _scores(logits, scoring)
    scale = np.float32(_f32(routed_scaling_factor))

    if mode == "expert_choice":
        if scoring == "topk_softmax":
            raise ValueError("expert choice scores with softmax or sigmoid")
        if selection_bias is not None or n_group != 1 or renormalize:
            raise ValueError("expert choice has no selection bias, groups or "
                             "renormalization")
        cap = capacity(expert_capacity,
                       1.0 if capacity_factor is None else capacity_factor,
                       T, k, E)
        ids = np.full((E, cap), -1, dtype=np.int32)
        w = np.zeros((E, cap), dtype=np.float32)
        n = min(cap, T)
        chosen = _topk_desc(s.T, n)  # [E, n] token ids, ties to lower token
        ids[:, :n] = chosen
        w[:, :n] = np.take_along_axis(s.T, chosen, axis=-1) * scale
        return ids, w
    if mode != "token_choice":
        raise ValueError(f"unknown mode {mode!r}")
    if k > E:
        raise ValueError("k exceeds the number of experts")

    # Selection.
    c = s
    if selection_bias is not None:
        c = (c + np.asarray(selection_bias, dtype=np.float32)).astype(np.float32)
    if n_group > 1:
        c = _mask_groups(c, n_group, topk_group, group_score, group_mask_fill)
    idx = _topk_desc(c, k)

    # Weights.
    if scoring == "topk_softmax":
        w = _softmax64(np.take_along_axis(logits, idx, axis=-1)).astype(np.float32)
    else:
        w = np.take_along_axis(s, idx, axis=-1)
    if renormalize:
        denom = w.sum(axis=-1, keepdims=True, dtype=np.float32)
        w = w / (denom + np.float32(_f32(renormalize_epsilon)))
    w = w.astype(np.float32)

    # Capacity; with renormalize_after_drop the unscaled weights are
    # renormalized over the admitted assignments before the scaling.
    cap = capacity(expert_capacity, capacity_factor, T, k, E)
    if cap is not None:
        slot, _ = _admit_slot_major(idx, E, cap)
        admitted = slot >= 0
        idx = np.where(admitted, idx, -1)
        if renormalize_after_drop:
            w = np.where(admitted, w, np.float32(0.0))
            denom = np.maximum(w.sum(axis=-1, keepdims=True, dtype=np.float32),
                               _F32_EPS)
            w = (w / denom).astype(np.float32)
    w = (w * scale).astype(np.float32)
    return idx.astype(np.int32), w.astype(np.float32)


# ---------------------------------------------------------------------------
# moe.dispatch
# ---------------------------------------------------------------------------


def dispatch(input, indices, *, mode, num_experts, expert_capacity=None,
             capacity_factor=None):
    """moe.dispatch (MoEOps.td, MoE_DispatchOp; enum DispatchMode).

    Returns (rows, counts int32 [E], mapping int32):
    * "dropless": rows [T*k, H] grouped by expert, then (token, slot);
      mapping [T, k] = row or -1;
    * "capacity": rows [E, C, H], slot-major admission; mapping [T, k] =
      e*C + c or -1;
    * "expert_choice": `indices` [E, C] token ids; rows [E, C, H];
      mapping [T, E] = e*C + c or -1.
    Unused rows are zero.  No arithmetic: rows keep `input`'s values/dtype.
    """
    x = np.asarray(input)
    indices = np.asarray(indices)
    T, H = x.shape
    E = int(num_experts)

    if mode == "expert_choice":
        if indices.shape[0] != E:
            raise ValueError("expert-choice indices are [E, C]")
        cap = indices.shape[1]
        rows = np.zeros((E, cap, H), dtype=x.dtype)
        counts = np.zeros(E, dtype=np.int32)
        mapping = np.full((T, E), -1, dtype=np.int32)
        for e in range(E):
            for c in range(cap):
                t = int(indices[e, c])
                if 0 <= t < T:
                    rows[e, c] = x[t]
                    counts[e] += 1
                    mapping[t, e] = e * cap + c
        return rows, counts, mapping

    Tk, k = indices.shape
    if Tk != T:
        raise ValueError("indices must be [T, k]")
    valid = (indices >= 0) & (indices < E)

    if mode == "dropless":
        # A stable sort of the (token, slot)-ordered assignments by expert id
        # (dropped ones last) gives the row order.
        expert = np.where(valid, indices, E).reshape(-1)
        order = np.argsort(expert, kind="stable")[: int(valid.sum())]
        rows = np.zeros((T * k, H), dtype=x.dtype)
        rows[: len(order)] = x[order // k]
        mapping = np.full(T * k, -1, dtype=np.int32)
        mapping[order] = np.arange(len(order), dtype=np.int32)
        counts = np.bincount(expert[expert < E], minlength=E).astype(np.int32)
        return rows, counts, mapping.reshape(T, k)

    if mode == "capacity":
        cap = capacity(expert_capacity, capacity_factor, T, k, E)
        if cap is None:
            raise ValueError("capacity dispatch needs expert_capacity or "
                             "capacity_factor")
        slot, counts = _admit_slot_major(indices, E, cap)
        rows = np.zeros((E, cap, H), dtype=x.dtype)
        mapping = np.full((T, k), -1, dtype=np.int32)
        for t in range(T):
            for j in range(k):
                if slot[t, j] >= 0:
                    e = int(indices[t, j])
                    rows[e, slot[t, j]] = x[t]
                    mapping[t, j] = e * cap + slot[t, j]
        return rows, counts.astype(np.int32), mapping

    raise ValueError(f"unknown dispatch mode {mode!r}")


# ---------------------------------------------------------------------------
# The FFN shared by moe.expert_ffn and moe.shared_expert
# ---------------------------------------------------------------------------


def _activation(x, activation, alpha):
    """The Activation enum of MoEAttrs.td, in float64."""
    if activation == "silu":
        return x * _sigmoid64(alpha * x)
    if activation == "gelu":
        return 0.5 * x * (1.0 + torch.erf(torch.from_numpy(x / math.sqrt(2.0))).numpy())
    if activation == "gelu_tanh":
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    if activation == "relu":
        return np.maximum(x, 0.0)
    if activation == "identity":
        return x
    raise ValueError(f"unknown activation {activation!r}")


def _split_gate_up(w, gating):
    """Splits a fused fc1 weight [2I, ...] (or bias [2I]) into (gate, up)
    along its first axis (MoEAttrs.td, Gating enum)."""
    if gating == "concatenated":
        half = w.shape[0] // 2
        return w[:half], w[half:]
    if gating == "interleaved":
        return w[0::2], w[1::2]
    raise ValueError(gating)


def _ffn(x, fc1, fc2, fc3, b1, b2, b3, activation, gating, alpha, beta,
         clamp_limit):
    """The FFN paragraph of MoEOps.td (MoE_FfnDescription), one expert,
    float64: x [n, H], fc1 [I or 2I, H], fc2 [H, I], fc3 [I, H]."""
    f64 = lambda a: None if a is None else np.asarray(a, dtype=np.float64)
    x, fc1, fc2, fc3, b1, b2, b3 = map(f64, (x, fc1, fc2, fc3, b1, b2, b3))
    alpha, beta = _f32(alpha), _f32(beta)
    lim = None if clamp_limit is None else _f32(clamp_limit)

    def linear(w, b):
        y = x @ w.T
        return y if b is None else y + b

    if gating == "none":
        h = linear(fc1, b1)
        if lim is not None:
            h = np.clip(h, -lim, lim)
        h = _activation(h, activation, alpha)
    else:
        if gating == "separate":
            if fc3 is None:
                raise ValueError("separate gating needs fc3")
            g, u = linear(fc1, b1), linear(fc3, b3)
        else:
            wg, wu = _split_gate_up(fc1, gating)
            bg, bu = (None, None) if b1 is None else _split_gate_up(b1, gating)
            g, u = x @ wg.T, x @ wu.T
            g = g if bg is None else g + bg
            u = u if bu is None else u + bu
        if lim is not None:
            g = np.minimum(g, lim)
            u = np.clip(u, -lim, lim)
        h = _activation(g, activation, alpha) * (u + beta)
    y = h @ fc2.T
    return y if b2 is None else y + b2


# ---------------------------------------------------------------------------
# moe.expert_ffn
# ---------------------------------------------------------------------------


def expert_ffn(rows, counts, fc1, fc2, fc3=None, fc1_bias=None, fc2_bias=None,
               fc3_bias=None, *, activation, gating="none", activation_alpha=1.0,
               activation_beta=0.0, clamp_limit=None):
    """moe.expert_ffn (MoEOps.td, MoE_ExpertFfnOp with MoE_FfnDescription;
    enums Activation and Gating).

    `rows` is [N, H] (dropless: the first counts[0] rows are expert 0's, ...;
    rows past sum(counts) give zero) or [E, C, H] (rows[e, c] for
    c < counts[e] are expert e's, the rest give zero).  Weights are stacked
    per expert: fc1 [E, I or 2I, H], fc2 [E, H, I], fc3 [E, I, H].
    Computes in float64, returns float32 of `rows`' shape.
    """
    rows = np.asarray(rows, dtype=np.float64)
    counts = np.asarray(counts).astype(np.int64)
    E = counts.shape[0]
    out = np.zeros_like(rows)

    def expert(e, x):
        pick = lambda a: None if a is None else np.asarray(a)[e]
        return _ffn(x, pick(fc1), pick(fc2), pick(fc3), pick(fc1_bias),
                    pick(fc2_bias), pick(fc3_bias), activation, gating,
                    activation_alpha, activation_beta, clamp_limit)

    if rows.ndim == 2:
        start = 0
        for e in range(E):
            n = int(counts[e])
            if n:
                out[start:start + n] = expert(e, rows[start:start + n])
            start += n
        if start > rows.shape[0]:
            raise ValueError("sum(counts) exceeds the number of rows")
    elif rows.ndim == 3:
        if rows.shape[0] != E:
            raise ValueError("[E, C, H] rows need E counts")
        for e in range(E):
            n = int(counts[e])
            if n:
                out[e, :n] = expert(e, rows[e, :n])
    else:
        raise ValueError("rows must be [N, H] or [E, C, H]")
    return out.astype(np.float32)


# ---------------------------------------------------------------------------
# moe.combine
# ---------------------------------------------------------------------------


def combine(expert_out, mapping, weights, *, mode, passthrough=None):
    """moe.combine (MoEOps.td, MoE_CombineOp).

    out[t] = sum_j w(t, j) * expert_out.flat_rows[mapping[t, j]], in float32,
    in increasing j starting from 0.0 (products and sums rounded separately,
    i.e. no fused multiply-add).  Dropped entries (mapping -1) contribute 0,
    or w(t, j) * passthrough[t] when `passthrough` is given (dropless and
    capacity modes).  Returns float32 [T, H]; the caller rounds to the
    element type of `expert_out`.
    """
    eo = np.asarray(expert_out, dtype=np.float32)
    flat = eo.reshape(-1, eo.shape[-1])
    mapping = np.asarray(mapping).astype(np.int64)
    weights = np.asarray(weights, dtype=np.float32)
    T, J = mapping.shape
    if mode == "expert_choice":
        if passthrough is not None:
            raise NotImplementedError(
                "passthrough with expert_choice is not defined by moe.combine "
                "(w(t, e) = weights.flat[-1] has no meaning)")
        w_of = lambda j: np.where(mapping[:, j] >= 0,
                                  weights.reshape(-1)[np.maximum(mapping[:, j], 0)],
                                  np.float32(0.0))
    elif mode in ("dropless", "capacity"):
        if weights.shape != mapping.shape:
            raise ValueError("weights and mapping must both be [T, k]")
        w_of = lambda j: weights[:, j]
    else:
        raise ValueError(f"unknown combine mode {mode!r}")
    pt = None if passthrough is None else np.asarray(passthrough, dtype=np.float32)

    out = np.zeros((T, flat.shape[1]), dtype=np.float32)
    for j in range(J):
        m = mapping[:, j]
        w = w_of(j).astype(np.float32)[:, None]
        src = flat[np.maximum(m, 0)]
        if pt is not None:
            src = np.where((m >= 0)[:, None], src, pt)
        else:
            src = np.where((m >= 0)[:, None], src, np.float32(0.0))
        out = (out + (w * src).astype(np.float32)).astype(np.float32)
    return out


# ---------------------------------------------------------------------------
# moe.shared_expert
# ---------------------------------------------------------------------------


def shared_expert(input, fc1, fc2, fc3=None, fc1_bias=None, fc2_bias=None,
                  fc3_bias=None, gate=None, *, activation, gating="none",
                  activation_alpha=1.0, activation_beta=0.0, clamp_limit=None):
    """moe.shared_expert (MoEOps.td, MoE_SharedExpertOp with
    MoE_FfnDescription): out[t] = g(t) * FFN(input[t]), g(t) =
    sigmoid(input[t] . gate^T) with `gate` [1, H], else 1.  fc1 [I or 2I, H],
    fc2 [H, I], fc3 [I, H].  Computes in float64, returns float32 [T, H]."""
    x = np.asarray(input, dtype=np.float64)
    y = _ffn(x, fc1, fc2, fc3, fc1_bias, fc2_bias, fc3_bias, activation,
             gating, activation_alpha, activation_beta, clamp_limit)
    if gate is not None:
        y = y * _sigmoid64(x @ np.asarray(gate, dtype=np.float64).T)
    return y.astype(np.float32)


# ---------------------------------------------------------------------------
# mla.attention
# ---------------------------------------------------------------------------


def _yarn_m(scale, a):
    """m(s, a) of MLAAttrs.td (#mla.yarn)."""
    return 0.1 * a * math.log(scale) + 1.0 if scale > 1 else 1.0


def _rope_frequencies(d, theta, yarn):
    """Frequencies f_i, 0 <= i < d/2 (mla.attention RoPE; #mla.yarn)."""
    i = np.arange(d // 2, dtype=np.float64)
    f_extra = float(theta) ** (-2.0 * i / d)
    if yarn is None:
        return f_extra
    factor = float(yarn["factor"])
    omp = float(yarn["original_max_position_embeddings"])
    corr = lambda b: d * math.log(omp / (2.0 * math.pi * b)) / (2.0 * math.log(theta))
    low = max(math.floor(corr(float(yarn.get("beta_fast", 32.0)))), 0)
    high = min(math.ceil(corr(float(yarn.get("beta_slow", 1.0)))), d - 1)
    if high == low:
        high += 0.001
    ramp = np.clip((i - low) / (high - low), 0.0, 1.0)
    return (f_extra / factor) * ramp + f_extra * (1.0 - ramp)


def _yarn_cos_sin_factor(yarn):
    """The factor on cos and sin (#mla.yarn); 1 without YaRN."""
    if yarn is None:
        return 1.0
    factor = float(yarn["factor"])
    mscale = float(yarn.get("mscale", 1.0))
    mscale_all_dim = float(yarn.get("mscale_all_dim", 0.0))
    if mscale and mscale_all_dim:
        return _yarn_m(factor, mscale) / _yarn_m(factor, mscale_all_dim)
    return _yarn_m(factor, 1.0)


def _rope(x, positions, freqs, factor, interleave):
    """RoPE of mla.attention on the last axis of x [S, ..., D_r] at
    `positions` [S]; pairs (x[2i], x[2i+1]) with `interleave`, else
    (x[i], x[i + D_r/2]); the result is in the halves layout."""
    d = x.shape[-1]
    a, b = (x[..., 0::2], x[..., 1::2]) if interleave else (x[..., :d // 2], x[..., d // 2:])
    angle = positions[:, None] * freqs[None, :]            # [S, D_r/2]
    angle = angle.reshape(angle.shape[:1] + (1,) * (x.ndim - 2) + angle.shape[1:])
    cos, sin = np.cos(angle) * factor, np.sin(angle) * factor
    return np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)


def _rms_norm(x, w, eps):
    """w * x / sqrt(mean(x^2) + eps) over the last axis."""
    mean_square = np.mean(x * x, axis=-1, keepdims=True)
    return np.asarray(w, dtype=np.float64) * x / np.sqrt(mean_square + eps)


def mla_attention(hidden, c_kv_cache, k_rope_cache, *, q_proj=None, q_a_proj=None,
                  q_a_norm=None, q_b_proj=None, kv_a_proj, kv_a_norm, kv_b_proj,
                  o_proj, num_heads, qk_nope_head_dim, qk_rope_head_dim,
                  v_head_dim, rms_norm_eps=1e-6, rope_theta=10000.0,
                  rope_interleave=False, yarn=None, softmax_scale=None,
                  cache_dtype="f32"):
    """mla.attention (MLAOps.td, MLA_AttentionOp; #mla.yarn of MLAAttrs.td),
    naive form: k_nope and v are expanded from c_kv for every cached and new
    token.

    hidden [S, H] holds the tokens at positions P .. P+S-1, with
    c_kv_cache [P, R_kv] and k_rope_cache [P, D_r].  `yarn` is None or a
    dict with factor, original_max_position_embeddings and optionally
    beta_fast (32), beta_slow (1), mscale (1), mscale_all_dim (0).
    `cache_dtype` is the caches' element type: new entries are rounded to it
    and the attention uses the rounded values.

    Computes in float64; returns float32 (output [S, H], c_kv_out
    [P+S, R_kv], k_rope_out [P+S, D_r]).
    """
    N, Dn, Dr, Dv = num_heads, qk_nope_head_dim, qk_rope_head_dim, v_head_dim
    f64 = lambda a: np.asarray(a, dtype=np.float64)
    x = f64(hidden)
    S = x.shape[0]
    c_cache, kr_cache = f64(c_kv_cache), f64(k_rope_cache)
    P, R = c_cache.shape
    eps = _f32(rms_norm_eps)

    # Query [S, N, Dn + Dr].
    if q_proj is not None:
        q = x @ f64(q_proj).T
    else:
        q = _rms_norm(x @ f64(q_a_proj).T, q_a_norm, eps) @ f64(q_b_proj).T
    q = q.reshape(S, N, Dn + Dr)
    q_nope, q_rope = q[..., :Dn], q[..., Dn:]

    # Latent KV of the new tokens.
    kv = x @ f64(kv_a_proj).T
    c_new = _rms_norm(kv[:, :R], kv_a_norm, eps)
    positions = np.arange(P, P + S, dtype=np.float64)
    freqs = _rope_frequencies(Dr, float(rope_theta), yarn)
    rf = _yarn_cos_sin_factor(yarn)
    kr_new = _rope(kv[:, R:], positions, freqs, rf, rope_interleave)
    q_rope = _rope(q_rope, positions, freqs, rf, rope_interleave)
    c_all = np.concatenate([c_cache, f64(round_to(c_new, cache_dtype))], axis=0)
    kr_all = np.concatenate([kr_cache, f64(round_to(kr_new, cache_dtype))], axis=0)

    # Expand every cached and new latent: k_nope, v [P+S, N, *].
    kvb = (c_all @ f64(kv_b_proj).T).reshape(P + S, N, Dn + Dv)
    k_nope, v = kvb[..., :Dn], kvb[..., Dn:]

    if softmax_scale is not None:
        scale = _f32(softmax_scale)
    else:
        scale = (Dn + Dr) ** -0.5
        if yarn is not None and float(yarn.get("mscale_all_dim", 0.0)):
            scale *= _yarn_m(float(yarn["factor"]), float(yarn["mscale_all_dim"])) ** 2

    scores = np.einsum("snd,jnd->nsj", q_nope, k_nope)
    scores = scale * (scores + np.einsum("snd,jd->nsj", q_rope, kr_all))
    causal = np.arange(P + S)[None, :] <= (P + np.arange(S))[:, None]  # [S, P+S]
    scores = np.where(causal[None], scores, -np.inf)
    p = _softmax64(scores, axis=-1)
    o = np.einsum("nsj,jnd->snd", p, v).reshape(S, N * Dv)
    out = o @ f64(o_proj).T
    return out.astype(np.float32), c_all.astype(np.float32), kr_all.astype(np.float32)


# ===========================================================================
# Model-style references (cross-checks; written the way the frameworks are)
# ===========================================================================


def _t(a, dtype=torch.float64):
    return torch.as_tensor(np.asarray(a)).to(dtype)


def bf16_dot_input(v, weight):
    """The input of an expert projection under bf16 dot products (moe-mlir's
    --bf16-dot for bf16 weights): rounded to float32, then to bfloat16, when
    the reduction size is a multiple of 32; unchanged otherwise."""
    if weight.shape[-1] % 32:
        return v
    return v.to(torch.float32).to(torch.bfloat16).to(v.dtype)


def hf_mixtral_block(x, gate_w, w1, w2, w3, top_k, bf16_dot=False):
    """A Mixtral sparse MoE block as HF transformers writes it: the gate
    Linear and the softmax in float32, torch.topk, renormalization, then a
    loop over the experts with torch.where and index_add_.  The experts are
    evaluated in float64.  x [T, H], gate_w [E, H], w1/w3 [E, I, H],
    w2 [E, H, I].  Returns float64 [T, H].  bf16_dot: the input of every
    expert projection goes through `bf16_dot_input` (the weights must then
    be bf16 values)."""
    hidden = _t(x)
    router_logits = F.linear(_t(x, torch.float32), _t(gate_w, torch.float32))
    routing_weights = F.softmax(router_logits, dim=1, dtype=torch.float)
    routing_weights, selected_experts = torch.topk(routing_weights, top_k, dim=-1)
    routing_weights /= routing_weights.sum(dim=-1, keepdim=True)
    routing_weights = routing_weights.to(hidden.dtype)

    num_experts = gate_w.shape[0]
    final = torch.zeros_like(hidden)
    expert_mask = F.one_hot(selected_experts, num_classes=num_experts).permute(2, 1, 0)
    for e in range(num_experts):
        slot, token = torch.where(expert_mask[e])
        if token.numel() == 0:
            continue
        state = hidden[token]

        def project(v, w):
            w = _t(w)
            return F.linear(bf16_dot_input(v, w) if bf16_dot else v, w)

        h = F.silu(project(state, w1[e])) * project(state, w3[e])
        y = project(h, w2[e]) * routing_weights[token, slot, None]
        final.index_add_(0, token, y)
    return final.numpy()


def deepseek_v3_gate(x, gate_w, bias, top_k, n_group, topk_group,
                     norm_topk_prob, routed_scaling_factor, mask_fill="neg_inf"):
    """The DeepSeek-V3 MoEGate / HF DeepseekV3TopkRouter math in float32:
    sigmoid scores, e_score_correction_bias for the choice only, top2-sum
    group scores, masking of the other groups (-inf, or 0.0 with
    mask_fill="zero"), torch.topk(sorted=False), gather of the unbiased
    scores, normalization (+1e-20) and scaling.  Returns (indices int64
    [T, k] in torch.topk's order, weights float32 [T, k])."""
    logits = F.linear(_t(x, torch.float32), _t(gate_w, torch.float32))
    scores = logits.sigmoid()
    num_experts = scores.shape[-1]
    scores_for_choice = scores + _t(bias, torch.float32).unsqueeze(0)
    group_scores = (scores_for_choice.view(-1, n_group, num_experts // n_group)
                    .topk(2, dim=-1)[0].sum(dim=-1))
    group_idx = torch.topk(group_scores, k=topk_group, dim=-1, sorted=False)[1]
    group_mask = torch.zeros_like(group_scores)
    group_mask.scatter_(1, group_idx, 1)
    score_mask = (group_mask.unsqueeze(-1)
                  .expand(-1, n_group, num_experts // n_group)
                  .reshape(-1, num_experts))
    fill = float("-inf") if mask_fill == "neg_inf" else 0.0
    tmp_scores = scores_for_choice.masked_fill(~score_mask.bool(), fill)
    topk_idx = torch.topk(tmp_scores, k=top_k, dim=-1, sorted=False)[1]
    topk_weight = scores.gather(1, topk_idx)
    if norm_topk_prob:
        topk_weight = topk_weight / (topk_weight.sum(dim=-1, keepdim=True) + 1e-20)
    topk_weight = topk_weight * routed_scaling_factor
    return topk_idx.numpy(), topk_weight.numpy()


def switch_top1_capacity(x, router_w, wi, wo, expert_capacity,
                         dropped="zero"):
    """A Switch Transformers sparse MLP as HF writes it (one sequence):
    float32 softmax router, argmax, one-hot, cumsum token priority,
    `priority <= expert_capacity` mask, router prob = max p; ReLU experts
    wi [E, I, H] / wo [E, H, I] (float64).  A dropped token's output is 0
    (dropped="zero", current HF) or its hidden state times its router
    probability (dropped="passthrough", HF before the 2025 fix).
    Returns (output float64 [T, H], expert index [T] with -1 where dropped)."""
    hidden = _t(x)
    num_experts = router_w.shape[0]
    logits = F.linear(_t(x, torch.float32), _t(router_w, torch.float32))
    router_probs = F.softmax(logits, dim=-1, dtype=torch.float32)
    expert_index = torch.argmax(router_probs, dim=-1)
    expert_index = F.one_hot(expert_index, num_classes=num_experts)
    token_priority = torch.cumsum(expert_index, dim=-2)
    expert_index = expert_index * (token_priority <= expert_capacity)
    router_probs = torch.max(router_probs, dim=-1).values.unsqueeze(-1)

    next_states = hidden.clone() if dropped == "passthrough" else torch.zeros_like(hidden)
    for e in range(num_experts):
        token_indices = expert_index[:, e].bool()
        h = F.relu(F.linear(hidden[token_indices], _t(wi[e])))
        next_states[token_indices] = F.linear(h, _t(wo[e]))
    out = router_probs.to(torch.float64) * next_states
    kept = expert_index.sum(-1) > 0
    index = torch.where(kept, expert_index.argmax(-1), torch.full_like(kept, -1, dtype=torch.long))
    return out.numpy(), index.numpy()


def _hf_yarn_inv_freq(dim, base, rope_scaling):
    """HF `_compute_yarn_parameters` written out: (inv_freq, attention_factor)."""
    factor = rope_scaling["factor"]
    mscale = rope_scaling.get("mscale", 1.0)
    mscale_all_dim = rope_scaling.get("mscale_all_dim", 0.0)
    omp = rope_scaling["original_max_position_embeddings"]

    def get_mscale(scale, m=1.0):
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    if mscale and mscale_all_dim:
        attention_factor = get_mscale(factor, mscale) / get_mscale(factor, mscale_all_dim)
    else:
        attention_factor = get_mscale(factor)
    beta_fast = rope_scaling.get("beta_fast", 32.0)
    beta_slow = rope_scaling.get("beta_slow", 1.0)

    def find_correction_dim(num_rotations):
        return (dim * math.log(omp / (num_rotations * 2 * math.pi))) / (2 * math.log(base))

    low = max(math.floor(find_correction_dim(beta_fast)), 0)
    high = min(math.ceil(find_correction_dim(beta_slow)), dim - 1)
    if low == high:
        high += 0.001
    ramp = torch.clamp((torch.arange(dim // 2, dtype=torch.float64) - low) / (high - low), 0, 1)
    pos_freqs = base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    extrapolation = 1.0 / pos_freqs
    interpolation = 1.0 / (factor * pos_freqs)
    extrapolation_factor = 1 - ramp
    inv_freq = interpolation * (1 - extrapolation_factor) + extrapolation * extrapolation_factor
    return inv_freq, attention_factor


def mla_full_forward(hidden, *, q_proj=None, q_a_proj=None, q_a_norm=None,
                     q_b_proj=None, kv_a_proj, kv_a_norm, kv_b_proj, o_proj,
                     num_heads, qk_nope_head_dim, qk_rope_head_dim, v_head_dim,
                     rms_norm_eps=1e-6, rope_theta=10000.0,
                     rope_interleave=False, yarn=None, softmax_scale=None):
    """DeepSeek-V3 attention over a whole sequence from scratch (no cache),
    as HF DeepseekV3Attention writes it, in float64: rotary cos/sin from
    cat(freqs, freqs), rotate_half, the view/transpose de-interleave, keys
    built per head as cat(k_nope, k_rope), an additive causal mask, eager
    softmax attention.  Same arguments as `mla_attention` without caches.
    Returns float64 (output [S, H], c_kv [S, R_kv], k_rope [S, D_r])."""
    N, Dn, Dr, Dv = num_heads, qk_nope_head_dim, qk_rope_head_dim, v_head_dim
    x = _t(hidden)
    S = x.shape[0]
    eps = _f32(rms_norm_eps)

    def rms_norm(h, w):
        variance = h.pow(2).mean(-1, keepdim=True)
        return _t(w) * (h * torch.rsqrt(variance + eps))

    def rotate_half(t):
        return torch.cat((-t[..., t.shape[-1] // 2:], t[..., : t.shape[-1] // 2]), dim=-1)

    if q_proj is None:
        q_states = F.linear(rms_norm(F.linear(x, _t(q_a_proj)), q_a_norm), _t(q_b_proj))
    else:
        q_states = F.linear(x, _t(q_proj))
    q_states = q_states.view(1, S, N, Dn + Dr).transpose(1, 2)      # [1, N, S, Dqk]
    q_pass, q_rot = torch.split(q_states, [Dn, Dr], dim=-1)

    compressed_kv = F.linear(x, _t(kv_a_proj))
    R = compressed_kv.shape[-1] - Dr
    k_pass, k_rot = torch.split(compressed_kv, [R, Dr], dim=-1)
    c_kv = rms_norm(k_pass, kv_a_norm)
    k_pass = F.linear(c_kv, _t(kv_b_proj)).view(1, S, N, Dn + Dv).transpose(1, 2)
    k_pass, value_states = torch.split(k_pass, [Dn, Dv], dim=-1)
    k_rot = k_rot.view(1, 1, S, Dr)

    if yarn is None:
        inv_freq = 1.0 / (rope_theta ** (torch.arange(0, Dr, 2, dtype=torch.float64) / Dr))
        attention_scaling = 1.0
    else:
        inv_freq, attention_scaling = _hf_yarn_inv_freq(Dr, rope_theta, yarn)
    freqs = torch.arange(S, dtype=torch.float64)[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos = (emb.cos() * attention_scaling)[None, None]
    sin = (emb.sin() * attention_scaling)[None, None]
    if rope_interleave:
        q_rot = q_rot.reshape(1, N, S, Dr // 2, 2).transpose(4, 3).reshape(1, N, S, Dr)
        k_rot = k_rot.reshape(1, 1, S, Dr // 2, 2).transpose(4, 3).reshape(1, 1, S, Dr)
    q_rot = q_rot * cos + rotate_half(q_rot) * sin
    k_rot = k_rot * cos + rotate_half(k_rot) * sin

    k_rot_heads = k_rot.expand(1, N, S, Dr)
    query_states = torch.cat((q_pass, q_rot), dim=-1)
    key_states = torch.cat((k_pass, k_rot_heads), dim=-1)

    scaling = softmax_scale
    if scaling is None:
        scaling = (Dn + Dr) ** -0.5
        if yarn is not None and yarn.get("mscale_all_dim", 0.0):
            factor = yarn["factor"]
            m = 1.0 if factor <= 1 else 0.1 * yarn["mscale_all_dim"] * math.log(factor) + 1.0
            scaling = scaling * m * m
    else:
        scaling = _f32(scaling)

    mask = torch.full((S, S), float("-inf"), dtype=torch.float64).triu(1)
    attn = torch.matmul(query_states, key_states.transpose(2, 3)) * scaling + mask
    attn = F.softmax(attn, dim=-1)
    attn_output = torch.matmul(attn, value_states).transpose(1, 2).reshape(S, N * Dv)
    out = F.linear(attn_output, _t(o_proj))
    return out.numpy(), c_kv.numpy(), k_rot[0, 0].numpy()
