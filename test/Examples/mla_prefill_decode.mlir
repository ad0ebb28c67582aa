// The hand-written DeepSeek-V3 MLA example in examples/ (q LoRA,
// rope_interleave, YaRN, bf16, real V3 sizes): the prefill and decode steps
// parse, verify and print back.
// RUN: moe-opt %moe_src/examples/mla_prefill_decode.mlir | moe-opt | FileCheck %s

// CHECK-LABEL: func.func @mla_prefill(
// CHECK-SAME:    %[[X:[^:]+]]: tensor<?x7168xbf16>
// CHECK:         %[[CKV0:.+]] = tensor.empty() : tensor<0x512xbf16>
// CHECK-NEXT:    %[[KR0:.+]] = tensor.empty() : tensor<0x64xbf16>
// CHECK-NEXT:    %[[OUT:[^,]+]], %[[CKV:[^,]+]], %[[KR:[^ ]+]] = mla.attention %[[X]] cache(%[[CKV0]], %[[KR0]]) q_lora(%{{[^,)]+}}, %{{[^,)]+}}, %{{[^,)]+}}) kv(%{{[^,)]+}}, %{{[^,)]+}}, %{{[^,)]+}}) o(%{{[^,)]+}})
// CHECK-SAME:    {num_heads = 128 : i64, qk_nope_head_dim = 128 : i64, qk_rope_head_dim = 64 : i64, rope_interleave, v_head_dim = 128 : i64,
// CHECK-SAME:    yarn = #mla.yarn<factor = 4.000000e+01, original_max_position_embeddings = 4096, mscale_all_dim = 1.000000e+00>}
// CHECK-SAME:    : (tensor<?x7168xbf16>, tensor<0x512xbf16>, tensor<0x64xbf16>, tensor<1536x7168xbf16>, tensor<1536xbf16>, tensor<24576x1536xbf16>, tensor<576x7168xbf16>, tensor<512xbf16>, tensor<32768x512xbf16>, tensor<7168x16384xbf16>)
// CHECK-SAME:    -> (tensor<?x7168xbf16>, tensor<?x512xbf16>, tensor<?x64xbf16>)
// CHECK-NEXT:    return %[[OUT]], %[[CKV]], %[[KR]]

// CHECK-LABEL: func.func @mla_decode(
// CHECK-SAME:    %[[X:[^:]+]]: tensor<1x7168xbf16>, %[[CKV_IN:[^:]+]]: tensor<?x512xbf16>, %[[KR_IN:[^:]+]]: tensor<?x64xbf16>
// CHECK-NEXT:    %[[OUT:[^,]+]], %[[CKV:[^,]+]], %[[KR:[^ ]+]] = mla.attention %[[X]] cache(%[[CKV_IN]], %[[KR_IN]]) q_lora(%{{[^,)]+}}, %{{[^,)]+}}, %{{[^,)]+}}) kv(%{{[^,)]+}}, %{{[^,)]+}}, %{{[^,)]+}}) o(%{{[^,)]+}})
// CHECK-SAME:    {num_heads = 128 : i64, qk_nope_head_dim = 128 : i64, qk_rope_head_dim = 64 : i64, rope_interleave, v_head_dim = 128 : i64,
// CHECK-SAME:    yarn = #mla.yarn<factor = 4.000000e+01, original_max_position_embeddings = 4096, mscale_all_dim = 1.000000e+00>}
// CHECK-SAME:    : (tensor<1x7168xbf16>, tensor<?x512xbf16>, tensor<?x64xbf16>, tensor<1536x7168xbf16>, tensor<1536xbf16>, tensor<24576x1536xbf16>, tensor<576x7168xbf16>, tensor<512xbf16>, tensor<32768x512xbf16>, tensor<7168x16384xbf16>)
// CHECK-SAME:    -> (tensor<1x7168xbf16>, tensor<?x512xbf16>, tensor<?x64xbf16>)
// CHECK-NEXT:    return %[[OUT]], %[[CKV]], %[[KR]]
