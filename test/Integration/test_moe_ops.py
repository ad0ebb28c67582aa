"""End-to-end numerics of every moe op variant: compiled for the CPU by
moe-run (moe-cpu-pipeline, JIT) and compared with the independent PyTorch /
NumPy reference in reference/moe_reference.py.

Tolerances: integer results (expert ids, counts, mappings, dispatched rows)
must match exactly. f32 results: max error <= 1e-5 * max|reference|. Results
with bf16 activations: 1e-2 (bf16 keeps 8 significant bits, so one rounding
of the output is up to 2^-9 relative; the rest is f32 accumulation)."""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "reference"))
import moe_reference as R  # noqa: E402
from moe_harness import (HOST_BF16, Function, assert_close, attr_dict, run,  # noqa: E402
                         tensor_type)

F32_RTOL = 1e-5
BF16_RTOL = 1e-2


def rng(seed):
    return np.random.default_rng(seed)


def route_attrs(kw):
    a = {}
    if kw.get("mode") == "expert_choice":
        a["mode"] = "#moe.routing_mode<expert_choice>"
    for key in ("round_logits", "renormalize", "renormalize_after_drop"):
        a[key] = kw.get(key, False)
    for key in ("renormalize_epsilon", "routed_scaling_factor", "capacity_factor"):
        if key in kw:
            a[key] = float(kw[key])
    for key in ("n_group", "topk_group", "expert_capacity"):
        if key in kw:
            a[key] = int(kw[key])
    if "group_score" in kw:
        a["group_score"] = f"#moe.group_score<{kw['group_score']}>"
    if "group_mask_fill" in kw:
        a["group_mask_fill"] = f"#moe.mask_fill<{kw['group_mask_fill']}>"
    return attr_dict(a)


def route_result_shape(kw, T, E, k):
    if kw.get("mode") == "expert_choice":
        return [E, R.capacity(kw.get("expert_capacity"),
                              kw.get("capacity_factor", 1.0), T, k, E)]
    return [T, k]


def build_route(T, E, k, scoring, kw, dynamic=False, dtype="f32"):
    f = Function()
    shapeT = None if dynamic else T
    logits, lt = f.arg("logits", [shapeT, E], dtype)
    operands, types = [logits], [lt]
    extra = ""
    if "selection_bias" in kw:
        b, bt = f.arg("bias", [E], "f32")
        extra = f" selection_bias({b})"
        types.append(bt)
    rshape = route_result_shape(kw, T, E, k)
    if dynamic and kw.get("mode") != "expert_choice":
        rshape = [None, k]
    it, wt = tensor_type(rshape, "i32"), tensor_type(rshape, "f32")
    f.op(f"%i, %w = moe.route {logits}{extra} k = {k} scoring = {scoring} "
         f"{route_attrs(kw)} : ({', '.join(types)}) -> ({it}, {wt})")
    f.result("indices", "%i", it)
    f.result("weights", "%w", wt)
    return f


ROUTERS = {
    # name: (T, E, k, scoring, kwargs)
    "mixtral": (9, 8, 2, "softmax", dict(renormalize=True)),
    "qwen_no_norm": (5, 12, 4, "softmax", {}),
    "deepseek_v3": (7, 16, 4, "sigmoid", dict(
        selection_bias=True, n_group=4, topk_group=2, group_score="top2_sum",
        renormalize=True, renormalize_epsilon=1e-20, routed_scaling_factor=2.5)),
    "deepseek_v3_zero_fill": (7, 16, 4, "sigmoid", dict(
        selection_bias=True, n_group=4, topk_group=2, group_score="top2_sum",
        group_mask_fill="zero", renormalize=True)),
    "deepseek_v2": (6, 12, 3, "softmax", dict(
        n_group=3, topk_group=2, group_score="max", routed_scaling_factor=16.0)),
    "topk_softmax_e6": (6, 6, 2, "topk_softmax", {}),
    "sigmoid_bias": (4, 10, 3, "sigmoid", dict(selection_bias=True)),
    "switch_capacity": (10, 4, 1, "softmax", dict(expert_capacity=2)),
    "gshard_factor_after_drop": (8, 4, 2, "softmax", dict(
        capacity_factor=1.0, renormalize=True, renormalize_after_drop=True,
        routed_scaling_factor=2.0)),
    "expert_choice": (8, 4, 1, "softmax", dict(mode="expert_choice", capacity_factor=2.0)),
    "expert_choice_padded": (5, 4, 1, "sigmoid", dict(
        mode="expert_choice", expert_capacity=7, routed_scaling_factor=0.5)),
    "single_token": (1, 8, 2, "softmax", dict(renormalize=True)),
}


def reference_route(logits, bias, k, scoring, kw):
    args = {key: v for key, v in kw.items() if key != "selection_bias"}
    if bias is not None:
        args["selection_bias"] = bias
    return R.route(logits, k=k, scoring=scoring, **args)


@pytest.mark.parametrize("name", sorted(ROUTERS))
@pytest.mark.parametrize("dynamic", [False, True])
def test_route(name, dynamic):
    T, E, k, scoring, kw = ROUTERS[name]
    if dynamic and kw.get("mode") == "expert_choice" and "expert_capacity" not in kw:
        pytest.skip("expert choice with a capacity factor needs a static T")
    g = rng(hash(name) % 1000)
    logits = g.standard_normal((T, E)).astype(np.float32)
    bias = g.standard_normal(E).astype(np.float32) * 0.5 if "selection_bias" in kw else None
    inputs = {"logits": logits}
    if bias is not None:
        inputs["bias"] = bias
    out = run(build_route(T, E, k, scoring, kw, dynamic), inputs)
    ids, w = reference_route(logits, bias, k, scoring, kw)
    np.testing.assert_array_equal(out["indices"], ids)
    assert_close(out["weights"], w, F32_RTOL, f"{name} weights")


