// Round-trip tests of mla.attention (custom and generic forms), of the
// #mla.yarn attribute and of mla.gqa_attention (sizes in its section at the
// end). mla.attention sizes: H = 64, N = 4 heads, D_n = 16,
// D_r = 8, D_v = 16, R_kv = 32, R_q = 24; so q_proj / q_b_proj have
// N*(D_n+D_r) = 96 rows, kv_a_proj R_kv+D_r = 40, kv_b_proj N*(D_n+D_v) = 128,
// and o_proj N*D_v = 64 columns.

// RUN: moe-opt %s | moe-opt | FileCheck %s
// RUN: moe-opt %s --mlir-print-op-generic | moe-opt | FileCheck %s
// RUN: moe-opt %s --emit-bytecode | moe-opt | FileCheck %s

// Prefill with a full query projection and an empty (0-row) cache; all
// optional attributes left at their defaults, so none are printed.
// CHECK-LABEL: func.func @prefill_q_proj(
// CHECK-SAME:    %[[X:[^:]+]]: tensor<5x64xf32>, %[[CKV:[^:]+]]: tensor<0x32xf32>, %[[KR:[^:]+]]: tensor<0x8xf32>,
// CHECK-SAME:    %[[WQ:[^:]+]]: tensor<96x64xf32>, %[[WKVA:[^:]+]]: tensor<40x64xf32>, %[[KVN:[^:]+]]: tensor<32xf32>,
// CHECK-SAME:    %[[WKVB:[^:]+]]: tensor<128x32xf32>, %[[WO:[^:]+]]: tensor<64x64xf32>)
// CHECK:         %[[OUT:[^,]+]], %[[CKV_OUT:[^,]+]], %[[KR_OUT:[^ ]+]] = mla.attention %[[X]] cache(%[[CKV]], %[[KR]]) q(%[[WQ]]) kv(%[[WKVA]], %[[KVN]], %[[WKVB]]) o(%[[WO]])
// CHECK-SAME:    {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64}
// CHECK-SAME:    : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x8xf32>, tensor<96x64xf32>, tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
// CHECK-SAME:    -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>)
// CHECK:         return %[[OUT]], %[[CKV_OUT]], %[[KR_OUT]]
func.func @prefill_q_proj(%x: tensor<5x64xf32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x8xf32>,
                          %wq: tensor<96x64xf32>, %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                          %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>)
    -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>) {
  %out, %ckv_out, %kr_out = mla.attention %x cache(%ckv, %kr) q(%wq)
      kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64,
       qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x8xf32>, tensor<96x64xf32>,
         tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>)
  return %out, %ckv_out, %kr_out : tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>
}

// Prefill with q LoRA, a dynamic number of new tokens and a dynamic cache
// length, rope_interleave on.
// CHECK-LABEL: func.func @prefill_q_lora_dynamic(
// CHECK-SAME:    %[[X:[^:]+]]: tensor<?x64xf32>, %[[CKV:[^:]+]]: tensor<?x32xf32>, %[[KR:[^:]+]]: tensor<?x8xf32>,
// CHECK-SAME:    %[[WQA:[^:]+]]: tensor<24x64xf32>, %[[QN:[^:]+]]: tensor<24xf32>, %[[WQB:[^:]+]]: tensor<96x24xf32>,
// CHECK-SAME:    %[[WKVA:[^:]+]]: tensor<40x64xf32>, %[[KVN:[^:]+]]: tensor<32xf32>, %[[WKVB:[^:]+]]: tensor<128x32xf32>,
// CHECK-SAME:    %[[WO:[^:]+]]: tensor<64x64xf32>)
// CHECK:         mla.attention %[[X]] cache(%[[CKV]], %[[KR]]) q_lora(%[[WQA]], %[[QN]], %[[WQB]]) kv(%[[WKVA]], %[[KVN]], %[[WKVB]]) o(%[[WO]])
// CHECK-SAME:    {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, rope_interleave, v_head_dim = 16 : i64}
// CHECK-SAME:    : (tensor<?x64xf32>, tensor<?x32xf32>, tensor<?x8xf32>, tensor<24x64xf32>, tensor<24xf32>, tensor<96x24xf32>, tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
// CHECK-SAME:    -> (tensor<?x64xf32>, tensor<?x32xf32>, tensor<?x8xf32>)
func.func @prefill_q_lora_dynamic(%x: tensor<?x64xf32>, %ckv: tensor<?x32xf32>, %kr: tensor<?x8xf32>,
                                  %wqa: tensor<24x64xf32>, %qn: tensor<24xf32>, %wqb: tensor<96x24xf32>,
                                  %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>, %wkvb: tensor<128x32xf32>,
                                  %wo: tensor<64x64xf32>)
    -> (tensor<?x64xf32>, tensor<?x32xf32>, tensor<?x8xf32>) {
  %out, %ckv_out, %kr_out = mla.attention %x cache(%ckv, %kr)
      q_lora(%wqa, %qn, %wqb) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64,
       qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, rope_interleave}
      : (tensor<?x64xf32>, tensor<?x32xf32>, tensor<?x8xf32>, tensor<24x64xf32>,
         tensor<24xf32>, tensor<96x24xf32>, tensor<40x64xf32>, tensor<32xf32>,
         tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<?x64xf32>, tensor<?x32xf32>, tensor<?x8xf32>)
  return %out, %ckv_out, %kr_out : tensor<?x64xf32>, tensor<?x32xf32>, tensor<?x8xf32>
}

