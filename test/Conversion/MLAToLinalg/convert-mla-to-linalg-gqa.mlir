// RUN: moe-opt %s --split-input-file --convert-mla-to-linalg | FileCheck %s
// RUN: moe-opt %s --split-input-file --moe-cpu-pipeline | FileCheck %s --check-prefix=LLVM
// Structure of the mla.gqa_attention lowering; the numbers are checked end to
// end against the reference in test/Integration (test_gqa.py).

// Decode of one token against a dynamic cache of P tokens. Sizes: H = 16,
// N = 4 query heads, KV = 2 KV heads (G = 2), D = 4.
// Query head n reads KV head n floordiv 2, for the scores and for the values.
// CHECK-DAG:   #[[$KEYS:.+]] = affine_map<(d0, d1, d2, d3) -> (d2, d0 floordiv 2, d3)>
// CHECK-DAG:   #[[$VALUES:.+]] = affine_map<(d0, d1, d2, d3) -> (d3, d1 floordiv 2, d2)>
// CHECK-LABEL: func.func @decode
// CHECK-SAME:    %[[X:[a-z0-9]+]]: tensor<1x16xf32>, %[[KC:[a-z0-9]+]]: tensor<?x2x4xf32>, %[[VC:[a-z0-9]+]]: tensor<?x2x4xf32>
// CHECK-SAME:    %[[WQ:[a-z0-9]+]]: tensor<16x16xf32>, %[[WK:[a-z0-9]+]]: tensor<8x16xf32>, %[[WV:[a-z0-9]+]]: tensor<8x16xf32>, %[[WO:[a-z0-9]+]]: tensor<16x16xf32>
// CHECK-NOT:   mla.
// CHECK:       %[[P:.+]] = tensor.dim %[[KC]], %{{.+}} : tensor<?x2x4xf32>
// The three projections: the vectorized x · Wᵀ kernel, viewed per head.
// CHECK:       %[[QF:.+]] = scf.forall
// CHECK:         vector.transfer_read %[[WQ]]
// CHECK:         vector.fma
// CHECK:       %[[Q:.+]] = tensor.expand_shape %[[QF]] {{\[\[}}0], [1, 2]] output_shape [1, 4, 4] : tensor<1x16xf32> into tensor<1x4x4xf32>
// CHECK:       %[[KF:.+]] = scf.forall
// CHECK:         vector.transfer_read %[[WK]]
// CHECK:       %[[K:.+]] = tensor.expand_shape %[[KF]] {{\[\[}}0], [1, 2]] output_shape [1, 2, 4] : tensor<1x8xf32> into tensor<1x2x4xf32>
// CHECK:       %[[VF:.+]] = scf.forall
// CHECK:         vector.transfer_read %[[WV]]
// CHECK:       %[[V:.+]] = tensor.expand_shape %[[VF]] {{\[\[}}0], [1, 2]] output_shape [1, 2, 4] : tensor<1x8xf32> into tensor<1x2x4xf32>
// RoPE tables as HF computes them: inv_freq (θ = 1e4) in f32, the angle
// f32(P + s) · inv_freq in f32, its cos and sin (evaluated in f64) rounded
// to f32.
// CHECK:       arith.constant dense<[1.000000e+00, 0.00999999977]> : tensor<2xf32>
// CHECK:       %[[TABLES:.+]]:2 = linalg.generic
// CHECK:         %[[S:.+]] = linalg.index 0
// CHECK:         %[[POS:.+]] = arith.addi %[[P]], %[[S]]
// CHECK:         %[[POSI:.+]] = arith.index_cast %[[POS]] : index to i64
// CHECK:         %[[POSF:.+]] = arith.sitofp %[[POSI]] : i64 to f32
// CHECK:         %[[ANGLE:.+]] = arith.mulf %[[POSF]], %{{.+}} : f32
// CHECK:         %[[WIDE:.+]] = arith.extf %[[ANGLE]] : f32 to f64
// CHECK:         math.cos %[[WIDE]] : f64
// CHECK:         math.sin %[[WIDE]] : f64
// CHECK:         arith.truncf {{.*}} : f64 to f32
// Rotation of the halves (x[i], x[i + D/2]) of q, then of k.
// CHECK:       %[[Q0:.+]] = tensor.extract_slice %[[Q]][0, 0, 0] [1, 4, 2] [1, 1, 1]
// CHECK:       %[[Q1:.+]] = tensor.extract_slice %[[Q]][0, 0, 2] [1, 4, 2] [1, 1, 1]
// CHECK:       %[[QROT:.+]]:2 = linalg.generic {{.*}} ins(%[[Q0]], %[[Q1]], %[[TABLES]]#0, %[[TABLES]]#1
// CHECK:         arith.subf
// CHECK:         arith.addf
// CHECK:       %[[K0:.+]] = tensor.extract_slice %[[K]][0, 0, 0] [1, 2, 2] [1, 1, 1]
// CHECK:       %[[K1:.+]] = tensor.extract_slice %[[K]][0, 0, 2] [1, 2, 2] [1, 1, 1]
// CHECK:       %[[KROT:.+]]:2 = linalg.generic {{.*}} ins(%[[K0]], %[[K1]], %[[TABLES]]#0, %[[TABLES]]#1
// The rotated q, then the caches: the P old rows, the new rows at row P.
// CHECK:       %[[QA:.+]] = tensor.insert_slice %[[QROT]]#0 into %{{.+}}[0, 0, 0] [1, 4, 2] [1, 1, 1]
// CHECK:       %[[QALL:.+]] = tensor.insert_slice %[[QROT]]#1 into %[[QA]][0, 0, 2] [1, 4, 2] [1, 1, 1]
// CHECK:       %[[KA:.+]] = tensor.insert_slice %[[KC]] into %{{.+}}[0, 0, 0]
// CHECK:       %[[KB:.+]] = tensor.insert_slice %[[KROT]]#0 into %[[KA]][%[[P]], 0, 0] [1, 2, 2] [1, 1, 1]
// CHECK:       %[[KALL:.+]] = tensor.insert_slice %[[KROT]]#1 into %[[KB]][%[[P]], 0, 2] [1, 2, 2] [1, 1, 1]
// CHECK:       %[[VA:.+]] = tensor.insert_slice %[[VC]] into %{{.+}}[0, 0, 0]
// CHECK:       %[[VALL:.+]] = tensor.insert_slice %[[V]] into %[[VA]][%[[P]], 0, 0] [1, 2, 4] [1, 1, 1]
// Scores [N, S, P+S]: q · k over D, query head n against KV head n / 2.
// CHECK:       %[[SCORES:.+]] = linalg.generic {indexing_maps = [#{{.+}}, #[[$KEYS]], #{{.+}}], iterator_types = ["parallel", "parallel", "parallel", "reduction"]} ins(%[[QALL]], %[[KALL]] : tensor<1x4x4xf32>, tensor<?x2x4xf32>) outs(%{{.+}} : tensor<4x1x?xf32>)
// Causal softmax with the scale D^-0.5 = 0.5: key j visible when j <= P + s.
// CHECK:       arith.constant 5.000000e-01 : f32
// CHECK:       linalg.generic {{.*}} ins(%[[SCORES]] : tensor<4x1x?xf32>)
// CHECK:         arith.cmpi sle
// CHECK-NOT:     arith.andi
// CHECK:         arith.maximumf
// CHECK:       linalg.generic
// CHECK:         math.exp
// Weighted sum of the values (KV head n / 2), divided by the denominator.
// CHECK:       linalg.generic {indexing_maps = [#{{.+}}, #[[$VALUES]], #{{.+}}], {{.*}} ins(%{{.+}}, %[[VALL]] : tensor<4x1x?xf32>, tensor<?x2x4xf32>) outs(%{{.+}} : tensor<1x4x4xf32>)
// CHECK:       %[[O:.+]] = linalg.generic
// CHECK:         arith.divf
// Heads concatenated [S, N·D], output projection through the kernel.
// CHECK:       %[[OFLAT:.+]] = tensor.collapse_shape %[[O]] {{\[\[}}0], [1, 2]] : tensor<1x4x4xf32> into tensor<1x16xf32>
// CHECK:       %[[OUT:.+]] = scf.forall
// CHECK:         vector.transfer_read %[[OFLAT]]
// CHECK:         vector.transfer_read %[[WO]]
// CHECK-NOT:   mla.
// CHECK:       return %[[OUT]], %[[KALL]], %[[VALL]]
// LLVM-LABEL:  llvm.func @decode
// LLVM-NOT:    mla.
// LLVM:        llvm.return
func.func @decode(%x: tensor<1x16xf32>, %kc: tensor<?x2x4xf32>, %vc: tensor<?x2x4xf32>,
                  %wq: tensor<16x16xf32>, %wk: tensor<8x16xf32>, %wv: tensor<8x16xf32>,
                  %wo: tensor<16x16xf32>)
    -> (tensor<1x16xf32>, tensor<?x2x4xf32>, tensor<?x2x4xf32>) {
  %out, %k, %v = mla.gqa_attention %x cache(%kc, %vc) q(%wq) k(%wk) v(%wv) o(%wo)
      {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 4 : i64}
      : (tensor<1x16xf32>, tensor<?x2x4xf32>, tensor<?x2x4xf32>, tensor<16x16xf32>,
         tensor<8x16xf32>, tensor<8x16xf32>, tensor<16x16xf32>)
      -> (tensor<1x16xf32>, tensor<?x2x4xf32>, tensor<?x2x4xf32>)
  return %out, %k, %v : tensor<1x16xf32>, tensor<?x2x4xf32>, tensor<?x2x4xf32>
}

