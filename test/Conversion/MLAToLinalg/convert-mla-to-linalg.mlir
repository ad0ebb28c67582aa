// RUN: moe-opt %s --split-input-file --convert-mla-to-linalg | FileCheck %s
// RUN: moe-opt %s --split-input-file --moe-cpu-pipeline | FileCheck %s --check-prefix=LLVM
// RUN: moe-opt %moe_src/examples/mla_prefill_decode.mlir --convert-mla-to-linalg | FileCheck %s --check-prefix=V3
// Structure of the lowering; the numbers are checked end to end against the
// reference in test/Integration (test_mla.py).

// Decode of one token against a dynamic cache of P tokens; q_proj, the rope
// pairs interleaved. Sizes: H = 16, N = 2, D_n = 4, D_r = 4, D_v = 3,
// R_kv = 6.
// The projections with every head at once go through the x · Wᵀ
// contraction (its vector kernel for K = 16, its linalg form for K = 6)
// and are read per head through views: q [S, 2, 8] (q_nope d < 4, the rope
// pairs 4 + 2i and 5 + 2i), the expanded latents [T, 2, 7] (k_nope d < 4,
// v 4 + d); o_proj takes the heads of o concatenated.
// CHECK-LABEL: func.func @decode
// CHECK-SAME:    %[[X:[a-z0-9]+]]: tensor<1x16xf32>, %[[CKV:[a-z0-9]+]]: tensor<?x6xf32>, %[[KR:[a-z0-9]+]]: tensor<?x4xf32>
// CHECK-SAME:    %[[WQ:[a-z0-9]+]]: tensor<16x16xf32>, %[[WKVA:[a-z0-9]+]]: tensor<10x16xf32>, %[[KVN:[a-z0-9]+]]: tensor<6xf32>, %[[WKVB:[a-z0-9]+]]: tensor<14x6xf32>, %[[WO:[a-z0-9]+]]: tensor<16x6xf32>
// CHECK-NOT:   mla.
// CHECK:       %[[P:.+]] = tensor.dim %[[CKV]], %{{.+}} : tensor<?x6xf32>
// Query: q [S, N, D_n + D_r], viewed as q_nope [S, N, D_n] and the two
// components of the interleaved rope pairs.
// CHECK:       %[[QF:.+]] = scf.forall
// CHECK:         vector.transfer_read %[[WQ]]
// CHECK:       %[[Q:.+]] = tensor.expand_shape %[[QF]] {{\[\[}}0], [1, 2]] output_shape [1, 2, 8] : tensor<1x16xf32> into tensor<1x2x8xf32>
// CHECK:       %[[QNOPE:.+]] = tensor.extract_slice %[[Q]][0, 0, 0] [1, 2, 4] [1, 1, 1]
// CHECK:       tensor.extract_slice %[[Q]][0, 0, 4] [1, 2, 2] [1, 1, 2]
// CHECK:       tensor.extract_slice %[[Q]][0, 0, 5] [1, 2, 2] [1, 1, 2]
// Latent: kv_a_proj (the register-tiled vector contraction, K = 16),
// RMSNorm of c, the strided rope pairs of k_r.
// CHECK:       %[[KV:.+]] = scf.forall
// CHECK:         vector.transfer_read %[[WKVA]]
// CHECK:         vector.fma
// CHECK:       math.sqrt
// CHECK:       tensor.extract_slice %[[KV]][0, 6] [1, 2] [1, 2]
// CHECK:       tensor.extract_slice %[[KV]][0, 7] [1, 2] [1, 2]
// RoPE tables: frequencies θ^(-2i/D_r) as an f64 constant, the angles at
// P + s in f64, cos and sin rounded once to f32.
// CHECK:       arith.constant dense<[1.000000e+00, 1.000000e-02]> : tensor<2xf64>
// CHECK:       linalg.generic
// CHECK:         %[[S:.+]] = linalg.index 0
// CHECK:         %[[POS:.+]] = arith.addi %[[P]], %[[S]]
// CHECK:         %[[POSI:.+]] = arith.index_cast %[[POS]] : index to i64
// CHECK:         %[[POSF:.+]] = arith.sitofp %[[POSI]] : i64 to f64
// CHECK:         %[[ANGLE:.+]] = arith.mulf %[[POSF]], %{{.+}} : f64
// CHECK:         math.cos %[[ANGLE]] : f64
// CHECK:         math.sin %[[ANGLE]] : f64
// CHECK:         arith.truncf {{.*}} : f64 to f32
// Rotations of q's and k's pairs: (a cos - b sin, b cos + a sin).
// CHECK:       linalg.generic
// CHECK:         arith.subf
// CHECK:         arith.addf
// CHECK:         linalg.yield
// CHECK:       linalg.generic
// The caches: the P old rows, then the new ones at row P; the rotated k
// rope in the halves layout.
// CHECK:       %[[C0:.+]] = tensor.insert_slice %[[CKV]] into %{{.+}}[0, 0]
// CHECK:       %[[CALL:.+]] = tensor.insert_slice %{{.+}} into %[[C0]][%[[P]], 0] [1, 6] [1, 1]
// CHECK:       %[[K0:.+]] = tensor.insert_slice %[[KR]] into %{{.+}}[0, 0]
// CHECK:       %[[K1:.+]] = tensor.insert_slice %{{.+}} into %[[K0]][%[[P]], 0] [1, 2] [1, 1]
// CHECK:       %[[KALL:.+]] = tensor.insert_slice %{{.+}} into %[[K1]][%[[P]], 2] [1, 2] [1, 1]
// q_rope [S, N, D_r]: the rotated pairs in the halves layout of the
// cached rope keys.
// CHECK:       %[[QR0:.+]] = tensor.insert_slice %{{.+}}#0 into %{{.+}}[0, 0, 0] [1, 2, 2] [1, 1, 1]
// CHECK:       %[[QROPE:.+]] = tensor.insert_slice %{{.+}}#1 into %[[QR0]][0, 0, 2] [1, 2, 2] [1, 1, 1] : tensor<1x2x2xf32> into tensor<1x2x4xf32>
// Expansion of every cached and new latent at once (the linalg form of
// the contraction for K = 6), viewed as k_nope and v per head.
// CHECK:       %[[KVB:.+]] = linalg.generic {{.*}} ins(%[[CALL]], %[[WKVB]] : tensor<?x6xf32>, tensor<14x6xf32>) outs(%{{.+}} : tensor<?x14xf32>)
// CHECK:       %[[KVH:.+]] = tensor.expand_shape %[[KVB]] {{\[\[}}0], [1, 2]] output_shape [%{{.+}}, 2, 7] : tensor<?x14xf32> into tensor<?x2x7xf32>
// CHECK:       %[[KNOPE:.+]] = tensor.extract_slice %[[KVH]][0, 0, 0] [%{{.+}}, 2, 4] [1, 1, 1]
// CHECK:       %[[V:.+]] = tensor.extract_slice %[[KVH]][0, 0, 4] [%{{.+}}, 2, 3] [1, 1, 1] : tensor<?x2x7xf32> to tensor<?x2x3xf32>
// Attention, the vectorized kernel: one task per head (each head has its
// own k_nope and v), filling its [1, 1, 3] slice of o; the scores of 16
// keys at a time are q_nope · k_nope of the task's head plus q_rope ·
// k_rope_out (shared by the heads), times (D_n + D_r)^-0.5.
// CHECK:       %[[SCALE:.+]] = arith.constant dense<0.353553385> : vector<16xf32>
// CHECK:       %[[O:.+]] = scf.forall (%[[T:.+]]) in (2) shared_outs(%[[OS:.+]] = %{{.+}}) -> (tensor<1x2x3xf32>) {
// CHECK:         tensor.extract_slice %[[OS]][0, %[[T]], 0] [1, 1, 3] [1, 1, 1]
// CHECK:         scf.for
// CHECK:           scf.for
// CHECK:             vector.transfer_read %[[QNOPE]][%{{.+}}, %{{.+}}, %{{.+}}], %{{.+}} : tensor<1x2x4xf32>, vector<16xf32>
// CHECK-COUNT-16:    vector.transfer_read %[[KNOPE]][%{{.+}}, %[[T]], %{{.+}}], %{{.+}} : tensor<?x2x4xf32>, vector<16xf32>
// CHECK-COUNT-16:    vector.fma
// CHECK:             vector.transfer_read %[[QROPE]][%{{.+}}, %{{.+}}, %{{.+}}], %{{.+}} : tensor<1x2x4xf32>, vector<16xf32>
// CHECK-COUNT-16:    vector.transfer_read %[[KALL]][%{{.+}}, %{{.+}}], %{{.+}} : tensor<?x4xf32>, vector<16xf32>
// CHECK-COUNT-16:    vector.fma
// CHECK:             vector.shuffle
// CHECK:             arith.mulf %{{.+}}, %[[SCALE]] : vector<16xf32>
// Causal softmax: key j visible to token s when j <= P + s.
// CHECK:           arith.cmpi sle
// CHECK:           arith.maximumf
// CHECK:           vector.reduction <maximumf>
// CHECK:           arith.bitcast %{{.+}} : vector<16xi32> to vector<16xf32>
// Weighted sum of v of the task's head, divided by the softmax denominator.
// CHECK:           vector.transfer_read %[[V]][%{{.+}}, %[[T]], %{{.+}}], %{{.+}} : tensor<?x2x3xf32>, vector<16xf32>
// CHECK:           vector.fma
// CHECK:           arith.divf
// CHECK:       tensor.parallel_insert_slice %{{.+}} into %[[OS]][0, %[[T]], 0] [1, 1, 3] [1, 1, 1]
// The output projection of the heads concatenated (K = 6: the linalg form).
// CHECK:       %[[OFLAT:.+]] = tensor.collapse_shape %[[O]] {{\[\[}}0], [1, 2]] : tensor<1x2x3xf32> into tensor<1x6xf32>
// CHECK:       %[[OUT:.+]] = linalg.generic {{.*}} ins(%[[OFLAT]], %[[WO]] : tensor<1x6xf32>, tensor<16x6xf32>) outs(%{{.+}} : tensor<1x16xf32>)
// CHECK-NOT:   mla.
// CHECK:       return %[[OUT]], %[[CALL]], %[[KALL]]
// LLVM-LABEL:  llvm.func @decode
// LLVM-NOT:    mla.
// LLVM:        llvm.return
func.func @decode(%x: tensor<1x16xf32>, %ckv: tensor<?x6xf32>, %kr: tensor<?x4xf32>,
                  %wq: tensor<16x16xf32>, %wkva: tensor<10x16xf32>, %kvn: tensor<6xf32>,
                  %wkvb: tensor<14x6xf32>, %wo: tensor<16x6xf32>)
    -> (tensor<1x16xf32>, tensor<?x6xf32>, tensor<?x4xf32>) {
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q(%wq) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 2 : i64, qk_nope_head_dim = 4 : i64, qk_rope_head_dim = 4 : i64,
       v_head_dim = 3 : i64, rope_interleave}
      : (tensor<1x16xf32>, tensor<?x6xf32>, tensor<?x4xf32>, tensor<16x16xf32>,
         tensor<10x16xf32>, tensor<6xf32>, tensor<14x6xf32>, tensor<16x6xf32>)
      -> (tensor<1x16xf32>, tensor<?x6xf32>, tensor<?x4xf32>)
  return %out, %c, %k : tensor<1x16xf32>, tensor<?x6xf32>, tensor<?x4xf32>
}

