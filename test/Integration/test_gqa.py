"""End-to-end numerics of mla.gqa_attention: compiled for the CPU by moe-run
(moe-cpu-pipeline with convert-mla-to-linalg, JIT) and compared with the
independent PyTorch reference `gqa_reference` below, written from the op's
semantics (Hugging Face's Mixtral / Qwen2-MoE / Qwen3-MoE attention).

The reference computes in float64 except for what the semantics fix in
float32: the RoPE tables are HF's own expressions in float32 (inv_freq, the
angle, cos and sin), and the new cache rows are rounded to the cache element
type before the attention reads them.

Tolerances (max error relative to max|reference|):
* 1e-5 for f32 activations, with f32, bf16 or f16 weights and an f32 or bf16
  cache: the reference is fed the same rounded weights and rounds the new
  cache rows the same way, so only f32 accumulation error remains (measured
  about 1e-6 and below).
* 1e-2 for bf16 activations, weights and cache: the output is rounded once
  to bf16 (at most 2^-9 of max|reference|, about 2e-3), as in test_mla.py.
* 5e-7 for the new keys at positions 1000 to 20000 against HF's float32
  RoPE tables (the exact tables would be off by more than 1e-6 there).
* A prefill followed by single-token decode steps, each fed the caches the
  previous call returned, agrees with one prefill over the whole sequence
  within 1e-5; one and two threads give the same bits."""

import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "reference"))
import moe_reference as R  # noqa: E402  (round_to only)
from moe_harness import Function, assert_close, attr_dict, run, tensor_type  # noqa: E402

F32_RTOL = 1e-5
BF16_RTOL = 1e-2

H = 32  # hidden size, a multiple of the contraction's vector width

# name: (num_heads, num_kv_heads, head_dim)
CONFIGS = {
    "mha": (4, 4, 16),    # N/KV = 1
    "gqa2": (4, 2, 16),   # N/KV = 2
    "gqa4": (8, 2, 8),    # N/KV = 4
    "mqa": (4, 1, 16),    # N/KV = 4, one KV head
    "wide": (2, 1, 32),   # D = 32
}


# ---------------------------------------------------------------------------
# Reference
# ---------------------------------------------------------------------------


