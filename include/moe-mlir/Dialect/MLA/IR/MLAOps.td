//===- MLAOps.td - mla dialect operations ------------------*- tablegen -*-===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_DIALECT_MLA_IR_MLAOPS_TD
#define MOE_MLIR_DIALECT_MLA_IR_MLAOPS_TD

include "moe-mlir/Dialect/MLA/IR/MLAAttrs.td"
include "mlir/IR/CommonAttrConstraints.td"
include "mlir/IR/CommonTypeConstraints.td"
include "mlir/Interfaces/InferTypeOpInterface.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

def MLA_FloatTensor : RankedTensorOf<[F32, F16, BF16]>;
def MLA_PositiveI64 : ConfinedAttr<I64Attr, [IntPositive]>;

def MLA_AttentionOp : Op<MLA_Dialect, "attention", [
    Pure, AttrSizedOperandSegments, InferTypeOpAdaptorWithIsCompatible]> {
  let summary = "multi-head latent attention over a latent KV cache";
  let description = [{
    One attention step of a DeepSeek-V2/V3 decoder layer for one sequence:
    S new tokens at positions P .. P+S-1 attend, causally, to the P cached
    tokens and to each other. The op includes the output projection.

    Sizes: H hidden, N heads (`num_heads`), D_n = `qk_nope_head_dim`,
    D_r = `qk_rope_head_dim`, D_v = `v_head_dim`, R_q = q LoRA rank,
    R_kv = KV LoRA rank, P cached tokens, S new tokens (P and S may be
    dynamic).

    **Query.** With `q_proj` [N·(D_n+D_r), H]: `q = x · q_projᵀ`. With q LoRA
    (`q_a_proj` [R_q, H], `q_a_norm` [R_q], `q_b_proj` [N·(D_n+D_r), R_q]):
    `q = RMSNorm(x · q_a_projᵀ) · q_b_projᵀ`. The rows of q are head-major;
    within a head, `q_nope` [D_n] then `q_rope` [D_r].

    **Latent KV.** `kv_a_proj` [R_kv + D_r, H] maps x to `[c, k_r]`;
    `c_kv = RMSNorm(c)` with weight `kv_a_norm` [R_kv]; `k_rope` = k_r with
    RoPE applied, one rope key shared by all heads. `kv_b_proj`
    [N·(D_n+D_v), R_kv] expands every cached and new `c_kv` into per-head
    `k_nope` [D_n] then `v` [D_v] (head-major rows). RMSNorm is
    `w · x / sqrt(mean(x²) + eps)` in f32, `eps = rms_norm_eps` (HF and
    DeepSeek use 1e-6 for these two norms whatever config.rms_norm_eps
    says). The projections have no biases (checkpoints with
    `attention_bias = true` are not expressible yet).

    **RoPE** (on q_rope and k_rope only) at position p, base `rope_theta`,
    frequencies `f_i = θ^(-2i/D_r)` (or YaRN's, see `#mla.yarn`). With
    `rope_interleave` (DeepSeek's checkpoints) the rotated pairs are
    (x[2i], x[2i+1]); without it they are (x[i], x[i + D_r/2]). A pair (a, b)
    becomes (a cos pf_i - b sin pf_i, b cos pf_i + a sin pf_i); the result
    is laid out as halves: all first components, then all second components
    (HF DeepSeek-V3's layout after de-interleaving; DeepSeek's own code and
    HF V2 keep pairs interleaved: a fixed permutation of the rope dims that
    changes the cached `k_rope` layout, not the scores).

    **Scores.** Per head, `score(i, j) = scale · (q_nope·k_nope_j +
    q_rope·k_rope_j)` for key j ≤ P + i (causal), softmax over j in f32,
    output `o = Σ_j p_j v_j`; the heads are concatenated [N·D_v] and
    projected: `out = o · o_projᵀ` [S, H]. The scale is `softmax_scale` as
    given when present (nothing is multiplied into it), else
    `(D_n + D_r)^-0.5`, times YaRN's `m(factor, mscale_all_dim)²` when
    `mscale_all_dim` is non-zero.

    **Cache.** `c_kv_cache` [P, R_kv] and `k_rope_cache` [P, D_r] hold the
    normalized latent and the rotated rope key of the P earlier tokens;
    the results `c_kv_out` [P+S, R_kv] and `k_rope_out` [P+S, D_r] append
    the S new tokens. The caches may have their own element type (e.g. bf16
    cache with f32 activations); new entries are rounded to it, and the
    attention uses the rounded values.

    Matrix products accumulate in f32; the output has the element type of
    `hidden`. The op is numerically the same whichever way a lowering
    evaluates it, up to the f32 reassociation of the kv_b_proj products
    (`weight_absorption`, set by `mla-weight-absorption` when absent):
    - `naive` (also when absent): expand k_nope [T, N, D_n] and v [T, N, D_v] from
      every cached and new latent (T = P + S): T·N·R_kv·(D_n+D_v) products;
    - `absorbed`: fold W_kb (the k_nope rows of `kv_b_proj`) into the query,
      `q_lat[n] = q_nope[n] · W_kb[n]` [R_kv], score against the latents
      themselves, and fold W_vb into the output, `o[n] = (Σ_j p_j c_j) ·
      W_vb[n]ᵀ`: S·N·R_kv·(D_n+D_v) + S·T·N·(2·R_kv) products, far fewer
      at decode (S = 1) over a long cache;
    - `cost`: per call, `absorbed` when S·T·(2·R_kv − D_n − D_v) +
      S·R_kv·(D_n+D_v) < T·R_kv·(D_n+D_v) (its products are fewer), else
      `naive`.

    Example (decode, one token, q LoRA):
    ```mlir
    %out, %ckv, %kr = mla.attention %x cache(%ckv0, %kr0)
        q_lora(%wqa, %qnorm, %wqb) kv(%wkva, %kvnorm, %wkvb) o(%wo)
        {num_heads = 16 : i64, qk_nope_head_dim = 128 : i64,
         qk_rope_head_dim = 64 : i64, v_head_dim = 128 : i64,
         rope_theta = 10000.0 : f64, rope_interleave}
        : (...) -> (tensor<1x2048xbf16>, tensor<?x512xbf16>, tensor<?x64xbf16>)
    ```
  }];

  let arguments = (ins
    MLA_FloatTensor:$hidden,
    MLA_FloatTensor:$c_kv_cache,
    MLA_FloatTensor:$k_rope_cache,
    Optional<MLA_FloatTensor>:$q_proj,
    Optional<MLA_FloatTensor>:$q_a_proj,
    Optional<MLA_FloatTensor>:$q_a_norm,
    Optional<MLA_FloatTensor>:$q_b_proj,
    MLA_FloatTensor:$kv_a_proj,
    MLA_FloatTensor:$kv_a_norm,
    MLA_FloatTensor:$kv_b_proj,
    MLA_FloatTensor:$o_proj,
    MLA_PositiveI64:$num_heads,
    MLA_PositiveI64:$qk_nope_head_dim,
    MLA_PositiveI64:$qk_rope_head_dim,
    MLA_PositiveI64:$v_head_dim,
    DefaultValuedAttr<F32Attr, "1.0e-6f">:$rms_norm_eps,
    DefaultValuedAttr<F64Attr, "10000.0">:$rope_theta,
    UnitAttr:$rope_interleave,
    OptionalAttr<MLA_YarnAttr>:$yarn,
    OptionalAttr<F32Attr>:$softmax_scale,
    OptionalAttr<MLA_AbsorptionAttr>:$weight_absorption
  );
  let results = (outs MLA_FloatTensor:$output, MLA_FloatTensor:$c_kv_out,
                      MLA_FloatTensor:$k_rope_out);

  let assemblyFormat = [{
    $hidden `cache` `(` $c_kv_cache `,` $k_rope_cache `)`
    (`q` `(` $q_proj^ `)`)?
    (`q_lora` `(` $q_a_proj^ `,` $q_a_norm `,` $q_b_proj `)`)?
    `kv` `(` $kv_a_proj `,` $kv_a_norm `,` $kv_b_proj `)`
    `o` `(` $o_proj `)`
    attr-dict `:` functional-type(operands, results)
  }];

  let extraClassDeclaration = [{
    /// True when the query goes through the low-rank q_a/q_b projections.
    bool hasQueryLora() { return static_cast<bool>(getQAProj()); }
    /// The softmax scale the op uses (explicit, or derived with YaRN).
    double getEffectiveSoftmaxScale();
  }];
  let hasVerifier = 1;
}

def MLA_GqaAttentionOp : Op<MLA_Dialect, "gqa_attention", [
    Pure, AttrSizedOperandSegments, InferTypeOpAdaptorWithIsCompatible]> {
  let summary = "grouped-query attention over a per-head KV cache";
  let description = [{
    One attention step of a Mixtral, Qwen2-MoE or Qwen3-MoE decoder layer
    (Hugging Face's `MixtralAttention`, `Qwen2MoeAttention`,
    `Qwen3MoeAttention`) for one sequence: S new tokens at positions
    P .. P+S-1 attend, causally, to the P cached tokens and to each other.
    The op includes the output projection.

    Sizes: H hidden, N query heads (`num_heads`), KV key/value heads
    (`num_kv_heads`, N a multiple of KV; KV = N is multi-head attention),
    D = `head_dim` (even), G = N / KV query heads per KV head, P cached
    tokens, S new tokens (P and S may be dynamic, P may be 0).

    **Projections** (nn.Linear layout [out, in]): `q = x · q_projᵀ`
    [S, N·D], `k = x · k_projᵀ`, `v = x · v_projᵀ` [S, KV·D], plus
    `q_bias` [N·D], `k_bias` and `v_bias` [KV·D] when `bias(...)` is
    given (Qwen2). Rows are head-major: q is read as [S, N, D], k and v as
    [S, KV, D].

    **QK norm** (Qwen3, when `qk_norm(...)` is given): RMSNorm over D of
    every head of q and of k, `w · x / sqrt(mean(x²) + eps)` in f32 (HF
    writes `w · (x · rsqrt(mean(x²) + eps))`, equal up to f32 rounding)
    with weights `q_norm`, `k_norm` [D] and `eps = rms_norm_eps`, before
    RoPE.

    **RoPE** on q and k at positions p = P .. P+S-1, base θ = `rope_theta`,
    HF's default rotary embedding evaluated as HF evaluates it, in f32:
    `inv_freq_i = 1 / θ^(2i/D)` for i < D/2 (the exponent `2i / D`, the
    power and the quotient each rounded to f32; the power is the
    correctly rounded f32 value), the angle `f32(p) · inv_freq_i` rounded
    to f32 (so p is exact below 2^24), and its cos and sin, the correctly
    rounded f32 values of that f32 angle. (PyTorch's vectorized f32 pow,
    cos and sin may differ from these by one ulp.) The pairs are
    (x[i], x[i + D/2]) (`rotate_half` layout) and (a, b) becomes
    (a cos − b sin, b cos + a sin), in f32.

    **Cache.** `k_cache` and `v_cache` [P, KV, D] hold the rotated keys and
    the values of the P earlier tokens; the results `k_out` and `v_out`
    [P+S, KV, D] append the S new tokens. The caches may have their own
    element type (e.g. bf16 cache with f32 activations); new entries are
    rounded to it, and the attention uses the rounded values.

    **Scores.** Query head h uses KV head h / G. `score(h, i, j) =
    scale · q_h(i) · k_{h/G}(j)` over the keys j visible to the new token i
    (position P+i): j ≤ P+i (causal) and, with `sliding_window` W,
    j > P+i−W (W keys at most, the token itself included). Softmax over the
    visible j in f32, `o_h(i) = Σ_j p_j v_{h/G}(j)`; the heads are
    concatenated [S, N·D] and projected: `out = o · o_projᵀ` [S, H]. The
    scale is `softmax_scale` when given, else `D^-0.5`, rounded to f32.

    Every product and sum accumulates in f32; the output has the element
    type of `hidden`. The weights (projections, biases, norms) share one
    element type (f32, bf16 or f16), which may differ from the activations'
    and the cache's.

    Example (Qwen3-MoE decode step, one token, bf16 cache):
    ```mlir
    %out, %k, %v = mla.gqa_attention %x cache(%k0, %v0)
        q(%wq) k(%wk) v(%wv) o(%wo) qk_norm(%qn, %kn)
        {num_heads = 32 : i64, num_kv_heads = 4 : i64, head_dim = 128 : i64,
         rope_theta = 1.0e6 : f64}
        : (tensor<1x2048xf32>, tensor<?x4x128xbf16>, tensor<?x4x128xbf16>,
           tensor<4096x2048xbf16>, tensor<512x2048xbf16>,
           tensor<512x2048xbf16>, tensor<2048x4096xbf16>, tensor<128xbf16>,
           tensor<128xbf16>)
        -> (tensor<1x2048xf32>, tensor<?x4x128xbf16>, tensor<?x4x128xbf16>)
    ```
  }];

  let arguments = (ins
    MLA_FloatTensor:$hidden,
    MLA_FloatTensor:$k_cache,
    MLA_FloatTensor:$v_cache,
    MLA_FloatTensor:$q_proj,
    MLA_FloatTensor:$k_proj,
    MLA_FloatTensor:$v_proj,
    MLA_FloatTensor:$o_proj,
    Optional<MLA_FloatTensor>:$q_bias,
    Optional<MLA_FloatTensor>:$k_bias,
    Optional<MLA_FloatTensor>:$v_bias,
    Optional<MLA_FloatTensor>:$q_norm,
    Optional<MLA_FloatTensor>:$k_norm,
    MLA_PositiveI64:$num_heads,
    MLA_PositiveI64:$num_kv_heads,
    MLA_PositiveI64:$head_dim,
    DefaultValuedAttr<F64Attr, "10000.0">:$rope_theta,
    DefaultValuedAttr<F32Attr, "1.0e-6f">:$rms_norm_eps,
    OptionalAttr<MLA_PositiveI64>:$sliding_window,
    OptionalAttr<F32Attr>:$softmax_scale
  );
  let results = (outs MLA_FloatTensor:$output, MLA_FloatTensor:$k_out,
                      MLA_FloatTensor:$v_out);

  let assemblyFormat = [{
    $hidden `cache` `(` $k_cache `,` $v_cache `)`
    `q` `(` $q_proj `)` `k` `(` $k_proj `)` `v` `(` $v_proj `)`
    `o` `(` $o_proj `)`
    (`bias` `(` $q_bias^ `,` $k_bias `,` $v_bias `)`)?
    (`qk_norm` `(` $q_norm^ `,` $k_norm `)`)?
    attr-dict `:` functional-type(operands, results)
  }];

  let extraClassDeclaration = [{
    /// True with the Qwen2 projection biases.
    bool hasBias() { return static_cast<bool>(getQBias()); }
    /// True with the Qwen3 per-head RMSNorm of q and k.
    bool hasQkNorm() { return static_cast<bool>(getQNorm()); }
    /// Query heads per KV head, N / KV.
    int64_t getGroupSize() {
      return static_cast<int64_t>(getNumHeads() / getNumKvHeads());
    }
    /// The softmax scale the op uses: softmax_scale, else head_dim^-0.5.
    double getEffectiveSoftmaxScale();
  }];
  let hasVerifier = 1;
}

#endif // MOE_MLIR_DIALECT_MLA_IR_MLAOPS_TD
