"""End-to-end numerics of mla.attention: compiled for the CPU by moe-run
(moe-cpu-pipeline with convert-mla-to-linalg, JIT) and compared with the
independent reference `mla_attention` in reference/moe_reference.py.

Tolerances: max error <= 1e-5 * max|reference| for f32 activations (f32 or
bf16 weights, f32 or bf16 cache); 1e-2 when the activations are bf16 (the
output is rounded once to bf16). A prefill followed by single-token decode
steps, each fed the caches the previous call returned, must agree with one
prefill over the whole sequence within 1e-5 as well."""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "reference"))
import moe_reference as R  # noqa: E402
from moe_harness import Function, assert_close, attr_dict, run, tensor_type  # noqa: E402

F32_RTOL = 1e-5
BF16_RTOL = 1e-2

DIMS = dict(num_heads=3, qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=6)
H, R_KV, R_Q = 32, 12, 10

YARN_V3 = dict(factor=40.0, original_max_position_embeddings=4096, beta_fast=32.0,
               beta_slow=1.0, mscale=1.0, mscale_all_dim=1.0)
YARN_DEFAULTS = dict(factor=4.0, original_max_position_embeddings=64)
YARN_MIXED = dict(factor=8.0, original_max_position_embeddings=32, beta_fast=16.0,
                  beta_slow=2.0, mscale=1.0, mscale_all_dim=0.5)


def rng(seed):
    return np.random.default_rng(seed)


def rand(g, *shape, scale=1.0):
    return (g.standard_normal(shape) * scale).astype(np.float32)


def weights(g, q_lora, dtype="f32"):
    """Weights scaled like trained ones (unit-variance activations), rounded
    to `dtype`."""
    N, Dn, Dr, Dv = (DIMS[k] for k in ("num_heads", "qk_nope_head_dim",
                                       "qk_rope_head_dim", "v_head_dim"))
    w = dict(kv_a_proj=rand(g, R_KV + Dr, H, scale=H ** -0.5),
             kv_a_norm=1.0 + rand(g, R_KV, scale=0.1),
             kv_b_proj=rand(g, N * (Dn + Dv), R_KV, scale=R_KV ** -0.5),
             o_proj=rand(g, H, N * Dv, scale=(N * Dv) ** -0.5))
    if q_lora:
        w.update(q_a_proj=rand(g, R_Q, H, scale=H ** -0.5),
                 q_a_norm=1.0 + rand(g, R_Q, scale=0.1),
                 q_b_proj=rand(g, N * (Dn + Dr), R_Q, scale=R_Q ** -0.5))
    else:
        w.update(q_proj=rand(g, N * (Dn + Dr), H, scale=H ** -0.5))
    return {k: R.round_to(v, dtype) for k, v in w.items()}


def yarn_text(yarn):
    keys = ["factor", "original_max_position_embeddings", "beta_fast", "beta_slow",
            "mscale", "mscale_all_dim"]
    parts = []
    for k in keys:
        if k in yarn:
            v = yarn[k]
            parts.append(f"{k} = {v}" if isinstance(v, int) else f"{k} = {float(v)!r}")
    return "#mla.yarn<" + ", ".join(parts) + ">"


