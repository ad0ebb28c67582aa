// Multi-head latent attention of one DeepSeek-V3 decoder layer, written as
// two steps over the same weights: a prefill of S prompt tokens (dynamic S)
// into an empty cache, and the decode of one token against a cache of P
// earlier tokens (dynamic P). Each step returns the extended cache, which
// the next step takes in.
//
// DeepSeek-V3's attention config, with the HF weight names:
//   hidden_size H             = 7168
//   num_attention_heads N     = 128
//   q_lora_rank R_q           = 1536   q_a_proj [R_q, H], q_a_layernorm [R_q],
//                                      q_b_proj [N*(D_n+D_r), R_q] = [24576, 1536]
//   kv_lora_rank R_kv         = 512    kv_a_proj_with_mqa [R_kv+D_r, H] = [576, 7168],
//                                      kv_a_layernorm [R_kv],
//                                      kv_b_proj [N*(D_n+D_v), R_kv] = [32768, 512]
//   qk_nope_head_dim D_n      = 128
//   qk_rope_head_dim D_r      = 64
//   v_head_dim D_v            = 128    o_proj [H, N*D_v] = [7168, 16384]
//   rms_norm_eps              = 1e-6   (the op's default)
//   rope_theta                = 10000  (the op's default)
//   rope_scaling              = yarn, factor 40, original_max_position_embeddings
//                               4096, beta_fast 32, beta_slow 1, mscale 1,
//                               mscale_all_dim 1
// The checkpoint stores the rope dimensions interleaved (rope_interleave).
// No softmax_scale is given, so the op derives it: (D_n+D_r)^-0.5 = 192^-0.5
// times YaRN's m(40, 1)^2 = (0.1 ln 40 + 1)^2, about 0.1352. Since mscale
// equals mscale_all_dim, cos and sin are not rescaled.
//
// Weights, activations and the cache are bf16; the op computes in f32.
// Parsing allocates nothing, so the real sizes cost nothing here.

// Prefill: S prompt tokens at positions 0 .. S-1 attend causally to each
// other. The cache starts empty (0 rows) and comes back with S rows.
func.func @mla_prefill(
    %hidden: tensor<?x7168xbf16>,
    %q_a_proj: tensor<1536x7168xbf16>,
    %q_a_layernorm: tensor<1536xbf16>,
    %q_b_proj: tensor<24576x1536xbf16>,
    %kv_a_proj_with_mqa: tensor<576x7168xbf16>,
    %kv_a_layernorm: tensor<512xbf16>,
    %kv_b_proj: tensor<32768x512xbf16>,
    %o_proj: tensor<7168x16384xbf16>)
    -> (tensor<?x7168xbf16>, tensor<?x512xbf16>, tensor<?x64xbf16>) {
  // The empty cache: no latent c_kv [P, R_kv] and no rope key k_rope
  // [P, D_r] yet.
  %c_kv_empty = tensor.empty() : tensor<0x512xbf16>
  %k_rope_empty = tensor.empty() : tensor<0x64xbf16>
  %out, %c_kv, %k_rope = mla.attention %hidden
      cache(%c_kv_empty, %k_rope_empty)
      q_lora(%q_a_proj, %q_a_layernorm, %q_b_proj)
      kv(%kv_a_proj_with_mqa, %kv_a_layernorm, %kv_b_proj)
      o(%o_proj)
      {num_heads = 128 : i64, qk_nope_head_dim = 128 : i64,
       qk_rope_head_dim = 64 : i64, v_head_dim = 128 : i64, rope_interleave,
       yarn = #mla.yarn<factor = 40.0, original_max_position_embeddings = 4096,
                        beta_fast = 32.0, beta_slow = 1.0, mscale = 1.0,
                        mscale_all_dim = 1.0>}
      : (tensor<?x7168xbf16>, tensor<0x512xbf16>, tensor<0x64xbf16>,
         tensor<1536x7168xbf16>, tensor<1536xbf16>, tensor<24576x1536xbf16>,
         tensor<576x7168xbf16>, tensor<512xbf16>, tensor<32768x512xbf16>,
         tensor<7168x16384xbf16>)
      -> (tensor<?x7168xbf16>, tensor<?x512xbf16>, tensor<?x64xbf16>)
  return %out, %c_kv, %k_rope
      : tensor<?x7168xbf16>, tensor<?x512xbf16>, tensor<?x64xbf16>
}

// Decode: one new token at position P attends to the P cached tokens and to
// itself. The cache comes in with P rows and goes out with P+1.
func.func @mla_decode(
    %hidden: tensor<1x7168xbf16>,
    %c_kv_cache: tensor<?x512xbf16>,
    %k_rope_cache: tensor<?x64xbf16>,
    %q_a_proj: tensor<1536x7168xbf16>,
    %q_a_layernorm: tensor<1536xbf16>,
    %q_b_proj: tensor<24576x1536xbf16>,
    %kv_a_proj_with_mqa: tensor<576x7168xbf16>,
    %kv_a_layernorm: tensor<512xbf16>,
    %kv_b_proj: tensor<32768x512xbf16>,
    %o_proj: tensor<7168x16384xbf16>)
    -> (tensor<1x7168xbf16>, tensor<?x512xbf16>, tensor<?x64xbf16>) {
  %out, %c_kv, %k_rope = mla.attention %hidden
      cache(%c_kv_cache, %k_rope_cache)
      q_lora(%q_a_proj, %q_a_layernorm, %q_b_proj)
      kv(%kv_a_proj_with_mqa, %kv_a_layernorm, %kv_b_proj)
      o(%o_proj)
      {num_heads = 128 : i64, qk_nope_head_dim = 128 : i64,
       qk_rope_head_dim = 64 : i64, v_head_dim = 128 : i64, rope_interleave,
       yarn = #mla.yarn<factor = 40.0, original_max_position_embeddings = 4096,
                        beta_fast = 32.0, beta_slow = 1.0, mscale = 1.0,
                        mscale_all_dim = 1.0>}
      : (tensor<1x7168xbf16>, tensor<?x512xbf16>, tensor<?x64xbf16>,
         tensor<1536x7168xbf16>, tensor<1536xbf16>, tensor<24576x1536xbf16>,
         tensor<576x7168xbf16>, tensor<512xbf16>, tensor<32768x512xbf16>,
         tensor<7168x16384xbf16>)
      -> (tensor<1x7168xbf16>, tensor<?x512xbf16>, tensor<?x64xbf16>)
  return %out, %c_kv, %k_rope
      : tensor<1x7168xbf16>, tensor<?x512xbf16>, tensor<?x64xbf16>
}