// -----

// Prefill of a dynamic S tokens into an empty bf16 cache, q LoRA, bf16
// weights and activations, YaRN, the rope pairs in halves.
// CHECK-LABEL: func.func @prefill
// CHECK-NOT:   mla.
// q LoRA: q_a_proj, RMSNorm (eps 1e-5, over R_q = 5) with the bf16 norm
// weight, then q_b_proj.
// CHECK:       scf.for
// CHECK:         vector.fma
// CHECK:       arith.constant 9.99999974E-6 : f32
// CHECK:       linalg.generic
// CHECK:         arith.divf
// CHECK:         math.sqrt
// CHECK:         arith.extf %{{.+}} : bf16 to f32
// q_b_proj (K = 5: the linalg form of the contraction), viewed per head;
// the rope pairs in halves: components 4 + i and 6 + i of a head.
// CHECK:       linalg.generic {{.*}} outs(%{{.+}} : tensor<?x16xf32>)
// CHECK:       %[[Q:.+]] = tensor.expand_shape %{{.+}} {{\[\[}}0], [1, 2]] output_shape [%{{.+}}, 2, 8] : tensor<?x16xf32> into tensor<?x2x8xf32>
// CHECK:       tensor.extract_slice %[[Q]][0, 0, 4] [%{{.+}}, 2, 2] [1, 1, 1]
// CHECK:       tensor.extract_slice %[[Q]][0, 0, 6] [%{{.+}}, 2, 2] [1, 1, 1]
// The rope pairs of k_r in halves: columns R_kv + i and R_kv + 2 + i.
// CHECK:       tensor.extract_slice %{{.+}}[0, 6] [%{{.+}}, 2] [1, 1]
// CHECK:       tensor.extract_slice %{{.+}}[0, 8] [%{{.+}}, 2] [1, 1]
// YaRN: f_1 = 0.01 / 40 · 0.5 + 0.01 · 0.5 (ramp 0.5 between dims 0 and 2);
// cos and sin times m(40, 1) / m(40, 0.5).
// CHECK:       arith.constant dense<[1.000000e+00, 5.125000e-03]> : tensor<2xf64>
// CHECK:       math.cos
// CHECK:       math.sin
// CHECK:       arith.constant 1.15572199{{[0-9]*}} : f64
// CHECK:       arith.truncf {{.*}} : f64 to f32
// The new k rope rows rounded to the bf16 cache in the rotation, the new
// c_kv rows rounded too.
// CHECK:       linalg.generic
// CHECK:         linalg.yield {{.*}} : f32, f32
// CHECK:       linalg.generic
// CHECK:         arith.truncf {{.*}} : f32 to bf16
// CHECK:         arith.truncf {{.*}} : f32 to bf16
// CHECK:         linalg.yield {{.*}} : bf16, bf16
// CHECK:       tensor.insert_slice {{.*}} : tensor<0x6xbf16> into tensor<?x6xbf16>
// CHECK:       arith.truncf {{.*}} : f32 to bf16
// CHECK:       tensor.insert_slice {{.*}} : tensor<?x6xbf16> into tensor<?x6xbf16>
// The softmax scale: 8^-0.5 · m(40, 0.5)²; the bf16 rope keys read 16
// lanes at a time and extended to f32.
// CHECK:       arith.constant dense<0.496002{{[0-9]*}}> : vector<16xf32>
// CHECK:       scf.forall
// CHECK:         vector.transfer_read %{{.+}} : tensor<?x4xbf16>, vector<16xbf16>
// CHECK:         arith.extf %{{.+}} : vector<16xbf16> to vector<16xf32>
// CHECK:       tensor.parallel_insert_slice
// The output rounded once to bf16.
// CHECK:       linalg.generic {{.*}} outs(%{{.+}} : tensor<?x16xf32>)
// CHECK:       linalg.generic
// CHECK:         arith.truncf {{.*}} : f32 to bf16
// CHECK:       } -> tensor<?x16xbf16>
// CHECK-NOT:   mla.
// CHECK:       return
// LLVM-LABEL:  llvm.func @prefill
// LLVM-NOT:    mla.
// LLVM:        llvm.return
func.func @prefill(%x: tensor<?x16xbf16>, %wqa: tensor<5x16xbf16>, %qn: tensor<5xbf16>,
                   %wqb: tensor<16x5xbf16>, %wkva: tensor<10x16xbf16>, %kvn: tensor<6xbf16>,
                   %wkvb: tensor<14x6xbf16>, %wo: tensor<16x6xbf16>)
    -> (tensor<?x16xbf16>, tensor<?x6xbf16>, tensor<?x4xbf16>) {
  %ckv = tensor.empty() : tensor<0x6xbf16>
  %kr = tensor.empty() : tensor<0x4xbf16>
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q_lora(%wqa, %qn, %wqb)
      kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 2 : i64, qk_nope_head_dim = 4 : i64, qk_rope_head_dim = 4 : i64,
       v_head_dim = 3 : i64, rms_norm_eps = 1.0e-5 : f32,
       yarn = #mla.yarn<factor = 40.0, original_max_position_embeddings = 4096,
                        mscale = 1.0, mscale_all_dim = 0.5>}
      : (tensor<?x16xbf16>, tensor<0x6xbf16>, tensor<0x4xbf16>, tensor<5x16xbf16>,
         tensor<5xbf16>, tensor<16x5xbf16>, tensor<10x16xbf16>, tensor<6xbf16>,
         tensor<14x6xbf16>, tensor<16x6xbf16>)
      -> (tensor<?x16xbf16>, tensor<?x6xbf16>, tensor<?x4xbf16>)
  return %out, %c, %k : tensor<?x16xbf16>, tensor<?x6xbf16>, tensor<?x4xbf16>
}