def build(w, S, P, *, interleave=False, yarn=None, scale=None, rope_theta=10000.0,
          act="f32", cache="f32", wdtype="f32", dynamic_s=False, dynamic_p=False,
          dynamic_all=False, empty_cache_in_body=False):
    """func @f(x, c_kv, k_rope, weights...) -> (out, c_kv_out, k_rope_out).

    dynamic_all: every size but the head dimensions dynamic (H, R_q, R_kv,
    the weights). empty_cache_in_body: no cache arguments; the function
    starts from `tensor.empty() : tensor<0x...>` caches (P must be 0)."""
    Dr = DIMS["qk_rope_head_dim"]
    dynamic_s = dynamic_s or dynamic_all
    dynamic_p = dynamic_p or dynamic_all
    Ss = None if dynamic_s else S
    Ps = None if dynamic_p else P
    Hs = None if dynamic_all else H
    Rs = None if dynamic_all else R_KV
    f = Function()
    types = []

    def arg(name, shape, dtype):
        if dynamic_all:
            shape = [None] * len(shape)
        ssa, t = f.arg(name, shape, dtype)
        types.append(t)
        return ssa

    x = arg("x", [Ss, Hs], act)
    if empty_cache_in_body:
        assert P == 0 and not dynamic_p
        ckv, kr = "%c_kv0", "%k_rope0"
        f.op(f"{ckv} = tensor.empty() : {tensor_type([0, R_KV], cache)}")
        f.op(f"{kr} = tensor.empty() : {tensor_type([0, Dr], cache)}")
        types += [tensor_type([0, R_KV], cache), tensor_type([0, Dr], cache)]
    else:
        ckv = arg("c_kv", [Ps, Rs], cache)
        # k_rope [P, D_r]: D_r is an attribute, static even with dynamic_all.
        kr, t = f.arg("k_rope", [Ps, Dr], cache)
        types.append(t)
    if "q_proj" in w:
        q = f"q({arg('q_proj', w['q_proj'].shape, wdtype)})"
    else:
        qa = arg("q_a_proj", w["q_a_proj"].shape, wdtype)
        qn = arg("q_a_norm", w["q_a_norm"].shape, wdtype)
        qb = arg("q_b_proj", w["q_b_proj"].shape, wdtype)
        q = f"q_lora({qa}, {qn}, {qb})"
    kva = arg("kv_a_proj", w["kv_a_proj"].shape, wdtype)
    kvn = arg("kv_a_norm", w["kv_a_norm"].shape, wdtype)
    kvb = arg("kv_b_proj", w["kv_b_proj"].shape, wdtype)
    o = arg("o_proj", w["o_proj"].shape, wdtype)
    attrs = {k: v for k, v in DIMS.items()}
    attrs["rope_theta"] = f"{rope_theta!r} : f64"
    attrs["rope_interleave"] = interleave
    if yarn is not None:
        attrs["yarn"] = yarn_text(yarn)
    if scale is not None:
        attrs["softmax_scale"] = float(scale)
    T = None if (Ss is None or Ps is None) else S + P
    out_t = tensor_type([Ss, Hs], act)
    ckv_t = tensor_type([T, Rs], cache)
    kr_t = tensor_type([T, Dr], cache)
    f.op(f"%out, %ckv, %kr = mla.attention {x} cache({ckv}, {kr}) {q} "
         f"kv({kva}, {kvn}, {kvb}) o({o}) {attr_dict(attrs)} : "
         f"({', '.join(types)}) -> ({out_t}, {ckv_t}, {kr_t})")
    f.result("out", "%out", out_t)
    f.result("c_kv_out", "%ckv", ckv_t)
    f.result("k_rope_out", "%kr", kr_t)
    return f


def inputs_of(w, x, ckv=None, kr=None):
    d = dict(w)
    d.update(x=x)
    if ckv is not None:
        d.update(c_kv=ckv, k_rope=kr)
    return d


def reference(w, x, ckv, kr, *, interleave=False, yarn=None, scale=None,
              rope_theta=10000.0, cache="f32"):
    return R.mla_attention(x, ckv, kr, **w, **DIMS, rope_interleave=interleave,
                           yarn=yarn, softmax_scale=scale, rope_theta=rope_theta,
                           cache_dtype=cache)


def cache_of(g, P, dtype="f32"):
    """A cache of P earlier tokens: normalized-looking latents and rope keys."""
    return (R.round_to(rand(g, P, R_KV), dtype),
            R.round_to(rand(g, P, DIMS["qk_rope_head_dim"]), dtype))


def check(got, want, rtol, what):
    names = ("out", "c_kv_out", "k_rope_out")
    for name, ref in zip(names, want):
        assert_close(got[name], ref, rtol, f"{what} {name}")


