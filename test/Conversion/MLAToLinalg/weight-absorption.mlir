// RUN: moe-opt %s --split-input-file --convert-mla-to-linalg | FileCheck %s
// RUN: moe-opt %s --split-input-file --moe-cpu-pipeline | FileCheck %s --check-prefix=LLVM
// The absorbed and the per-call (cost) forms of mla.attention; the naive
// form is in convert-mla-to-linalg.mlir. Numbers: test_mla.py and the
// whole DeepSeek models in test_hf_models.py (both forms).
// Sizes: H = 16, N = 2, D_n = 4, D_r = 4, D_v = 3, R_kv = 6.

// Absorbed: q_lat [S, N, R_kv] = q_nope · W_kb (rows h*7 + d of kv_b_proj);
// the heads score against the latents, keys and values [T, R_kv] shared by
// all heads, weight them into o_lat [S, N, R_kv], then o = o_lat · W_vbᵀ
// (rows h*7 + 4 + v). No per-token expansion of k_nope or v. All three
// steps are vector kernels.
// CHECK-LABEL: func.func @absorbed
// CHECK-SAME:    %[[WKVB:[a-z0-9]+]]: tensor<14x6xf32>
// The latents c_kv_out [T, 6], the cached rows then the new one.
// CHECK:       %[[LAT:.+]] = tensor.insert_slice %{{.+}} into %{{.+}}[%{{.+}}, 0] [1, 6] [1, 1] : tensor<1x6xf32> into tensor<?x6xf32>
// q_lat: a task per head; row d of the head's W_kb (row h*7 + d) times the
// broadcast q_nope[s, h, d], summed over d in 16-lane vectors (R_kv = 6:
// one masked vector).
// CHECK:       %[[QLAT:.+]] = scf.forall (%[[H:.+]]) in (2) shared_outs(%{{.+}}) -> (tensor<1x2x6xf32>) {
// CHECK:         %[[W0:.+]] = arith.muli %[[H]], %{{.+}} : index
// CHECK:         scf.for
// CHECK:           %[[ROW:.+]] = arith.addi %[[W0]], %{{.+}} : index
// CHECK:           vector.transfer_read %[[WKVB]][%[[ROW]], %{{.+}}], %{{.+}} : tensor<14x6xf32>, vector<16xf32>
// CHECK:           %[[QN:.+]] = tensor.extract %{{.+}}[%{{.+}}, %[[H]], %{{.+}}] : tensor<1x2x4xf32>
// CHECK:           vector.broadcast %[[QN]] : f32 to vector<16xf32>
// CHECK:           vector.fma
// CHECK:         vector.transfer_write %{{.+}} : vector<16xf32>, tensor<1x1x6xf32>
// Attention over the latents: every head shares them, so one task takes
// both heads; the scores q_lat · c + q_rope · k_rope and the weighted sum
// read the latent rows [T, 6].
// CHECK:       %[[OLAT:.+]] = scf.forall (%{{.+}}) in (1) shared_outs(%{{.+}}) -> (tensor<1x2x6xf32>) {
// CHECK:         vector.transfer_read %[[QLAT]][%{{.+}}, %{{.+}}, %{{.+}}], %{{.+}} : tensor<1x2x6xf32>, vector<16xf32>
// CHECK:         vector.transfer_read %[[LAT]][%{{.+}}, %{{.+}}], %{{.+}} : tensor<?x6xf32>, vector<16xf32>
// CHECK:         vector.reduction <maximumf>
// CHECK:         vector.transfer_read %[[LAT]][%{{.+}}, %{{.+}}], %{{.+}} : tensor<?x6xf32>, vector<16xf32>
// CHECK:         arith.divf
// o: a task per head; output e of head h is the dot product of o_lat[s, h]
// with row h*7 + 4 + e of kv_b_proj, 16 lanes at a time, reduced across
// lanes.
// CHECK:       scf.forall (%[[H2:.+]]) in (2) shared_outs(%{{.+}}) -> (tensor<1x2x3xf32>) {
// CHECK:         vector.transfer_read %[[OLAT]][%{{.+}}, %[[H2]], %{{.+}}], %{{.+}} : tensor<1x2x6xf32>, vector<16xf32>
// CHECK:         vector.transfer_read %[[WKVB]][%{{.+}}, %{{.+}}], %{{.+}} : tensor<14x6xf32>, vector<16xf32>
// CHECK:         vector.fma
// CHECK:         vector.shuffle
// CHECK-NOT:   scf.if
// CHECK-NOT:   tensor.expand_shape
// CHECK:       return
// LLVM-LABEL:  llvm.func @absorbed
func.func @absorbed(%x: tensor<1x16xf32>, %ckv: tensor<?x6xf32>, %kr: tensor<?x4xf32>,
                    %wq: tensor<16x16xf32>, %wkva: tensor<10x16xf32>, %kvn: tensor<6xf32>,
                    %wkvb: tensor<14x6xf32>, %wo: tensor<16x6xf32>)
    -> (tensor<1x16xf32>, tensor<?x6xf32>, tensor<?x4xf32>) {
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q(%wq) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 2 : i64, qk_nope_head_dim = 4 : i64, qk_rope_head_dim = 4 : i64,
       v_head_dim = 3 : i64, rope_interleave, weight_absorption = #mla.absorption<absorbed>}
      : (tensor<1x16xf32>, tensor<?x6xf32>, tensor<?x4xf32>, tensor<16x16xf32>,
         tensor<10x16xf32>, tensor<6xf32>, tensor<14x6xf32>, tensor<16x6xf32>)
      -> (tensor<1x16xf32>, tensor<?x6xf32>, tensor<?x4xf32>)
  return %out, %c, %k : tensor<1x16xf32>, tensor<?x6xf32>, tensor<?x4xf32>
}