// -----

// Prefill of a dynamic S tokens into an empty bf16 cache: Qwen2 biases,
// Qwen3 QK norm, bf16 weights, a sliding window of 3, θ = 1e6 and an
// explicit softmax scale; multi-query (KV = 1, G = 4). Sizes: H = 16, N = 4,
// D = 4.
// CHECK-DAG:   #[[$BIAS:.+]] = affine_map<(d0, d1) -> (d1)>
// CHECK-DAG:   #[[$ROWS:.+]] = affine_map<(d0, d1, d2) -> (d0, d1)>
// CHECK-DAG:   #[[$MQA:.+]] = affine_map<(d0, d1, d2, d3) -> (d2, d0 floordiv 4, d3)>
// CHECK-LABEL: func.func @prefill
// CHECK-SAME:    %[[BQ:[a-z0-9]+]]: tensor<16xbf16>, %[[BK:[a-z0-9]+]]: tensor<4xbf16>, %[[BV:[a-z0-9]+]]: tensor<4xbf16>, %[[QN:[a-z0-9]+]]: tensor<4xbf16>, %[[KN:[a-z0-9]+]]: tensor<4xbf16>
// CHECK-NOT:   mla.
// The biases are added to the f32 projections in place.
// CHECK:       %[[QF:.+]] = scf.forall
// CHECK:       %[[QB:.+]] = linalg.generic {indexing_maps = [#[[$BIAS]], #{{.+}}], iterator_types = ["parallel", "parallel"]} ins(%[[BQ]] : tensor<16xbf16>) outs(%[[QF]] : tensor<?x16xf32>)
// CHECK:         arith.extf %{{.+}} : bf16 to f32
// CHECK:         arith.addf
// CHECK:       %[[Q:.+]] = tensor.expand_shape %[[QB]] {{\[\[}}0], [1, 2]] output_shape [%{{.+}}, 4, 4] : tensor<?x16xf32> into tensor<?x4x4xf32>
// CHECK:       ins(%[[BK]] : tensor<4xbf16>)
// CHECK:       %[[K:.+]] = tensor.expand_shape {{.*}} into tensor<?x1x4xf32>
// CHECK:       ins(%[[BV]] : tensor<4xbf16>)
// CHECK:       tensor.expand_shape {{.*}} into tensor<?x1x4xf32>
// RMSNorm of every head of q, then of k, over D (eps 1e-6).
// CHECK:       %[[SQ:.+]] = linalg.generic {indexing_maps = [#{{.+}}, #[[$ROWS]]], iterator_types = ["parallel", "parallel", "reduction"]} ins(%[[Q]] : tensor<?x4x4xf32>)
// CHECK:       arith.constant 9.99999997E-7 : f32
// CHECK:       %[[QNORMED:.+]] = linalg.generic {{.*}} ins(%[[Q]], %[[SQ]], %[[QN]] : tensor<?x4x4xf32>, tensor<?x4xf32>, tensor<4xbf16>)
// CHECK:         math.sqrt
// CHECK:       linalg.generic {{.*}} ins(%[[K]] : tensor<?x1x4xf32>)
// CHECK:       %[[KNORMED:.+]] = linalg.generic {{.*}} ins(%[[K]], %{{.+}}, %[[KN]] : tensor<?x1x4xf32>, tensor<?x1xf32>, tensor<4xbf16>)
// RoPE (θ = 1e6: inv_freq_1 = f32(1 / 1e6^0.5)) on the normalized q and k;
// the new keys rounded to bf16 in the rotation.
// CHECK:       arith.constant dense<[1.000000e+00, 1.000000e-03]> : tensor<2xf32>
// CHECK:       tensor.extract_slice %[[QNORMED]][0, 0, 0]
// CHECK:       tensor.extract_slice %[[KNORMED]][0, 0, 0]
// CHECK:       linalg.generic
// CHECK:         arith.truncf {{.*}} : f32 to bf16
// CHECK:         arith.truncf {{.*}} : f32 to bf16
// CHECK:         linalg.yield {{.*}} : bf16, bf16
// CHECK:       tensor.insert_slice {{.*}} : tensor<0x1x4xbf16> into tensor<?x1x4xbf16>
// The new values rounded to bf16.
// CHECK:       arith.truncf {{.*}} : f32 to bf16
// CHECK:       tensor.insert_slice {{.*}} : tensor<?x1x4xbf16> into tensor<?x1x4xbf16>
// Every query head reads the one KV head.
// CHECK:       linalg.generic {indexing_maps = [#{{.+}}, #[[$MQA]], #{{.+}}]
// CHECK:         arith.extf %{{.+}} : bf16 to f32
// The explicit scale; the window: key j visible when j <= P + s and
// P + s - j < 3.
// CHECK:       arith.constant 1.250000e-01 : f32
// CHECK:       linalg.generic
// CHECK:         %[[LAST:.+]] = arith.addi
// CHECK:         %[[CAUSAL:.+]] = arith.cmpi sle, %[[J:.+]], %[[LAST]] : index
// CHECK:         %[[DIST:.+]] = arith.subi %[[LAST]], %[[J]] : index
// CHECK:         %[[INWIN:.+]] = arith.cmpi slt, %[[DIST]], %c3 : index
// CHECK:         arith.andi %[[CAUSAL]], %[[INWIN]] : i1
// CHECK:       math.exp
// CHECK:       tensor.collapse_shape {{.*}} into tensor<?x16xf32>
// The output keeps the activations' type (f32); no bf16 rounding.
// CHECK:       %[[OUT:.+]] = scf.forall
// CHECK-NOT:   arith.truncf
// CHECK:       return %[[OUT]]
// LLVM-LABEL:  llvm.func @prefill
// LLVM-NOT:    mla.
// LLVM:        llvm.return
func.func @prefill(%x: tensor<?x16xf32>, %wq: tensor<16x16xbf16>, %wk: tensor<4x16xbf16>,
                   %wv: tensor<4x16xbf16>, %wo: tensor<16x16xbf16>,
                   %bq: tensor<16xbf16>, %bk: tensor<4xbf16>, %bv: tensor<4xbf16>,
                   %qn: tensor<4xbf16>, %kn: tensor<4xbf16>)
    -> (tensor<?x16xf32>, tensor<?x1x4xbf16>, tensor<?x1x4xbf16>) {
  %kc = tensor.empty() : tensor<0x1x4xbf16>
  %vc = tensor.empty() : tensor<0x1x4xbf16>
  %out, %k, %v = mla.gqa_attention %x cache(%kc, %vc) q(%wq) k(%wk) v(%wv) o(%wo)
      bias(%bq, %bk, %bv) qk_norm(%qn, %kn)
      {num_heads = 4 : i64, num_kv_heads = 1 : i64, head_dim = 4 : i64,
       rope_theta = 1.0e6 : f64, sliding_window = 3 : i64, softmax_scale = 0.125 : f32}
      : (tensor<?x16xf32>, tensor<0x1x4xbf16>, tensor<0x1x4xbf16>, tensor<16x16xbf16>,
         tensor<4x16xbf16>, tensor<4x16xbf16>, tensor<16x16xbf16>,
         tensor<16xbf16>, tensor<4xbf16>, tensor<4xbf16>, tensor<4xbf16>, tensor<4xbf16>)
      -> (tensor<?x16xf32>, tensor<?x1x4xbf16>, tensor<?x1x4xbf16>)
  return %out, %k, %v : tensor<?x16xf32>, tensor<?x1x4xbf16>, tensor<?x1x4xbf16>
}