// Decode: one new token over a cache of dynamic length P; the extended
// caches have P+1 (still dynamic) rows. rope_interleave off.
// CHECK-LABEL: func.func @decode_dynamic_past(
// CHECK:         mla.attention %{{[^,)]+}} cache(%{{[^,)]+}}, %{{[^,)]+}}) q_lora(%{{[^,)]+}}, %{{[^,)]+}}, %{{[^,)]+}}) kv(%{{[^,)]+}}, %{{[^,)]+}}, %{{[^,)]+}}) o(%{{[^,)]+}})
// CHECK-SAME:    {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64}
// CHECK-SAME:    : (tensor<1x64xf32>, tensor<?x32xf32>, tensor<?x8xf32>,
// CHECK-SAME:    -> (tensor<1x64xf32>, tensor<?x32xf32>, tensor<?x8xf32>)
func.func @decode_dynamic_past(%x: tensor<1x64xf32>, %ckv: tensor<?x32xf32>, %kr: tensor<?x8xf32>,
                               %wqa: tensor<24x64xf32>, %qn: tensor<24xf32>, %wqb: tensor<96x24xf32>,
                               %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>, %wkvb: tensor<128x32xf32>,
                               %wo: tensor<64x64xf32>)
    -> (tensor<1x64xf32>, tensor<?x32xf32>, tensor<?x8xf32>) {
  %out, %ckv_out, %kr_out = mla.attention %x cache(%ckv, %kr)
      q_lora(%wqa, %qn, %wqb) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64,
       qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64}
      : (tensor<1x64xf32>, tensor<?x32xf32>, tensor<?x8xf32>, tensor<24x64xf32>,
         tensor<24xf32>, tensor<96x24xf32>, tensor<40x64xf32>, tensor<32xf32>,
         tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<1x64xf32>, tensor<?x32xf32>, tensor<?x8xf32>)
  return %out, %ckv_out, %kr_out : tensor<1x64xf32>, tensor<?x32xf32>, tensor<?x8xf32>
}

// Decode with a static cache: P = 7 cached tokens give P+1 = 8 rows out.
// CHECK-LABEL: func.func @decode_static_past(
// CHECK:         mla.attention
// CHECK-SAME:    : (tensor<1x64xf32>, tensor<7x32xf32>, tensor<7x8xf32>,
// CHECK-SAME:    -> (tensor<1x64xf32>, tensor<8x32xf32>, tensor<8x8xf32>)
func.func @decode_static_past(%x: tensor<1x64xf32>, %ckv: tensor<7x32xf32>, %kr: tensor<7x8xf32>,
                              %wq: tensor<96x64xf32>, %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                              %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>)
    -> (tensor<1x64xf32>, tensor<8x32xf32>, tensor<8x8xf32>) {
  %out, %ckv_out, %kr_out = mla.attention %x cache(%ckv, %kr) q(%wq)
      kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64,
       qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64}
      : (tensor<1x64xf32>, tensor<7x32xf32>, tensor<7x8xf32>, tensor<96x64xf32>,
         tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<1x64xf32>, tensor<8x32xf32>, tensor<8x8xf32>)
  return %out, %ckv_out, %kr_out : tensor<1x64xf32>, tensor<8x32xf32>, tensor<8x8xf32>
}

// YaRN with every parameter written out. beta_fast, beta_slow and mscale
// equal their defaults (32, 1, 1) and are therefore not printed;
// mscale_all_dim differs from its default (0) and is.
// CHECK-LABEL: func.func @yarn_all_params(
// CHECK:         mla.attention
// CHECK-SAME:    {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, rope_interleave, v_head_dim = 16 : i64,
// CHECK-SAME:    yarn = #mla.yarn<factor = 4.000000e+01, original_max_position_embeddings = 4096, mscale_all_dim = 1.000000e+00>}
func.func @yarn_all_params(%x: tensor<5x64xf32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x8xf32>,
                           %wq: tensor<96x64xf32>, %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                           %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>)
    -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>) {
  %out, %ckv_out, %kr_out = mla.attention %x cache(%ckv, %kr) q(%wq)
      kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64,
       qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, rope_interleave,
       yarn = #mla.yarn<factor = 40.0, original_max_position_embeddings = 4096,
                        beta_fast = 32.0, beta_slow = 1.0, mscale = 1.0,
                        mscale_all_dim = 1.0>}
      : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x8xf32>, tensor<96x64xf32>,
         tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>)
  return %out, %ckv_out, %kr_out : tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>
}