// -----

// Cost: the rule on the call's token counts, S·T·(2·6 - 7) + S·42 < T·42,
// picks one form in an scf.if; both yield o [S, N, D_v]: the absorbed one
// from q_lat [S, 2, 6], the naive one from the expanded latents [T, 2, 7].
// CHECK-LABEL: func.func @by_cost
// CHECK-DAG:     %[[C5:.+]] = arith.constant 5 : index
// CHECK-DAG:     %[[C42:.+]] = arith.constant 42 : index
// CHECK:         %[[ABS:.+]] = arith.addi
// CHECK:         %[[NAIVE:.+]] = arith.muli %{{.+}}, %[[C42]] : index
// CHECK:         %[[CHEAPER:.+]] = arith.cmpi slt, %[[ABS]], %[[NAIVE]] : index
// CHECK:         %[[O:.+]] = scf.if %[[CHEAPER]] -> (tensor<?x2x3xf32>) {
// CHECK:           scf.forall {{.*}} -> (tensor<?x2x6xf32>)
// CHECK-NOT:       tensor.expand_shape
// CHECK:           scf.yield %{{.+}} : tensor<?x2x3xf32>
// CHECK:         } else {
// CHECK:           tensor.expand_shape {{.*}} into tensor<?x2x7xf32>
// CHECK:           scf.yield %{{.+}} : tensor<?x2x3xf32>
// CHECK:         }
// LLVM-LABEL:  llvm.func @by_cost
func.func @by_cost(%x: tensor<?x16xf32>, %ckv: tensor<?x6xf32>, %kr: tensor<?x4xf32>,
                   %wq: tensor<16x16xf32>, %wkva: tensor<10x16xf32>, %kvn: tensor<6xf32>,
                   %wkvb: tensor<14x6xf32>, %wo: tensor<16x6xf32>)
    -> (tensor<?x16xf32>, tensor<?x6xf32>, tensor<?x4xf32>) {
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q(%wq) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 2 : i64, qk_nope_head_dim = 4 : i64, qk_rope_head_dim = 4 : i64,
       v_head_dim = 3 : i64, weight_absorption = #mla.absorption<cost>}
      : (tensor<?x16xf32>, tensor<?x6xf32>, tensor<?x4xf32>, tensor<16x16xf32>,
         tensor<10x16xf32>, tensor<6xf32>, tensor<14x6xf32>, tensor<16x6xf32>)
      -> (tensor<?x16xf32>, tensor<?x6xf32>, tensor<?x4xf32>)
  return %out, %c, %k : tensor<?x16xf32>, tensor<?x6xf32>, tensor<?x4xf32>
}

// -----