def test_route_ties_go_to_the_lower_index():
    # Equal logits everywhere, and pairs of equal logits: the lower expert
    # index wins (torch.topk leaves the order of ties unspecified; this is
    # the order of a stable descending sort).
    logits = np.array([[0.0] * 8,
                       [1.0, 2.0, 2.0, 0.5, 2.0, 1.0, 0.0, 2.0],
                       [3.0, 1.0, 3.0, 1.0, 3.0, 1.0, 3.0, 1.0]], dtype=np.float32)
    out = run(build_route(3, 8, 3, "softmax", {}), {"logits": logits})
    np.testing.assert_array_equal(out["indices"], [[0, 1, 2], [1, 2, 4], [0, 2, 4]])
    ids, _ = R.route(logits, k=3, scoring="softmax")
    np.testing.assert_array_equal(out["indices"], ids)


def test_route_from_hidden_bf16_rounded_logits():
    g = rng(3)
    T, H, E, k = 6, 32, 8, 2
    x = R.round_to(g.standard_normal((T, H)), "bf16")
    w = R.round_to(g.standard_normal((E, H)) * 0.3, "bf16")
    b = R.round_to(g.standard_normal(E) * 0.1, "bf16")
    f = Function()
    xs, xt = f.arg("x", [T, H], "bf16")
    ws, wt = f.arg("w", [E, H], "bf16")
    bs, bt = f.arg("b", [E], "bf16")
    it, ft = tensor_type([T, k], "i32"), tensor_type([T, k], "f32")
    f.op(f"%i, %p = moe.route {xs} weight({ws}) router_bias({bs}) k = {k} scoring = softmax "
         f"{{renormalize, round_logits}} : ({xt}, {wt}, {bt}) -> ({it}, {ft})")
    f.result("indices", "%i", it)
    f.result("weights", "%p", ft)
    out = run(f, {"x": x, "w": w, "b": b})
    ids, ref = R.route(x, k=k, scoring="softmax", router_weight=w, router_bias=b,
                       input_dtype="bf16", round_logits=True, renormalize=True)
    np.testing.assert_array_equal(out["indices"], ids)
    assert_close(out["weights"], ref, F32_RTOL, "weights")


def build_dispatch(T, H, k_or_C, E, mode, kw, dtype="f32"):
    f = Function()
    xs, xt = f.arg("x", [T, H], dtype)
    ids_shape = [E, k_or_C] if mode == "expert_choice" else [T, k_or_C]
    ids, idt = f.arg("ids", ids_shape, "i32")
    if mode == "dropless":
        rows = [T * k_or_C, H]
        mapping = [T, k_or_C]
    elif mode == "capacity":
        C = R.capacity(kw.get("expert_capacity"), kw.get("capacity_factor"), T, k_or_C, E)
        rows = [E, C, H]
        mapping = [T, k_or_C]
    else:
        rows = [E, k_or_C, H]
        mapping = [T, E]
    rt, ct, mt = tensor_type(rows, dtype), tensor_type([E], "i32"), tensor_type(mapping, "i32")
    f.op(f"%r, %c, %m = moe.dispatch {mode} {xs}, {ids} experts = {E} {attr_dict(kw)} "
         f": ({xt}, {idt}) -> ({rt}, {ct}, {mt})")
    f.result("rows", "%r", rt)
    f.result("counts", "%c", ct)
    f.result("mapping", "%m", mt)
    return f


DISPATCHES = {
    "dropless": (7, 8, 2, 4, "dropless", {}),
    "dropless_with_dropped": (6, 8, 3, 5, "dropless", {}),
    "capacity_fixed": (10, 8, 1, 4, "capacity", dict(expert_capacity=2)),
    "capacity_factor": (9, 8, 2, 3, "capacity", dict(capacity_factor=0.75)),
    "expert_choice": (6, 8, 4, 3, "expert_choice", {}),
}


def dispatch_ids(name, T, k, E, mode, g):
    if mode == "expert_choice":
        ids = np.stack([g.permutation(T)[:k] for _ in range(E)]).astype(np.int32)
        ids[1, -1] = -1  # padding
        return ids
    ids = np.stack([g.permutation(E)[:k] for _ in range(T)]).astype(np.int32)
    if name == "dropless_with_dropped":
        ids[1, 2] = -1
        ids[4, 0] = -1
    return ids


@pytest.mark.parametrize("name", sorted(DISPATCHES))
def test_dispatch_and_combine(name):
    T, H, k, E, mode, kw = DISPATCHES[name]
    g = rng(len(name))
    x = g.standard_normal((T, H)).astype(np.float32)
    ids = dispatch_ids(name, T, k, E, mode, g)
    out = run(build_dispatch(T, H, k, E, mode, kw), {"x": x, "ids": ids})
    rows, counts, mapping = R.dispatch(x, ids, mode=mode, num_experts=E, **kw)
    np.testing.assert_array_equal(out["counts"], counts)
    np.testing.assert_array_equal(out["mapping"], mapping)
    np.testing.assert_array_equal(out["rows"], rows)

    # Combine the dispatched rows (as if every expert were the identity).
    weights = (g.random(mapping.shape if mode != "expert_choice" else ids.shape)
               .astype(np.float32))
    f = Function()
    ys, yt = f.arg("y", list(rows.shape))
    ms, mt = f.arg("m", list(mapping.shape), "i32")
    ws, wt = f.arg("w", list(weights.shape))
    extra, types = "", [yt, mt, wt]
    inputs = {"y": rows, "m": mapping, "w": weights}
    if mode == "capacity":
        ps, pt = f.arg("p", [T, H])
        extra = f" passthrough({ps})"
        types.append(pt)
        inputs["p"] = x
    ot = tensor_type([T, H], "f32")
    f.op(f"%o = moe.combine {mode} {ys}, {ms}, {ws}{extra} : ({', '.join(types)}) -> {ot}")
    f.result("out", "%o", ot)
    got = run(f, inputs)["out"]
    ref = R.combine(rows, mapping, weights, mode=mode,
                    passthrough=x if mode == "capacity" else None)
    assert_close(got, ref, F32_RTOL, "combine")