// YaRN with only the two required parameters.
// CHECK-LABEL: func.func @yarn_required_params(
// CHECK:         mla.attention
// CHECK-SAME:    yarn = #mla.yarn<factor = 4.000000e+00, original_max_position_embeddings = 2048>}
func.func @yarn_required_params(%x: tensor<5x64xf32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x8xf32>,
                                %wq: tensor<96x64xf32>, %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                                %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>)
    -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>) {
  %out, %ckv_out, %kr_out = mla.attention %x cache(%ckv, %kr) q(%wq)
      kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64,
       qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64,
       yarn = #mla.yarn<factor = 4.0, original_max_position_embeddings = 2048>}
      : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x8xf32>, tensor<96x64xf32>,
         tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>)
  return %out, %ckv_out, %kr_out : tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>
}

// YaRN with every optional parameter away from its default; all are printed,
// in declaration order.
// CHECK-LABEL: func.func @yarn_non_default_params(
// CHECK:         mla.attention
// CHECK-SAME:    yarn = #mla.yarn<factor = 1.600000e+01, original_max_position_embeddings = 8192, beta_fast = 6.400000e+01, beta_slow = 2.500000e-01, mscale = 7.070000e-01, mscale_all_dim = 7.070000e-01>}
func.func @yarn_non_default_params(%x: tensor<5x64xf32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x8xf32>,
                                   %wq: tensor<96x64xf32>, %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                                   %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>)
    -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>) {
  %out, %ckv_out, %kr_out = mla.attention %x cache(%ckv, %kr) q(%wq)
      kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64,
       qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64,
       yarn = #mla.yarn<mscale_all_dim = 0.707, mscale = 0.707, beta_slow = 0.25,
                        beta_fast = 64.0, original_max_position_embeddings = 8192,
                        factor = 16.0>}
      : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x8xf32>, tensor<96x64xf32>,
         tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>)
  return %out, %ckv_out, %kr_out : tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>
}

// Explicit softmax_scale, rms_norm_eps and rope_theta (non-default values are
// printed; the attribute dictionary is printed sorted by name).
// CHECK-LABEL: func.func @explicit_scalars(
// CHECK:         mla.attention
// CHECK-SAME:    {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64,
// CHECK-SAME:    rms_norm_eps = 9.99999974E-6 : f32, rope_theta = 5.000000e+04 : f64,
// CHECK-SAME:    softmax_scale = 1.250000e-01 : f32, v_head_dim = 16 : i64}
func.func @explicit_scalars(%x: tensor<5x64xf32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x8xf32>,
                            %wq: tensor<96x64xf32>, %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                            %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>)
    -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>) {
  %out, %ckv_out, %kr_out = mla.attention %x cache(%ckv, %kr) q(%wq)
      kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64,
       qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64,
       softmax_scale = 0.125 : f32, rms_norm_eps = 1.0e-5 : f32,
       rope_theta = 50000.0 : f64}
      : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x8xf32>, tensor<96x64xf32>,
         tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>)
  return %out, %ckv_out, %kr_out : tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>
}

// Explicitly written default values of rms_norm_eps and rope_theta are
// elided when printed.
// CHECK-LABEL: func.func @explicit_defaults(
// CHECK:         mla.attention
// CHECK-SAME:    {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64}
func.func @explicit_defaults(%x: tensor<5x64xf32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x8xf32>,
                             %wq: tensor<96x64xf32>, %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                             %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>)
    -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>) {
  %out, %ckv_out, %kr_out = mla.attention %x cache(%ckv, %kr) q(%wq)
      kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64,
       qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64,
       rms_norm_eps = 1.0e-6 : f32, rope_theta = 10000.0 : f64}
      : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x8xf32>, tensor<96x64xf32>,
         tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>)
  return %out, %ckv_out, %kr_out : tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>
}

// bf16 weights with f32 activations and an f32 cache.
// CHECK-LABEL: func.func @bf16_weights_f32_activations(
// CHECK:         mla.attention
// CHECK-SAME:    : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x8xf32>, tensor<24x64xbf16>, tensor<24xbf16>, tensor<96x24xbf16>, tensor<40x64xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<64x64xbf16>)
// CHECK-SAME:    -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>)
func.func @bf16_weights_f32_activations(
    %x: tensor<5x64xf32>, %ckv: tensor<0x32xf32>, %kr: tensor<0x8xf32>,
    %wqa: tensor<24x64xbf16>, %qn: tensor<24xbf16>, %wqb: tensor<96x24xbf16>,
    %wkva: tensor<40x64xbf16>, %kvn: tensor<32xbf16>, %wkvb: tensor<128x32xbf16>,
    %wo: tensor<64x64xbf16>)
    -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>) {
  %out, %ckv_out, %kr_out = mla.attention %x cache(%ckv, %kr)
      q_lora(%wqa, %qn, %wqb) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64,
       qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<0x32xf32>, tensor<0x8xf32>, tensor<24x64xbf16>,
         tensor<24xbf16>, tensor<96x24xbf16>, tensor<40x64xbf16>, tensor<32xbf16>,
         tensor<128x32xbf16>, tensor<64x64xbf16>)
      -> (tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>)
  return %out, %ckv_out, %kr_out : tensor<5x64xf32>, tensor<5x32xf32>, tensor<5x8xf32>
}