// Absorbed with R_kv dynamic (the latent width is only known at run time):
// the per-head products and attention take their linalg.generic forms.
// q_lat = q_nope · W_kb reads rows h*7 + d; the heads score against the
// latents seen as one shared KV head ([T, 1, R_kv], head n reads head
// n floordiv 2 = 0), the rope scores added on the same scores; the causal
// softmax; the weighted latents; o = o_lat · W_vbᵀ reads rows h*7 + 4 + v.
// CHECK-DAG:   #[[$QLAT_W:.+]] = affine_map<(d0, d1, d2, d3) -> (d1 * 7 + d3, d2)>
// CHECK-DAG:   #[[$LATENT_KEYS:.+]] = affine_map<(d0, d1, d2, d3) -> (d2, d0 floordiv 2, d3)>
// CHECK-DAG:   #[[$LATENT_VALUES:.+]] = affine_map<(d0, d1, d2, d3) -> (d3, d1 floordiv 2, d2)>
// CHECK-DAG:   #[[$O_W:.+]] = affine_map<(d0, d1, d2, d3) -> (d1 * 7 + d2 + 4, d3)>
// CHECK-LABEL: func.func @absorbed_dynamic_rank
// CHECK-SAME:    %[[WKVB:[a-z0-9]+]]: tensor<14x?xf32>
// CHECK:       %[[QLAT:.+]] = linalg.generic {indexing_maps = [#{{.+}}, #[[$QLAT_W]], #{{.+}}], {{.*}} ins(%{{.+}}, %[[WKVB]] : tensor<1x2x4xf32>, tensor<14x?xf32>) outs(%{{.+}} : tensor<1x2x?xf32>)
// CHECK:       %[[LAT:.+]] = tensor.expand_shape %{{.+}} {{\[\[}}0, 1], [2]] {{.*}} : tensor<?x?xf32> into tensor<?x1x?xf32>
// CHECK:       %[[SCORES:.+]] = linalg.generic {indexing_maps = [#{{.+}}, #[[$LATENT_KEYS]], #{{.+}}], {{.*}} ins(%[[QLAT]], %[[LAT]] : tensor<1x2x?xf32>, tensor<?x1x?xf32>) outs(%{{.+}} : tensor<2x1x?xf32>)
// CHECK:       %[[ROPE:.+]] = tensor.expand_shape %{{.+}} {{\[\[}}0, 1], [2]] {{.*}} : tensor<?x4xf32> into tensor<?x1x4xf32>
// CHECK:       linalg.generic {indexing_maps = [#{{.+}}, #[[$LATENT_KEYS]], #{{.+}}], {{.*}} ins(%{{.+}}, %[[ROPE]] : tensor<1x2x4xf32>, tensor<?x1x4xf32>) outs(%[[SCORES]] : tensor<2x1x?xf32>)
// CHECK:       arith.constant 0.353553385 : f32
// CHECK:       linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "reduction"]
// CHECK:         arith.cmpi sle
// CHECK:         arith.maximumf
// CHECK:       linalg.generic
// CHECK:         math.exp
// CHECK:       linalg.generic {indexing_maps = [#{{.+}}, #[[$LATENT_VALUES]], #{{.+}}], {{.*}} ins(%{{.+}}, %{{.+}} : tensor<2x1x?xf32>, tensor<?x1x?xf32>) outs(%{{.+}} : tensor<1x2x?xf32>)
// CHECK:       arith.divf
// CHECK:       linalg.generic {indexing_maps = [#{{.+}}, #[[$O_W]], #{{.+}}], {{.*}} ins(%{{.+}}, %[[WKVB]] : tensor<1x2x?xf32>, tensor<14x?xf32>) outs(%{{.+}} : tensor<1x2x3xf32>)
// LLVM-LABEL:  llvm.func @absorbed_dynamic_rank
func.func @absorbed_dynamic_rank(%x: tensor<1x16xf32>, %ckv: tensor<?x?xf32>, %kr: tensor<?x4xf32>,
                                 %wq: tensor<16x16xf32>, %wkva: tensor<?x16xf32>, %kvn: tensor<?xf32>,
                                 %wkvb: tensor<14x?xf32>, %wo: tensor<16x6xf32>)
    -> (tensor<1x16xf32>, tensor<?x?xf32>, tensor<?x4xf32>) {
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q(%wq) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 2 : i64, qk_nope_head_dim = 4 : i64, qk_rope_head_dim = 4 : i64,
       v_head_dim = 3 : i64, rope_interleave, weight_absorption = #mla.absorption<absorbed>}
      : (tensor<1x16xf32>, tensor<?x?xf32>, tensor<?x4xf32>, tensor<16x16xf32>,
         tensor<?x16xf32>, tensor<?xf32>, tensor<14x?xf32>, tensor<16x6xf32>)
      -> (tensor<1x16xf32>, tensor<?x?xf32>, tensor<?x4xf32>)
  return %out, %c, %k : tensor<1x16xf32>, tensor<?x?xf32>, tensor<?x4xf32>
}
