"""Self-tests of moe_reference.py: the op-level references against the
model-style ones, and hand-made cases for layouts, capacity and ties.

Run: /usr/bin/python3 -m pytest -q test/Integration/reference/
"""

import math
import os
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import moe_reference as ref  # noqa: E402


def rand(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def sort_by_expert(indices, weights):
    """Per-token (indices, weights) ordered by expert id, for comparing
    selections made in different orders."""
    order = np.argsort(indices, axis=-1, kind="stable")
    return (np.take_along_axis(indices, order, -1),
            np.take_along_axis(weights, order, -1))


# ---------------------------------------------------------------------------
# Full MoE blocks against the framework-style references
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("T,E,k", [(13, 8, 2), (7, 4, 1), (20, 16, 4)])
def test_mixtral_pipeline_matches_hf(T, E, k):
    rng = np.random.default_rng(T * 100 + E)
    H, I = 16, 24
    x = rand(rng, T, H)
    gate_w = rand(rng, E, H, scale=H ** -0.5)
    w1 = rand(rng, E, I, H, scale=H ** -0.5)
    w3 = rand(rng, E, I, H, scale=H ** -0.5)
    w2 = rand(rng, E, H, I, scale=I ** -0.5)

    idx, w = ref.route(x, router_weight=gate_w, k=k, scoring="softmax", renormalize=True)
    rows, counts, mapping = ref.dispatch(x, idx, mode="dropless", num_experts=E)
    y = ref.expert_ffn(rows, counts, w1, w2, fc3=w3, activation="silu", gating="separate")
    out = ref.combine(y, mapping, w, mode="dropless")

    expected = ref.hf_mixtral_block(x, gate_w, w1, w2, w3, k)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    assert counts.sum() == T * k


def test_topk_softmax_is_renormalized_softmax():
    rng = np.random.default_rng(1)
    logits = rand(rng, 11, 8, scale=2.0)
    i1, w1 = ref.route(logits, k=3, scoring="topk_softmax")
    i2, w2 = ref.route(logits, k=3, scoring="softmax", renormalize=True)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(w1, w2, rtol=1e-6)
    # Without renormalization softmax weights are the full-softmax probabilities.
    _, w3 = ref.route(logits, k=3, scoring="softmax")
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    np.testing.assert_allclose(w3, np.take_along_axis(p, i2, -1), rtol=1e-6)


@pytest.mark.parametrize("mask_fill", ["neg_inf", "zero"])
@pytest.mark.parametrize("norm", [True, False])
@pytest.mark.parametrize("bias_shift", [0.0, -0.8])
def test_deepseek_v3_route_matches_gate(mask_fill, norm, bias_shift):
    rng = np.random.default_rng(7)
    T, H, E, k, n_group, topk_group = 17, 24, 32, 6, 4, 2
    x = rand(rng, T, H)
    gate_w = rand(rng, E, H, scale=H ** -0.5)
    bias = (rand(rng, E, scale=0.1) + np.float32(bias_shift)).astype(np.float32)

    idx, w = ref.route(x, router_weight=gate_w, selection_bias=bias, k=k, scoring="sigmoid",
                       n_group=n_group, topk_group=topk_group, group_score="top2_sum",
                       group_mask_fill=mask_fill, renormalize=norm,
                       renormalize_epsilon=1e-20, routed_scaling_factor=2.5)
    hi, hw = ref.deepseek_v3_gate(x, gate_w, bias, k, n_group, topk_group, norm, 2.5,
                                  mask_fill=mask_fill)
    if mask_fill == "zero" and bias_shift < 0:
        # Masked experts all score 0 and outrank the negative kept ones: the
        # choice among them is a tie that torch.topk breaks its own way.
        # Compare the chosen (masked) selection scores, which do not depend
        # on the tie rule; ours takes the lowest-index masked experts.
        c = (1.0 / (1.0 + np.exp(-(x.astype(np.float64) @ gate_w.T.astype(np.float64))))
             + bias)
        G = E // n_group
        top2 = -np.sort(-c.reshape(T, n_group, G), -1)[..., :2].sum(-1)
        kept = np.argsort(-top2, -1, kind="stable")[:, :topk_group]
        in_kept = (np.arange(E)[None, :] // G)[:, :, None] == kept[:, None, :]
        masked = np.where(in_kept.any(-1), c, 0.0)
        np.testing.assert_allclose(np.sort(np.take_along_axis(masked, idx, -1)),
                                   np.sort(np.take_along_axis(masked, hi, -1)), atol=1e-6)
        for t in range(T):
            zeros = [e for e in idx[t] if masked[t, e] == 0.0]
            assert zeros == [e for e in range(E) if masked[t, e] == 0.0][:len(zeros)]
        return
    a_i, a_w = sort_by_expert(idx, w)
    b_i, b_w = sort_by_expert(hi, hw)
    np.testing.assert_array_equal(a_i, b_i)
    np.testing.assert_allclose(a_w, b_w, rtol=1e-6)

    # The route's own order is decreasing selection score (with -inf every
    # chosen expert keeps its score).
    if mask_fill == "neg_inf":
        s = 1.0 / (1.0 + np.exp(-(x.astype(np.float64) @ gate_w.T.astype(np.float64))))
        c = np.take_along_axis(s + bias, idx, -1)
        assert np.all(np.diff(c, axis=-1) <= 1e-6)


def test_group_mask_fill_matters_only_for_negative_scores():
    rng = np.random.default_rng(3)
    T, E = 40, 16
    logits = rand(rng, T, E)
    kw = dict(k=4, scoring="sigmoid", n_group=4, topk_group=2, group_score="top2_sum")
    pos = rand(rng, E, scale=0.1)
    a = ref.route(logits, selection_bias=pos, group_mask_fill="neg_inf", **kw)
    b = ref.route(logits, selection_bias=pos, group_mask_fill="zero", **kw)
    np.testing.assert_array_equal(a[0], b[0])
    neg = np.full(E, -0.9, dtype=np.float32)
    a = ref.route(logits, selection_bias=neg, group_mask_fill="neg_inf", **kw)
    b = ref.route(logits, selection_bias=neg, group_mask_fill="zero", **kw)
    assert not np.array_equal(a[0], b[0])
    # With -inf every chosen expert lies in a kept group: at most topk_group groups.
    assert all(len(set(row // 4)) <= 2 for row in a[0])


def test_group_max_matches_brute_force():
    """DeepSeek-V2's group_limited_greedy: softmax, group score = max,
    routed_scaling_factor, no renormalization."""
    rng = np.random.default_rng(5)
    T, E, n_group, topk_group, k = 25, 12, 4, 2, 3
    logits = rand(rng, T, E, scale=2.0)
    idx, w = ref.route(logits, k=k, scoring="softmax", n_group=n_group, topk_group=topk_group,
                       group_score="max", routed_scaling_factor=16.0)
    G = E // n_group
    for t in range(T):
        p = np.exp(logits[t].astype(np.float64) - logits[t].max())
        p /= p.sum()
        gmax = [max(p[g * G:(g + 1) * G]) for g in range(n_group)]
        kept = sorted(range(n_group), key=lambda g: (-gmax[g], g))[:topk_group]
        cand = [e for e in range(E) if e // G in kept]
        want = sorted(cand, key=lambda e: (-p[e], e))[:k]
        assert list(idx[t]) == want
        np.testing.assert_allclose(w[t], 16.0 * p[want], rtol=1e-6)


@pytest.mark.parametrize("dropped", ["zero", "passthrough"])
def test_switch_capacity_matches_hf(dropped):
    rng = np.random.default_rng(11)
    T, H, I, E, C = 20, 8, 12, 4, 3
    x = rand(rng, T, H)
    router_w = rand(rng, E, H, scale=H ** -0.5)
    wi = rand(rng, E, I, H, scale=H ** -0.5)
    wo = rand(rng, E, H, I, scale=I ** -0.5)

    idx, w = ref.route(x, router_weight=router_w, k=1, scoring="softmax", expert_capacity=C)
    rows, counts, mapping = ref.dispatch(x, idx, mode="capacity", num_experts=E,
                                         expert_capacity=C)
    y = ref.expert_ffn(rows, counts, wi, wo, activation="relu")
    out = ref.combine(y, mapping, w, mode="capacity",
                      passthrough=x if dropped == "passthrough" else None)

    expected, hf_index = ref.switch_top1_capacity(x, router_w, wi, wo, C, dropped=dropped)
    np.testing.assert_array_equal(idx[:, 0], hf_index)
    assert (idx == -1).sum() > 0, "the case should drop tokens"
    assert rows.shape == (E, C, H) and counts.max() <= C
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------
# Dispatch / combine layouts
# ---------------------------------------------------------------------------


def scaling_experts(E, H):
    """Identity-shaped experts: expert e multiplies its rows by (e + 1)."""
    eye = np.eye(H, dtype=np.float32)
    fc1 = np.stack([eye * (e + 1) for e in range(E)])
    fc2 = np.stack([eye for _ in range(E)])
    return fc1, fc2


def test_dropless_layout_by_hand():
    x = np.arange(3 * 2, dtype=np.float32).reshape(3, 2) + 1
    idx = np.array([[1, 0], [1, 2], [-1, 1]], dtype=np.int32)
    rows, counts, mapping = ref.dispatch(x, idx, mode="dropless", num_experts=3)
    np.testing.assert_array_equal(counts, [1, 3, 1])
    np.testing.assert_array_equal(mapping, [[1, 0], [2, 4], [-1, 3]])
    np.testing.assert_array_equal(rows, [x[0], x[0], x[1], x[2], x[1], [0, 0]])
    y = ref.expert_ffn(rows, counts, *scaling_experts(3, 2), activation="identity")
    np.testing.assert_array_equal(y[5], [0, 0])
    out = ref.combine(y, mapping, np.ones((3, 2), np.float32), mode="dropless")
    np.testing.assert_array_equal(out, [x[0] * 3, x[1] * 5, x[2] * 2])


def test_capacity_drops_later_slot_major_assignments():
    T, E, C = 4, 2, 2
    idx = np.array([[0, 1], [0, 1], [1, 0], [0, 1]], dtype=np.int32)
    x = np.arange(T, dtype=np.float32)[:, None] + 1
    rows, counts, mapping = ref.dispatch(x, idx, mode="capacity", num_experts=E,
                                         expert_capacity=C)
    # Slot 0: t0->e0 c0, t1->e0 c1, t2->e1 c0, t3->e0 full. Slot 1: t0->e1 c1, rest full.
    np.testing.assert_array_equal(mapping, [[0, 3], [1, -1], [2, -1], [-1, -1]])
    np.testing.assert_array_equal(counts, [2, 2])
    np.testing.assert_array_equal(rows[:, :, 0], [[1, 2], [3, 1]])

    # The same choices made by moe.route from logits.
    logits = np.where(idx[:, :, None] == np.arange(E), np.array([3.0, 1.0])[None, :, None],
                      0.0).sum(1).astype(np.float32)
    r_idx, r_w = ref.route(logits, k=2, scoring="softmax", expert_capacity=C)
    np.testing.assert_array_equal(r_idx, np.where(mapping >= 0, idx, -1))
    full_idx, full_w = ref.route(logits, k=2, scoring="softmax")
    np.testing.assert_array_equal(full_idx, idx)
    np.testing.assert_array_equal(r_w, full_w)  # weights kept for dropped slots

    _, rd_w = ref.route(logits, k=2, scoring="softmax", expert_capacity=C,
                        renormalize_after_drop=True)
    np.testing.assert_allclose(rd_w[0].sum(), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(rd_w[1:], [[1, 0], [1, 0], [0, 0]])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_route_capacity_agrees_with_dispatch_capacity(seed):
    rng = np.random.default_rng(seed)
    T, E, k = 30, 6, 2
    logits = rand(rng, T, E)
    full, _ = ref.route(logits, k=k, scoring="softmax")
    capped, _ = ref.route(logits, k=k, scoring="softmax", capacity_factor=0.75)
    C = ref.capacity(None, 0.75, T, k, E)
    assert C == math.ceil(0.75 * T * k / E) == 8
    _, counts, mapping = ref.dispatch(np.zeros((T, 1), np.float32), full, mode="capacity",
                                      num_experts=E, capacity_factor=0.75)
    np.testing.assert_array_equal(capped == -1, mapping == -1)
    assert counts.max() <= C and (capped == -1).any()


@pytest.mark.parametrize("mode", ["dropless", "capacity"])
def test_dispatch_combine_roundtrip(mode):
    rng = np.random.default_rng(4)
    T, H, E, k = 16, 5, 4, 2
    x = rand(rng, T, H)
    idx = np.stack([rng.permutation(E)[:k] for _ in range(T)]).astype(np.int32)
    idx[3, 1] = -1
    w = rng.random((T, k)).astype(np.float32)
    w[3, 1] = 0.0
    w /= w.sum(-1, keepdims=True)
    kw = dict(expert_capacity=T) if mode == "capacity" else {}

    rows, counts, mapping = ref.dispatch(x, idx, mode=mode, num_experts=E, **kw)
    np.testing.assert_allclose(ref.combine(rows, mapping, w, mode=mode), x, rtol=1e-6, atol=1e-6)

    y = ref.expert_ffn(rows, counts, *scaling_experts(E, H), activation="identity")
    want = x * (w * np.where(idx >= 0, idx + 1, 0)).sum(-1, keepdims=True)
    np.testing.assert_allclose(ref.combine(y, mapping, w, mode=mode), want, rtol=1e-6, atol=1e-6)


def test_capacity_passthrough_reproduces_input():
    """With weights summing to 1 over all slots, dropped slots passed through
    give back the input exactly as if nothing was dropped."""
    rng = np.random.default_rng(9)
    T, H, E, k = 12, 3, 3, 2
    x = rand(rng, T, H)
    idx = np.stack([rng.permutation(E)[:k] for _ in range(T)]).astype(np.int32)
    w = rng.random((T, k)).astype(np.float32)
    w /= w.sum(-1, keepdims=True)
    rows, _, mapping = ref.dispatch(x, idx, mode="capacity", num_experts=E, expert_capacity=3)
    assert (mapping == -1).any()
    out = ref.combine(rows, mapping, w, mode="capacity", passthrough=x)
    np.testing.assert_allclose(out, x, rtol=1e-6, atol=1e-6)
    dropped = ref.combine(rows, mapping, w, mode="capacity")
    np.testing.assert_allclose(x - dropped,
                               x * np.where(mapping < 0, w, 0).sum(-1, keepdims=True),
                               rtol=1e-5, atol=1e-6)


def test_expert_choice_pipeline():
    rng = np.random.default_rng(6)
    T, H, E, k = 10, 4, 4, 2
    x = rand(rng, T, H)
    logits = rand(rng, T, E)
    ids, w = ref.route(logits, k=k, scoring="sigmoid", mode="expert_choice",
                       routed_scaling_factor=2.0)
    C = math.ceil(T * k / E)
    assert ids.shape == w.shape == (E, C)
    rows, counts, mapping = ref.dispatch(x, ids, mode="expert_choice", num_experts=E)
    assert rows.shape == (E, C, H) and mapping.shape == (T, E)
    np.testing.assert_array_equal(counts, [C] * E)
    y = ref.expert_ffn(rows, counts, *scaling_experts(E, H), activation="identity")
    out = ref.combine(y, mapping, w, mode="expert_choice")

    want = np.zeros((T, H))
    s = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    for e in range(E):
        chosen = sorted(range(T), key=lambda t: (-s[t, e], t))[:C]
        np.testing.assert_array_equal(ids[e], chosen)
        np.testing.assert_allclose(w[e], 2.0 * s[chosen, e], rtol=1e-6)
        for t in chosen:
            want[t] += 2.0 * s[t, e] * (e + 1) * x[t]
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)


def test_expert_choice_shapes_and_padding():
    rng = np.random.default_rng(8)
    T, E, k = 3, 4, 2
    logits = rand(rng, T, E)
    ids, w = ref.route(logits, k=k, scoring="softmax", mode="expert_choice")
    assert ids.shape == (E, 2)                      # ceil(1 * 3 * 2 / 4)
    ids, w = ref.route(logits, k=k, scoring="softmax", mode="expert_choice",
                       capacity_factor=2.5)
    assert ids.shape == (E, 4)                      # ceil(2.5 * 3 * 2 / 4) = 4 > T
    ids, w = ref.route(logits, k=k, scoring="softmax", mode="expert_choice",
                       expert_capacity=5)
    assert ids.shape == w.shape == (E, 5) and ids.dtype == np.int32
    np.testing.assert_array_equal(ids[:, 3:], -1)
    np.testing.assert_array_equal(w[:, 3:], 0.0)
    assert all(sorted(row[:3]) == [0, 1, 2] for row in ids)
    x = rand(rng, T, 2)
    rows, counts, mapping = ref.dispatch(x, ids, mode="expert_choice", num_experts=E)
    np.testing.assert_array_equal(counts, [3] * E)
    np.testing.assert_array_equal(rows[:, 3:], 0.0)
    assert (mapping >= 0).all() and (mapping % 5 < 3).all()


# ---------------------------------------------------------------------------
# Ties, capacity formula, rounding
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("scoring", ["softmax", "sigmoid", "topk_softmax"])
def test_ties_go_to_the_lower_index(scoring):
    logits = np.array([[0, 0, 0, 0, 0, 0],
                       [1, 3, 3, 0, 3, 0],
                       [2, 1, 2, 1, 2, 2]], dtype=np.float32)
    idx, _ = ref.route(logits, k=3, scoring=scoring)
    np.testing.assert_array_equal(idx, [[0, 1, 2], [1, 2, 4], [0, 2, 4]])
    # Selection bias can create ties too.
    idx, _ = ref.route(logits[:1] * 0 + np.float32(0.5), k=2, scoring=scoring,
                       selection_bias=np.array([0, 1, 0, 1, 0, 1], np.float32))
    np.testing.assert_array_equal(idx, [[1, 3]])


def test_group_ties_go_to_the_lower_group():
    logits = np.zeros((2, 8), dtype=np.float32)
    logits[1, 6] = 1.0
    for gs in ["max", "top2_sum"]:
        idx, _ = ref.route(logits, k=2, scoring="sigmoid", n_group=4, topk_group=2,
                           group_score=gs)
        np.testing.assert_array_equal(idx[0], [0, 1])
        np.testing.assert_array_equal(idx[1], [6, 0])  # group 3 and group 0 kept


def test_expert_choice_ties_go_to_the_lower_token():
    ids, _ = ref.route(np.zeros((5, 2), np.float32), k=1, scoring="softmax",
                       mode="expert_choice", expert_capacity=3)
    np.testing.assert_array_equal(ids, [[0, 1, 2], [0, 1, 2]])


def test_capacity_formula():
    assert ref.capacity(None, 1.25, 8, 2, 4) == 5
    assert ref.capacity(None, 1.0, 3, 1, 2) == 2
    assert ref.capacity(7, 1.0, 3, 1, 2) == 7
    assert ref.capacity(None, None, 3, 1, 2) is None
    assert ref.capacity(None, 0.5, 4, 1, 2) == 1


def test_renormalize_epsilon_and_scaling():
    logits = np.array([[1.0, 0.0, -1.0]], dtype=np.float32)
    _, w = ref.route(logits, k=2, scoring="sigmoid", renormalize=True,
                     renormalize_epsilon=0.5, routed_scaling_factor=2.5)
    s = 1.0 / (1.0 + np.exp(-np.array([1.0, 0.0])))
    np.testing.assert_allclose(w[0], 2.5 * s / (s.sum() + 0.5), rtol=1e-6)


def test_round_logits_rounds_to_the_input_type():
    rng = np.random.default_rng(12)
    x = ref.round_to(rand(rng, 9, 32), "bf16")
    gw = ref.round_to(rand(rng, 8, 32, scale=0.2), "bf16")
    logits = (x.astype(np.float64) @ gw.T.astype(np.float64)).astype(np.float32)
    for dt in ["bf16", "f16"]:
        a = ref.route(x, router_weight=gw, k=2, scoring="softmax", round_logits=True,
                      input_dtype=dt)
        b = ref.route(ref.round_to(logits, dt), k=2, scoring="softmax")
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    # Without round_logits the input type does not matter.
    a = ref.route(x, router_weight=gw, k=2, scoring="softmax", input_dtype="bf16")
    b = ref.route(logits, k=2, scoring="softmax")
    np.testing.assert_array_equal(a[1], b[1])


def test_combine_sums_in_slot_order_in_f32():
    eo = np.array([[1e8], [1.0], [-1e8]], dtype=np.float32)
    mapping = np.array([[0, 1, 2]], dtype=np.int32)
    w = np.ones((1, 3), dtype=np.float32)
    np.testing.assert_array_equal(ref.combine(eo, mapping, w, mode="dropless"), [[0.0]])
    np.testing.assert_array_equal(ref.combine(eo, mapping[:, [0, 2, 1]], w, mode="dropless"),
                                  [[1.0]])


# ---------------------------------------------------------------------------
# FFN forms
# ---------------------------------------------------------------------------


def _torch_act(h, activation, alpha=1.0):
    if activation == "silu":
        return h * torch.sigmoid(alpha * h)
    if activation == "gelu":
        return F.gelu(h)
    if activation == "gelu_tanh":
        return F.gelu(h, approximate="tanh")
    return F.relu(h)


@pytest.mark.parametrize("activation", ["silu", "gelu", "gelu_tanh", "relu"])
def test_expert_ffn_two_matrix_with_biases_and_clamp(activation):
    rng = np.random.default_rng(13)
    E, C, H, I = 3, 4, 6, 10
    rows = rand(rng, E, C, H, scale=2.0)
    counts = np.array([4, 2, 0], dtype=np.int32)
    fc1, fc2 = rand(rng, E, I, H), rand(rng, E, H, I)
    b1, b2 = rand(rng, E, I), rand(rng, E, H)
    for lim in [None, 1.5]:
        y = ref.expert_ffn(rows, counts, fc1, fc2, fc1_bias=b1, fc2_bias=b2,
                           activation=activation, activation_alpha=1.702, clamp_limit=lim)
        for e in range(E):
            xe = torch.tensor(rows[e, :counts[e]], dtype=torch.float64)
            h = F.linear(xe, torch.tensor(fc1[e], dtype=torch.float64),
                         torch.tensor(b1[e], dtype=torch.float64))
            if lim is not None:
                h = h.clamp(-lim, lim)
            h = _torch_act(h, activation, float(np.float32(1.702)))
            want = F.linear(h, torch.tensor(fc2[e], dtype=torch.float64),
                            torch.tensor(b2[e], dtype=torch.float64)).numpy()
            np.testing.assert_allclose(y[e, :counts[e]], want, rtol=1e-5, atol=1e-5)
            np.testing.assert_array_equal(y[e, counts[e]:], 0.0)


def test_gated_ffn_forms_agree_and_match_ort_swiglu():
    rng = np.random.default_rng(14)
    E, N, H, I = 2, 7, 5, 6
    rows = rand(rng, N, H, scale=2.0)
    counts = np.array([4, 3], dtype=np.int32)
    wg, wu, fc2 = rand(rng, E, I, H), rand(rng, E, I, H), rand(rng, E, H, I)
    bg, bu, b2 = rand(rng, E, I), rand(rng, E, I), rand(rng, E, H)
    attrs = dict(activation="silu", activation_alpha=1.702, activation_beta=1.0,
                 clamp_limit=2.0)
    sep = ref.expert_ffn(rows, counts, wg, fc2, fc3=wu, fc1_bias=bg, fc2_bias=b2,
                         fc3_bias=bu, gating="separate", **attrs)
    cat = ref.expert_ffn(rows, counts, np.concatenate([wg, wu], 1), fc2,
                         fc1_bias=np.concatenate([bg, bu], 1), fc2_bias=b2,
                         gating="concatenated", **attrs)
    il_w = np.stack([wg, wu], 2).reshape(E, 2 * I, H)   # even rows gate, odd rows up
    il_b = np.stack([bg, bu], 2).reshape(E, 2 * I)
    il = ref.expert_ffn(rows, counts, il_w, fc2, fc1_bias=il_b, fc2_bias=b2,
                        gating="interleaved", **attrs)
    np.testing.assert_array_equal(sep, cat)
    np.testing.assert_array_equal(sep, il)

    # ONNX Runtime's swiglu: g = min(g, L), u = clamp(u, -L, L),
    # g * sigmoid(alpha g) * (u + beta).
    alpha = float(np.float32(1.702))
    start = 0
    for e in range(E):
        xe = torch.tensor(rows[start:start + counts[e]], dtype=torch.float64)
        lin = lambda w, b: F.linear(xe, torch.tensor(w).double(), torch.tensor(b).double())
        g = lin(wg[e], bg[e]).clamp(max=2.0)
        u = lin(wu[e], bu[e]).clamp(-2.0, 2.0)
        h = g * torch.sigmoid(alpha * g) * (u + 1.0)
        want = F.linear(h, torch.tensor(fc2[e]).double(), torch.tensor(b2[e]).double()).numpy()
        np.testing.assert_allclose(sep[start:start + counts[e]], want, rtol=1e-5, atol=1e-5)
        start += counts[e]


@pytest.mark.parametrize("gated", [True, False])
def test_shared_expert_matches_qwen2_style(gated):
    rng = np.random.default_rng(15)
    T, H, I = 9, 8, 12
    x = rand(rng, T, H)
    gp, up, dp = rand(rng, I, H), rand(rng, I, H), rand(rng, H, I)
    gate = rand(rng, 1, H) if gated else None
    y = ref.shared_expert(x, gp, dp, fc3=up, gate=gate, activation="silu", gating="separate")
    xt = torch.tensor(x, dtype=torch.float64)
    lin = lambda w: F.linear(xt, torch.tensor(w, dtype=torch.float64))
    want = F.linear(F.silu(lin(gp)) * lin(up), torch.tensor(dp, dtype=torch.float64))
    if gated:
        want = torch.sigmoid(lin(gate)) * want
    np.testing.assert_allclose(y, want.numpy(), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------
# MLA
# ---------------------------------------------------------------------------

MLA_DIMS = dict(num_heads=4, qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=6)
YARN_V3 = dict(factor=40.0, original_max_position_embeddings=4096, beta_fast=32.0,
               beta_slow=1.0, mscale=1.0, mscale_all_dim=1.0)
YARN_DEFAULTS = dict(factor=4.0, original_max_position_embeddings=64)
YARN_MIXED = dict(factor=8.0, original_max_position_embeddings=32, beta_fast=16.0,
                  beta_slow=2.0, mscale=1.0, mscale_all_dim=0.5)


def mla_weights(rng, q_lora, H=32, R_kv=12, R_q=10):
    N, Dn, Dr, Dv = (MLA_DIMS[k] for k in ["num_heads", "qk_nope_head_dim",
                                           "qk_rope_head_dim", "v_head_dim"])
    w = dict(kv_a_proj=rand(rng, R_kv + Dr, H, scale=H ** -0.5),
             kv_a_norm=1.0 + rand(rng, R_kv, scale=0.1),
             kv_b_proj=rand(rng, N * (Dn + Dv), R_kv, scale=R_kv ** -0.5),
             o_proj=rand(rng, H, N * Dv, scale=(N * Dv) ** -0.5))
    if q_lora:
        w.update(q_a_proj=rand(rng, R_q, H, scale=H ** -0.5),
                 q_a_norm=1.0 + rand(rng, R_q, scale=0.1),
                 q_b_proj=rand(rng, N * (Dn + Dr), R_q, scale=R_q ** -0.5))
    else:
        w.update(q_proj=rand(rng, N * (Dn + Dr), H, scale=H ** -0.5))
    return w


@pytest.mark.parametrize("q_lora", [True, False])
@pytest.mark.parametrize("interleave", [True, False])
@pytest.mark.parametrize("yarn,scale", [(None, None), (YARN_V3, None), (YARN_DEFAULTS, None),
                                        (YARN_MIXED, None), (None, 0.3)])
def test_mla_prefill_then_decode_matches_full_forward(q_lora, interleave, yarn, scale):
    rng = np.random.default_rng(21)
    H, R_kv, Dr = 32, 12, MLA_DIMS["qk_rope_head_dim"]
    w = mla_weights(rng, q_lora, H=H, R_kv=R_kv)
    attrs = dict(MLA_DIMS, rope_theta=10000.0, rope_interleave=interleave, yarn=yarn,
                 softmax_scale=scale, **w)
    x = rand(rng, 10, H)
    full_out, full_ckv, full_kr = ref.mla_full_forward(x, **attrs)

    ckv = np.zeros((0, R_kv), np.float32)
    kr = np.zeros((0, Dr), np.float32)
    outs = []
    for lo, hi in [(0, 5), (5, 6), (6, 7), (7, 8), (8, 10)]:  # prefill, decodes, a chunk
        out, ckv, kr = ref.mla_attention(x[lo:hi], ckv, kr, **attrs)
        assert ckv.shape == (hi, R_kv) and kr.shape == (hi, Dr)
        outs.append(out)
    np.testing.assert_allclose(np.concatenate(outs), full_out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ckv, full_ckv, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(kr, full_kr, rtol=1e-6, atol=1e-6)


def test_mla_rope_interleave_permutes_the_cached_rope_key_only():
    """Interleaving is a fixed permutation of the rope dims of the weights:
    permuting the rope rows of kv_a_proj / q_proj gives the same output."""
    rng = np.random.default_rng(22)
    w = mla_weights(rng, q_lora=False)
    N, Dn, Dr = MLA_DIMS["num_heads"], MLA_DIMS["qk_nope_head_dim"], MLA_DIMS["qk_rope_head_dim"]
    R_kv = w["kv_b_proj"].shape[1]
    perm = np.concatenate([np.arange(0, Dr, 2), np.arange(1, Dr, 2)])  # halves -> pairs
    inv = np.argsort(perm)
    w2 = dict(w)
    kv_rows = np.concatenate([np.arange(R_kv), R_kv + inv])
    w2["kv_a_proj"] = w["kv_a_proj"][kv_rows]
    q_rows = np.concatenate([np.concatenate([np.arange(Dn), Dn + inv]) + h * (Dn + Dr)
                             for h in range(N)])
    w2["q_proj"] = w["q_proj"][q_rows]
    x = rand(rng, 6, 32)
    empty = (np.zeros((0, R_kv), np.float32), np.zeros((0, Dr), np.float32))
    a = ref.mla_attention(x, *empty, rope_interleave=False, **MLA_DIMS, **w)
    b = ref.mla_attention(x, *empty, rope_interleave=True, **MLA_DIMS, **w2)
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7)


def test_mla_bf16_cache_rounds_new_entries():
    rng = np.random.default_rng(23)
    w = mla_weights(rng, q_lora=True)
    x = rand(rng, 4, 32)
    empty = (np.zeros((0, 12), np.float32), np.zeros((0, 8), np.float32))
    o32, c32, k32 = ref.mla_attention(x, *empty, **MLA_DIMS, **w)
    o16, c16, k16 = ref.mla_attention(x, *empty, cache_dtype="bf16", **MLA_DIMS, **w)
    np.testing.assert_array_equal(c16, ref.round_to(c32, "bf16"))
    np.testing.assert_array_equal(k16, ref.round_to(k32, "bf16"))
    assert not np.array_equal(o16, o32)
    np.testing.assert_allclose(o16, o32, rtol=0.05, atol=0.02)


def test_mla_yarn_scale():
    """The default softmax scale with YaRN is (Dn+Dr)^-0.5 * m(factor,
    mscale_all_dim)^2: giving that scale explicitly changes nothing, giving
    the plain (Dn+Dr)^-0.5 does."""
    rng = np.random.default_rng(24)
    w = mla_weights(rng, q_lora=False)
    x = rand(rng, 5, 32)
    empty = (np.zeros((0, 12), np.float32), np.zeros((0, 8), np.float32))
    m = 0.1 * 1.0 * math.log(40.0) + 1.0
    derived = 16 ** -0.5 * m * m
    a = ref.mla_attention(x, *empty, yarn=YARN_V3, **MLA_DIMS, **w)
    b = ref.mla_attention(x, *empty, yarn=YARN_V3, softmax_scale=float(np.float32(derived)),
                          **MLA_DIMS, **w)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-6, atol=1e-7)
    c = ref.mla_attention(x, *empty, yarn=YARN_V3, softmax_scale=16 ** -0.5, **MLA_DIMS, **w)
    assert not np.allclose(a[0], c[0], rtol=1e-4, atol=1e-6)
