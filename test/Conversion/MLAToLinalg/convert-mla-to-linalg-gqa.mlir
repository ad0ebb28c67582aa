// RUN: moe-opt %s --split-input-file --convert-mla-to-linalg | FileCheck %s
// RUN: moe-opt %s --split-input-file --moe-cpu-pipeline | FileCheck %s --check-prefix=LLVM
// Structure of the mla.gqa_attention lowering; the numbers are checked end to
// end against the reference in test/Integration (test_gqa.py).

// Decode of one token against a dynamic cache of P tokens. Sizes: H = 16,
// N = 4 query heads, KV = 2 KV heads (G = 2), D = 4.
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
// Attention, the vectorized kernel: one task per KV head (its G = 2 query
// heads share the key and value rows), each filling its [1, 2, 4] slice of
// o; the scale D^-0.5 = 0.5.
// CHECK:       %[[SCALE:.+]] = arith.constant dense<5.000000e-01> : vector<16xf32>
// CHECK:       %[[O:.+]] = scf.forall (%[[T:.+]]) in (2) shared_outs(%[[OS:.+]] = %{{.+}}) -> (tensor<1x4x4xf32>) {
// CHECK:         %[[H0:.+]] = arith.muli %[[T]], %{{.+}} : index
// CHECK:         %[[SLICE:.+]] = tensor.extract_slice %[[OS]][0, %[[H0]], 0] [1, 2, 4] [1, 1, 1] : tensor<1x4x4xf32> to tensor<1x2x4xf32>
// The KV head h0 / 2 of the keys, then of the values; a scratch row of
// scores per row of a register tile.
// CHECK:         %[[KH:.+]] = arith.divui %[[H0]], %{{.+}} : index
// CHECK:         %[[VH:.+]] = arith.divui %[[H0]], %{{.+}} : index
// CHECK:         %[[SCRATCH:.+]] = tensor.empty(%{{.+}}) : tensor<4x?xf32>
// Two rows (one token, two heads): no 4-row tile, one row at a time.
// CHECK:         scf.for %{{.+}} = %{{.+}} to %c2{{(_[0-9]+)?}} step %c1{{(_[0-9]+)?}} iter_args(%{{.+}} = %[[SLICE]], %{{.+}} = %[[SCRATCH]]) -> (tensor<1x2x4xf32>, tensor<4x?xf32>) {
// The row's keys [0, P + s], 16 at a time: its q row against 16 key rows
// of KV head h0 / 2, 16-lane multiply-adds over D (one masked vector for
// D = 4), the 16 sums reduced across lanes by shuffles, scaled.
// CHECK:           scf.for
// CHECK:             vector.transfer_read %[[QALL]][%{{.+}}, %{{.+}}, %{{.+}}], %{{.+}} : tensor<1x4x4xf32>, vector<16xf32>
// CHECK-COUNT-16:    vector.transfer_read %[[KALL]][%{{.+}}, %[[KH]], %{{.+}}], %{{.+}} : tensor<?x2x4xf32>, vector<16xf32>
// CHECK-COUNT-16:    vector.fma
// CHECK:             vector.shuffle
// CHECK:             %[[SCALED:.+]] = arith.mulf %{{.+}}, %[[SCALE]] : vector<16xf32>
// CHECK:             vector.transfer_write %[[SCALED]], %{{.+}} {in_bounds = [true]} : vector<16xf32>, tensor<4x?xf32>
// Then the keys left over, one at a time.
// CHECK:           scf.for
// CHECK:             vector.transfer_write %{{.+}} {in_bounds = [true]} : vector<1xf32>, tensor<4x?xf32>
// Softmax over the visible keys, 16 at a time: key j visible when
// 0 <= j <= P + s; the maximum, then e = exp(score - max) (vector
// arithmetic, no libm call), 0 where hidden, and the sum of the e.
// CHECK:           scf.for
// CHECK:             arith.cmpi sge
// CHECK:             arith.cmpi sle
// CHECK:             arith.select
// CHECK:             arith.maximumf
// CHECK:           vector.reduction <maximumf>
// CHECK:           scf.for
// CHECK-NOT:         math.exp
// CHECK:             arith.bitcast %{{.+}} : vector<16xi32> to vector<16xf32>
// CHECK:             arith.select
// CHECK:             arith.addf
// CHECK:           vector.shuffle
// Weighted sum of the value rows of KV head h0 / 2, divided by the sum.
// CHECK:           scf.for
// CHECK:             vector.transfer_read %[[VALL]][%{{.+}}, %[[VH]], %{{.+}}], %{{.+}} : tensor<?x2x4xf32>, vector<16xf32>
// CHECK:             tensor.extract %{{.+}} : tensor<4x?xf32>
// CHECK:             vector.broadcast
// CHECK:             vector.fma
// CHECK:           arith.divf
// CHECK:           vector.transfer_write %{{.+}} : vector<16xf32>, tensor<1x2x4xf32>
// CHECK:       tensor.parallel_insert_slice %{{.+}} into %[[OS]][0, %[[H0]], 0] [1, 2, 4] [1, 1, 1]
// Heads concatenated [S, N·D], output projection through the kernel.
// CHECK:       %[[OFLAT:.+]] = tensor.collapse_shape %[[O]] {{\[\[}}0], [1, 2]] : tensor<1x4x4xf32> into tensor<1x16xf32>
// CHECK:       %[[OUT:.+]] = scf.forall
// CHECK:         vector.transfer_read %[[OFLAT]]
// CHECK:         vector.transfer_read %[[WO]]
// CHECK-NOT:   mla.
// CHECK:       return %[[OUT]], %[[KALL]], %[[VALL]]
// The exponential is vector arithmetic: no libm exp in the module.
// LLVM-NOT:    @expf
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
// Attention over the bf16 cache with the explicit scale: every query head
// reads the one KV head (G = 4), so a task takes the 4 heads of up to 4
// tokens; the tasks cover the ceil(S / 4) token blocks, zigzagged (task b
// takes block b / 2 when b is even, block count - 1 - b / 2 when odd).
// CHECK:       arith.constant dense<1.250000e-01> : vector<16xf32>
// CHECK:       %[[BLOCKS:.+]] = arith.ceildivui %{{.+}}, %{{.+}} : index
// CHECK:       scf.forall (%[[T:.+]]) in (%[[BLOCKS]]) shared_outs(%[[OS:.+]] = %{{.+}}) -> (tensor<?x4x4xf32>) {
// CHECK:         %[[B:.+]] = arith.remui %[[T]], %[[BLOCKS]] : index
// CHECK:         %[[HALF:.+]] = arith.divui %[[B]], %{{.+}} : index
// CHECK:         %[[LAST:.+]] = arith.subi %[[BLOCKS]], %{{.+}} : index
// CHECK:         %[[FROMEND:.+]] = arith.subi %[[LAST]], %[[HALF]] : index
// CHECK:         %[[BLOCK:.+]] = arith.select %{{.+}}, %[[FROMEND]], %[[HALF]] : index
// CHECK:         %[[S0:.+]] = arith.muli %[[BLOCK]], %{{.+}} : index
// CHECK:         %[[COUNT:.+]] = arith.minui %{{.+}}, %{{.+}} : index
// CHECK:         tensor.extract_slice %[[OS]][%[[S0]], %{{.+}}, 0] [%[[COUNT]], 4, 4] [1, 1, 1] : tensor<?x4x4xf32> to tensor<?x4x4xf32>
// Tiles of 4 rows; the window of 3: the first key row r sees is
// max(0, P + s_r - 2), the tile's keys start at its first row's.
// CHECK:         scf.for %{{.+}} = %{{.+}} to %{{.+}} step %{{.+}} iter_args(%{{.+}} = %{{.+}}, %{{.+}} = %{{.+}}) -> (tensor<?x4x4xf32>, tensor<4x?xf32>) {
// CHECK:           %[[FIRST:.+]] = arith.subi %{{.+}}, %{{.+}} : index
// CHECK:           arith.maxsi %{{.+}}, %[[FIRST]] : index
// 4 x 4 tiles of scores: 4 query rows, 4 bf16 key rows extended to f32,
// 16 sums; each row's 4 scores written to its scratch row.
// CHECK:           scf.for
// CHECK-COUNT-4:     vector.transfer_read %{{.+}} : tensor<?x4x4xf32>, vector<16xf32>
// CHECK:             vector.transfer_read %{{.+}} : tensor<?x1x4xbf16>, vector<16xbf16>
// CHECK:             arith.extf %{{.+}} : vector<16xbf16> to vector<16xf32>
// CHECK-COUNT-16:    vector.fma
// CHECK:             arith.mulf %{{.+}}, %{{.+}} : vector<16xf32>
// CHECK-COUNT-4:     vector.extract_strided_slice %{{.+}} {offsets = [{{[0-9]+}}], sizes = [4], strides = [1]} : vector<16xf32> to vector<4xf32>
// The window in the mask: lanes j with first_r <= j <= P + s_r.
// CHECK:           arith.cmpi sge
// CHECK:           arith.cmpi sle
// CHECK:           arith.andi
// CHECK:           vector.reduction <maximumf>
// The bf16 value rows extended to f32.
// CHECK:           vector.transfer_read %{{.+}} : tensor<?x1x4xbf16>, vector<16xbf16>
// CHECK:           vector.fma
// Rows left over, one at a time.
// CHECK:         scf.for
// CHECK:       tensor.parallel_insert_slice
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