def hf_rope_tables(positions, head_dim, theta):
    """cos, sin [S, D] float32 as transformers' default rotary embedding
    computes them (inv_freq, angle, cos and sin in float32; the halves
    repeated)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float()
                                / head_dim))
    angles = positions.float()[:, None] * inv_freq[None, :]
    emb = torch.cat((angles, angles), dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rms_norm(x, w, eps):
    var = (x * x).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(var + eps))


def gqa_reference(x, k_cache, v_cache, w, *, num_heads, num_kv_heads, head_dim,
                  rope_theta=10000.0, rms_norm_eps=1e-6, sliding_window=None,
                  softmax_scale=None, cache="f32"):
    """(out [S, H], k_out, v_out [P+S, KV, D]) of one attention step over
    the P cached tokens; float32 arrays (k_out/v_out hold `cache` values)."""
    N, KV, D = num_heads, num_kv_heads, head_dim
    f64 = torch.float64

    def t(a):
        return torch.as_tensor(np.asarray(a, dtype=np.float32)).to(f64)

    X = t(x)
    S, P = X.shape[0], k_cache.shape[0]
    q = X @ t(w["q_proj"]).T
    k = X @ t(w["k_proj"]).T
    v = X @ t(w["v_proj"]).T
    if "q_bias" in w:
        q = q + t(w["q_bias"])
        k = k + t(w["k_bias"])
        v = v + t(w["v_bias"])
    q, k, v = q.view(S, N, D), k.view(S, KV, D), v.view(S, KV, D)
    if "q_norm" in w:
        eps = float(np.float32(rms_norm_eps))
        q = rms_norm(q, t(w["q_norm"]), eps)
        k = rms_norm(k, t(w["k_norm"]), eps)
    cos, sin = hf_rope_tables(torch.arange(P, P + S), D, rope_theta)
    cos, sin = cos.to(f64)[:, None, :], sin.to(f64)[:, None, :]
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin

    # The caches, new rows rounded to the cache element type.
    k_out = np.concatenate([k_cache, R.round_to(k.numpy(), cache)])
    v_out = np.concatenate([v_cache, R.round_to(v.numpy(), cache)])
    G = N // KV
    K = t(k_out).repeat_interleave(G, dim=1)  # query head h -> KV head h // G
    V = t(v_out).repeat_interleave(G, dim=1)

    scale = float(np.float32(softmax_scale if softmax_scale is not None else D ** -0.5))
    scores = torch.einsum("snd,tnd->nst", q, K) * scale
    i = torch.arange(S)[:, None] + P
    j = torch.arange(P + S)[None, :]
    visible = j <= i
    if sliding_window is not None:
        visible &= j > i - sliding_window
    scores = scores.masked_fill(~visible, float("-inf"))
    p = torch.softmax(scores, dim=-1)
    o = torch.einsum("nst,tnd->snd", p, V).reshape(S, N * D)
    out = o @ t(w["o_proj"]).T
    return out.numpy().astype(np.float32), k_out, v_out


# ---------------------------------------------------------------------------
# Inputs and the MLIR function
# ---------------------------------------------------------------------------


def rng(seed):
    return np.random.default_rng(seed)


def rand(g, *shape, scale=1.0):
    return (g.standard_normal(shape) * scale).astype(np.float32)


def weights(g, config, bias=False, qk_norm=False, dtype="f32"):
    """Weights scaled like trained ones (unit-variance activations), rounded
    to `dtype`."""
    N, KV, D = CONFIGS[config]
    w = dict(q_proj=rand(g, N * D, H, scale=H ** -0.5),
             k_proj=rand(g, KV * D, H, scale=H ** -0.5),
             v_proj=rand(g, KV * D, H, scale=H ** -0.5),
             o_proj=rand(g, H, N * D, scale=(N * D) ** -0.5))
    if bias:
        w.update(q_bias=rand(g, N * D, scale=0.5), k_bias=rand(g, KV * D, scale=0.5),
                 v_bias=rand(g, KV * D, scale=0.5))
    if qk_norm:
        w.update(q_norm=1.0 + rand(g, D, scale=0.1), k_norm=1.0 + rand(g, D, scale=0.1))
    return {k: R.round_to(v, dtype) for k, v in w.items()}


def cache_of(g, config, P, dtype="f32"):
    """Caches of P earlier tokens: rotated-key-like and value-like rows."""
    _, KV, D = CONFIGS[config]
    return R.round_to(rand(g, P, KV, D), dtype), R.round_to(rand(g, P, KV, D), dtype)


def build(w, config, S, P, *, act="f32", cache="f32", wdtype="f32", dynamic_s=False,
          dynamic_p=False, dynamic_all=False, empty_cache_in_body=False, **attrs):
    """func @f(x, k_cache, v_cache, weights...) -> (out, k_out, v_out).

    dynamic_all: every size dynamic in the operand types (H, the weights,
    the caches' KV and D too); the attributes still fix N, KV and D.
    empty_cache_in_body: the caches are `tensor.empty() : tensor<0xKVxD>` in
    the function (P must be 0). attrs: rope_theta, rms_norm_eps,
    sliding_window, softmax_scale."""
    N, KV, D = CONFIGS[config]
    dynamic_s = dynamic_s or dynamic_all
    dynamic_p = dynamic_p or dynamic_all
    Ss = None if dynamic_s else S
    Ps = None if dynamic_p else P
    f = Function()
    types = []

    def arg(name, shape, dtype):
        if dynamic_all:
            shape = [None] * len(shape)
        ssa, ty = f.arg(name, shape, dtype)
        types.append(ty)
        return ssa

    x = arg("x", [Ss, H], act)
    if empty_cache_in_body:
        assert P == 0 and not dynamic_p
        kc, vc = "%k_cache0", "%v_cache0"
        for ssa in (kc, vc):
            f.op(f"{ssa} = tensor.empty() : {tensor_type([0, KV, D], cache)}")
            types.append(tensor_type([0, KV, D], cache))
    else:
        kc = arg("k_cache", [Ps, KV, D], cache)
        vc = arg("v_cache", [Ps, KV, D], cache)
    text = f"mla.gqa_attention {x} cache({kc}, {vc})"
    for key, kw in (("q_proj", "q"), ("k_proj", "k"), ("v_proj", "v"), ("o_proj", "o")):
        text += f" {kw}({arg(key, w[key].shape, wdtype)})"
    if "q_bias" in w:
        ops = [arg(k, w[k].shape, wdtype) for k in ("q_bias", "k_bias", "v_bias")]
        text += f" bias({', '.join(ops)})"
    if "q_norm" in w:
        ops = [arg(k, w[k].shape, wdtype) for k in ("q_norm", "k_norm")]
        text += f" qk_norm({', '.join(ops)})"
    a = dict(num_heads=N, num_kv_heads=KV, head_dim=D)
    if "rope_theta" in attrs:
        a["rope_theta"] = f"{float(attrs['rope_theta'])!r} : f64"
    if "rms_norm_eps" in attrs:
        a["rms_norm_eps"] = float(attrs["rms_norm_eps"])
    if attrs.get("sliding_window") is not None:
        a["sliding_window"] = int(attrs["sliding_window"])
    if attrs.get("softmax_scale") is not None:
        a["softmax_scale"] = float(attrs["softmax_scale"])
    T = None if (Ss is None or Ps is None) else S + P
    out_t = tensor_type([Ss, None if dynamic_all else H], act)
    cache_t = tensor_type([T, KV, D], cache)
    f.op(f"%out, %k_out, %v_out = {text} {attr_dict(a)} : "
         f"({', '.join(types)}) -> ({out_t}, {cache_t}, {cache_t})")
    f.result("out", "%out", out_t)
    f.result("k_out", "%k_out", cache_t)
    f.result("v_out", "%v_out", cache_t)
    return f


def inputs_of(w, x, kc=None, vc=None):
    d = dict(w)
    d.update(x=x)
    if kc is not None:
        d.update(k_cache=kc, v_cache=vc)
    return d


def reference(w, config, x, kc, vc, cache="f32", **attrs):
    N, KV, D = CONFIGS[config]
    return gqa_reference(x, kc, vc, w, num_heads=N, num_kv_heads=KV, head_dim=D,
                         cache=cache, **attrs)


NAMES = ("out", "k_out", "v_out")


def check(got, want, rtol, what):
    for name, ref in zip(NAMES, want):
        assert_close(got[name], ref, rtol, f"{what} {name}")


# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------

# name: (config, S, P, weight options, attributes)
CASES = {
    "mha_prefill": ("mha", 5, 0, {}, {}),
    "gqa2_prefill": ("gqa2", 6, 0, {}, {}),
    "gqa4_prefill": ("gqa4", 5, 0, {}, {}),
    "mqa_prefill": ("mqa", 4, 0, {}, {}),
    "mha_decode": ("mha", 1, 7, {}, {}),
    "gqa2_decode": ("gqa2", 1, 9, {}, {}),
    "gqa4_decode": ("gqa4", 1, 6, {}, {}),
    "gqa2_chunk": ("gqa2", 4, 5, {}, {}),
    "wide_chunk": ("wide", 3, 4, {}, dict(rope_theta=1e6)),
    "qwen2_bias_prefill": ("gqa2", 5, 0, dict(bias=True), dict(rope_theta=1e6)),
    "qwen2_bias_decode": ("gqa4", 1, 8, dict(bias=True), {}),
    "qwen3_qk_norm_prefill": ("gqa4", 5, 0, dict(qk_norm=True), dict(rope_theta=1e6)),
    "qwen3_qk_norm_chunk": ("gqa2", 3, 6, dict(qk_norm=True),
                            dict(rope_theta=1e6, rms_norm_eps=1e-5)),
    "bias_and_qk_norm": ("mha", 3, 2, dict(bias=True, qk_norm=True), {}),
    "sliding_window_prefill": ("gqa2", 7, 0, {}, dict(sliding_window=3)),
    "sliding_window_chunk": ("gqa4", 4, 6, {}, dict(sliding_window=5)),
    "sliding_window_decode": ("mha", 1, 10, {}, dict(sliding_window=4)),
    "sliding_window_of_one": ("gqa2", 3, 2, {}, dict(sliding_window=1)),
    "sliding_window_wider_than_sequence": ("gqa2", 3, 4, {}, dict(sliding_window=64)),
    "explicit_scale": ("gqa2", 4, 3, {}, dict(softmax_scale=0.3)),
    "large_theta_decode_at_1000": ("wide", 1, 1000, {}, dict(rope_theta=1e6)),
    "large_theta_chunk_at_997": ("gqa2", 4, 997, dict(qk_norm=True), dict(rope_theta=1e6)),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("dynamic", [False, True])
def test_attention(name, dynamic):
    config, S, P, wopts, attrs = CASES[name]
    g = rng(sum(map(ord, name)))
    w = weights(g, config, **wopts)
    x = rand(g, S, H)
    kc, vc = cache_of(g, config, P)
    f = build(w, config, S, P, dynamic_s=dynamic, dynamic_p=dynamic, **attrs)
    got = run(f, inputs_of(w, x, kc, vc))
    check(got, reference(w, config, x, kc, vc, **attrs), F32_RTOL, name)


def exact_rope_tables(positions, head_dim, theta):
    """cos, sin [S, D] of the exact angles (float64): what HF's float32
    tables are not."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    angles = positions.double()[:, None] * inv_freq[None, :]
    emb = torch.cat((angles, angles), dim=-1)
    return emb.cos(), emb.sin()


@pytest.mark.parametrize("theta", [1e4, 1e6])
@pytest.mark.parametrize("S,P", [(1, 1000), (4, 4093), (2, 20000)])
def test_rope_uses_hf_float32_tables(theta, S, P, monkeypatch):
    """The new keys (RoPE applied) at large positions within 5e-7 of the
    reference with HF's float32 tables (measured 0.9e-7 to 2.1e-7). The
    exact angles differ from HF's float32 ones by up to half an f32 ulp of
    the angle (3e-5 rad at 1000), which moves the keys by more than 1e-6
    here (measured 1.2e-6 to 2e-4): the check tells the two apart."""
    g = rng(int(theta) + P)
    w = weights(g, "wide", qk_norm=True)
    x = rand(g, S, H)
    kc, vc = cache_of(g, "wide", P)
    f = build(w, "wide", S, P, dynamic_s=True, dynamic_p=True, rope_theta=theta)
    got = run(f, inputs_of(w, x, kc, vc))
    _, k_hf, _ = reference(w, "wide", x, kc, vc, rope_theta=theta)
    assert_close(got["k_out"][P:], k_hf[P:], 5e-7, "new keys vs HF's f32 tables")
    monkeypatch.setattr(sys.modules[__name__], "hf_rope_tables", exact_rope_tables)
    _, k_exact, _ = reference(w, "wide", x, kc, vc, rope_theta=theta)
    new, exact = got["k_out"][P:].astype(np.float64), k_exact[P:].astype(np.float64)
    assert np.abs(new - exact).max() > 1e-6 * np.abs(exact).max()


@pytest.mark.parametrize("dynamic_s,dynamic_p", [(True, False), (False, True)])
def test_attention_partly_dynamic(dynamic_s, dynamic_p):
    g = rng(5)
    w = weights(g, "gqa2", bias=True)
    x = rand(g, 3, H)
    kc, vc = cache_of(g, "gqa2", 4)
    attrs = dict(sliding_window=5)
    f = build(w, "gqa2", 3, 4, dynamic_s=dynamic_s, dynamic_p=dynamic_p, **attrs)
    got = run(f, inputs_of(w, x, kc, vc))
    check(got, reference(w, "gqa2", x, kc, vc, **attrs), F32_RTOL, "partly dynamic")


@pytest.mark.parametrize("qk_norm", [False, True])
def test_every_size_dynamic(qk_norm):
    """H, the weights' sizes and the caches' KV and D dynamic in the types
    (only the attributes fix N, KV and D)."""
    g = rng(11 + qk_norm)
    w = weights(g, "gqa4", bias=not qk_norm, qk_norm=qk_norm)
    x = rand(g, 3, H)
    kc, vc = cache_of(g, "gqa4", 4)
    f = build(w, "gqa4", 3, 4, dynamic_all=True, rope_theta=1e6)
    got = run(f, inputs_of(w, x, kc, vc))
    check(got, reference(w, "gqa4", x, kc, vc, rope_theta=1e6), F32_RTOL,
          "every size dynamic")


@pytest.mark.parametrize("dynamic_s", [False, True])
def test_prefill_from_empty_cache_in_the_function(dynamic_s):
    """The caches start as `tensor.empty() : tensor<0xKVxD>` in the function
    itself."""
    g = rng(12)
    w = weights(g, "gqa2", qk_norm=True)
    x = rand(g, 5, H)
    f = build(w, "gqa2", 5, 0, dynamic_s=dynamic_s, empty_cache_in_body=True)
    got = run(f, inputs_of(w, x))
    kc, vc = cache_of(g, "gqa2", 0)
    check(got, reference(w, "gqa2", x, kc, vc), F32_RTOL, "empty cache in the function")


def test_one_compiled_function_many_shapes():
    """The same dynamic function for an empty cache, a long prompt and a
    single token."""
    g = rng(6)
    w = weights(g, "gqa4", bias=True)
    attrs = dict(sliding_window=6)
    f = build(w, "gqa4", 1, 1, dynamic_s=True, dynamic_p=True, **attrs)
    for S, P in [(7, 0), (1, 0), (2, 11), (1, 1)]:
        x = rand(g, S, H)
        kc, vc = cache_of(g, "gqa4", P)
        got = run(f, inputs_of(w, x, kc, vc))
        check(got, reference(w, "gqa4", x, kc, vc, **attrs), F32_RTOL, f"S={S} P={P}")


@pytest.mark.parametrize("wdtype", ["bf16", "f16"])
@pytest.mark.parametrize("qk_norm", [False, True])
def test_low_precision_weights_f32_activations(wdtype, qk_norm):
    g = rng(7 + qk_norm)
    w = weights(g, "gqa2", bias=True, qk_norm=qk_norm, dtype=wdtype)
    x = rand(g, 4, H)
    kc, vc = cache_of(g, "gqa2", 3)
    f = build(w, "gqa2", 4, 3, wdtype=wdtype, rope_theta=1e6)
    # Exact products of the f32 activations and the rounded weights (bf16
    # dot products are checked on whole models in test_hf_models.py).
    got = run(f, inputs_of(w, x, kc, vc), bf16_dot="off")
    check(got, reference(w, "gqa2", x, kc, vc, rope_theta=1e6), F32_RTOL,
          f"{wdtype} weights")


@pytest.mark.parametrize("dynamic", [False, True])
def test_bf16_cache(dynamic):
    g = rng(9)
    w = weights(g, "gqa4", qk_norm=True)
    x = rand(g, 4, H)
    kc, vc = cache_of(g, "gqa4", 5, "bf16")
    attrs = dict(rope_theta=1e6)
    f = build(w, "gqa4", 4, 5, cache="bf16", dynamic_s=dynamic, dynamic_p=dynamic, **attrs)
    got = run(f, inputs_of(w, x, kc, vc))
    check(got, reference(w, "gqa4", x, kc, vc, cache="bf16", **attrs), F32_RTOL, "bf16 cache")
    # The new cache rows are bf16 values.
    for name in ("k_out", "v_out"):
        np.testing.assert_array_equal(got[name], R.round_to(got[name], "bf16"))


def test_bf16_everything():
    """Deployment types: bf16 activations, weights and cache."""
    g = rng(10)
    w = weights(g, "gqa2", bias=True, qk_norm=True, dtype="bf16")
    x = R.round_to(rand(g, 3, H), "bf16")
    kc, vc = cache_of(g, "gqa2", 6, "bf16")
    attrs = dict(rope_theta=1e6, sliding_window=4)
    f = build(w, "gqa2", 3, 6, act="bf16", cache="bf16", wdtype="bf16", dynamic_s=True,
              dynamic_p=True, **attrs)
    got = run(f, inputs_of(w, x, kc, vc))
    out, k, v = reference(w, "gqa2", x, kc, vc, cache="bf16", **attrs)
    assert_close(got["out"], R.round_to(out, "bf16"), BF16_RTOL, "bf16 out")
    assert_close(got["k_out"], k, BF16_RTOL, "bf16 k_out")
    assert_close(got["v_out"], v, BF16_RTOL, "bf16 v_out")


# Prefill of S tokens starting at position P0 (a cache of P0 tokens), then
# `steps` single-token decode steps fed the returned caches, against one
# prefill over all S + steps tokens.
# name: (config, P0, S, steps, weight options, attributes, cache type)
CHAINS = {
    "gqa2": ("gqa2", 0, 5, 4, {}, {}, "f32"),
    "mha_bias": ("mha", 0, 4, 3, dict(bias=True), {}, "f32"),
    "qwen3_qk_norm": ("gqa4", 0, 4, 5, dict(qk_norm=True), dict(rope_theta=1e6), "f32"),
    "sliding_window": ("gqa2", 0, 5, 5, {}, dict(sliding_window=3), "f32"),
    "explicit_scale": ("mqa", 0, 3, 3, {}, dict(softmax_scale=0.2), "f32"),
    "bf16_cache": ("gqa2", 0, 4, 4, dict(qk_norm=True), {}, "bf16"),
    "large_theta_at_1000": ("wide", 1000, 3, 3, dict(bias=True), dict(rope_theta=1e6), "f32"),
}


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_prefill_then_decode_equals_one_prefill(name):
    config, P0, S, steps, wopts, attrs, cache = CHAINS[name]
    g = rng(sum(map(ord, name)) + 1)
    w = weights(g, config, **wopts)
    x = rand(g, S + steps, H)
    kc, vc = cache_of(g, config, P0, cache)
    # One compiled shape-generic function for every call.
    f = build(w, config, 1, 1, cache=cache, dynamic_s=True, dynamic_p=True, **attrs)

    whole = run(f, inputs_of(w, x, kc, vc))
    step = run(f, inputs_of(w, x[:S], kc, vc))
    outs = [step["out"]]
    _, KV, D = CONFIGS[config]
    for t in range(S, S + steps):
        step = run(f, inputs_of(w, x[t:t + 1], step["k_out"], step["v_out"]))
        assert step["k_out"].shape == (P0 + t + 1, KV, D)
        outs.append(step["out"])
    assert_close(np.concatenate(outs), whole["out"], F32_RTOL, f"{name} out")
    assert_close(step["k_out"], whole["k_out"], F32_RTOL, f"{name} k_out")
    assert_close(step["v_out"], whole["v_out"], F32_RTOL, f"{name} v_out")
    # And the whole sequence agrees with the reference.
    check(whole, reference(w, config, x, kc, vc, cache=cache, **attrs), F32_RTOL,
          f"{name} vs reference")


@pytest.mark.parametrize("aot", [False, True])
def test_one_and_two_threads_give_the_same_bits(aot):
    # The projections' column tiles run in parallel; every output element is
    # computed by one thread in a fixed order, and the attention's reductions
    # run in order.
    g = rng(81)
    w = weights(g, "gqa2", bias=True, qk_norm=True)
    x = rand(g, 6, H)
    kc, vc = cache_of(g, "gqa2", 5)
    f = build(w, "gqa2", 6, 5, dynamic_s=True, dynamic_p=True, sliding_window=4)
    inputs = inputs_of(w, x, kc, vc)
    one = run(f, inputs, extra_args=["--num-threads", "1"], aot=aot)
    two = run(f, inputs, extra_args=["--num-threads", "2"], aot=aot)
    for name in NAMES:
        assert one[name].tobytes() == two[name].tobytes(), name


def test_reference_matches_hf_style_repeat_kv():
    """Cross-check of the reference's grouping against an explicit per-head
    loop (query head h reads KV head h // (N / KV))."""
    g = rng(3)
    N, KV, D = CONFIGS["gqa4"]
    w = weights(g, "gqa4")
    x = rand(g, 3, H)
    kc, vc = cache_of(g, "gqa4", 2)
    out, k_out, v_out = reference(w, "gqa4", x, kc, vc)
    # Per-head loop over the caches the reference returned; q recomputed.
    X = x.astype(np.float64)
    q = (X @ w["q_proj"].astype(np.float64).T).reshape(3, N, D)
    cos, sin = (c.numpy().astype(np.float64) for c in hf_rope_tables(torch.arange(2, 5), D,
                                                                      10000.0))
    q = q * cos[:, None] + rotate_half(torch.from_numpy(q)).numpy() * sin[:, None]
    o = np.zeros((3, N, D))
    for h in range(N):
        kv = h // (N // KV)
        for i in range(3):
            s = k_out[: 2 + i + 1, kv].astype(np.float64) @ q[i, h] * float(np.float32(D ** -0.5))
            p = np.exp(s - s.max())
            o[i, h] = (p / p.sum()) @ v_out[: 2 + i + 1, kv].astype(np.float64)
    loop_out = o.reshape(3, N * D) @ w["o_proj"].astype(np.float64).T
    assert_close(out, loop_out, 1e-6, "per-head loop")