// A bf16 cache with f32 activations and f32 weights: the extended caches are
// bf16, the output f32.
// CHECK-LABEL: func.func @bf16_cache(
// CHECK:         mla.attention
// CHECK-SAME:    : (tensor<1x64xf32>, tensor<?x32xbf16>, tensor<?x8xbf16>, tensor<96x64xf32>,
// CHECK-SAME:    -> (tensor<1x64xf32>, tensor<?x32xbf16>, tensor<?x8xbf16>)
func.func @bf16_cache(%x: tensor<1x64xf32>, %ckv: tensor<?x32xbf16>, %kr: tensor<?x8xbf16>,
                      %wq: tensor<96x64xf32>, %wkva: tensor<40x64xf32>, %kvn: tensor<32xf32>,
                      %wkvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>)
    -> (tensor<1x64xf32>, tensor<?x32xbf16>, tensor<?x8xbf16>) {
  %out, %ckv_out, %kr_out = mla.attention %x cache(%ckv, %kr) q(%wq)
      kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64,
       qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64}
      : (tensor<1x64xf32>, tensor<?x32xbf16>, tensor<?x8xbf16>, tensor<96x64xf32>,
         tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>)
      -> (tensor<1x64xf32>, tensor<?x32xbf16>, tensor<?x8xbf16>)
  return %out, %ckv_out, %kr_out : tensor<1x64xf32>, tensor<?x32xbf16>, tensor<?x8xbf16>
}

// Everything in f16.
// CHECK-LABEL: func.func @all_f16(
// CHECK:         mla.attention
// CHECK-SAME:    : (tensor<5x64xf16>, tensor<3x32xf16>, tensor<3x8xf16>, tensor<24x64xf16>, tensor<24xf16>, tensor<96x24xf16>, tensor<40x64xf16>, tensor<32xf16>, tensor<128x32xf16>, tensor<64x64xf16>)
// CHECK-SAME:    -> (tensor<5x64xf16>, tensor<8x32xf16>, tensor<8x8xf16>)
func.func @all_f16(%x: tensor<5x64xf16>, %ckv: tensor<3x32xf16>, %kr: tensor<3x8xf16>,
                   %wqa: tensor<24x64xf16>, %qn: tensor<24xf16>, %wqb: tensor<96x24xf16>,
                   %wkva: tensor<40x64xf16>, %kvn: tensor<32xf16>, %wkvb: tensor<128x32xf16>,
                   %wo: tensor<64x64xf16>)
    -> (tensor<5x64xf16>, tensor<8x32xf16>, tensor<8x8xf16>) {
  %out, %ckv_out, %kr_out = mla.attention %x cache(%ckv, %kr)
      q_lora(%wqa, %qn, %wqb) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64,
       qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64}
      : (tensor<5x64xf16>, tensor<3x32xf16>, tensor<3x8xf16>, tensor<24x64xf16>,
         tensor<24xf16>, tensor<96x24xf16>, tensor<40x64xf16>, tensor<32xf16>,
         tensor<128x32xf16>, tensor<64x64xf16>)
      -> (tensor<5x64xf16>, tensor<8x32xf16>, tensor<8x8xf16>)
  return %out, %ckv_out, %kr_out : tensor<5x64xf16>, tensor<8x32xf16>, tensor<8x8xf16>
}