// -----

// An explicit softmax_scale is used as given, YaRN or not; every size but
// the head dimensions dynamic (the static head dimensions are enough for
// the vectorized attention).
// CHECK-LABEL: func.func @explicit_scale
// CHECK-NOT:   mla.
// CHECK:       arith.constant dense<1.250000e-01> : vector<16xf32>
// CHECK:       scf.forall
// CHECK:         vector.fma
// CHECK:       return
// LLVM-LABEL:  llvm.func @explicit_scale
func.func @explicit_scale(%x: tensor<?x?xf32>, %ckv: tensor<?x?xf32>, %kr: tensor<?x4xf32>,
                          %wq: tensor<?x?xf32>, %wkva: tensor<?x?xf32>, %kvn: tensor<?xf32>,
                          %wkvb: tensor<?x?xf32>, %wo: tensor<?x?xf32>)
    -> (tensor<?x?xf32>, tensor<?x?xf32>, tensor<?x4xf32>) {
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q(%wq) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 2 : i64, qk_nope_head_dim = 4 : i64, qk_rope_head_dim = 4 : i64,
       v_head_dim = 3 : i64, softmax_scale = 0.125 : f32,
       yarn = #mla.yarn<factor = 4.0, original_max_position_embeddings = 64,
                        mscale_all_dim = 1.0>}
      : (tensor<?x?xf32>, tensor<?x?xf32>, tensor<?x4xf32>, tensor<?x?xf32>,
         tensor<?x?xf32>, tensor<?xf32>, tensor<?x?xf32>, tensor<?x?xf32>)
      -> (tensor<?x?xf32>, tensor<?x?xf32>, tensor<?x4xf32>)
  return %out, %c, %k : tensor<?x?xf32>, tensor<?x?xf32>, tensor<?x4xf32>
}