FFNS = {
    # name: (activation, gating, biases, extra attrs)
    "swiglu": ("silu", "separate", False, {}),
    "swiglu_biases": ("silu", "separate", True, {}),
    "concatenated": ("silu", "concatenated", False, {}),
    "interleaved_ort": ("silu", "interleaved", True, dict(
        activation_alpha=1.702, activation_beta=1.0, clamp_limit=0.5)),
    "relu": ("relu", "none", True, {}),
    "gelu": ("gelu", "none", False, {}),
    "gelu_tanh": ("gelu_tanh", "none", True, {}),
    "identity": ("identity", "none", False, {}),
    "relu_clamped": ("relu", "none", False, dict(clamp_limit=0.3)),
    "geglu_tanh": ("gelu_tanh", "separate", False, {}),
}


def ffn_weights(g, E, H, I, gating, biases, lead=True):
    pre = [E] if lead else []
    fused = gating in ("concatenated", "interleaved")
    w = {"fc1": g.standard_normal(pre + [2 * I if fused else I, H]) * 0.3,
         "fc2": g.standard_normal(pre + [H, I]) * 0.3}
    if gating == "separate":
        w["fc3"] = g.standard_normal(pre + [I, H]) * 0.3
    if biases:
        w["fc1_bias"] = g.standard_normal(pre + [2 * I if fused else I]) * 0.1
        w["fc2_bias"] = g.standard_normal(pre + [H]) * 0.1
        if gating == "separate":
            w["fc3_bias"] = g.standard_normal(pre + [I]) * 0.1
    return {n: v.astype(np.float32) for n, v in w.items()}


def ffn_operands(f, weights, wdtype):
    order = ["fc1", "fc3", "fc2", "fc1_bias", "fc3_bias", "fc2_bias"]
    text, types = [], []
    for n in order:
        if n in weights:
            s, t = f.arg(n, list(weights[n].shape), wdtype)
            text.append(f"{n}({s})")
            types.append(t)
    # The operand order of the op is fc1, fc2, fc3, fc1_bias, fc2_bias, fc3_bias.
    by_name = dict(zip([n for n in order if n in weights], types))
    op_order = [n for n in ["fc1", "fc2", "fc3", "fc1_bias", "fc2_bias", "fc3_bias"] if n in weights]
    return " ".join(text), [by_name[n] for n in op_order]


def ffn_attrs(activation, gating, extra, fuse_gate_up=False):
    text = f"act = {activation}"
    if gating != "none":
        text += f" gating = {gating}"
    attrs = {k: float(v) for k, v in extra.items()}
    attrs["fuse_gate_up"] = fuse_gate_up
    return text + " " + attr_dict(attrs)


# How moe.expert_ffn is lowered: per expert (I = 24 is not a multiple of the
# kernel's 16 lanes), or as a grouped GEMM over all experts (I = 32), with the
# gate and up projections fused (fuse_gate_up) or not.
KERNELS = {"per-expert": (24, False), "grouped": (32, False),
           "grouped-fused": (32, True)}


@pytest.mark.parametrize("name", sorted(FFNS))
@pytest.mark.parametrize("layout", ["rows", "slabs"])
@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_expert_ffn(name, layout, kernel):
    activation, gating, biases, extra = FFNS[name]
    g = rng(len(name) * 7 + len(layout))
    E, H = 4, 16
    I, fuse = KERNELS[kernel]
    weights = ffn_weights(g, E, H, I, gating, biases)
    if layout == "rows":
        counts = np.array([3, 0, 5, 1], dtype=np.int32)  # expert 1 gets nothing
        rows = g.standard_normal((12, H)).astype(np.float32)  # 3 unused rows
    else:
        counts = np.array([2, 3, 0, 1], dtype=np.int32)
        rows = g.standard_normal((E, 3, H)).astype(np.float32)
    f = Function()
    rs, rt = f.arg("rows", list(rows.shape))
    cs, ct = f.arg("counts", [E], "i32")
    ops, wtypes = ffn_operands(f, weights, "f32")
    f.op(f"%y = moe.expert_ffn {rs}, {cs} {ops} "
         f"{ffn_attrs(activation, gating, extra, fuse)} "
         f": ({', '.join([rt, ct] + wtypes)}) -> {rt}")
    f.result("y", "%y", rt)
    got = run(f, {"rows": rows, "counts": counts, **weights})["y"]
    ref = R.expert_ffn(rows, counts, activation=activation, gating=gating,
                       **weights, **extra)
    assert_close(got, ref, F32_RTOL, name)