// -----

// Every size dynamic in the types (multi-head, KV = N = 2, D = 4): the
// projections fall back to the linalg contraction and their [S, ?] results
// are cast to the [S, N·D] the attributes fix before the per-head view; the
// output is rounded once to bf16.
// CHECK-LABEL: func.func @every_size_dynamic
// CHECK-NOT:   mla.
// CHECK:       linalg.generic {{.*}} iterator_types = ["parallel", "parallel", "reduction"]
// CHECK:       tensor.cast %{{.+}} : tensor<?x?xf32> to tensor<?x8xf32>
// CHECK:       tensor.expand_shape {{.*}} : tensor<?x8xf32> into tensor<?x2x4xf32>
// CHECK:       tensor.collapse_shape {{.*}} : tensor<?x2x4xf32> into tensor<?x8xf32>
// CHECK:       linalg.generic
// CHECK:         arith.truncf {{.*}} : f32 to bf16
// CHECK:       } -> tensor<?x?xbf16>
// CHECK:       return
// LLVM-LABEL:  llvm.func @every_size_dynamic
// LLVM:        llvm.return
func.func @every_size_dynamic(%x: tensor<?x?xbf16>, %kc: tensor<?x?x?xf32>, %vc: tensor<?x?x?xf32>,
                              %wq: tensor<?x?xf32>, %wk: tensor<?x?xf32>, %wv: tensor<?x?xf32>,
                              %wo: tensor<?x?xf32>)
    -> (tensor<?x?xbf16>, tensor<?x2x4xf32>, tensor<?x2x4xf32>) {
  %out, %k, %v = mla.gqa_attention %x cache(%kc, %vc) q(%wq) k(%wk) v(%wv) o(%wo)
      {num_heads = 2 : i64, num_kv_heads = 2 : i64, head_dim = 4 : i64}
      : (tensor<?x?xbf16>, tensor<?x?x?xf32>, tensor<?x?x?xf32>, tensor<?x?xf32>,
         tensor<?x?xf32>, tensor<?x?xf32>, tensor<?x?xf32>)
      -> (tensor<?x?xbf16>, tensor<?x2x4xf32>, tensor<?x2x4xf32>)
  return %out, %k, %v : tensor<?x?xbf16>, tensor<?x2x4xf32>, tensor<?x2x4xf32>
}