// A prefill step of 5 tokens into an empty bf16 cache, then a decode step
// that consumes the caches the prefill returned (5 -> 6 rows).
// CHECK-LABEL: func.func @prefill_then_decode(
// CHECK-SAME:    %[[X:[^:]+]]: tensor<5x64xf32>, %[[TOK:[^:]+]]: tensor<1x64xf32>, %[[CKV:[^:]+]]: tensor<0x32xbf16>, %[[KR:[^:]+]]: tensor<0x8xbf16>,
// CHECK-SAME:    %[[WQA:[^:]+]]: tensor<24x64xbf16>, %[[QN:[^:]+]]: tensor<24xbf16>, %[[WQB:[^:]+]]: tensor<96x24xbf16>,
// CHECK-SAME:    %[[WKVA:[^:]+]]: tensor<40x64xbf16>, %[[KVN:[^:]+]]: tensor<32xbf16>, %[[WKVB:[^:]+]]: tensor<128x32xbf16>,
// CHECK-SAME:    %[[WO:[^:]+]]: tensor<64x64xbf16>)
// CHECK:         %[[OUT0:[^,]+]], %[[CKV1:[^,]+]], %[[KR1:[^ ]+]] = mla.attention %[[X]] cache(%[[CKV]], %[[KR]]) q_lora(%[[WQA]], %[[QN]], %[[WQB]]) kv(%[[WKVA]], %[[KVN]], %[[WKVB]]) o(%[[WO]])
// CHECK-SAME:    -> (tensor<5x64xf32>, tensor<5x32xbf16>, tensor<5x8xbf16>)
// CHECK:         %[[OUT1:[^,]+]], %[[CKV2:[^,]+]], %[[KR2:[^ ]+]] = mla.attention %[[TOK]] cache(%[[CKV1]], %[[KR1]]) q_lora(%[[WQA]], %[[QN]], %[[WQB]]) kv(%[[WKVA]], %[[KVN]], %[[WKVB]]) o(%[[WO]])
// CHECK-SAME:    : (tensor<1x64xf32>, tensor<5x32xbf16>, tensor<5x8xbf16>,
// CHECK-SAME:    -> (tensor<1x64xf32>, tensor<6x32xbf16>, tensor<6x8xbf16>)
// CHECK:         return %[[OUT0]], %[[OUT1]], %[[CKV2]], %[[KR2]]
func.func @prefill_then_decode(
    %x: tensor<5x64xf32>, %tok: tensor<1x64xf32>,
    %ckv0: tensor<0x32xbf16>, %kr0: tensor<0x8xbf16>,
    %wqa: tensor<24x64xbf16>, %qn: tensor<24xbf16>, %wqb: tensor<96x24xbf16>,
    %wkva: tensor<40x64xbf16>, %kvn: tensor<32xbf16>, %wkvb: tensor<128x32xbf16>,
    %wo: tensor<64x64xbf16>)
    -> (tensor<5x64xf32>, tensor<1x64xf32>, tensor<6x32xbf16>, tensor<6x8xbf16>) {
  %out0, %ckv1, %kr1 = mla.attention %x cache(%ckv0, %kr0)
      q_lora(%wqa, %qn, %wqb) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64,
       qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, rope_interleave}
      : (tensor<5x64xf32>, tensor<0x32xbf16>, tensor<0x8xbf16>, tensor<24x64xbf16>,
         tensor<24xbf16>, tensor<96x24xbf16>, tensor<40x64xbf16>, tensor<32xbf16>,
         tensor<128x32xbf16>, tensor<64x64xbf16>)
      -> (tensor<5x64xf32>, tensor<5x32xbf16>, tensor<5x8xbf16>)
  %out1, %ckv2, %kr2 = mla.attention %tok cache(%ckv1, %kr1)
      q_lora(%wqa, %qn, %wqb) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 4 : i64, qk_nope_head_dim = 16 : i64,
       qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, rope_interleave}
      : (tensor<1x64xf32>, tensor<5x32xbf16>, tensor<5x8xbf16>, tensor<24x64xbf16>,
         tensor<24xbf16>, tensor<96x24xbf16>, tensor<40x64xbf16>, tensor<32xbf16>,
         tensor<128x32xbf16>, tensor<64x64xbf16>)
      -> (tensor<1x64xf32>, tensor<6x32xbf16>, tensor<6x8xbf16>)
  return %out0, %out1, %ckv2, %kr2
      : tensor<5x64xf32>, tensor<1x64xf32>, tensor<6x32xbf16>, tensor<6x8xbf16>
}

//===----------------------------------------------------------------------===//
// mla.gqa_attention. Sizes: H = 64, N = 4 query heads, KV = 2 key/value
// heads, D = 16; so q_proj and o_proj are [N*D = 64, 64] / [64, 64], k_proj
// and v_proj [KV*D = 32, 64], the caches [P, 2, 16], the biases [64], [32],
// [32] and the QK norms [16].
//===----------------------------------------------------------------------===//

