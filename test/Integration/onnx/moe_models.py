"""ONNX models with ONNX Runtime's com.microsoft.MoE / com.microsoft.QMoE
contrib ops, built with onnx.helper, and a NumPy reference of what ONNX
Runtime's CPU provider computes for them.

Semantics implemented by the reference (`reference_moe`, `reference_qmoe`),
from onnxruntime/contrib_ops/cpu/moe/{moe_cpu.cc, moe_utils.cc,
moe_base_cpu.h, moe_helper.h, moe_quantization_cpu.cc} and checked against
ORT 1.30 by test_reference_vs_ort.py:

MoE (router_probs are LOGITS):
  * p = softmax(logits) over all E experts in f32 (max-subtracted exp, times
    the reciprocal of the sum);
  * the k largest p are chosen (std::partial_sort with std::greater on
    (p, index): an exact tie goes to the HIGHER expert index);
  * normalize_routing_weights=1: w = p / sum of the k chosen p; else w = p;
    a route whose weight is not > 0 is skipped;
  * expert e: h = fc1[e] x + b1[e]   (fc1 [E, I', H] nn.Linear layout)
      relu / gelu (tanh approximation) / silu (x sigmoid(x)) / identity:
        a = act(h)     (activation_alpha / activation_beta are ignored)
      swiglu: g, l = the gate and linear halves of h, then
        g = min(g, limit); l = clamp(l, -limit, limit)   (limit default +inf)
        a = g * sigmoid(alpha * g) * (l + beta)   (alpha default 1, beta 0)
        swiglu_fusion=1: g = even rows of fc1, l = odd rows (I' = 2I)
        swiglu_fusion=2: g = rows [0, I), l = rows [I, 2I)   (CUDA only)
        swiglu_fusion=0: g = fc1 x + b1, l = fc3 x + b3      (CUDA only)
      non-swiglu with fc3 (CUDA only): a = act(fc1 x + b1) * (fc3 x + b3)
    y_e = fc2[e] a + b2[e]                (fc2 [E, H, I])
  * out = sum over the chosen routes of w * y_e.
  use_sparse_mixer is accepted (k=2 only) and ignored by the CPU provider.
  Attribute defaults: k=1, activation_type=relu, normalize_routing_weights=0.
  The CPU provider rejects swiglu_fusion 0/2 and fc3; for those the reference
  follows the op schema and ORT's CUDA kernels (gate first, as in
  swiglu_kernel_chunked), it cannot be checked against ORT here.
  The old layout fc1 [E, H, I'] / fc2 [E, I, H] is accepted and misread (see
  legacy_as_read_by_ort). A float16 model runs through Cast nodes ORT inserts
  around the float kernel (no f16 MoE kernel on the CPU): f32 throughout,
  router logits not rounded to f16, result rounded once.

QMoE: the same FFN on dequantized weights; see QMOE_SEMANTICS.md. Its CPU
routing differs from MoE: top-k on the raw logits, then softmax over the k
chosen logits whatever normalize_routing_weights says.

The FFN part of the reference computes in float64 and rounds the result to
float32 once; ORT computes in f32 with MLAS GEMMs, so the two agree to about
1e-6 relative.
"""

import dataclasses
import os
from dataclasses import dataclass, field

import numpy as np

ACTIVATIONS = ("relu", "gelu", "silu", "swiglu", "identity")
OPSET = 17
IR_VERSION = 8


# ---------------------------------------------------------------------------
# Model description
# ---------------------------------------------------------------------------


@dataclass
class MoESpec:
    """One com.microsoft.MoE (or QMoE) layer and the graph around it.

    shape:   (T,) for input [T, H], (B, S) for input [B, S, H].
    router:  'matmul'  logits = MatMul(x, router_w)            (2-D input)
             'genai'   MatMul -> Reshape([-1, E]) -> MoE       (onnxruntime-genai)
             'input'   the logits are a graph input [T, E]
    weights: 'initializer' | 'external' (onnx external data file) | 'input'
    layout:  'new'     fc1 [E, I', H], fc2 [E, H, I]   (the documented layout)
             'legacy'  fc1 [E, H, I'], fc2 [E, I, H]   (the old one, a trap)
             'legacy_fc1'  only fc1 (and fc3) in the old layout
    swiglu_fusion: None leaves the attribute out (ORT default 0).
    alpha / beta / limit: None leaves activation_alpha / activation_beta /
             swiglu_limit out.
    fc3:     None = present exactly when activation swiglu and fusion 0.
    """

    H: int = 32
    I: int = 48
    E: int = 8
    k: int = 2
    shape: tuple = (5,)
    activation: str = "silu"
    swiglu_fusion: object = None
    limit: object = None
    alpha: object = None
    beta: object = None
    normalize: object = 1
    sparse_mixer: object = None
    fc1_bias: bool = False
    fc2_bias: bool = False
    fc3_bias: bool = False
    fc3: object = None
    router: str = "matmul"
    weights: str = "initializer"
    layout: str = "new"
    dtype: str = "f32"
    input_name: str = "hidden_states"
    output_name: str = "moe_out"
    # QMoE only
    bits: int = 0               # 0: plain MoE; 4 or 8: QMoE
    block_size: int = 0         # 0: one scale per output row
    zero_points: bool = False   # asymmetric quantization with zero points
    extra_attrs: dict = field(default_factory=dict)
    # Attributes to leave out of the node (their schema defaults apply:
    # k=1, activation_type=relu, expert_weight_bits=4).
    omit: tuple = ()

    def replace(self, **kw):
        return dataclasses.replace(self, **kw)

    @property
    def T(self):
        return int(np.prod(self.shape))

    @property
    def has_fc3(self):
        if self.fc3 is not None:
            return bool(self.fc3)
        return self.activation == "swiglu" and (self.swiglu_fusion or 0) == 0

    @property
    def fused(self):
        """fc1 holds both swiglu halves (I' = 2I)."""
        return self.activation == "swiglu" and (self.swiglu_fusion or 0) in (1, 2)

    @property
    def fc1_rows(self):
        return 2 * self.I if self.fused else self.I

    @property
    def op_type(self):
        return "QMoE" if self.bits else "MoE"

    def name(self):
        """A short id for test names."""
        parts = [self.op_type, f"k{self.k}", self.activation]
        if self.swiglu_fusion is not None:
            parts.append(f"fus{self.swiglu_fusion}")
        if self.limit is not None:
            parts.append(f"lim{self.limit:g}")
        if self.alpha is not None:
            parts.append(f"a{self.alpha:g}")
        if self.beta is not None:
            parts.append(f"b{self.beta:g}")
        if self.normalize is not None:
            parts.append(f"norm{self.normalize}")
        if self.sparse_mixer is not None:
            parts.append(f"sm{self.sparse_mixer}")
        bias = "".join(n for n, on in (("1", self.fc1_bias), ("2", self.fc2_bias),
                                       ("3", self.fc3_bias)) if on)
        if bias:
            parts.append(f"bias{bias}")
        if self.fc3 is not None:
            parts.append(f"fc3{int(bool(self.fc3))}")
        parts.append("x".join(map(str, self.shape)))
        parts += [f"H{self.H}I{self.I}E{self.E}", self.router, self.weights]
        if self.layout != "new":
            parts.append(self.layout)
        if self.dtype != "f32":
            parts.append(self.dtype)
        if self.omit:
            parts.append("omit_" + "_".join(self.omit))
        if (self.input_name, self.output_name) != ("hidden_states", "moe_out"):
            parts.append("renamed")
        if self.bits:
            parts.append(f"q{self.bits}b{self.block_size}" + ("zp" if self.zero_points else ""))
        return "-".join(parts)