@pytest.mark.parametrize("kernel", sorted(KERNELS))
@pytest.mark.parametrize("chunks", [1, 3])
def test_stacked_shared_expert(kernel, chunks):
    """moe.stack_experts (what moe-fuse-shared-expert writes): 3 routed
    experts and a shared FFN `chunks` routed widths wide, cut into `chunks`
    more experts (fc1/fc3 by rows, fc2 by columns). Read in place by the
    grouped kernel, copied into one stack by the per-expert form; against
    the reference on the explicitly stacked weights."""
    g = rng(31 + chunks)
    E, H = 3, 16
    I, fuse = KERNELS[kernel]
    routed = ffn_weights(g, E, H, I, "separate", False)
    shared = ffn_weights(g, 1, H, chunks * I, "separate", False, lead=False)
    stacked = {
        "fc1": np.concatenate([routed["fc1"], shared["fc1"].reshape(chunks, I, H)]),
        "fc3": np.concatenate([routed["fc3"], shared["fc3"].reshape(chunks, I, H)]),
        "fc2": np.concatenate([routed["fc2"], np.stack(
            [shared["fc2"][:, j * I:(j + 1) * I] for j in range(chunks)])]),
    }
    counts = np.array([2, 0, 3] + [4] * chunks, dtype=np.int32)
    rows = g.standard_normal((int(counts.sum()) + 1, H)).astype(np.float32)
    f = Function()
    rs, rt = f.arg("rows", list(rows.shape))
    cs, ct = f.arg("counts", [E + chunks], "i32")
    names, types = {}, {}
    for n in ("fc1", "fc3", "fc2"):
        rsym, rtype = f.arg(f"r_{n}", list(routed[n].shape))
        ssym, stype = f.arg(f"s_{n}", list(shared[n].shape))
        types[n] = tensor_type(list(stacked[n].shape), "f32")
        f.op(f"%{n} = moe.stack_experts {rsym}, {ssym} "
             f"{{split_dim = {1 if n == 'fc2' else 0}}} "
             f": ({rtype}, {stype}) -> {types[n]}")
        names[n] = f"%{n}"
    f.op(f"%y = moe.expert_ffn {rs}, {cs} fc1({names['fc1']}) fc3({names['fc3']}) "
         f"fc2({names['fc2']}) act = silu gating = separate "
         f"{attr_dict({'fuse_gate_up': fuse})} "
         f": ({', '.join([rt, ct, types['fc1'], types['fc2'], types['fc3']])}) -> {rt}")
    f.result("y", "%y", rt)
    inputs = {"rows": rows, "counts": counts}
    for n in ("fc1", "fc3", "fc2"):
        inputs[f"r_{n}"] = routed[n]
        inputs[f"s_{n}"] = shared[n]
    got = run(f, inputs)["y"]
    ref = R.expert_ffn(rows, counts, activation="silu", gating="separate",
                       **stacked)
    assert_close(got, ref, F32_RTOL, f"{kernel}-{chunks}")


def routed_ffn_case(g, T, H, E, k, I, gating, biases, dtype="f32"):
    """Inputs of a routed layer: ids with a dropped (-1) and an out-of-range
    assignment, a repeated expert in one token's row, the last expert
    without tokens."""
    x = g.standard_normal((T, H)).astype(np.float32)
    if dtype == "bf16":
        x = R.round_to(x, "bf16")
    ids = g.integers(0, E - 1, (T, k)).astype(np.int32)
    ids[min(2, T - 1), k - 1] = -1
    ids[T - 1, 0] = E + 3
    ids[0, :] = 1
    w = g.random((T, k)).astype(np.float32)
    return x, ids, w, ffn_weights(g, E, H, I, gating, biases)


def routed_ffn_reference(x, ids, w, weights, E, activation, gating, extra):
    rows, counts, mapping = R.dispatch(x, ids, mode="dropless", num_experts=E)
    y = R.expert_ffn(rows, counts, activation=activation, gating=gating,
                     **weights, **extra)
    return R.combine(y, mapping, w, mode="dropless")


def run_routed_ffn(x, ids, w, weights, attrs):
    """moe.routed_ffn (dynamic T) on the inputs, FFN attributes `attrs`
    (ffn_attrs' text); returns its result."""
    H, k = x.shape[1], ids.shape[1]
    f = Function()
    xs, xt = f.arg("x", [None, H])
    ids_s, ids_t = f.arg("ids", [None, k], "i32")
    ws, wt = f.arg("w", [None, k])
    ops, wtypes = ffn_operands(f, weights, "f32")
    f.op(f"%y = moe.routed_ffn {xs}, {ids_s}, {ws} {ops} {attrs} "
         f": ({', '.join([xt, ids_t, wt] + wtypes)}) -> {xt}")
    f.result("y", "%y", xt)
    return run(f, {"x": x, "ids": ids, "w": w, **weights})["y"]


@pytest.mark.parametrize("name", sorted(FFNS))
@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_routed_ffn(name, kernel):
    """moe.routed_ffn (what moe-fuse-dispatch-combine writes) against the
    reference's dispatch -> expert_ffn -> combine: gathered rows and the
    combine in the down projection (grouped kernels), or the three ops
    (per-expert shapes)."""
    activation, gating, biases, extra = FFNS[name]
    g = rng(len(name) * 11 + len(kernel))
    T, H, E, k = 13, 16, 4, 3
    I, fuse = KERNELS[kernel]
    x, ids, w, weights = routed_ffn_case(g, T, H, E, k, I, gating, biases)
    got = run_routed_ffn(x, ids, w, weights,
                         ffn_attrs(activation, gating, extra, fuse))
    ref = routed_ffn_reference(x, ids, w, weights, E, activation, gating, extra)
    assert_close(got, ref, F32_RTOL, name)