// Prefill into an empty cache, no bias, no QK norm; rope_theta and
// rms_norm_eps at their defaults, so not printed.
// CHECK-LABEL: func.func @gqa_prefill(
// CHECK-SAME:    %[[X:[^:]+]]: tensor<5x64xf32>, %[[KC:[^:]+]]: tensor<0x2x16xf32>, %[[VC:[^:]+]]: tensor<0x2x16xf32>,
// CHECK-SAME:    %[[WQ:[^:]+]]: tensor<64x64xf32>, %[[WK:[^:]+]]: tensor<32x64xf32>, %[[WV:[^:]+]]: tensor<32x64xf32>, %[[WO:[^:]+]]: tensor<64x64xf32>)
// CHECK:         %[[OUT:[^,]+]], %[[K:[^,]+]], %[[V:[^ ]+]] = mla.gqa_attention %[[X]] cache(%[[KC]], %[[VC]]) q(%[[WQ]]) k(%[[WK]]) v(%[[WV]]) o(%[[WO]])
// CHECK-SAME:    {head_dim = 16 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64}
// CHECK-SAME:    : (tensor<5x64xf32>, tensor<0x2x16xf32>, tensor<0x2x16xf32>, tensor<64x64xf32>, tensor<32x64xf32>, tensor<32x64xf32>, tensor<64x64xf32>)
// CHECK-SAME:    -> (tensor<5x64xf32>, tensor<5x2x16xf32>, tensor<5x2x16xf32>)
// CHECK:         return %[[OUT]], %[[K]], %[[V]]
func.func @gqa_prefill(%x: tensor<5x64xf32>, %kc: tensor<0x2x16xf32>, %vc: tensor<0x2x16xf32>,
                       %wq: tensor<64x64xf32>, %wk: tensor<32x64xf32>, %wv: tensor<32x64xf32>,
                       %wo: tensor<64x64xf32>)
    -> (tensor<5x64xf32>, tensor<5x2x16xf32>, tensor<5x2x16xf32>) {
  %out, %k, %v = mla.gqa_attention %x cache(%kc, %vc) q(%wq) k(%wk) v(%wv) o(%wo)
      {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64,
       rope_theta = 10000.0 : f64, rms_norm_eps = 1.0e-6 : f32}
      : (tensor<5x64xf32>, tensor<0x2x16xf32>, tensor<0x2x16xf32>, tensor<64x64xf32>,
         tensor<32x64xf32>, tensor<32x64xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x2x16xf32>, tensor<5x2x16xf32>)
  return %out, %k, %v : tensor<5x64xf32>, tensor<5x2x16xf32>, tensor<5x2x16xf32>
}

// Mixtral: a sliding window and θ = 1e6, dynamic S and P.
// CHECK-LABEL: func.func @gqa_mixtral_dynamic(
// CHECK:         mla.gqa_attention %{{[^ ]+}} cache(%{{[^,]+}}, %{{[^)]+}}) q(%{{[^)]+}}) k(%{{[^)]+}}) v(%{{[^)]+}}) o(%{{[^)]+}})
// CHECK-SAME:    {head_dim = 16 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, rope_theta = 1.000000e+06 : f64, sliding_window = 4096 : i64}
// CHECK-SAME:    : (tensor<?x64xf32>, tensor<?x2x16xf32>, tensor<?x2x16xf32>,
// CHECK-SAME:    -> (tensor<?x64xf32>, tensor<?x2x16xf32>, tensor<?x2x16xf32>)
func.func @gqa_mixtral_dynamic(%x: tensor<?x64xf32>, %kc: tensor<?x2x16xf32>, %vc: tensor<?x2x16xf32>,
                               %wq: tensor<64x64xf32>, %wk: tensor<32x64xf32>, %wv: tensor<32x64xf32>,
                               %wo: tensor<64x64xf32>)
    -> (tensor<?x64xf32>, tensor<?x2x16xf32>, tensor<?x2x16xf32>) {
  %out, %k, %v = mla.gqa_attention %x cache(%kc, %vc) q(%wq) k(%wk) v(%wv) o(%wo)
      {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64,
       rope_theta = 1.0e6 : f64, sliding_window = 4096 : i64}
      : (tensor<?x64xf32>, tensor<?x2x16xf32>, tensor<?x2x16xf32>, tensor<64x64xf32>,
         tensor<32x64xf32>, tensor<32x64xf32>, tensor<64x64xf32>)
      -> (tensor<?x64xf32>, tensor<?x2x16xf32>, tensor<?x2x16xf32>)
  return %out, %k, %v : tensor<?x64xf32>, tensor<?x2x16xf32>, tensor<?x2x16xf32>
}