// DeepSeek-V3's sizes (the example): 128 heads of 128 + 64 query dims, the
// rope pairs interleaved, kv_b_proj rows of 128 + 128 per head, YaRN's 32
// frequencies; every projection through the vector kernel (K = 7168, 1536,
// 512, 16384), attention through the vectorized kernel.
// V3-LABEL: func.func @mla_prefill
// V3-NOT:  mla.
// V3:      %[[Q:.+]] = tensor.expand_shape {{.*}} into tensor<?x128x192xf32>
// V3:      tensor.extract_slice %[[Q]][0, 0, 0] [%{{.+}}, 128, 128] [1, 1, 1]
// V3:      tensor.extract_slice %[[Q]][0, 0, 128] [%{{.+}}, 128, 32] [1, 1, 2]
// V3:      tensor.extract_slice %[[Q]][0, 0, 129] [%{{.+}}, 128, 32] [1, 1, 2]
// V3:      arith.constant dense<{{.*}}> : tensor<32xf64>
// V3:      %[[KV:.+]] = tensor.expand_shape {{.*}} into tensor<?x128x256xf32>
// V3:      tensor.extract_slice %[[KV]][0, 0, 128] [%{{.+}}, 128, 128] [1, 1, 1]
// V3:      %[[O:.+]] = scf.forall {{.*}} -> (tensor<?x128x128xf32>)
// V3:      tensor.collapse_shape %[[O]] {{\[\[}}0], [1, 2]] : tensor<?x128x128xf32> into tensor<?x16384xf32>
// V3:      scf.forall {{.*}} -> (tensor<?x7168xf32>)
// V3-LABEL: func.func @mla_decode
// V3-NOT:  mla.
// V3:      return