@pytest.mark.parametrize("k", [1, 2])
def test_routed_ffn_long_groups(k):
    """Experts with more rows than the kernel's L2 chunk (H = 1024 f32: 125
    rows), so the gathered rows are walked chunk by chunk; two experts,
    one of them holding most tokens; against the reference."""
    g = rng(40 + k)
    T, H, E, I = 150, 1024, 2, 32
    x = g.standard_normal((T, H)).astype(np.float32)
    ids = (g.random((T, k)) < 0.85).astype(np.int32)
    w = g.random((T, k)).astype(np.float32)
    weights = ffn_weights(g, E, H, I, "separate", False)
    got = run_routed_ffn(x, ids, w, weights,
                         ffn_attrs("silu", "separate", {}, fuse_gate_up=True))
    ref = routed_ffn_reference(x, ids, w, weights, E, "silu", "separate", {})
    assert_close(got, ref, F32_RTOL, f"k={k}")


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
@pytest.mark.parametrize("T", [1, 37])
def test_dispatch_combine_fusion_changes_no_bit(dtype, T):
    """A dropless dispatch -> expert_ffn -> combine chain compiled with and
    without moe-fuse-dispatch-combine gives the same bits (k = 3: the
    combine's slot order matters), and both match the reference."""
    g = rng(T + len(dtype))
    H, E, k, I = 32, 6, 3, 48
    x, ids, w, weights = routed_ffn_case(g, T, H, E, k, I, "separate", False,
                                         dtype)
    f = Function()
    xs, xt = f.arg("x", [None, H], dtype)
    ids_s, ids_t = f.arg("ids", [None, k], "i32")
    ws, wt = f.arg("w", [None, k])
    ops, wtypes = ffn_operands(f, weights, "f32")
    ct = tensor_type([E], "i32")
    f.op(f"%rows, %counts, %map = moe.dispatch dropless {xs}, {ids_s} "
         f"experts = {E} : ({xt}, {ids_t}) -> ({xt}, {ct}, {ids_t})")
    f.op(f"%y = moe.expert_ffn %rows, %counts {ops} act = silu "
         f"gating = separate : ({', '.join([xt, ct] + wtypes)}) -> {xt}")
    f.op(f"%out = moe.combine dropless %y, %map, {ws} "
         f": ({xt}, {ids_t}, {wt}) -> {xt}")
    f.result("out", "%out", xt)
    inputs = {"x": x, "ids": ids, "w": w, **weights}
    fused = run(f, inputs)["out"]
    unfused = run(f, inputs, extra_args=["--fuse-dispatch-combine=false"])["out"]
    np.testing.assert_array_equal(fused.view(np.uint8), unfused.view(np.uint8))
    ref = routed_ffn_reference(x, ids, w, weights, E, "silu", "separate", {})
    if dtype == "bf16":
        ref = R.round_to(ref, "bf16")
    assert_close(fused.astype(np.float32), ref,
                 BF16_RTOL if dtype == "bf16" else F32_RTOL, dtype)


@pytest.mark.parametrize("gated", [False, True])
def test_shared_expert(gated):
    g = rng(11 + gated)
    T, H, I = 5, 16, 40
    weights = ffn_weights(g, 1, H, I, "separate", False, lead=False)
    x = g.standard_normal((T, H)).astype(np.float32)
    f = Function()
    xs, xt = f.arg("x", [T, H])
    ops, wtypes = ffn_operands(f, weights, "f32")
    gate_text = ""
    inputs = {"x": x, **weights}
    if gated:
        gs_, gt = f.arg("gate", [1, H])
        gate_text = f" gate({gs_})"
        wtypes.append(gt)
        inputs["gate"] = g.standard_normal((1, H)).astype(np.float32) * 0.3
    f.op(f"%y = moe.shared_expert {xs} {ops}{gate_text} act = silu gating = separate "
         f": ({', '.join([xt] + wtypes)}) -> {xt}")
    f.result("y", "%y", xt)
    got = run(f, inputs)["y"]
    ref = R.shared_expert(x, activation="silu", gating="separate",
                          gate=inputs.get("gate"), **weights)
    assert_close(got, ref, F32_RTOL, "shared expert")


@pytest.mark.parametrize("wdtype,dot", [("f32", "off"), ("bf16", "off"), ("bf16", "on")])
def test_long_reductions_walk_rows_in_chunks(wdtype, dot):
    # H = 4096: the kernel walks the token rows in chunks that fit in L2
    # (30 rows of f32, 60 of bf16), then takes the leftover rows one at a
    # time; T = 127 gives several chunks, a partial one and leftovers.
    if dot == "on" and not HOST_BF16:
        pytest.skip("this CPU has no AVX512-BF16")
    g = rng(31)
    T, H, I = 127, 4096, 48   # I % 32 != 0: the down projection stays exact
    weights = {n: R.round_to(w, wdtype) for n, w in
               ffn_weights(g, 1, H, I, "separate", False, lead=False).items()}
    x = g.standard_normal((T, H)).astype(np.float32)
    f = Function()
    xs, xt = f.arg("x", [None, H])
    ops, wtypes = ffn_operands(f, weights, wdtype)
    f.op(f"%y = moe.shared_expert {xs} {ops} act = silu gating = separate "
         f": ({', '.join([xt] + wtypes)}) -> {xt}")
    f.result("y", "%y", xt)
    got = run(f, {"x": x, **weights}, bf16_dot=dot)["y"]
    if dot == "on":
        def rounded(v, w):
            return R.round_to(v, "bf16") if w.shape[-1] % 32 == 0 else v
        h = x.astype(np.float64)
        gate = rounded(h, weights["fc1"]) @ weights["fc1"].astype(np.float64).T
        up = rounded(h, weights["fc3"]) @ weights["fc3"].astype(np.float64).T
        hidden = (gate / (1 + np.exp(-gate)) * up).astype(np.float32)
        ref = rounded(hidden, weights["fc2"]).astype(np.float64) @ \
            weights["fc2"].astype(np.float64).T
    else:
        ref = R.shared_expert(x, activation="silu", gating="separate", **weights)
    assert_close(got, ref, F32_RTOL, f"{wdtype} weights, bf16 dot {dot}")