// Qwen2-MoE: projection biases; decode against a static cache of P = 7
// tokens gives 8 rows out.
// CHECK-LABEL: func.func @gqa_qwen2_bias(
// CHECK-SAME:    %[[BQ:[^:]+]]: tensor<64xf32>, %[[BK:[^:]+]]: tensor<32xf32>, %[[BV:[^:]+]]: tensor<32xf32>)
// CHECK:         mla.gqa_attention %{{[^ ]+}} cache(%{{[^,]+}}, %{{[^)]+}}) q(%{{[^)]+}}) k(%{{[^)]+}}) v(%{{[^)]+}}) o(%{{[^)]+}}) bias(%[[BQ]], %[[BK]], %[[BV]])
// CHECK-SAME:    {head_dim = 16 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64}
// CHECK-SAME:    : (tensor<1x64xf32>, tensor<7x2x16xf32>, tensor<7x2x16xf32>, tensor<64x64xf32>, tensor<32x64xf32>, tensor<32x64xf32>, tensor<64x64xf32>, tensor<64xf32>, tensor<32xf32>, tensor<32xf32>)
// CHECK-SAME:    -> (tensor<1x64xf32>, tensor<8x2x16xf32>, tensor<8x2x16xf32>)
func.func @gqa_qwen2_bias(%x: tensor<1x64xf32>, %kc: tensor<7x2x16xf32>, %vc: tensor<7x2x16xf32>,
                          %wq: tensor<64x64xf32>, %wk: tensor<32x64xf32>, %wv: tensor<32x64xf32>,
                          %wo: tensor<64x64xf32>,
                          %bq: tensor<64xf32>, %bk: tensor<32xf32>, %bv: tensor<32xf32>)
    -> (tensor<1x64xf32>, tensor<8x2x16xf32>, tensor<8x2x16xf32>) {
  %out, %k, %v = mla.gqa_attention %x cache(%kc, %vc) q(%wq) k(%wk) v(%wv) o(%wo)
      bias(%bq, %bk, %bv)
      {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64}
      : (tensor<1x64xf32>, tensor<7x2x16xf32>, tensor<7x2x16xf32>, tensor<64x64xf32>,
         tensor<32x64xf32>, tensor<32x64xf32>, tensor<64x64xf32>,
         tensor<64xf32>, tensor<32xf32>, tensor<32xf32>)
      -> (tensor<1x64xf32>, tensor<8x2x16xf32>, tensor<8x2x16xf32>)
  return %out, %k, %v : tensor<1x64xf32>, tensor<8x2x16xf32>, tensor<8x2x16xf32>
}

// Qwen3-MoE: QK norm, bf16 weights, a bf16 cache and f32 activations; the
// extended caches are bf16, the output f32. rms_norm_eps is written at its
// default (1e-6) and therefore not printed.
// CHECK-LABEL: func.func @gqa_qwen3_qk_norm(
// CHECK-SAME:    %[[QN:[^:]+]]: tensor<16xbf16>, %[[KN:[^:]+]]: tensor<16xbf16>)
// CHECK:         mla.gqa_attention %{{[^ ]+}} cache(%{{[^,]+}}, %{{[^)]+}}) q(%{{[^)]+}}) k(%{{[^)]+}}) v(%{{[^)]+}}) o(%{{[^)]+}}) qk_norm(%[[QN]], %[[KN]])
// CHECK-SAME:    {head_dim = 16 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, rope_theta = 1.000000e+06 : f64}
// CHECK-SAME:    : (tensor<1x64xf32>, tensor<?x2x16xbf16>, tensor<?x2x16xbf16>, tensor<64x64xbf16>, tensor<32x64xbf16>, tensor<32x64xbf16>, tensor<64x64xbf16>, tensor<16xbf16>, tensor<16xbf16>)
// CHECK-SAME:    -> (tensor<1x64xf32>, tensor<?x2x16xbf16>, tensor<?x2x16xbf16>)
func.func @gqa_qwen3_qk_norm(%x: tensor<1x64xf32>, %kc: tensor<?x2x16xbf16>, %vc: tensor<?x2x16xbf16>,
                             %wq: tensor<64x64xbf16>, %wk: tensor<32x64xbf16>, %wv: tensor<32x64xbf16>,
                             %wo: tensor<64x64xbf16>, %qn: tensor<16xbf16>, %kn: tensor<16xbf16>)
    -> (tensor<1x64xf32>, tensor<?x2x16xbf16>, tensor<?x2x16xbf16>) {
  %out, %k, %v = mla.gqa_attention %x cache(%kc, %vc) q(%wq) k(%wk) v(%wv) o(%wo)
      qk_norm(%qn, %kn)
      {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64,
       rope_theta = 1.0e6 : f64, rms_norm_eps = 1.0e-6 : f32}
      : (tensor<1x64xf32>, tensor<?x2x16xbf16>, tensor<?x2x16xbf16>, tensor<64x64xbf16>,
         tensor<32x64xbf16>, tensor<32x64xbf16>, tensor<64x64xbf16>,
         tensor<16xbf16>, tensor<16xbf16>)
      -> (tensor<1x64xf32>, tensor<?x2x16xbf16>, tensor<?x2x16xbf16>)
  return %out, %k, %v : tensor<1x64xf32>, tensor<?x2x16xbf16>, tensor<?x2x16xbf16>
}