_NP_DTYPE = {"f32": np.float32, "f16": np.float16}


def _onnx_elem_type(np_dtype):
    from onnx import helper
    if hasattr(helper, "np_dtype_to_tensor_dtype"):  # onnx >= 1.13
        return helper.np_dtype_to_tensor_dtype(np.dtype(np_dtype))
    from onnx import mapping
    return mapping.NP_TYPE_TO_TENSOR_TYPE[np.dtype(np_dtype)]


def _tp(dtype):
    from onnx import TensorProto
    return {"f32": TensorProto.FLOAT, "f16": TensorProto.FLOAT16}[dtype]


# ---------------------------------------------------------------------------
# Random data
# ---------------------------------------------------------------------------


def make_weights(spec, rng):
    """Random float weights in nn.Linear layout (`new` layout, float32):
    router_w [H, E] (MatMul right operand), fc1 [E, I', H], fc2 [E, H, I],
    fc3 [E, I, H] and the biases. Scales keep activations O(1)."""
    H, I, E = spec.H, spec.I, spec.E

    def lin(*shape, fan_in):
        return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)

    w = {
        # A larger router scale spreads the softmax so top-k has clear gaps.
        "router_w": (rng.standard_normal((H, E)) * (2.0 / np.sqrt(H))).astype(np.float32),
        "fc1": lin(E, spec.fc1_rows, H, fan_in=H),
        "fc2": lin(E, H, I, fan_in=I),
    }
    if spec.has_fc3:
        w["fc3"] = lin(E, I, H, fan_in=H)
    if spec.fc1_bias:
        w["fc1_bias"] = (0.1 * rng.standard_normal((E, spec.fc1_rows))).astype(np.float32)
    if spec.fc2_bias:
        w["fc2_bias"] = (0.1 * rng.standard_normal((E, H))).astype(np.float32)
    if spec.fc3_bias:
        w["fc3_bias"] = (0.1 * rng.standard_normal((E, I))).astype(np.float32)
    return w


def make_input(spec, rng):
    return rng.standard_normal((*spec.shape, spec.H)).astype(np.float32)


def router_logits(spec, x, weights):
    """The [T, E] logits the MoE node sees (f32, as the MatMul computes)."""
    if "router_logits" in weights:
        return np.asarray(weights["router_logits"], np.float32).reshape(-1, spec.E)
    x2 = np.asarray(x, np.float32).reshape(-1, spec.H)
    logits = (x2.astype(np.float64) @ weights["router_w"].astype(np.float64)).astype(np.float32)
    # The MatMul rounds the logits to the model's element type.
    return round_to_dtype(logits, spec.dtype)


def min_topk_gap(spec, logits):
    """Smallest gap between the k-th and (k+1)-th largest logit over tokens
    (inf when k == E): small gaps make the selection fragile."""
    if spec.k >= spec.E:
        return float("inf")
    s = -np.sort(-logits.astype(np.float64), axis=1)
    return float(np.min(s[:, spec.k - 1] - s[:, spec.k]))


def round_to_dtype(arr, dtype):
    """float32 array holding values representable in `dtype` ('f32'/'f16')."""
    return np.asarray(arr, np.float32).astype(_NP_DTYPE[dtype]).astype(np.float32)


def make_case(spec, seed, min_gap=1e-3, tries=50):
    """(x, weights) with router logits whose top-k selection has a clear
    margin (no ties, no near-ties), so every implementation picks the same
    experts. For f16 specs every value is representable in f16."""
    rng = np.random.default_rng(seed)
    for _ in range(tries):
        w = make_weights(spec, rng)
        x = make_input(spec, rng)
        if spec.router == "input":
            w["router_logits"] = (2.0 * rng.standard_normal((spec.T, spec.E))).astype(np.float32)
        x = round_to_dtype(x, spec.dtype)
        w = {n: round_to_dtype(a, spec.dtype) for n, a in w.items()}
        if min_topk_gap(spec, router_logits(spec, x, w)) >= min_gap:
            return x, w
    raise RuntimeError(f"no tie-free routing found for {spec.name()}")