def mixtral_layer(T, H, E, I, k, dtype="f32", wdtype="f32", dynamic=False):
    f = Function()
    Ts = None if dynamic else T
    xs, xt = f.arg("x", [Ts, H], dtype)
    gs_, gt = f.arg("gate", [E, H], wdtype)
    w1, w1t = f.arg("w1", [E, I, H], wdtype)
    w2, w2t = f.arg("w2", [E, H, I], wdtype)
    w3, w3t = f.arg("w3", [E, I, H], wdtype)
    it, ft = tensor_type([Ts, k], "i32"), tensor_type([Ts, k], "f32")
    rows = tensor_type([None if dynamic else T * k, H], dtype)
    f.op(f"%i, %w = moe.route {xs} weight({gs_}) k = {k} scoring = softmax {{renormalize}} "
         f": ({xt}, {gt}) -> ({it}, {ft})")
    f.op(f"%r, %c, %m = moe.dispatch dropless {xs}, %i experts = {E} "
         f": ({xt}, {it}) -> ({rows}, {tensor_type([E], 'i32')}, {it})")
    f.op(f"%y = moe.expert_ffn %r, %c fc1({w1}) fc3({w3}) fc2({w2}) act = silu gating = separate "
         f": ({rows}, {tensor_type([E], 'i32')}, {w1t}, {w2t}, {w3t}) -> {rows}")
    f.op(f"%o = moe.combine dropless %y, %m, %w : ({rows}, {it}, {ft}) -> {xt}")
    f.result("out", "%o", xt)
    return f


def mixtral_inputs(g, T, H, E, I, wround="f32", xround="f32"):
    return {
        "x": R.round_to(g.standard_normal((T, H)), xround),
        "gate": R.round_to(g.standard_normal((E, H)) * 0.5, wround),
        "w1": R.round_to(g.standard_normal((E, I, H)) * 0.2, wround),
        "w2": R.round_to(g.standard_normal((E, H, I)) * 0.2, wround),
        "w3": R.round_to(g.standard_normal((E, I, H)) * 0.2, wround),
    }


@pytest.mark.parametrize("T", [1, 7, 16])
@pytest.mark.parametrize("dynamic", [False, True])
def test_mixtral_layer_matches_hf(T, dynamic):
    g = rng(T)
    H, E, I, k = 16, 8, 32, 2
    inputs = mixtral_inputs(g, T, H, E, I)
    got = run(mixtral_layer(T, H, E, I, k, dynamic=dynamic), inputs)["out"]
    ref = R.hf_mixtral_block(inputs["x"], inputs["gate"], inputs["w1"],
                             inputs["w2"], inputs["w3"], k)
    assert_close(got, ref, F32_RTOL, "mixtral")


def test_mixtral_layer_bf16_weights():
    # f32 activations, bf16 weights, exact products (--bf16-dot=off): the
    # reference uses the same rounded weights, so only f32 accumulation
    # differs.
    g = rng(21)
    T, H, E, I, k = 9, 16, 8, 32, 2
    inputs = mixtral_inputs(g, T, H, E, I, wround="bf16")
    got = run(mixtral_layer(T, H, E, I, k, wdtype="bf16"), inputs,
              bf16_dot="off")["out"]
    ref = R.hf_mixtral_block(inputs["x"], inputs["gate"], inputs["w1"],
                             inputs["w2"], inputs["w3"], k)
    assert_close(got, ref, F32_RTOL, "mixtral bf16 weights")


@pytest.mark.skipif(not HOST_BF16, reason="this CPU has no AVX512-BF16")
@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("aot", [False, True])
def test_mixtral_layer_bf16_dot_products(dynamic, aot):
    # --bf16-dot=on: every expert projection with a reduction size that is a
    # multiple of 32 (here all: H = 64, I = 96) rounds its f32 input rows to
    # bf16 and accumulates exact bf16 products in f32; the reference rounds
    # at the same points.
    g = rng(23 + dynamic)
    T, H, E, I, k = 11, 64, 8, 96, 2
    inputs = mixtral_inputs(g, T, H, E, I, wround="bf16")
    got = run(mixtral_layer(T, H, E, I, k, wdtype="bf16", dynamic=dynamic),
              inputs, aot=aot, bf16_dot="on")["out"]
    ref = R.hf_mixtral_block(inputs["x"], inputs["gate"], inputs["w1"],
                             inputs["w2"], inputs["w3"], k, bf16_dot=True)
    assert_close(got, ref, F32_RTOL, "mixtral bf16 dot products")
    exact = R.hf_mixtral_block(inputs["x"], inputs["gate"], inputs["w1"],
                               inputs["w2"], inputs["w3"], k)
    # The rounding is real: the exact-product reference is further away.
    assert np.abs(got - exact).max() > 10 * F32_RTOL * np.abs(exact).max()


def test_mixtral_layer_bf16_everything():
    g = rng(22)
    T, H, E, I, k = 9, 16, 8, 32, 2
    inputs = mixtral_inputs(g, T, H, E, I, wround="bf16", xround="bf16")
    got = run(mixtral_layer(T, H, E, I, k, dtype="bf16", wdtype="bf16"), inputs)["out"]
    ref = R.hf_mixtral_block(inputs["x"], inputs["gate"], inputs["w1"],
                             inputs["w2"], inputs["w3"], k)
    assert_close(got, ref, BF16_RTOL, "mixtral bf16")