// Multi-head attention (KV = N = 4), both optional groups, an explicit
// softmax scale and a non-default epsilon, everything in f16.
// CHECK-LABEL: func.func @gqa_mha_everything(
// CHECK:         mla.gqa_attention %{{[^ ]+}} cache(%{{[^,]+}}, %{{[^)]+}}) q(%{{[^)]+}}) k(%{{[^)]+}}) v(%{{[^)]+}}) o(%{{[^)]+}}) bias(%{{[^,]+}}, %{{[^,]+}}, %{{[^)]+}}) qk_norm(%{{[^,]+}}, %{{[^)]+}})
// CHECK-SAME:    {head_dim = 16 : i64, num_heads = 4 : i64, num_kv_heads = 4 : i64, rms_norm_eps = 9.99999974E-6 : f32, softmax_scale = 1.250000e-01 : f32}
// CHECK-SAME:    -> (tensor<3x64xf16>, tensor<5x4x16xf16>, tensor<5x4x16xf16>)
func.func @gqa_mha_everything(%x: tensor<3x64xf16>, %kc: tensor<2x4x16xf16>, %vc: tensor<2x4x16xf16>,
                              %wq: tensor<64x64xf16>, %wk: tensor<64x64xf16>, %wv: tensor<64x64xf16>,
                              %wo: tensor<64x64xf16>,
                              %bq: tensor<64xf16>, %bk: tensor<64xf16>, %bv: tensor<64xf16>,
                              %qn: tensor<16xf16>, %kn: tensor<16xf16>)
    -> (tensor<3x64xf16>, tensor<5x4x16xf16>, tensor<5x4x16xf16>) {
  %out, %k, %v = mla.gqa_attention %x cache(%kc, %vc) q(%wq) k(%wk) v(%wv) o(%wo)
      bias(%bq, %bk, %bv) qk_norm(%qn, %kn)
      {num_heads = 4 : i64, num_kv_heads = 4 : i64, head_dim = 16 : i64,
       softmax_scale = 0.125 : f32, rms_norm_eps = 1.0e-5 : f32}
      : (tensor<3x64xf16>, tensor<2x4x16xf16>, tensor<2x4x16xf16>, tensor<64x64xf16>,
         tensor<64x64xf16>, tensor<64x64xf16>, tensor<64x64xf16>,
         tensor<64xf16>, tensor<64xf16>, tensor<64xf16>, tensor<16xf16>, tensor<16xf16>)
      -> (tensor<3x64xf16>, tensor<5x4x16xf16>, tensor<5x4x16xf16>)
  return %out, %k, %v : tensor<3x64xf16>, tensor<5x4x16xf16>, tensor<5x4x16xf16>
}

// A prefill step of 5 tokens, then a decode step that consumes the caches
// the prefill returned (5 -> 6 rows).
// CHECK-LABEL: func.func @gqa_prefill_then_decode(
// CHECK-SAME:    %[[X:[^:]+]]: tensor<5x64xf32>, %[[TOK:[^:]+]]: tensor<1x64xf32>, %[[KC:[^:]+]]: tensor<0x2x16xf32>, %[[VC:[^:]+]]: tensor<0x2x16xf32>,
// CHECK:         %[[OUT0:[^,]+]], %[[K1:[^,]+]], %[[V1:[^ ]+]] = mla.gqa_attention %[[X]] cache(%[[KC]], %[[VC]])
// CHECK-SAME:    -> (tensor<5x64xf32>, tensor<5x2x16xf32>, tensor<5x2x16xf32>)
// CHECK:         %[[OUT1:[^,]+]], %[[K2:[^,]+]], %[[V2:[^ ]+]] = mla.gqa_attention %[[TOK]] cache(%[[K1]], %[[V1]])
// CHECK-SAME:    -> (tensor<1x64xf32>, tensor<6x2x16xf32>, tensor<6x2x16xf32>)
// CHECK:         return %[[OUT0]], %[[OUT1]], %[[K2]], %[[V2]]
func.func @gqa_prefill_then_decode(
    %x: tensor<5x64xf32>, %tok: tensor<1x64xf32>,
    %kc: tensor<0x2x16xf32>, %vc: tensor<0x2x16xf32>,
    %wq: tensor<64x64xf32>, %wk: tensor<32x64xf32>, %wv: tensor<32x64xf32>,
    %wo: tensor<64x64xf32>)
    -> (tensor<5x64xf32>, tensor<1x64xf32>, tensor<6x2x16xf32>, tensor<6x2x16xf32>) {
  %out0, %k1, %v1 = mla.gqa_attention %x cache(%kc, %vc) q(%wq) k(%wk) v(%wv) o(%wo)
      {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64}
      : (tensor<5x64xf32>, tensor<0x2x16xf32>, tensor<0x2x16xf32>, tensor<64x64xf32>,
         tensor<32x64xf32>, tensor<32x64xf32>, tensor<64x64xf32>)
      -> (tensor<5x64xf32>, tensor<5x2x16xf32>, tensor<5x2x16xf32>)
  %out1, %k2, %v2 = mla.gqa_attention %tok cache(%k1, %v1) q(%wq) k(%wk) v(%wv) o(%wo)
      {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 16 : i64}
      : (tensor<1x64xf32>, tensor<5x2x16xf32>, tensor<5x2x16xf32>, tensor<64x64xf32>,
         tensor<32x64xf32>, tensor<32x64xf32>, tensor<64x64xf32>)
      -> (tensor<1x64xf32>, tensor<6x2x16xf32>, tensor<6x2x16xf32>)
  return %out0, %out1, %k2, %v2
      : tensor<5x64xf32>, tensor<1x64xf32>, tensor<6x2x16xf32>, tensor<6x2x16xf32>
}
