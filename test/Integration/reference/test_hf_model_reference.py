"""Self-checks of hf_model_reference.py and scripts/gen_hf_checkpoint.py that
need no compiler: the generated checkpoints parse (single file, sharded, F32,
BF16, F16), generation is deterministic, hand-checkable models and router
cases give the expected numbers, and the reference agrees with a second,
deliberately different formulation (numpy float64, per-token loops, RoPE as
explicit pair rotations) on every model type.

Run: /usr/bin/python3 -m pytest -q test/Integration/reference/test_hf_model_reference.py
"""

import importlib.util
import json
import math
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
GENERATOR_PATH = os.path.join(REPO, "scripts", "gen_hf_checkpoint.py")
REFERENCE_PATH = os.path.join(HERE, "hf_model_reference.py")

sys.path.insert(0, HERE)
import hf_model_reference as ref  # noqa: E402

_spec = importlib.util.spec_from_file_location("gen_hf_checkpoint", GENERATOR_PATH)
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)

MODEL_TYPES = gen.MODEL_TYPES
torch.set_num_threads(1)


def make(tmp_path, model_type, name=None, **kwargs):
    out = str(tmp_path / (name or model_type))
    gen.generate(out, model_type, **kwargs)
    return out


def header_of(path):
    with open(path, "rb") as stream:
        (length,) = struct.unpack("<Q", stream.read(8))
        return json.loads(stream.read(length))


def prompt(seed=0, length=9):
    return np.random.default_rng(seed).integers(0, 256, size=length).tolist()


# ---------------------------------------------------------------------------
# A second formulation: numpy float64, token by token
# ---------------------------------------------------------------------------


