// RUN: moe-opt %s --split-input-file --convert-mla-to-linalg | FileCheck %s
// RUN: moe-opt %s --split-input-file --moe-cpu-pipeline | FileCheck %s --check-prefix=LLVM
// The absorbed and the per-call (cost) forms of mla.attention; the naive
// form is in convert-mla-to-linalg.mlir. Numbers: test_mla.py and the
// whole DeepSeek models in test_hf_models.py (both forms).
// Sizes: H = 16, N = 2, D_n = 4, D_r = 4, D_v = 3, R_kv = 6.

// Absorbed: q_lat [S, N, R_kv] = q_nope · W_kb (rows h*7 + d of kv_b_proj);
// the heads score against the latents seen as one shared KV head
// ([T, 1, R_kv], head n reads head n floordiv 2 = 0), weight them into
// o_lat [S, N, R_kv], then o = o_lat · W_vbᵀ (rows h*7 + 4 + v). No
// per-token expansion of k_nope or v.
// CHECK-DAG:   #[[$QLAT_W:.+]] = affine_map<(d0, d1, d2, d3) -> (d1 * 7 + d3, d2)>
// CHECK-DAG:   #[[$LATENT_KEYS:.+]] = affine_map<(d0, d1, d2, d3) -> (d2, d0 floordiv 2, d3)>
// CHECK-DAG:   #[[$LATENT_VALUES:.+]] = affine_map<(d0, d1, d2, d3) -> (d3, d1 floordiv 2, d2)>
// CHECK-DAG:   #[[$O_W:.+]] = affine_map<(d0, d1, d2, d3) -> (d1 * 7 + d2 + 4, d3)>
// CHECK-LABEL: func.func @absorbed
// CHECK-SAME:    %[[WKVB:[a-z0-9]+]]: tensor<14x6xf32>
// CHECK:       %[[QLAT:.+]] = linalg.generic {indexing_maps = [#{{.+}}, #[[$QLAT_W]], #{{.+}}], {{.*}} ins(%{{.+}}, %[[WKVB]] : tensor<1x2x4xf32>, tensor<14x6xf32>) outs(%{{.+}} : tensor<1x2x6xf32>)
// CHECK:       %[[LAT:.+]] = tensor.expand_shape %{{.+}} {{\[\[}}0, 1], [2]] {{.*}} : tensor<?x6xf32> into tensor<?x1x6xf32>
// CHECK:       linalg.generic {indexing_maps = [#{{.+}}, #[[$LATENT_KEYS]], #{{.+}}], {{.*}} ins(%[[QLAT]], %[[LAT]] : tensor<1x2x6xf32>, tensor<?x1x6xf32>) outs(%{{.+}} : tensor<2x1x?xf32>)
// CHECK:       linalg.generic {indexing_maps = [#{{.+}}, #[[$LATENT_VALUES]], #{{.+}}], {{.*}} ins(%{{.+}}, %[[LAT]] : tensor<2x1x?xf32>, tensor<?x1x6xf32>) outs(%{{.+}} : tensor<1x2x6xf32>)
// CHECK:       linalg.generic {indexing_maps = [#{{.+}}, #[[$O_W]], #{{.+}}], {{.*}} ins(%{{.+}}, %[[WKVB]] : tensor<1x2x6xf32>, tensor<14x6xf32>) outs(%{{.+}} : tensor<1x2x3xf32>)
// CHECK-NOT:   scf.if
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
// picks one form in an scf.if; both yield o [S, N, D_v].
// CHECK-LABEL: func.func @by_cost
// CHECK-DAG:     %[[C5:.+]] = arith.constant 5 : index
// CHECK-DAG:     %[[C42:.+]] = arith.constant 42 : index
// CHECK:         %[[ABS:.+]] = arith.addi
// CHECK:         %[[NAIVE:.+]] = arith.muli %{{.+}}, %[[C42]] : index
// CHECK:         %[[CHEAPER:.+]] = arith.cmpi slt, %[[ABS]], %[[NAIVE]] : index
// CHECK:         %[[O:.+]] = scf.if %[[CHEAPER]] -> (tensor<?x2x3xf32>) {
// CHECK:           tensor.expand_shape
// CHECK:           scf.yield %{{.+}} : tensor<?x2x3xf32>
// CHECK:         } else {
// CHECK-NOT:       tensor.expand_shape
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