def test_all_tokens_to_one_expert_and_empty_experts():
    # A router weight that sends every token to experts 2 (first) and 5.
    g = rng(5)
    T, H, E, I, k = 6, 16, 8, 32, 2
    inputs = mixtral_inputs(g, T, H, E, I)
    inputs["x"] = np.abs(inputs["x"]) + 0.1
    gate = np.zeros((E, H), dtype=np.float32)
    gate[2] = 3.0
    gate[5] = 2.0
    inputs["gate"] = gate
    got = run(mixtral_layer(T, H, E, I, k), inputs)["out"]
    ref = R.hf_mixtral_block(inputs["x"], gate, inputs["w1"], inputs["w2"],
                             inputs["w3"], k)
    assert_close(got, ref, F32_RTOL, "one expert")


def test_deepseek_v3_layer_with_shared_expert():
    g = rng(31)
    T, H, E, I, k = 5, 16, 16, 24, 4
    f = Function()
    xs, xt = f.arg("x", [T, H])
    gs_, gt = f.arg("gate", [E, H])
    bs, bt = f.arg("bias", [E])
    w = {n: f.arg(n, s) for n, s in [("w1", [E, I, H]), ("w2", [E, H, I]), ("w3", [E, I, H]),
                                     ("s1", [2 * I, H]), ("s2", [H, 2 * I]), ("s3", [2 * I, H])]}
    it, ft = tensor_type([T, k], "i32"), tensor_type([T, k], "f32")
    rows, ct = tensor_type([T * k, H], "f32"), tensor_type([E], "i32")
    f.op(f"%i, %w = moe.route {xs} weight({gs_}) selection_bias({bs}) k = {k} scoring = sigmoid "
         f"{{n_group = 4, topk_group = 2, group_score = #moe.group_score<top2_sum>, renormalize, "
         f"renormalize_epsilon = 1.0e-20 : f32, routed_scaling_factor = 2.5 : f32}} "
         f": ({xt}, {gt}, {bt}) -> ({it}, {ft})")
    f.op(f"%r, %c, %m = moe.dispatch dropless {xs}, %i experts = {E} : ({xt}, {it}) -> ({rows}, {ct}, {it})")
    f.op(f"%y = moe.expert_ffn %r, %c fc1({w['w1'][0]}) fc3({w['w3'][0]}) fc2({w['w2'][0]}) "
         f"act = silu gating = separate : ({rows}, {ct}, {w['w1'][1]}, {w['w2'][1]}, {w['w3'][1]}) -> {rows}")
    f.op(f"%o = moe.combine dropless %y, %m, %w : ({rows}, {it}, {ft}) -> {xt}")
    f.op(f"%s = moe.shared_expert {xs} fc1({w['s1'][0]}) fc3({w['s3'][0]}) fc2({w['s2'][0]}) "
         f"act = silu gating = separate : ({xt}, {w['s1'][1]}, {w['s2'][1]}, {w['s3'][1]}) -> {xt}")
    f.op(f"%sum = arith.addf %o, %s : {xt}")
    f.result("out", "%sum", xt)
    vals = {
        "x": g.standard_normal((T, H)).astype(np.float32),
        "gate": (g.standard_normal((E, H)) * 0.5).astype(np.float32),
        "bias": (g.standard_normal(E) * 0.1).astype(np.float32),
        "w1": (g.standard_normal((E, I, H)) * 0.2).astype(np.float32),
        "w2": (g.standard_normal((E, H, I)) * 0.2).astype(np.float32),
        "w3": (g.standard_normal((E, I, H)) * 0.2).astype(np.float32),
        "s1": (g.standard_normal((2 * I, H)) * 0.2).astype(np.float32),
        "s2": (g.standard_normal((H, 2 * I)) * 0.2).astype(np.float32),
        "s3": (g.standard_normal((2 * I, H)) * 0.2).astype(np.float32),
    }
    got = run(f, vals)["out"]
    ids, weights = R.deepseek_v3_gate(vals["x"], vals["gate"], vals["bias"], k, 4, 2,
                                      True, 2.5)
    rows_, counts, mapping = R.dispatch(vals["x"], ids, mode="dropless", num_experts=E)
    y = R.expert_ffn(rows_, counts, vals["w1"], vals["w2"], vals["w3"],
                     activation="silu", gating="separate")
    routed = R.combine(y, mapping, weights, mode="dropless")
    shared = R.shared_expert(vals["x"], vals["s1"], vals["s2"], vals["s3"],
                             activation="silu", gating="separate")
    assert_close(got, routed + shared, F32_RTOL, "deepseek-v3 layer")


@pytest.mark.parametrize("dropped", ["zero", "passthrough"])
def test_switch_layer_capacity_overflow(dropped):
    g = rng(41)
    T, H, E, I, C = 10, 16, 4, 32, 2
    f = Function()
    xs, xt = f.arg("x", [T, H])
    rs_, rwt = f.arg("router", [E, H])
    wi, wit = f.arg("wi", [E, I, H])
    wo, wot = f.arg("wo", [E, H, I])
    it, ft = tensor_type([T, 1], "i32"), tensor_type([T, 1], "f32")
    slab, ct = tensor_type([E, C, H], "f32"), tensor_type([E], "i32")
    f.op(f"%i, %w = moe.route {xs} weight({rs_}) k = 1 scoring = softmax {{expert_capacity = {C}}} "
         f": ({xt}, {rwt}) -> ({it}, {ft})")
    f.op(f"%r, %c, %m = moe.dispatch capacity {xs}, %i experts = {E} {{expert_capacity = {C}}} "
         f": ({xt}, {it}) -> ({slab}, {ct}, {it})")
    f.op(f"%y = moe.expert_ffn %r, %c fc1({wi}) fc2({wo}) act = relu : ({slab}, {ct}, {wit}, {wot}) -> {slab}")
    through = f" passthrough({xs})" if dropped == "passthrough" else ""
    types = f"{slab}, {it}, {ft}" + (f", {xt}" if through else "")
    f.op(f"%o = moe.combine capacity %y, %m, %w{through} : ({types}) -> {xt}")
    f.result("out", "%o", xt)
    f.result("indices", "%i", it)
    vals = {"x": g.standard_normal((T, H)).astype(np.float32),
            "router": g.standard_normal((E, H)).astype(np.float32),
            "wi": (g.standard_normal((E, I, H)) * 0.2).astype(np.float32),
            "wo": (g.standard_normal((E, H, I)) * 0.2).astype(np.float32)}
    out = run(f, vals)
    ref, ref_idx = R.switch_top1_capacity(vals["x"], vals["router"], vals["wi"], vals["wo"],
                                          C, dropped=dropped)
    assert (out["indices"] == -1).any(), "the test must overflow a capacity"
    np.testing.assert_array_equal(out["indices"][:, 0], ref_idx)
    assert_close(out["out"], ref, F32_RTOL, "switch")