# name: (S, P, q_lora, kwargs)
CASES = {
    "prefill_q_proj": (5, 0, False, {}),
    "prefill_q_lora_interleave": (6, 0, True, dict(interleave=True)),
    "decode_q_proj": (1, 7, False, {}),
    "decode_q_lora_interleave": (1, 9, True, dict(interleave=True)),
    "chunk_q_lora": (4, 5, True, {}),
    "yarn_v3": (5, 3, True, dict(interleave=True, yarn=YARN_V3)),
    "yarn_defaults": (4, 6, False, dict(yarn=YARN_DEFAULTS)),
    "yarn_mixed": (3, 4, False, dict(interleave=True, yarn=YARN_MIXED)),
    "explicit_scale": (4, 2, False, dict(scale=0.3)),
    "explicit_scale_with_yarn": (3, 3, True, dict(yarn=YARN_V3, scale=0.125)),
    "rope_theta": (3, 5, False, dict(rope_theta=50000.0, interleave=True)),
    "long_cache_decode": (1, 3000, True, dict(interleave=True, yarn=YARN_V3)),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("dynamic", [False, True])
def test_attention(name, dynamic):
    S, P, q_lora, kw = CASES[name]
    g = rng(sum(map(ord, name)))
    w = weights(g, q_lora)
    x = rand(g, S, H)
    ckv, kr = cache_of(g, P)
    f = build(w, S, P, dynamic_s=dynamic, dynamic_p=dynamic, **kw)
    got = run(f, inputs_of(w, x, ckv, kr))
    check(got, reference(w, x, ckv, kr, **kw), F32_RTOL, name)


@pytest.mark.parametrize("dynamic_s,dynamic_p", [(True, False), (False, True)])
def test_attention_partly_dynamic(dynamic_s, dynamic_p):
    g = rng(5)
    w = weights(g, True)
    x = rand(g, 3, H)
    ckv, kr = cache_of(g, 4)
    f = build(w, 3, 4, interleave=True, dynamic_s=dynamic_s, dynamic_p=dynamic_p)
    got = run(f, inputs_of(w, x, ckv, kr))
    check(got, reference(w, x, ckv, kr, interleave=True), F32_RTOL, "partly dynamic")


@pytest.mark.parametrize("q_lora", [False, True])
def test_every_size_dynamic(q_lora):
    """H, R_q, R_kv and the weights' sizes dynamic too (only the head
    dimensions, attributes, are static)."""
    g = rng(11 + q_lora)
    w = weights(g, q_lora)
    x = rand(g, 3, H)
    ckv, kr = cache_of(g, 4)
    f = build(w, 3, 4, interleave=q_lora, yarn=YARN_MIXED, dynamic_all=True)
    got = run(f, inputs_of(w, x, ckv, kr))
    check(got, reference(w, x, ckv, kr, interleave=q_lora, yarn=YARN_MIXED),
          F32_RTOL, "every size dynamic")


@pytest.mark.parametrize("dynamic_s", [False, True])
def test_prefill_from_empty_cache_in_the_function(dynamic_s):
    """The caches start as `tensor.empty() : tensor<0x...>` in the function
    itself (as in examples/mla_prefill_decode.mlir)."""
    g = rng(12)
    w = weights(g, True)
    x = rand(g, 5, H)
    f = build(w, 5, 0, interleave=True, yarn=YARN_V3, dynamic_s=dynamic_s,
              empty_cache_in_body=True)
    got = run(f, inputs_of(w, x))
    empty = (np.zeros((0, R_KV), np.float32),
             np.zeros((0, DIMS["qk_rope_head_dim"]), np.float32))
    check(got, reference(w, x, *empty, interleave=True, yarn=YARN_V3), F32_RTOL,
          "empty cache in the function")


def test_one_compiled_function_many_shapes():
    """The same dynamic function for an empty cache, a long prompt and a
    single token."""
    g = rng(6)
    w = weights(g, False)
    f = build(w, 1, 1, yarn=YARN_MIXED, dynamic_s=True, dynamic_p=True)
    for S, P in [(7, 0), (1, 0), (2, 11), (1, 1)]:
        x = rand(g, S, H)
        ckv, kr = cache_of(g, P)
        got = run(f, inputs_of(w, x, ckv, kr))
        check(got, reference(w, x, ckv, kr, yarn=YARN_MIXED), F32_RTOL, f"S={S} P={P}")


@pytest.mark.parametrize("q_lora", [False, True])
def test_bf16_weights_f32_activations(q_lora):
    g = rng(7 + q_lora)
    w = weights(g, q_lora, "bf16")
    x = rand(g, 4, H)
    ckv, kr = cache_of(g, 3)
    f = build(w, 4, 3, interleave=True, wdtype="bf16")
    # Exact products (bf16 dot products are checked on whole models in
    # test_hf_models.py).
    got = run(f, inputs_of(w, x, ckv, kr), bf16_dot="off")
    check(got, reference(w, x, ckv, kr, interleave=True), F32_RTOL, "bf16 weights")


@pytest.mark.parametrize("dynamic", [False, True])
def test_bf16_cache(dynamic):
    g = rng(9)
    w = weights(g, True)
    x = rand(g, 4, H)
    ckv, kr = cache_of(g, 5, "bf16")
    kw = dict(interleave=True, yarn=YARN_V3)
    f = build(w, 4, 5, cache="bf16", dynamic_s=dynamic, dynamic_p=dynamic, **kw)
    got = run(f, inputs_of(w, x, ckv, kr))
    want = reference(w, x, ckv, kr, cache="bf16", **kw)
    check(got, want, F32_RTOL, "bf16 cache")
    # The new cache rows are bf16 values.
    for name in ("c_kv_out", "k_rope_out"):
        np.testing.assert_array_equal(got[name], R.round_to(got[name], "bf16"))


def test_bf16_everything():
    """DeepSeek's deployment types: bf16 activations, weights and cache."""
    g = rng(10)
    w = weights(g, True, "bf16")
    x = R.round_to(rand(g, 3, H), "bf16")
    ckv, kr = cache_of(g, 6, "bf16")
    kw = dict(interleave=True, yarn=YARN_V3)
    f = build(w, 3, 6, act="bf16", cache="bf16", wdtype="bf16", dynamic_s=True,
              dynamic_p=True, **kw)
    got = run(f, inputs_of(w, x, ckv, kr))
    out, c, k = reference(w, x, ckv, kr, cache="bf16", **kw)
    assert_close(got["out"], R.round_to(out, "bf16"), BF16_RTOL, "bf16 out")
    assert_close(got["c_kv_out"], c, BF16_RTOL, "bf16 c_kv_out")
    assert_close(got["k_rope_out"], k, BF16_RTOL, "bf16 k_rope_out")


# Prefill of S tokens, then N single-token decode steps fed the returned
# caches, against one prefill over all S + N tokens.
CHAINS = {
    "q_proj": (5, 4, False, {}, "f32"),
    "q_lora_interleave_yarn": (4, 5, True, dict(interleave=True, yarn=YARN_V3), "f32"),
    "explicit_scale_mixed_yarn": (3, 3, False, dict(yarn=YARN_MIXED, scale=0.2), "f32"),
    "bf16_cache": (4, 4, True, dict(interleave=True), "bf16"),
}


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_prefill_then_decode_equals_one_prefill(name):
    S, N, q_lora, kw, cache = CHAINS[name]
    g = rng(sum(map(ord, name)) + 1)
    w = weights(g, q_lora)
    x = rand(g, S + N, H)
    Dr = DIMS["qk_rope_head_dim"]
    empty = (np.zeros((0, R_KV), np.float32), np.zeros((0, Dr), np.float32))
    # One compiled shape-generic function for every call.
    f = build(w, 1, 1, cache=cache, dynamic_s=True, dynamic_p=True, **kw)

    whole = run(f, inputs_of(w, x, *empty))
    step = run(f, inputs_of(w, x[:S], *empty))
    outs = [step["out"]]
    for t in range(S, S + N):
        step = run(f, inputs_of(w, x[t:t + 1], step["c_kv_out"], step["k_rope_out"]))
        assert step["c_kv_out"].shape == (t + 1, R_KV)
        outs.append(step["out"])
    assert_close(np.concatenate(outs), whole["out"], F32_RTOL, f"{name} out")
    assert_close(step["c_kv_out"], whole["c_kv_out"], F32_RTOL, f"{name} c_kv")
    assert_close(step["k_rope_out"], whole["k_rope_out"], F32_RTOL, f"{name} k_rope")
    # And the whole sequence agrees with the reference.
    check(whole, reference(w, x, *empty, cache=cache, **kw), F32_RTOL, f"{name} vs reference")