def naive_inv_freq(rope, dim, max_pos):
    """(inv_freq float64, cos/sin factor) written from the YaRN formulas."""
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    base = float(rope["rope_theta"])
    plain = np.array([base ** (-(2.0 * i) / dim) for i in range(dim // 2)])
    if rope_type == "default":
        return plain, 1.0
    assert rope_type == "yarn"
    factor = float(rope["factor"])
    original = rope.get("original_max_position_embeddings", max_pos)

    def msc(scale, m=1.0):
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    if rope.get("mscale") and rope.get("mscale_all_dim"):
        af = msc(factor, rope["mscale"]) / msc(factor, rope["mscale_all_dim"])
    else:
        af = msc(factor)
    fast, slow = rope.get("beta_fast") or 32, rope.get("beta_slow") or 1
    lo = math.floor(dim * math.log(original / (fast * 2 * math.pi)) / (2 * math.log(base)))
    hi = math.ceil(dim * math.log(original / (slow * 2 * math.pi)) / (2 * math.log(base)))
    lo, hi = max(lo, 0), min(hi, dim - 1)
    if lo == hi:
        hi += 0.001
    out = []
    for i in range(dim // 2):
        ramp = min(max((i - lo) / (hi - lo), 0.0), 1.0)   # 0: keep, 1: interpolate
        out.append(plain[i] * (1 - ramp) + plain[i] / factor * ramp)
    return np.array(out), af


def rotate_pairs(vec, pos, pairs, inv_freq, af):
    out = vec.copy()
    for i, (a, b) in enumerate(pairs):
        c, s = math.cos(pos * inv_freq[i]) * af, math.sin(pos * inv_freq[i]) * af
        out[a] = vec[a] * c - vec[b] * s
        out[b] = vec[a] * s + vec[b] * c
    return out


def half_pairs(d):
    return [(i, i + d // 2) for i in range(d // 2)]


def adjacent_pairs(d):
    return [(2 * i, 2 * i + 1) for i in range(d // 2)]


def ranked(values, k):
    """Indices of the k largest values, ties to the lower index."""
    return sorted(range(len(values)), key=lambda e: (-values[e], e))[:k]


def silu(z):
    return z / (1.0 + np.exp(-z))


def naive_forward(model_dir, ids, v3_fill=-np.inf):
    with open(os.path.join(model_dir, "config.json")) as stream:
        c = json.load(stream)
    W = {k: v.double().numpy() for k, v in ref.read_weights(model_dir).items()}
    mt = c["model_type"]
    deepseek = mt.startswith("deepseek")
    H, heads, L = c["hidden_size"], c["num_attention_heads"], c["num_hidden_layers"]
    eps = c.get("rms_norm_eps", 1e-6)
    S = len(ids)
    rope = dict(c.get("rope_scaling") or {})
    rope["rope_theta"] = c.get("rope_theta")
    window = c.get("sliding_window") if mt == "mixtral" else None

    def norm(v, w, e=eps):
        return w * v / math.sqrt(float(np.mean(v * v)) + e)

    def lin(v, name, bias=None):
        out = W[name] @ v
        return out + W[bias] if bias is not None and bias in W else out

    def mlp(v, p, names=("gate_proj", "up_proj", "down_proj")):
        g, u, d = (W[f"{p}.{n}.weight"] for n in names)
        return d @ (silu(g @ v) * (u @ v))

    def visible(i):
        return [j for j in range(i + 1) if window is None or i - j < window]

    def attend(qs, ks, vs, scale):
        """qs[i][h], ks[j][h], vs[j][h] vectors -> concatenated heads per token."""
        outs = []
        for i in range(S):
            per_head = []
            for h in range(heads):
                js = visible(i)
                sc = np.array([qs[i][h] @ ks[j][h] * scale for j in js])
                p = np.exp(sc - sc.max())
                p /= p.sum()
                per_head.append(sum(pj * vs[j][h] for pj, j in zip(p, js)))
            outs.append(np.concatenate(per_head))
        return outs

    x = [W["model.embed_tokens.weight"][t].copy() for t in ids]
    if deepseek:
        nope, rdim, vdim = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
        kvr = c["kv_lora_rank"]
        inv, af = naive_inv_freq(rope, rdim, c["max_position_embeddings"])
        scale = (nope + rdim) ** -0.5
        if mt == "deepseek_v3" and rope.get("rope_type", rope.get("type")) == "yarn" \
                and rope.get("mscale_all_dim"):
            m = 0.1 * rope["mscale_all_dim"] * math.log(rope["factor"]) + 1.0
            scale *= m * m
        # V2's complex form and V3's de-interleave + rotate_half both rotate
        # the adjacent pairs (the latter then permutes q and k alike).
        interleaved = mt == "deepseek_v2" or c.get("rope_interleave", True)
        pairs = adjacent_pairs(rdim) if interleaved else half_pairs(rdim)
    else:
        hd = c.get("head_dim") or H // heads
        kvh = c["num_key_value_heads"]
        inv, af = naive_inv_freq(rope, hd, c["max_position_embeddings"])
        scale = hd ** -0.5

    for layer in range(L):
        p = f"model.layers.{layer}"
        hs = [norm(v, W[f"{p}.input_layernorm.weight"]) for v in x]
        a = f"{p}.self_attn"
        qs, ks, vs = [], [], []
        for i, h in enumerate(hs):
            if deepseek:
                if c.get("q_lora_rank") is None:
                    q = lin(h, f"{a}.q_proj.weight")
                else:
                    q = lin(norm(lin(h, f"{a}.q_a_proj.weight"), W[f"{a}.q_a_layernorm.weight"],
                                 1e-6), f"{a}.q_b_proj.weight")
                kv_a = lin(h, f"{a}.kv_a_proj_with_mqa.weight")
                kv = lin(norm(kv_a[:kvr], W[f"{a}.kv_a_layernorm.weight"], 1e-6),
                         f"{a}.kv_b_proj.weight")
                k_rot = rotate_pairs(kv_a[kvr:], i, pairs, inv, af)
                q_h, k_h, v_h = [], [], []
                for hh in range(heads):
                    qh = q[hh * (nope + rdim):(hh + 1) * (nope + rdim)]
                    kvh_ = kv[hh * (nope + vdim):(hh + 1) * (nope + vdim)]
                    q_h.append(np.concatenate([qh[:nope], rotate_pairs(qh[nope:], i, pairs,
                                                                       inv, af)]))
                    k_h.append(np.concatenate([kvh_[:nope], k_rot]))
                    v_h.append(kvh_[nope:])
            else:
                q = lin(h, f"{a}.q_proj.weight", f"{a}.q_proj.bias")
                k = lin(h, f"{a}.k_proj.weight", f"{a}.k_proj.bias")
                v = lin(h, f"{a}.v_proj.weight", f"{a}.v_proj.bias")
                q_h, k_h, v_h = [], [], []
                for hh in range(heads):
                    kv_head = hh // (heads // kvh)
                    qh = q[hh * hd:(hh + 1) * hd]
                    kh = k[kv_head * hd:(kv_head + 1) * hd]
                    if mt == "qwen3_moe":
                        qh = norm(qh, W[f"{a}.q_norm.weight"])
                        kh = norm(kh, W[f"{a}.k_norm.weight"])
                    q_h.append(rotate_pairs(qh, i, half_pairs(hd), inv, af))
                    k_h.append(rotate_pairs(kh, i, half_pairs(hd), inv, af))
                    v_h.append(v[kv_head * hd:(kv_head + 1) * hd])
            qs.append(q_h)
            ks.append(k_h)
            vs.append(v_h)
        att = attend(qs, ks, vs, scale)
        x = [xi + lin(o, f"{a}.o_proj.weight", f"{a}.o_proj.bias") for xi, o in zip(x, att)]
        hs = [norm(v, W[f"{p}.post_attention_layernorm.weight"]) for v in x]
        new_x = []
        for h, xi in zip(hs, x):
            new_x.append(xi + naive_mlp_block(c, W, layer, h, mlp, v3_fill))
        x = new_x
    final = [norm(v, W["model.norm.weight"]) for v in x]
    head = W["model.embed_tokens.weight"] if c.get("tie_word_embeddings") else W["lm_head.weight"]
    return np.array([head @ v for v in final])


def naive_mlp_block(c, W, layer, h, mlp, v3_fill):
    mt = c["model_type"]
    p = f"model.layers.{layer}"
    if mt == "mixtral":
        m = f"{p}.block_sparse_moe"
        logits = W[f"{m}.gate.weight"] @ h
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        chosen = ranked(probs, c["num_experts_per_tok"])
        total = sum(probs[e] for e in chosen)
        return sum(probs[e] / total * mlp(h, f"{m}.experts.{e}", ("w1", "w3", "w2"))
                   for e in chosen)
    m = f"{p}.mlp"
    if mt.startswith("qwen"):
        moe = (layer not in (c.get("mlp_only_layers") or [])
               and (layer + 1) % c.get("decoder_sparse_step", 1) == 0)
        if not moe:
            return mlp(h, m)
        logits = W[f"{m}.gate.weight"] @ h
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        chosen = ranked(probs, c["num_experts_per_tok"])
        denom = sum(probs[e] for e in chosen) if c.get("norm_topk_prob") else 1.0
        out = sum(probs[e] / denom * mlp(h, f"{m}.experts.{e}") for e in chosen)
        if mt == "qwen2_moe":
            gate = 1.0 / (1.0 + math.exp(-float(W[f"{m}.shared_expert_gate.weight"][0] @ h)))
            out = out + gate * mlp(h, f"{m}.shared_expert")
        return out
    moe = layer >= c.get("first_k_dense_replace", 0) and layer % c.get("moe_layer_freq", 1) == 0
    if not moe:
        return mlp(h, m)
    E, k = c["n_routed_experts"], c["num_experts_per_tok"]
    logits = W[f"{m}.gate.weight"] @ h
    if mt == "deepseek_v2":
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        if c.get("topk_method", "greedy") == "greedy":
            chosen = ranked(probs, k)
        else:
            size = E // c["n_group"]
            best = [max(probs[g * size:(g + 1) * size]) for g in range(c["n_group"])]
            kept = ranked(best, c["topk_group"])
            masked = [probs[e] if e // size in kept else 0.0 for e in range(E)]
            chosen = ranked(masked, k)
        weights = {e: probs[e] * c["routed_scaling_factor"] for e in chosen}
    else:
        s = 1.0 / (1.0 + np.exp(-logits))
        choice = s + W[f"{m}.gate.e_score_correction_bias"]
        size = E // c["n_group"]
        best2 = [sum(sorted(choice[g * size:(g + 1) * size])[-2:]) for g in range(c["n_group"])]
        kept = ranked(best2, c["topk_group"])
        masked = [choice[e] if e // size in kept else v3_fill for e in range(E)]
        chosen = ranked(masked, k)
        denom = sum(s[e] for e in chosen) + 1e-20 if c.get("norm_topk_prob") else 1.0
        weights = {e: s[e] / denom * c["routed_scaling_factor"] for e in chosen}
    out = sum(weights[e] * mlp(h, f"{m}.experts.{e}") for e in chosen)
    if c.get("n_shared_experts"):
        out = out + mlp(h, f"{m}.shared_experts")
    return out


VARIANTS = [
    ("mixtral", {}),
    ("mixtral", {"sets": [("sliding_window", 3)]}),
    ("mixtral", {"yarn": True}),
    ("qwen2_moe", {}),
    ("qwen2_moe", {"sets": [("qkv_bias", False), ("norm_topk_prob", True)]}),
    ("qwen3_moe", {}),
    ("qwen3_moe", {"sets": [("attention_bias", True), ("norm_topk_prob", False)]}),
    ("deepseek_v2", {}),
    ("deepseek_v2", {"sets": [("topk_method", "group_limited_greedy")], "yarn": True}),
    ("deepseek_v3", {}),
    ("deepseek_v3", {"yarn": True, "tie_word_embeddings": True}),
    ("deepseek_v3", {"sets": [("rope_interleave", False), ("q_lora_rank", None)]}),
]


@pytest.mark.parametrize("model_type,options", VARIANTS,
                         ids=[f"{m}-{i}" for i, (m, _) in enumerate(VARIANTS)])
def test_reference_matches_float64_loops(tmp_path, model_type, options):
    path = make(tmp_path, model_type, seed=3, **options)
    ids = prompt(3, 7)
    got = ref.forward(ref.load(path), ids).numpy()
    want = naive_forward(path, ids)
    assert got.shape == (len(ids), 256)
    # Observed differences are ~1e-6 of the largest logit (float32 vs float64).
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=5e-5)


# ---------------------------------------------------------------------------
# Generated checkpoints parse
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_every_format_loads_and_agrees(tmp_path, model_type):
    """float32 single file, float32 in 3 shards, bfloat16 in 2 shards and
    float16 all load strictly; the shards hold the same values; the 16-bit
    files hold the rounded float32 values (the correction bias stays F32);
    their logits stay close to the float32 ones for most positions (a
    rounded router weight can flip a near-tie routing, so not for all)."""
    ids = prompt(1, 8)
    single = ref.load(make(tmp_path, model_type, "single"))
    sharded_dir = make(tmp_path, model_type, "sharded", shards=3)
    sharded = ref.load(sharded_dir)
    assert set(single.tensors) == set(sharded.tensors)
    for name, value in single.tensors.items():
        assert torch.equal(value, sharded.tensors[name]), name
    base = ref.forward(single, ids)
    assert torch.isfinite(base).all()
    rounding = {"bfloat16": lambda t: t.to(torch.bfloat16).float(),
                "float16": lambda t: t.to(torch.float16).float()}
    for dtype, shards, tol in (("bfloat16", 2, 0.05), ("float16", 1, 0.005)):
        model = ref.load(make(tmp_path, model_type, dtype, dtype=dtype, shards=shards))
        for name, value in single.tensors.items():
            want = value if name.endswith("e_score_correction_bias") else rounding[dtype](value)
            assert torch.equal(model.tensors[name], want), (dtype, name)
        logits = ref.forward(model, ids)
        relative = (logits - base).abs().max(dim=-1).values / base.abs().max(dim=-1).values
        assert relative.median() < tol, (dtype, relative)


def test_shard_layout(tmp_path):
    path = make(tmp_path, "deepseek_v3", shards=3, dtype="bfloat16")
    with open(os.path.join(path, "model.safetensors.index.json")) as stream:
        index = json.load(stream)
    files = sorted(set(index["weight_map"].values()))
    assert files == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    assert not os.path.exists(os.path.join(path, "model.safetensors"))
    total, seen = 0, {}
    for name in files:
        header = header_of(os.path.join(path, name))
        assert header.pop("__metadata__") == {"format": "pt"}
        for tensor, entry in header.items():
            seen[tensor] = name
            total += entry["data_offsets"][1] - entry["data_offsets"][0]
    assert seen == index["weight_map"]
    assert total == index["metadata"]["total_size"]
    # The experts of one layer are spread over several shards.
    expert_files = {f for t, f in seen.items() if t.startswith("model.layers.1.mlp.experts.")}
    assert len(expert_files) > 1
    # e_score_correction_bias stays F32 in a bf16 checkpoint, as published.
    header = header_of(os.path.join(path, seen["model.layers.1.mlp.gate.e_score_correction_bias"]))
    assert header["model.layers.1.mlp.gate.e_score_correction_bias"]["dtype"] == "F32"
    assert header_of(os.path.join(path, seen["model.norm.weight"]))["model.norm.weight"][
        "dtype"] == "BF16"


def test_single_file_layout(tmp_path):
    path = make(tmp_path, "qwen2_moe", dtype="float16")
    with open(os.path.join(path, "model.safetensors"), "rb") as stream:
        data = stream.read()
    (length,) = struct.unpack("<Q", data[:8])
    assert length % 8 == 0
    header = json.loads(data[8:8 + length])
    entries = sorted((e["data_offsets"], n) for n, e in header.items() if n != "__metadata__")
    # Contiguous, no holes, filling the file; stored in a shuffled order.
    assert entries[0][0][0] == 0 and entries[-1][0][1] == len(data) - 8 - length
    assert all(a[0][1] == b[0][0] for a, b in zip(entries, entries[1:]))
    order = [n for _, n in entries]
    assert order != sorted(order)
    positions = [i for i, n in enumerate(order) if n.startswith("model.layers.1.mlp.experts.")]
    assert max(positions) - min(positions) + 1 > len(positions)   # not adjacent
    assert all(e["dtype"] == "F16" for n, e in header.items() if n != "__metadata__")


def test_bf16_round_to_nearest_even():
    one = 1.0
    # halfway cases go to the even mantissa; above halfway rounds up, with a
    # carry into the exponent for 2 - 2^-23.
    values = np.array([one, one + 2 ** -8, one + 3 * 2 ** -8, one + 2 ** -8 + 2 ** -20,
                       -2.5, 2 - 2 ** -23, 1e-40], dtype=np.float32)
    bits = gen.to_bf16_bits(values)
    back = (bits.astype(np.uint32) << 16).view(np.float32)
    np.testing.assert_array_equal(back, np.array(
        [1.0, 1.0, one + 2 ** -6, one + 2 ** -7, -2.5, 2.0,
         torch.tensor(1e-40).to(torch.bfloat16).float().item()], dtype=np.float32))


def test_bf16_file_holds_rounded_draws(tmp_path):
    path = make(tmp_path, "mixtral", dtype="bfloat16", seed=5)
    loaded = ref.read_weights(path)
    config = gen.build_config("mixtral")
    for name, (values, kind) in list(gen.random_tensors(config, 5).items())[:10]:
        rounded = (gen.to_bf16_bits(values).astype(np.uint32) << 16).view(np.float32)
        np.testing.assert_array_equal(loaded[name].numpy(), rounded)


# ---------------------------------------------------------------------------
# Determinism, presets, overrides
# ---------------------------------------------------------------------------


def read_all(directory):
    return {name: open(os.path.join(directory, name), "rb").read()
            for name in sorted(os.listdir(directory))}


def test_deterministic_for_a_seed(tmp_path):
    a = read_all(make(tmp_path, "deepseek_v2", "a", seed=7, shards=2))
    b = read_all(make(tmp_path, "deepseek_v2", "b", seed=7, shards=2))
    c = read_all(make(tmp_path, "deepseek_v2", "c", seed=8, shards=2))
    assert a == b
    assert a["config.json"] == c["config.json"] and a != c


def test_tied_embeddings_change_only_the_head(tmp_path):
    untied = ref.load(make(tmp_path, "qwen3_moe", "untied"))
    tied_dir = make(tmp_path, "qwen3_moe", "tied", tie_word_embeddings=True)
    tied = ref.load(tied_dir)
    assert "lm_head.weight" not in tied.tensors
    assert torch.equal(tied.tensors["model.embed_tokens.weight"],
                       untied.tensors["model.embed_tokens.weight"])
    # Untie by hand: lm_head = embedding gives the same logits.
    config = json.load(open(os.path.join(tied_dir, "config.json")))
    config["tie_word_embeddings"] = False
    tensors = {n: t.numpy() for n, t in tied.tensors.items()}
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"]
    out = str(tmp_path / "retied")
    gen.write_checkpoint(out, config, tensors)
    ids = prompt(2, 6)
    assert torch.equal(ref.forward(tied, ids), ref.forward(ref.load(out), ids))


def test_config_only_real_deepseek_v3(tmp_path):
    out = str(tmp_path / "real")
    assert gen.main(["--model-type", "deepseek_v3", "--preset", "real", "--config-only",
                     "--out", out]) == 0
    assert os.listdir(out) == ["config.json"]
    c = json.load(open(os.path.join(out, "config.json")))
    assert (c["num_hidden_layers"], c["n_routed_experts"], c["hidden_size"]) == (61, 256, 7168)
    assert (c["num_experts_per_tok"], c["n_group"], c["topk_group"]) == (8, 8, 4)
    assert (c["q_lora_rank"], c["kv_lora_rank"], c["first_k_dense_replace"]) == (1536, 512, 3)
    assert (c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]) == (128, 64, 128)
    assert c["rope_scaling"] == {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 1.0,
                                 "mscale_all_dim": 1.0, "original_max_position_embeddings": 4096,
                                 "type": "yarn"}
    assert c["routed_scaling_factor"] == 2.5 and c["scoring_func"] == "sigmoid"
    assert c["vocab_size"] == 129280 and c["max_position_embeddings"] == 163840
    # The reference accepts the config (shapes only; no weights to read).
    cfg = ref.ModelConfig(c)
    assert cfg.is_moe_layer(3) and not cfg.is_moe_layer(2)
    # 3 dense layers of 2 norms + 7 attention + 3 MLP tensors; 58 MoE layers
    # with the gate, its bias, 256 experts and the shared expert; embedding,
    # final norm, lm_head.
    assert len(ref.expected_shapes(cfg)) == 3 * 12 + 58 * (9 + 2 + 256 * 3 + 3) + 3


PUBLISHED_SIZES = {"mixtral": 46.70e9, "qwen2_moe": 14.32e9, "qwen3_moe": 30.53e9,
                   "deepseek_v2": 15.71e9, "deepseek_v3": 671.03e9}


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_real_configs_give_the_published_parameter_counts(model_type):
    """The real presets, read by the reference, imply the published model
    sizes (Mixtral-8x7B 46.7B, Qwen1.5-MoE-A2.7B 14.3B, Qwen3-30B-A3B 30.5B,
    DeepSeek-V2-Lite 15.7B, DeepSeek-V3 671B without its MTP layer), and the
    generator lays out exactly the tensors the reference expects."""
    config = gen.build_config(model_type, preset="real")
    shapes = ref.expected_shapes(ref.ModelConfig(config))
    count = sum(int(np.prod(shape)) for shape in shapes.values())
    assert count == pytest.approx(PUBLISHED_SIZES[model_type], rel=1e-3)
    layers = config["num_hidden_layers"]
    generated = {name: tuple(shape) for name, shape, _ in gen.tensor_specs(config)
                 if not name.startswith(f"model.layers.{layers}.")}
    assert generated == {name: tuple(shape) for name, shape in shapes.items()}


def test_real_preset_needs_config_only(tmp_path, capsys):
    assert gen.main(["--model-type", "deepseek_v3", "--preset", "real",
                     "--out", str(tmp_path / "x")]) == 1
    assert "--config-only" in capsys.readouterr().err


def test_set_and_unset(tmp_path):
    out = str(tmp_path / "v3")
    assert gen.main(["--model-type", "deepseek_v3", "--out", out, "--set", "q_lora_rank=null",
                     "--yarn", "--set", "rope_scaling.factor=8", "--unset", "seq_aux",
                     "--set", "new_field=[1, 2]"]) == 0
    c = json.load(open(os.path.join(out, "config.json")))
    assert c["q_lora_rank"] is None and "seq_aux" not in c and c["new_field"] == [1, 2]
    assert c["rope_scaling"]["factor"] == 8 and c["rope_scaling"]["type"] == "yarn"
    names = set(header_of(os.path.join(out, "model.safetensors")))
    assert "model.layers.0.self_attn.q_proj.weight" in names
    assert "model.layers.0.self_attn.q_a_proj.weight" not in names
    with pytest.raises(ValueError, match="not JSON"):
        gen.parse_set("topk_method=greedy")


def test_layer_rules_in_generated_checkpoints(tmp_path):
    def moe_layers(model_type, **kw):
        names = ref.read_weights(make(tmp_path, model_type, f"{model_type}{len(kw)}", **kw))
        return sorted({int(n.split(".")[2]) for n in names
                       if ".experts.0." in n})
    assert moe_layers("mixtral") == [0, 1, 2]
    assert moe_layers("qwen2_moe") == [0, 1, 3]          # mlp_only_layers = [2]
    assert moe_layers("qwen3_moe") == [1, 3]             # decoder_sparse_step = 2
    assert moe_layers("deepseek_v2") == [1, 2]           # first_k_dense_replace = 1
    assert moe_layers("deepseek_v3") == [1, 2, 3]        # layer 3 is the MTP layer
    assert moe_layers("deepseek_v2", sets=[("moe_layer_freq", 2), ("num_hidden_layers", 4)]) \
        == [2]


# ---------------------------------------------------------------------------
# Rejections
# ---------------------------------------------------------------------------


def test_fp8_is_rejected(tmp_path):
    path = str(tmp_path / "fp8.safetensors")
    gen.write_safetensors(path, [("w", "F8_E4M3", (2, 2), bytes(4))])
    with pytest.raises(ref.CheckpointError, match="FP8"):
        ref.read_safetensors(path)


def test_inconsistent_checkpoints_are_rejected(tmp_path):
    path = make(tmp_path, "deepseek_v3")
    config_path = os.path.join(path, "config.json")
    good = json.load(open(config_path))

    def with_config(**changes):
        json.dump({**good, **changes}, open(config_path, "w"))
        return path

    with pytest.raises(ref.CheckpointError, match="shape"):
        ref.load(with_config(moe_intermediate_size=48))
    with pytest.raises(ref.CheckpointError, match="does not divide"):
        ref.load(with_config(n_group=5))
    with pytest.raises(ref.CheckpointError, match="unexpected tensor"):
        ref.load(with_config(first_k_dense_replace=2))
    with pytest.raises(ref.CheckpointError, match="not supported"):
        ref.load(with_config(model_type="llama"))
    with pytest.raises(ref.CheckpointError, match="num_experts_per_tok"):
        ref.load(with_config(num_experts_per_tok=13))
    # A config the generator was asked to make inconsistent is caught too.
    bad = make(tmp_path, "deepseek_v3", "bad", sets=[("topk_group", 1),
                                                      ("num_experts_per_tok", 4)])
    with pytest.raises(ref.CheckpointError, match="cannot supply"):
        ref.load(bad)
    # Missing tensor.
    weights = ref.read_weights(make(tmp_path, "mixtral", "m"))
    del weights["model.layers.1.block_sparse_moe.experts.4.w2.weight"]
    out = str(tmp_path / "missing")
    gen.write_checkpoint(out, gen.build_config("mixtral"),
                         {n: t.numpy() for n, t in weights.items()})
    with pytest.raises(ref.CheckpointError, match="missing tensor .*experts.4.w2"):
        ref.load(out)


# ---------------------------------------------------------------------------
# Hand-checkable models
# ---------------------------------------------------------------------------


def tiny_mixtral(tmp_path, name, overrides, **config_changes):
    sets = [("hidden_size", 16), ("vocab_size", 16), ("num_hidden_layers", 1),
            ("num_attention_heads", 2), ("num_key_value_heads", 2), ("intermediate_size", 8),
            ("num_local_experts", 3), ("num_experts_per_tok", 1)] + list(config_changes.items())
    config = gen.build_config("mixtral", sets=sets)
    tensors = {n: v for n, (v, _) in gen.random_tensors(config, 0).items()}
    for key in list(tensors):
        if key.endswith("norm.weight"):
            tensors[key] = np.ones_like(tensors[key])
    tensors.update(overrides)
    out = str(tmp_path / name)
    gen.write_checkpoint(out, config, tensors)
    return ref.load(out)


def test_one_layer_with_silent_blocks_is_normalized_embedding_product(tmp_path):
    """Attention output and experts zeroed: logits = rmsnorm(e_t) . e_v with
    e = 2 I, i.e. 2 * 2 / sqrt(4/16 + eps) on the diagonal, 0 elsewhere."""
    zeros = {"model.layers.0.self_attn.o_proj.weight": np.zeros((16, 16), np.float32)}
    for e in range(3):
        zeros[f"model.layers.0.block_sparse_moe.experts.{e}.w2.weight"] = np.zeros((16, 8),
                                                                                   np.float32)
    zeros["model.embed_tokens.weight"] = 2 * np.eye(16, dtype=np.float32)
    zeros["lm_head.weight"] = 2 * np.eye(16, dtype=np.float32)
    model = tiny_mixtral(tmp_path, "silent", zeros)
    logits = ref.forward(model, [3, 0, 15, 3]).double().numpy()
    diag = 4.0 / math.sqrt(4.0 / 16 + 1e-5)
    want = np.zeros((4, 16))
    for row, token in enumerate([3, 0, 15, 3]):
        want[row, token] = diag
    np.testing.assert_allclose(logits, want, rtol=1e-6, atol=1e-6)
    assert ref.generate(model, [5], 3) == [5, 5, 5]


def test_uniform_attention_averages_the_prefix(tmp_path):
    """q = k = 0 makes every visible key equally likely: with v = o = I the
    attention output of token i is the mean of the normalized inputs 0..i
    (RoPE of a zero vector is zero).  Experts silent, lm_head = I: logits are
    rmsnorm(x_i + mean_j rmsnorm(x_j))."""
    eye = np.eye(16, dtype=np.float32)
    over = {"model.layers.0.self_attn.q_proj.weight": np.zeros((16, 16), np.float32),
            "model.layers.0.self_attn.k_proj.weight": np.zeros((16, 16), np.float32),
            "model.layers.0.self_attn.v_proj.weight": eye,
            "model.layers.0.self_attn.o_proj.weight": eye,
            "lm_head.weight": eye}
    for e in range(3):
        over[f"model.layers.0.block_sparse_moe.experts.{e}.w2.weight"] = np.zeros((16, 8),
                                                                                  np.float32)
    model = tiny_mixtral(tmp_path, "uniform", over)
    ids = [4, 9, 1, 12, 7]
    emb = model.tensors["model.embed_tokens.weight"].double().numpy()[ids]

    def nrm(v):
        return v / np.sqrt(np.mean(v * v, axis=-1, keepdims=True) + 1e-5)

    normed = nrm(emb)
    means = np.cumsum(normed, axis=0) / np.arange(1, len(ids) + 1)[:, None]
    want = nrm(emb + means)
    np.testing.assert_allclose(ref.forward(model, ids).double().numpy(), want, rtol=1e-5,
                               atol=1e-5)
    # A sliding window of 2 averages only the token and its predecessor.
    windowed = tiny_mixtral(tmp_path, "window", over, sliding_window=2)
    pairs = np.array([normed[max(0, i - 1):i + 1].mean(axis=0) for i in range(len(ids))])
    np.testing.assert_allclose(ref.forward(windowed, ids).double().numpy(), nrm(emb + pairs),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_causal_prefix_logits_do_not_change(tmp_path, model_type):
    model = ref.load(make(tmp_path, model_type, seed=11))
    ids = prompt(11, 10)
    full = ref.forward(model, ids)
    for n in (1, 4, 9):
        np.testing.assert_allclose(ref.forward(model, ids[:n]).numpy(), full[:n].numpy(),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_greedy_decoding_is_decisive_and_deterministic(tmp_path, model_type):
    model = ref.load(make(tmp_path, model_type, seed=2))
    ids = prompt(4, 8)
    logits = ref.forward(model, ids)
    top2 = torch.topk(logits, 2, dim=-1).values
    margin = (top2[:, 0] - top2[:, 1]) / top2[:, 0].abs()
    assert margin.median() > 1e-2
    out = ref.generate(model, ids, 5)
    assert out == ref.generate(model, ids, 5) and len(out) == 5
    assert out[0] == int(torch.argmax(logits[-1]))


# ---------------------------------------------------------------------------
# Routers on constructed inputs
# ---------------------------------------------------------------------------


def test_softmax_topk_router_ties_and_normalization():
    logits = torch.tensor([[1.0, 3.0, 3.0, 0.0], [0.5, 0.5, 0.5, 0.5]])
    idx, w = ref.route_softmax_topk(logits, 2, renormalize=True)
    assert idx.tolist() == [[1, 2], [0, 1]]
    np.testing.assert_allclose(w.numpy(), [[0.5, 0.5], [0.5, 0.5]], rtol=1e-6)
    idx, w = ref.route_softmax_topk(torch.tensor([[0.0, math.log(3.0), 0.0]]), 2, False)
    assert idx.tolist() == [[1, 0]]
    np.testing.assert_allclose(w.numpy(), [[0.6, 0.2]], rtol=1e-6)


def test_deepseek_v2_router():
    probs = torch.tensor([[0.05, 0.30, 0.05, 0.25, 0.20, 0.15]])
    logits = probs.log()
    idx, w = ref.route_deepseek_v2(logits, 2, "greedy", routed_scaling_factor=16.0)
    assert idx.tolist() == [[1, 3]]
    np.testing.assert_allclose(w.numpy(), [[4.8, 4.0]], rtol=1e-5)
    # Groups {0,1}, {2,3}, {4,5} score 0.30, 0.25, 0.20: with one group kept
    # both experts come from group 0 (the zeroed others tie, lower index).
    idx, w = ref.route_deepseek_v2(logits, 2, "group_limited_greedy", 3, 1, 1.0)
    assert idx.tolist() == [[1, 0]]
    np.testing.assert_allclose(w.numpy(), [[0.30, 0.05]], rtol=1e-5)
    idx, w = ref.route_deepseek_v2(logits, 3, "group_limited_greedy", 3, 1, 1.0)
    assert idx.tolist() == [[1, 0, 2]] and abs(float(w[0, 2])) == 0.0
    # DeepSeek's own code: renormalize, no scaling, when norm_topk_prob.
    idx, w = ref.route_deepseek_v2(logits, 2, "greedy", routed_scaling_factor=16.0,
                                   norm_topk_prob=True, deepseek_routing=True)
    np.testing.assert_allclose(w.numpy(), [[0.30 / 0.55, 0.25 / 0.55]], rtol=1e-5)


def logit(p):
    return math.log(p / (1 - p))


def test_deepseek_v3_router():
    # Four groups of two experts.  Correction bias lifts expert 6 (group 3).
    s = [0.9, 0.2, 0.6, 0.6, 0.1, 0.1, 0.5, 0.45]
    bias = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.0])
    logits = torch.tensor([[logit(p) for p in s]])
    # c = [.9 .2 .6 .6 .1 .1 1.0 .45]; group sums 1.1, 1.2, 0.2, 1.45
    idx, w = ref.route_deepseek_v3(logits, bias, 3, 4, 2, norm_topk_prob=True,
                                   routed_scaling_factor=2.5)
    # groups 3 and 1 kept: c of experts 2, 3, 6, 7 = .6 .6 1.0 .45
    assert idx.tolist() == [[6, 2, 3]]
    np.testing.assert_allclose(w.numpy(), [[2.5 * p / 1.7 for p in (0.5, 0.6, 0.6)]],
                               rtol=1e-5)
    idx, w = ref.route_deepseek_v3(logits, bias, 2, 4, 2, norm_topk_prob=False)
    np.testing.assert_allclose(w.numpy(), [[0.5, 0.6]], rtol=1e-5)   # weights ignore the bias
    # Where the masked fill matters: negative choice scores in the kept groups.
    bias = torch.tensor([-1.0, -1.0, -1.0, -1.0, 0.0, -0.95, -1.0, -1.0])
    s = [0.2, 0.15, 0.3, 0.25, 0.01, 0.05, 0.1, 0.1]
    logits = torch.tensor([[logit(p) for p in s]])
    # c = [-.8 -.85 -.7 -.75 .01 -.9 -.9 -.9]; group sums -1.65 -1.45 -.89 -1.8
    idx, _ = ref.route_deepseek_v3(logits, bias, 2, 4, 1, norm_topk_prob=False)
    assert idx.tolist() == [[4, 5]]
    idx, _ = ref.route_deepseek_v3(logits, bias, 3, 4, 2, norm_topk_prob=False)
    assert idx.tolist() == [[4, 2, 3]]
    idx, _ = ref.route_deepseek_v3(logits, bias, 3, 4, 2, norm_topk_prob=False, masked_fill=0.0)
    assert idx.tolist() == [[4, 0, 1]]   # old HF: zeroed experts of dropped groups outrank


# ---------------------------------------------------------------------------
# RoPE and YaRN
# ---------------------------------------------------------------------------


def test_yarn_mscale_values():
    assert ref.yarn_get_mscale(1.0, 1.0) == 1.0
    assert ref.yarn_get_mscale(40, 1.0) == pytest.approx(1.3688879454113936, abs=1e-12)
    assert ref.yarn_get_mscale(40, 0.707) == pytest.approx(1.2608037774058554, abs=1e-12)
    assert ref.yarn_get_mscale(4.0) == pytest.approx(1.1386294361, abs=1e-9)
    _, af = ref.yarn_inv_freq({"rope_theta": 1e4, "factor": 40, "mscale": 1.0,
                               "mscale_all_dim": 1.0,
                               "original_max_position_embeddings": 4096}, 64, 163840)
    assert af == 1.0
    _, af = ref.yarn_inv_freq({"rope_theta": 1e4, "factor": 40, "mscale": 1.0,
                               "mscale_all_dim": 0.0,
                               "original_max_position_embeddings": 4096}, 64, 163840)
    assert af == pytest.approx(1.3688879454113936)
    _, af = ref.yarn_inv_freq({"rope_theta": 1e4, "factor": 40, "mscale": 1.0,
                               "mscale_all_dim": 0.5, "attention_factor": 0.75,
                               "original_max_position_embeddings": 4096}, 64, 163840)
    assert af == 0.75


def test_deepseek_softmax_scale_with_yarn(tmp_path):
    config = gen.build_config("deepseek_v3", preset="real")
    cfg = ref.ModelConfig(config)
    m = 0.1 * math.log(40) + 1
    assert ref.attention_softmax_scale(cfg, ref.Semantics()) == pytest.approx(192 ** -0.5 * m * m)
    v2 = ref.ModelConfig(gen.build_config("deepseek_v2", preset="real"))
    assert ref.attention_softmax_scale(v2, ref.Semantics()) == pytest.approx(192 ** -0.5)
    m2 = 0.1 * 0.707 * math.log(40) + 1
    assert ref.attention_softmax_scale(v2, ref.Semantics(v2_yarn_softmax_mscale=True)) == \
        pytest.approx(192 ** -0.5 * m2 * m2)


def test_yarn_inv_freq_blend():
    params = {"rope_type": "yarn", "rope_theta": 10000, "factor": 40, "beta_fast": 32,
              "beta_slow": 1, "original_max_position_embeddings": 4096}
    inv, _ = ref.yarn_inv_freq(params, 64, 163840)
    want, _ = naive_inv_freq(params, 64, 163840)
    np.testing.assert_allclose(inv.double().numpy(), want, rtol=2e-6)
    plain = ref.default_inv_freq(10000.0, 64).double().numpy()
    # dim 64: correction range [10, 23] -> the fast dims keep their frequency,
    # the slow ones are divided by the factor.
    np.testing.assert_allclose(inv[:10].double().numpy(), plain[:10], rtol=1e-6)
    np.testing.assert_allclose(inv[23:].double().numpy(), plain[23:] / 40, rtol=1e-6)
    assert np.all(np.diff(inv.double().numpy()) < 0)


def test_default_inv_freq_is_hf_float32():
    got = ref.default_inv_freq(10000.0, 8)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), [1.0, 0.1, 0.01, 0.001], rtol=1e-6)


def test_rope_identity_at_position_zero_and_layouts_agree():
    gen_ = torch.Generator().manual_seed(0)
    q = torch.randn(5, 3, 8, generator=gen_)
    k = torch.randn(5, 3, 8, generator=gen_)
    inv = ref.default_inv_freq(10000.0, 8)
    zero = torch.zeros(1, dtype=torch.int64)
    cos, sin = ref.rope_cos_sin(inv, zero)
    assert torch.equal(ref.apply_rope_half(q[:1], cos, sin), q[:1])
    assert torch.equal(ref.apply_rope_pairs(q[:1], inv, zero), q[:1])
    pos = torch.arange(5)
    cos, sin = ref.rope_cos_sin(inv, pos)
    rq = ref.apply_rope_half(q, cos, sin)
    torch.testing.assert_close(rq.norm(dim=-1), q.norm(dim=-1))
    # V3's de-interleave + rotate_half and V2's complex pairs give the same
    # q.k for every pair of positions (relative position only).
    v3q = ref.apply_rope_half(ref.deinterleave(q), cos, sin)
    v3k = ref.apply_rope_half(ref.deinterleave(k), cos, sin)
    v2q, v2k = ref.apply_rope_pairs(q, inv, pos), ref.apply_rope_pairs(k, inv, pos)
    torch.testing.assert_close(torch.einsum("ihd,jhd->hij", v3q, v3k),
                               torch.einsum("ihd,jhd->hij", v2q, v2k))
    assert ref.deinterleave(torch.arange(8.0)).tolist() == [0, 2, 4, 6, 1, 3, 5, 7]


# ---------------------------------------------------------------------------
# Command lines
# ---------------------------------------------------------------------------


def run(*args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120)


def test_command_lines(tmp_path):
    out = str(tmp_path / "ck")
    done = run(GENERATOR_PATH, "--model-type", "qwen2_moe", "--out", out, "--dtype", "bfloat16",
               "--shards", "2", "--seed", "4")
    assert done.returncode == 0, done.stderr
    logits_path = str(tmp_path / "logits.npy")
    done = run(REFERENCE_PATH, "--model", out, "--tokens", "5,6,7", "--logits-out", logits_path,
               "--generate", "4")
    assert done.returncode == 0, done.stderr
    tokens = [int(t) for t in done.stdout.strip().split(",")]
    model = ref.load(out)
    assert tokens == ref.generate(model, [5, 6, 7], 4)
    logits = np.load(logits_path)
    assert logits.dtype == np.float32 and logits.shape == (3, 256)
    np.testing.assert_array_equal(logits, ref.forward(model, [5, 6, 7]).numpy())
    done = run(REFERENCE_PATH, "--model", str(tmp_path), "--tokens", "1")
    assert done.returncode == 1 and "error" in done.stderr