def test_expert_choice_layer():
    g = rng(51)
    T, H, E, I, k = 8, 16, 4, 24, 2
    C = R.capacity(None, 1.0, T, k, E)
    f = Function()
    xs, xt = f.arg("x", [T, H])
    rs_, rwt = f.arg("router", [E, H])
    w1, w1t = f.arg("w1", [E, I, H])
    w2, w2t = f.arg("w2", [E, H, I])
    it, ft = tensor_type([E, C], "i32"), tensor_type([E, C], "f32")
    slab, ct, mt = tensor_type([E, C, H], "f32"), tensor_type([E], "i32"), tensor_type([T, E], "i32")
    f.op(f"%i, %w = moe.route {xs} weight({rs_}) k = {k} scoring = softmax "
         f"{{mode = #moe.routing_mode<expert_choice>}} : ({xt}, {rwt}) -> ({it}, {ft})")
    f.op(f"%r, %c, %m = moe.dispatch expert_choice {xs}, %i experts = {E} : ({xt}, {it}) -> ({slab}, {ct}, {mt})")
    f.op(f"%y = moe.expert_ffn %r, %c fc1({w1}) fc2({w2}) act = gelu : ({slab}, {ct}, {w1t}, {w2t}) -> {slab}")
    f.op(f"%o = moe.combine expert_choice %y, %m, %w : ({slab}, {mt}, {ft}) -> {xt}")
    f.result("out", "%o", xt)
    vals = {"x": g.standard_normal((T, H)).astype(np.float32),
            "router": g.standard_normal((E, H)).astype(np.float32),
            "w1": (g.standard_normal((E, I, H)) * 0.2).astype(np.float32),
            "w2": (g.standard_normal((E, H, I)) * 0.2).astype(np.float32)}
    got = run(f, vals)["out"]
    ids, w = R.route(vals["x"], k=k, scoring="softmax", router_weight=vals["router"],
                     mode="expert_choice")
    rows, counts, mapping = R.dispatch(vals["x"], ids, mode="expert_choice", num_experts=E)
    y = R.expert_ffn(rows, counts, vals["w1"], vals["w2"], activation="gelu")
    ref = R.combine(y, mapping, w, mode="expert_choice")
    assert_close(got, ref, F32_RTOL, "expert choice")


def test_runs_are_bitwise_reproducible():
    g = rng(61)
    T, H, E, I, k = 16, 16, 8, 32, 2
    inputs = mixtral_inputs(g, T, H, E, I)
    fn = mixtral_layer(T, H, E, I, k)
    a = run(fn, inputs)["out"]
    b = run(fn, inputs, extra_args=["--repeat", "3"])["out"]
    assert a.tobytes() == b.tobytes()


def test_ahead_of_time_library_matches_jit_bitwise():
    # The same layer compiled by moe-compile into a shared library and run
    # from it gives the same bits as the JIT.
    g = rng(71)
    T, H, E, I, k = 12, 16, 8, 32, 2
    inputs = mixtral_inputs(g, T, H, E, I, wround="bf16")
    fn = mixtral_layer(T, H, E, I, k, wdtype="bf16", dynamic=True)
    jit = run(fn, inputs)["out"]
    aot = run(fn, inputs, aot=True)["out"]
    assert jit.tobytes() == aot.tobytes()
    # Both use the default (--bf16-dot=auto): dot products where the host has
    # AVX512-BF16 (the down projection, I = 32), exact products elsewhere.
    ref = R.hf_mixtral_block(inputs["x"], inputs["gate"], inputs["w1"],
                             inputs["w2"], inputs["w3"], k, bf16_dot=HOST_BF16)
    assert_close(aot, ref, F32_RTOL, "mixtral from the shared library")


@pytest.mark.parametrize("aot", [False, True])
def test_one_and_two_threads_give_the_same_bits(aot):
    # The parallel loops split output columns between threads; every output
    # element is computed by one thread in a fixed order.
    g = rng(81)
    T, H, E, I, k = 13, 32, 8, 48, 2
    inputs = mixtral_inputs(g, T, H, E, I, wround="bf16")
    fn = mixtral_layer(T, H, E, I, k, wdtype="bf16", dynamic=True)
    one = run(fn, inputs, extra_args=["--num-threads", "1"], aot=aot)["out"]
    two = run(fn, inputs, extra_args=["--num-threads", "2"], aot=aot)["out"]
    three = run(fn, inputs, extra_args=["--num-threads", "3"], aot=aot)["out"]
    assert one.tobytes() == two.tobytes() == three.tobytes()