# ---------------------------------------------------------------------------
# Quantization (QMoE)
# ---------------------------------------------------------------------------


def quantize_weights(w, bits, block_size, zero_points):
    """Quantizes float weights w [E, N, K] (nn.Linear [out, in] per expert)
    the way QMoE stores them. Returns dict(q=packed uint8 [E, N, K/pack],
    scales float32 [E, N] or [E, N, K/block], zp=None or packed uint8,
    codes=unpacked uint8 [E, N, K], zp_codes=None or unpacked [E, N, blocks]).

    Symmetric (no zero points): zero point 2^(bits-1), scale = max|w| / (2^(bits-1) - 1)
    (one spare code at the bottom, like MatMulNBits' symmetric mode).
    Asymmetric: zero point and scale from min/max of the block."""
    E, N, K = w.shape
    bs = block_size if block_size > 0 else K
    nblk = -(-K // bs)
    qmax = (1 << bits) - 1
    codes = np.zeros((E, N, K), np.uint8)
    scales = np.zeros((E, N, nblk), np.float32)
    zps = np.zeros((E, N, nblk), np.uint8)
    for b in range(nblk):
        blk = w[:, :, b * bs:(b + 1) * bs].astype(np.float64)
        if zero_points:
            lo = np.minimum(blk.min(axis=2), 0.0)
            hi = np.maximum(blk.max(axis=2), 0.0)
            sc = np.maximum((hi - lo) / qmax, 1e-8)
            zp = np.clip(np.round(-lo / sc), 0, qmax)
        else:
            sc = np.maximum(np.abs(blk).max(axis=2) / ((1 << (bits - 1)) - 1), 1e-8)
            zp = np.full(sc.shape, 1 << (bits - 1))
        sc = sc.astype(np.float32)
        q = np.clip(np.round(blk / sc[..., None].astype(np.float64) + zp[..., None]), 0, qmax)
        codes[:, :, b * bs:(b + 1) * bs] = q.astype(np.uint8)
        scales[:, :, b] = sc
        zps[:, :, b] = zp.astype(np.uint8)
    out = {"codes": codes, "q": pack_codes(codes, bits)}
    out["scales"] = scales if block_size > 0 else scales[:, :, 0]
    if zero_points:
        out["zp_codes"] = zps
        out["zp"] = pack_zero_points(zps, bits, block_size)
    else:
        out["zp_codes"] = None
        out["zp"] = None
    return out


def pack_codes(codes, bits):
    """[..., K] codes -> [..., K * bits / 8] bytes; element j of a byte group
    sits in bits [j*bits, (j+1)*bits) (4-bit: even column in the LOW nibble)."""
    if bits == 8:
        return np.ascontiguousarray(codes.astype(np.uint8))
    per = 8 // bits
    K = codes.shape[-1]
    assert K % per == 0, "K must be a multiple of the pack size"
    c = codes.reshape(*codes.shape[:-1], K // per, per).astype(np.uint16)
    packed = np.zeros(c.shape[:-1], np.uint16)
    for j in range(per):
        packed |= c[..., j] << (j * bits)
    return packed.astype(np.uint8)


def unpack_codes(packed, bits, K):
    if bits == 8:
        return packed[..., :K].astype(np.uint8)
    per = 8 // bits
    mask = (1 << bits) - 1
    out = np.stack([(packed >> (j * bits)) & mask for j in range(per)], axis=-1)
    return out.reshape(*packed.shape[:-1], -1)[..., :K].astype(np.uint8)


def pack_zero_points(zps, bits, block_size):
    """zero points [E, N, blocks] -> QMoE's layout:
    block-wise: [E, N, ceil(blocks / pack)] packed along the blocks;
    row-wise (block_size 0): [E, ceil(N / pack)] packed along the ROWS."""
    per = 8 // bits
    if block_size > 0:
        E, N, nb = zps.shape
        padded = np.zeros((E, N, -(-nb // per) * per), np.uint8)
        padded[:, :, :nb] = zps
        return pack_codes(padded, bits)
    E, N, _ = zps.shape
    padded = np.zeros((E, -(-N // per) * per), np.uint8)
    padded[:, :N] = zps[:, :, 0]
    return pack_codes(padded, bits)


def dequantize(q, scales, zp, bits, block_size, K):
    """NumPy dequantization of QMoE expert weights, as ORT's CPU provider
    does it: W[e, n, c] = scale[e, n, blk] * (code[e, n, c] - zero[e, n, blk])
    with blk = c // block_size (0 when block_size is 0), codes unpacked low
    bits first, zero = 2^(bits-1) without zero points. A scales tensor
    [E, N, 1] (one block per row) is treated as row-wise, as ORT does, and so
    is its zero point layout. Returns float32 [E, N, K]."""
    codes = unpack_codes(np.asarray(q), bits, K).astype(np.float64)
    E, N, _ = codes.shape
    sc = np.asarray(scales, np.float32).astype(np.float64)
    blockwise = sc.ndim == 3 and sc.shape[2] > 1
    per = 8 // bits
    if blockwise:
        nb = sc.shape[2]
        blk = np.minimum(np.arange(K) // block_size, nb - 1)
        s = sc[:, :, blk]
        if zp is None:
            z = float(1 << (bits - 1))
        else:
            zc = unpack_codes(np.asarray(zp), bits, -(-nb // per) * per)[:, :, :nb]
            z = zc.astype(np.float64)[:, :, blk]
    else:
        s = sc.reshape(E, N)[:, :, None]
        if zp is None:
            z = float(1 << (bits - 1))
        else:
            # Row-wise zero points are packed along the rows, ceil(N / pack)
            # bytes per expert; ORT reads them so whatever the tensor's shape
            # (a block-wise [E, N, 1] tensor is misread this way).
            stride = -(-N // per)
            flat = np.asarray(zp).reshape(-1)[:E * stride].reshape(E, stride)
            zc = unpack_codes(flat, bits, stride * per)[:, :N]
            z = zc.astype(np.float64)[:, :, None]
    return (s * (codes - z)).astype(np.float32)


def make_qmoe_case(spec, seed, min_gap=1e-3):
    """(x, weights) for a QMoE spec: float weights are quantized; `weights`
    holds the quantized tensors (fc1_q, fc1_scales, fc1_zp, ...) and the
    dequantized float ones (fc1, fc2, ...) for the reference."""
    x, w = make_case(spec.replace(bits=0), seed, min_gap)
    for fc, K in (("fc1", spec.H), ("fc2", spec.I), ("fc3", spec.H)):
        if fc not in w:
            continue
        qd = quantize_weights(w[fc], spec.bits, spec.block_size, spec.zero_points)
        w[f"{fc}_q"] = qd["q"]
        # Scales have the activations' element type (T2 = T).
        w[f"{fc}_scales"] = round_to_dtype(qd["scales"], spec.dtype)
        if qd["zp"] is not None:
            w[f"{fc}_zp"] = qd["zp"]
        w[fc] = dequantize(qd["q"], w[f"{fc}_scales"], qd["zp"], spec.bits, spec.block_size, K)
    return x, w


# ---------------------------------------------------------------------------
# Reference
# ---------------------------------------------------------------------------


def _softmax_f32(logits):
    """Row softmax in f32 the way the CPU kernel evaluates it."""
    l = np.asarray(logits, np.float32)
    m = l.max(axis=1, keepdims=True)
    e = np.exp(l - m).astype(np.float32)
    s = np.float32(1.0) / e.sum(axis=1, keepdims=True, dtype=np.float32)
    return (e * s).astype(np.float32)


def topk(scores, k, ties="ort"):
    """Indices [T, k] of the k largest scores per row, in descending order.
    ties='ort': equal scores go to the higher index (ORT's std::greater on
    (score, index)); ties='low': to the lower index (the moe dialect)."""
    T, E = scores.shape
    idx = np.arange(E)
    out = np.empty((T, k), np.int64)
    for t in range(T):
        tiebreak = -idx if ties == "ort" else idx
        order = np.lexsort((tiebreak, -scores[t].astype(np.float64)))
        out[t] = order[:k]
    return out


def moe_routing(logits, k, normalize, ties="ort"):
    """(indices [T, k], weights [T, k] f32) as the CPU MoE kernel routes."""
    p = _softmax_f32(logits)
    sel = topk(p, k, ties)
    w = np.take_along_axis(p, sel, axis=1).astype(np.float32)
    if normalize:
        s = w.sum(axis=1, keepdims=True, dtype=np.float32)
        w = (w * (np.float32(1.0) / s)).astype(np.float32)
    return sel, w


def qmoe_routing(logits, k, ties="ort"):
    """(indices, weights) as the CPU QMoE kernel routes: top-k on the raw
    logits, softmax over the k chosen ones (normalize_routing_weights is not
    consulted)."""
    l = np.asarray(logits, np.float32)
    sel = topk(l, k, ties)
    v = np.take_along_axis(l, sel, axis=1)
    e = np.exp(v - v[:, :1]).astype(np.float32)
    w = (e * (np.float32(1.0) / e.sum(axis=1, keepdims=True, dtype=np.float32))).astype(np.float32)
    return sel, w


def _act(h, activation):
    if activation == "relu":
        return np.maximum(h, 0.0)
    if activation == "gelu":
        return 0.5 * h * (1.0 + np.tanh(0.7978845608 * (h + 0.044715 * h ** 3)))
    if activation == "silu":
        return h / (1.0 + np.exp(-h))
    if activation == "identity":
        return h
    raise ValueError(f"unknown activation {activation!r}")


def _swiglu(g, l, alpha, beta, limit):
    if limit is not None:
        lim = float(np.float32(limit))
        g = np.minimum(g, lim)
        l = np.clip(l, -lim, lim)
    a = float(np.float32(1.0 if alpha is None else alpha))
    b = float(np.float32(0.0 if beta is None else beta))
    return g / (1.0 + np.exp(-a * g)) * (l + b)


def expert_ffn(spec, x, weights, e):
    """y = FFN of expert e on rows x [n, H], float64."""
    x = np.asarray(x, np.float64)

    def lin(name, bias):
        y = x @ weights[name][e].astype(np.float64).T
        if bias in weights:
            y = y + weights[bias][e].astype(np.float64)
        return y

    h = lin("fc1", "fc1_bias")
    I = spec.I
    if spec.activation == "swiglu":
        fusion = spec.swiglu_fusion or 0
        if fusion == 1:
            g, l = h[:, 0::2], h[:, 1::2]
        elif fusion == 2:
            g, l = h[:, :I], h[:, I:]
        else:
            g, l = h, lin("fc3", "fc3_bias")
        a = _swiglu(g, l, spec.alpha, spec.beta, spec.limit)
    else:
        a = _act(h, spec.activation)
        if spec.has_fc3:
            a = a * lin("fc3", "fc3_bias")
    y = a @ weights["fc2"][e].astype(np.float64).T
    if "fc2_bias" in weights:
        y = y + weights["fc2_bias"][e].astype(np.float64)
    return y


def _combine(spec, x, weights, sel, w):
    x2 = np.asarray(x, np.float32).reshape(-1, spec.H)
    out = np.zeros(x2.shape, np.float64)
    for e in range(spec.E):
        rows, slots = np.nonzero((sel == e) & (w > 0))
        if len(rows) == 0:
            continue
        y = expert_ffn(spec, x2[rows], weights, e)
        out[rows] += w[rows, slots][:, None].astype(np.float64) * y
    return out.astype(np.float32).reshape(np.shape(x))


def legacy_as_read_by_ort(weights):
    """ORT 1.30 accepts fc1 [E, H, I'] / fc2 [E, I, H] (the old layout) but
    reads their memory as if it were [E, I', H] / [E, H, I]: the weights it
    effectively uses, given the intended (new-layout) ones."""
    w = dict(weights)
    for fc in ("fc1", "fc2", "fc3"):
        if fc in w:
            w[fc] = np.ascontiguousarray(np.transpose(w[fc], (0, 2, 1))).reshape(w[fc].shape)
    return w


def reference_moe(spec, x, weights, ties="ort"):
    """What ORT's CPU com.microsoft.MoE computes: float32, or float16 for f16
    specs (computed in float64 and rounded once; the router logits are
    rounded to f16, the MatMul's result type, where ORT keeps them in f32 -
    a difference within the f16 tolerance). For the legacy layout, what ORT
    computes (see legacy_as_read_by_ort), not what was meant."""
    if spec.layout == "legacy":
        weights = legacy_as_read_by_ort(weights)
    logits = router_logits(spec, x, weights)
    sel, w = moe_routing(logits, spec.k, spec.normalize, ties)
    out = _combine(spec, x, weights, sel, w)
    return out.astype(np.float16) if spec.dtype == "f16" else out


def reference_qmoe(spec, x, weights, ties="ort"):
    """What ORT's CPU com.microsoft.QMoE computes: `weights` must hold the
    dequantized fc1/fc2 (make_qmoe_case does that)."""
    logits = router_logits(spec, x, weights)
    sel, w = qmoe_routing(logits, spec.k, ties)
    out = _combine(spec, x, weights, sel, w)
    if spec.dtype == "f16":
        out = out.astype(np.float16)
    return out


def reference(spec, x, weights, ties="ort"):
    return (reference_qmoe if spec.bits else reference_moe)(spec, x, weights, ties)


# ---------------------------------------------------------------------------
# ONNX graphs
# ---------------------------------------------------------------------------


def _legacy(arr):
    """The old layout: fc1/fc3 [E, H, I'], fc2 [E, I, H] (each matrix
    transposed)."""
    return np.ascontiguousarray(np.transpose(arr, (0, 2, 1)))


def moe_attrs(spec):
    a = {"k": spec.k, "activation_type": spec.activation}
    for key, val in (("normalize_routing_weights", spec.normalize),
                     ("use_sparse_mixer", spec.sparse_mixer),
                     ("swiglu_fusion", spec.swiglu_fusion)):
        if val is not None:
            a[key] = int(val)
    for key, val in (("swiglu_limit", spec.limit), ("activation_alpha", spec.alpha),
                     ("activation_beta", spec.beta)):
        if val is not None:
            a[key] = float(val)
    if spec.bits:
        a["expert_weight_bits"] = spec.bits
        if spec.block_size:
            a["block_size"] = spec.block_size
    a.update(spec.extra_attrs)
    for name in spec.omit:
        a.pop(name, None)
    return a


def _moe_operands(spec, weights):
    """[(input slot name, array or None)] in the op's input order."""
    dt = _NP_DTYPE[spec.dtype]

    def f(name):
        if name not in weights:
            return None
        arr = weights[name].astype(dt)
        if (spec.layout == "legacy" and name in ("fc1", "fc2", "fc3")
                or spec.layout == "legacy_fc1" and name in ("fc1", "fc3")):
            arr = _legacy(arr)
        return arr

    if not spec.bits:
        return [("fc1_experts_weights", f("fc1")), ("fc1_experts_bias", f("fc1_bias")),
                ("fc2_experts_weights", f("fc2")), ("fc2_experts_bias", f("fc2_bias")),
                ("fc3_experts_weights", f("fc3")), ("fc3_experts_bias", f("fc3_bias"))]

    def raw(name):
        return weights.get(name)

    def sc(name):
        return None if name not in weights else weights[name].astype(dt)

    return [("fc1_experts_weights", raw("fc1_q")), ("fc1_scales", sc("fc1_scales")),
            ("fc1_experts_bias", f("fc1_bias")),
            ("fc2_experts_weights", raw("fc2_q")), ("fc2_scales", sc("fc2_scales")),
            ("fc2_experts_bias", f("fc2_bias")),
            ("fc3_experts_weights", raw("fc3_q")), ("fc3_scales", sc("fc3_scales")),
            ("fc3_experts_bias", f("fc3_bias")),
            ("fc1_zero_points", raw("fc1_zp")), ("fc2_zero_points", raw("fc2_zp")),
            ("fc3_zero_points", raw("fc3_zp"))]


def build_model(spec, weights, path, overrides=None, rename=None):
    """Writes the model to `path` (and, for weights='external', its data to
    <path stem>.data beside it). Returns the feeds the model needs besides
    the hidden states: {name: array} (weights as graph inputs, router logits).

    `overrides` replaces MoE operands by their input slot name, e.g.
    {"fc1_experts_weights": wrong_shape_array}, to build bad models; a value
    of None drops the operand. Each operand's tensor is named after its slot
    unless `rename` ({slot: tensor name}) says otherwise."""
    import onnx
    from onnx import helper, numpy_helper

    dt = _NP_DTYPE[spec.dtype]
    tp = _tp(spec.dtype)
    H, E = spec.H, spec.E
    in_dims = [*(f"d{i}" for i in range(len(spec.shape))), H]
    nodes, inits, inputs, feeds = [], [], [], {}
    inputs.append(helper.make_tensor_value_info(spec.input_name, tp, in_dims))
    x = spec.input_name

    def add_tensor(name, arr):
        if spec.weights == "input":
            inputs.append(helper.make_tensor_value_info(
                name, _onnx_elem_type(arr.dtype), list(arr.shape)))
            feeds[name] = arr
        else:
            inits.append(numpy_helper.from_array(arr, name))

    if spec.router == "input":
        logits = "router_logits"
        inputs.append(helper.make_tensor_value_info(logits, tp, ["T", E]))
        feeds[logits] = weights["router_logits"].astype(dt)
    else:
        add_tensor("router_weight", weights["router_w"].astype(dt))
        if spec.router == "matmul":
            logits = "router_logits"
            nodes.append(helper.make_node("MatMul", [x, "router_weight"], [logits],
                                          name="router_matmul"))
        elif spec.router == "genai":
            nodes.append(helper.make_node("MatMul", [x, "router_weight"], ["router_mm"],
                                          name="router_matmul"))
            inits.append(numpy_helper.from_array(np.array([-1, E], np.int64), "router_shape"))
            logits = "router_logits"
            nodes.append(helper.make_node("Reshape", ["router_mm", "router_shape"], [logits],
                                          name="router_reshape"))
        else:
            raise ValueError(f"unknown router form {spec.router!r}")

    operands = _moe_operands(spec, weights)
    if overrides:
        known = {n for n, _ in operands}
        for n in overrides:
            if n not in known:
                raise KeyError(f"unknown MoE operand {n!r}")
        operands = [(n, overrides.get(n, a)) for n, a in operands]
    names = [x, logits]
    for slot, arr in operands:
        if arr is None:
            names.append("")
        else:
            tensor = (rename or {}).get(slot, slot)
            add_tensor(tensor, arr)
            names.append(tensor)
    while names and names[-1] == "":
        names.pop()
    nodes.append(helper.make_node(spec.op_type, names, [spec.output_name], name="moe",
                                  domain="com.microsoft", **moe_attrs(spec)))
    outputs = [helper.make_tensor_value_info(spec.output_name, tp, in_dims)]
    graph = helper.make_graph(nodes, "moe_layer", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = IR_VERSION
    if spec.weights == "external":
        location = os.path.splitext(os.path.basename(path))[0] + ".data"
        onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                  location=location, size_threshold=0)
    else:
        onnx.save(model, path)
    return feeds


@dataclass
class Case:
    spec: MoESpec
    path: str        # the .onnx file
    feeds: dict      # every graph input: {name: array}
    x: np.ndarray    # the hidden states (float32 values)
    weights: dict    # float weights (dequantized for QMoE) and quantized tensors


def build_case(spec, directory, seed=None):
    """Builds `spec`'s model as <directory>/model.onnx (plus model.data for
    external weights) with its random data."""
    os.makedirs(directory, exist_ok=True)
    x, w = make_any_case(spec, seed)
    path = os.path.join(directory, "model.onnx")
    extra = build_model(spec, w, path)
    return Case(spec, path, feeds_for(spec, x, extra), x, w)


def feeds_for(spec, x, extra):
    f = {spec.input_name: np.asarray(x).astype(_NP_DTYPE[spec.dtype])}
    f.update(extra)
    return f


def external_data_file(path):
    return os.path.join(os.path.dirname(path),
                        os.path.splitext(os.path.basename(path))[0] + ".data")


# ---------------------------------------------------------------------------
# What ONNX Runtime 1.30's CPU provider does with a spec, and which specs are
# valid models at all
# ---------------------------------------------------------------------------

# Messages recorded from ORT 1.30 (onnxruntime-node, CPU provider). The
# 'create' ones come from kernel constructors (session creation), the 'run'
# ones from Compute.
MSG_MOE_SWIGLU_FUSION = ("CPU MoE only supports interleaved SwiGLU format. "
                         "Please set swiglu_fusion=1.")
MSG_QMOE_SWIGLU_FUSION = ("CPU QMoE only supports interleaved SwiGLU format. "
                          "Please set swiglu_fusion=1.")
MSG_SPARSE_MIXER = "Sparse mixer only supports k=2"
MSG_MOE_FC3 = "FC3 is not implemented for CPU MoE."
MSG_QMOE_FC3 = "FC3 gating is not yet implemented on CPU for QMoE"
MSG_ROUTER_RANK = "Input 'router_probs' is expected to have 2 dimensions, got 3"
MSG_MOE_K = "MoE attribute 'k' must be <= num_experts"
MSG_QMOE_K = "QMoE attribute 'k' must be <= num_experts"
MSG_BLOCK_MIN = "block_size must be >= 16 when provided."
MSG_BLOCK_POW2 = "block_size must be a power of 2."


def ort_cpu_rejection(spec):
    """None when ORT 1.30's CPU provider runs `spec`, else (stage, message
    fragment) of the error it reports (stage 'create' or 'run')."""
    q = bool(spec.bits)
    # Session creation: MoEBaseCPU's checks, then the kernel constructor's.
    if spec.sparse_mixer and spec.k != 2:
        return ("create", MSG_SPARSE_MIXER)
    if spec.activation == "swiglu" and (spec.swiglu_fusion or 0) != 1:
        return ("create", MSG_QMOE_SWIGLU_FUSION if q else MSG_MOE_SWIGLU_FUSION)
    if q and spec.block_size and spec.block_size < 16:
        return ("create", MSG_BLOCK_MIN)
    if q and spec.block_size & (spec.block_size - 1):
        return ("create", MSG_BLOCK_POW2)
    # Compute.
    if spec.router == "matmul" and len(spec.shape) == 2:
        return ("run", MSG_ROUTER_RANK)
    if spec.k > spec.E:
        return ("run", MSG_QMOE_K if q else MSG_MOE_K)
    if spec.layout == "legacy_fc1":
        return ("run", "Input 'fc1_experts_weights' is expected to have shape")
    if spec.has_fc3:
        return ("run", MSG_QMOE_FC3 if q else MSG_MOE_FC3)
    return None


def invalid_reason(spec):
    """None unless `spec` is a model the op schemas exclude, which an importer
    must reject; then (why, names) where the error should mention one of
    `names`."""
    if spec.k > spec.E:
        return ("k exceeds the number of experts", ("k",))
    if spec.sparse_mixer and spec.k != 2:
        return ("use_sparse_mixer needs k=2", ("use_sparse_mixer",))
    if spec.layout == "legacy_fc1":
        return ("fc1 in the old [E, H, I] layout", ("fc1_experts_weights",))
    if spec.layout == "legacy":
        # Both matrices are in the old layout: either can be blamed.
        return ("fc1 and fc2 in the old layout", ("fc1_experts_weights", "fc2_experts_weights"))
    if spec.bits and spec.block_size and (spec.block_size < 16
                                          or spec.block_size & (spec.block_size - 1)):
        return ("block_size must be a power of 2, at least 16", ("block_size",))
    if spec.bits and spec.zero_points and spec.block_size:
        per = 8 // spec.bits
        for K, zp in ((spec.H, "fc1_zero_points"), (spec.I, "fc2_zero_points")):
            if K % (spec.block_size * per):
                # ORT misreads these (see QMOE_SEMANTICS.md): no oracle.
                return ("block-wise zero points need K divisible by block_size * pack",
                        (zp, "block_size"))
    return None


def optional_reason(spec):
    """None unless `spec` is outside the schemas but has one obvious meaning,
    so an importer may either run it (matching the oracle) or reject it
    cleanly; then (why, names) as for invalid_reason."""
    if spec.router == "matmul" and len(spec.shape) == 2:
        # router_probs [B, S, E]: the schema says 2-D; flattening is the only
        # sensible reading (ORT rejects it).
        return ("router_probs must be 2-D [T, E]", ("router_logits", "router_probs"))
    if spec.sparse_mixer:
        # ORT's CPU provider ignores it, its CUDA provider routes differently.
        return ("use_sparse_mixer=1", ("use_sparse_mixer",))
    if spec.bits and spec.block_size and (spec.H % spec.block_size or spec.I % spec.block_size):
        # ORT reads one (partial) block per row.
        return ("hidden_size and inter_size must be multiples of block_size", ("block_size",))
    return None


def case_seed(spec):
    """A stable seed per spec."""
    import zlib
    return zlib.crc32(spec.name().encode()) & 0x7FFFFFFF


def make_any_case(spec, seed=None):
    seed = case_seed(spec) if seed is None else seed
    return (make_qmoe_case if spec.bits else make_case)(spec, seed)


def tolerance(spec):
    """Relative tolerance (of max |expected|) for comparing with ORT: f32
    1e-5; f16 2e-3 (eps 9.8e-4: the result is rounded once, and ORT and the
    reference may differ by one rounding of the router logits)."""
    return 2e-3 if spec.dtype == "f16" else 1e-5


# ---------------------------------------------------------------------------
# Test matrices
# ---------------------------------------------------------------------------


def moe_matrix():
    """The com.microsoft.MoE combinations the tests cover (small shapes).
    Includes combinations ORT's CPU provider rejects and invalid models;
    see ort_cpu_rejection() and invalid_reason()."""
    base = MoESpec(H=32, I=48, E=8, k=2, shape=(5,))
    specs = []
    # k x activation (plain FFN), normalization, token counts.
    for act in ("relu", "gelu", "silu", "identity"):
        for k in (1, 2, 4):
            specs.append(base.replace(activation=act, k=k, normalize=1 if k > 1 else 0))
    for norm in (0, 1):
        specs.append(base.replace(activation="gelu", k=2, normalize=norm, shape=(33,)))
    specs.append(base.replace(activation="silu", k=4, normalize=0, shape=(33,)))
    specs.append(base.replace(activation="relu", normalize=None, shape=(1,)))
    # swiglu: the three layouts, limit / alpha / beta.
    sw = base.replace(activation="swiglu", swiglu_fusion=1)
    specs += [
        sw,
        sw.replace(k=1, normalize=0),
        sw.replace(k=4, shape=(33,)),
        sw.replace(shape=(1,)),
        sw.replace(limit=7.0),
        sw.replace(limit=0.5),
        sw.replace(alpha=1.702, beta=1.0),
        sw.replace(alpha=1.702, beta=1.0, limit=7.0, fc1_bias=True, fc2_bias=True),
        sw.replace(alpha=0.5, beta=-0.25, limit=1.5),
        sw.replace(swiglu_fusion=2),
        sw.replace(swiglu_fusion=2, alpha=1.702, beta=1.0, limit=7.0, fc1_bias=True),
        sw.replace(swiglu_fusion=0),
        sw.replace(swiglu_fusion=0, limit=1.0, alpha=1.702, beta=1.0,
                   fc1_bias=True, fc3_bias=True, fc2_bias=True),
        sw.replace(swiglu_fusion=None),
    ]
    # activation_alpha / activation_beta on other activations: ignored.
    specs.append(base.replace(activation="silu", alpha=1.702, beta=1.0))
    specs.append(base.replace(activation="gelu", alpha=2.0))
    # A gated FFN without swiglu (old Mixtral exports: silu with fc3).
    specs.append(base.replace(activation="silu", fc3=True))
    specs.append(base.replace(activation="relu", fc3=True, fc1_bias=True, fc3_bias=True))
    # use_sparse_mixer (k=2 only; ignored by the CPU provider).
    specs.append(base.replace(activation="silu", k=2, sparse_mixer=1))
    specs.append(base.replace(activation="silu", k=2, sparse_mixer=0))
    # Biases.
    for b1, b2 in ((True, False), (False, True), (True, True)):
        specs.append(base.replace(activation="relu", fc1_bias=b1, fc2_bias=b2))
    specs.append(sw.replace(fc1_bias=True))
    # Input rank and router forms.
    specs.append(base.replace(shape=(2, 3), router="genai"))
    specs.append(sw.replace(shape=(3, 11), router="genai"))
    specs.append(base.replace(shape=(33,), router="genai"))
    specs.append(base.replace(shape=(1, 1), router="genai", activation="gelu"))
    specs.append(base.replace(router="input"))
    # Weight storage.
    specs.append(base.replace(weights="external"))
    specs.append(sw.replace(weights="external", fc1_bias=True, fc2_bias=True))
    specs.append(base.replace(weights="input"))
    specs.append(sw.replace(weights="input", shape=(2, 3), router="genai", fc2_bias=True))
    # Other sizes: E=4 with k=4 (= E), H=64, H == I, 2I == H.
    specs.append(MoESpec(H=16, I=24, E=4, k=4, shape=(5,), activation="silu"))
    specs.append(MoESpec(H=64, I=96, E=6, k=2, shape=(33,), activation="swiglu",
                         swiglu_fusion=1, fc1_bias=True, fc2_bias=True))
    specs.append(MoESpec(H=32, I=32, E=4, k=2, shape=(5,), activation="gelu"))
    specs.append(MoESpec(H=32, I=16, E=4, k=2, shape=(5,), activation="swiglu",
                         swiglu_fusion=1))
    # Attributes left to their defaults (k=1, relu, no normalization).
    specs.append(base.replace(k=1, activation="relu", normalize=None,
                              omit=("k", "activation_type")))
    # Names that need sanitizing in output file names.
    specs.append(base.replace(input_name="input.1", output_name="moe/out:0"))
    # f16 model (ORT runs it through Cast nodes around a float kernel).
    specs.append(base.replace(dtype="f16"))
    specs.append(sw.replace(dtype="f16", shape=(33,), fc1_bias=True))
    # Outside the schema but unambiguous: 3-D router logits.
    specs.append(base.replace(shape=(2, 3), router="matmul"))
    # Invalid models.
    specs.append(MoESpec(H=16, I=24, E=4, k=5, shape=(5,), activation="relu"))
    specs.append(base.replace(activation="silu", k=1, sparse_mixer=1, normalize=0))
    specs.append(base.replace(layout="legacy"))
    specs.append(sw.replace(layout="legacy"))
    specs.append(base.replace(layout="legacy_fc1"))
    return specs


def qmoe_matrix():
    """com.microsoft.QMoE combinations: bits x block size x zero points x
    activation, and the graph variants."""
    base = MoESpec(H=64, I=32, E=4, k=2, shape=(5,), activation="swiglu", swiglu_fusion=1)
    specs = []
    for bits in (4, 8):
        for bs in (0, 16, 32):
            for zp in (False, True):
                s = base.replace(bits=bits, block_size=bs, zero_points=zp)
                if zp and bs == 32 and bits == 4:
                    s = s.replace(H=128, I=64)  # K must be a multiple of 32 * 2
                specs.append(s)
    specs += [
        base.replace(bits=4, block_size=32, weights="input"),
        base.replace(bits=8, block_size=16, zero_points=True, weights="input"),
        base.replace(bits=4, block_size=0, zero_points=True, weights="input"),
        base.replace(bits=4, block_size=16, fc1_bias=True, fc2_bias=True, limit=7.0,
                     alpha=1.702, beta=1.0),
        base.replace(bits=4, block_size=0, normalize=0),
        base.replace(bits=8, block_size=0, normalize=0, k=1),
        base.replace(bits=4, block_size=32, shape=(33,), k=4),
        base.replace(bits=8, block_size=16, shape=(1,)),
        base.replace(bits=4, block_size=16, activation="silu", swiglu_fusion=None),
        base.replace(bits=8, block_size=0, activation="relu", swiglu_fusion=None, fc2_bias=True),
        base.replace(bits=4, block_size=32, activation="gelu", swiglu_fusion=None, zero_points=True,
                     H=128, I=64),
        base.replace(bits=4, block_size=64, I=64),  # one block per row (read as row-wise)
        base.replace(bits=4, block_size=16, sparse_mixer=1),
        base.replace(bits=4, block_size=16, dtype="f16"),
        base.replace(bits=8, block_size=32, zero_points=True, dtype="f16"),
        base.replace(bits=4, block_size=16, weights="external"),
        base.replace(bits=4, block_size=16, shape=(2, 3), router="genai"),
        base.replace(bits=4, block_size=16, omit=("expert_weight_bits",)),
        # Rejected by the CPU provider (valid models).
        base.replace(bits=4, block_size=16, swiglu_fusion=2),
        base.replace(bits=4, block_size=16, swiglu_fusion=0),
        # Invalid: zero points of one block per row, K not a multiple of 32 * 2.
        base.replace(bits=4, block_size=32, zero_points=True),
        base.replace(bits=4, block_size=8),
        base.replace(bits=4, block_size=24, H=48, I=48),
        # Outside the schema but unambiguous: inter_size 32 < block_size 64
        # (ORT runs fc2 as one row-wise block).
        base.replace(bits=4, block_size=64),
    ]
    return specs


def qmoe_extra_matrix():
    """2-bit QMoE, which ORT 1.30 also accepts (reference checks only)."""
    base = MoESpec(H=64, I=32, E=4, k=2, shape=(5,), activation="swiglu", swiglu_fusion=1)
    # Block sizes 32 and 64 take MLAS' LUT GEMM, which is approximate (about
    # 1.5e-2 relative); 0, 16 and >= K dequantize exactly.
    return [base.replace(bits=2, block_size=0), base.replace(bits=2, block_size=16),
            base.replace(bits=2, block_size=16, zero_points=True, H=128, I=128)]


def all_specs():
    return moe_matrix() + qmoe_matrix() + qmoe_extra_matrix()
