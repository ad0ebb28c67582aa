// RUN: moe-opt %s --split-input-file --mla-weight-absorption | FileCheck %s --check-prefix=COST
// RUN: moe-opt %s --split-input-file --mla-weight-absorption=mode=absorbed | FileCheck %s --check-prefix=ABS
// RUN: moe-opt %s --split-input-file --mla-weight-absorption=mode=naive | FileCheck %s --check-prefix=NAIVE
// RUN: moe-opt %s --split-input-file --moe-optimize | FileCheck %s --check-prefix=COST
// RUN: moe-opt %s --split-input-file --moe-optimize=weight-absorption=off | FileCheck %s --check-prefix=OFF
// RUN: not moe-opt %s --mla-weight-absorption=mode=sometimes 2>&1 | FileCheck %s --check-prefix=BAD
// BAD: error: mla-weight-absorption: unknown mode 'sometimes' (expected cost, absorbed or naive)
// RUN: moe-opt %s --split-input-file --moe-optimize --remarks-filter=mla-weight-absorption -o /dev/null 2>&1 | FileCheck %s --check-prefix=REMARK
// REMARK: remark: [Passed] WeightAbsorption | Category:mla-weight-absorption | Remark="form chosen per call by cost"
// REMARK: remark: [Passed] WeightAbsorption | Category:mla-weight-absorption | Remark="absorbed form"
// REMARK: remark: [Passed] WeightAbsorption | Category:mla-weight-absorption | Remark="naive form"

// Sizes: N = 2, D_n = 4, D_v = 3, R_kv = 6, so the absorbed form wins when
// S·T·5 + S·42 < T·42.

// A dynamic cache: the rule is left to each call.
// COST-LABEL:  func.func @dynamic
// COST:          mla.attention {{.*}}weight_absorption = #mla.absorption<cost>
// ABS-LABEL:   func.func @dynamic
// ABS:           mla.attention {{.*}}weight_absorption = #mla.absorption<absorbed>
// NAIVE-LABEL: func.func @dynamic
// NAIVE:         weight_absorption = #mla.absorption<naive>
// OFF-LABEL:   func.func @dynamic
// OFF-NOT:       weight_absorption
func.func @dynamic(%x: tensor<1x16xf32>, %ckv: tensor<?x6xf32>, %kr: tensor<?x4xf32>,
                   %wq: tensor<16x16xf32>, %wkva: tensor<10x16xf32>, %kvn: tensor<6xf32>,
                   %wkvb: tensor<14x6xf32>, %wo: tensor<16x6xf32>) -> tensor<1x16xf32> {
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q(%wq) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 2 : i64, qk_nope_head_dim = 4 : i64, qk_rope_head_dim = 4 : i64, v_head_dim = 3 : i64}
      : (tensor<1x16xf32>, tensor<?x6xf32>, tensor<?x4xf32>, tensor<16x16xf32>,
         tensor<10x16xf32>, tensor<6xf32>, tensor<14x6xf32>, tensor<16x6xf32>)
      -> (tensor<1x16xf32>, tensor<?x6xf32>, tensor<?x4xf32>)
  return %out : tensor<1x16xf32>
}

// -----

// Static decode (S = 1, T = 9): 87 < 378, absorbed.
// COST-LABEL:  func.func @static_decode
// COST:          weight_absorption = #mla.absorption<absorbed>
// OFF-LABEL:   func.func @static_decode
// OFF-NOT:       weight_absorption
// OFF-LABEL:   func.func @static_prefill
func.func @static_decode(%x: tensor<1x16xf32>, %ckv: tensor<8x6xf32>, %kr: tensor<8x4xf32>,
                         %wq: tensor<16x16xf32>, %wkva: tensor<10x16xf32>, %kvn: tensor<6xf32>,
                         %wkvb: tensor<14x6xf32>, %wo: tensor<16x6xf32>) -> tensor<1x16xf32> {
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q(%wq) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 2 : i64, qk_nope_head_dim = 4 : i64, qk_rope_head_dim = 4 : i64, v_head_dim = 3 : i64}
      : (tensor<1x16xf32>, tensor<8x6xf32>, tensor<8x4xf32>, tensor<16x16xf32>,
         tensor<10x16xf32>, tensor<6xf32>, tensor<14x6xf32>, tensor<16x6xf32>)
      -> (tensor<1x16xf32>, tensor<9x6xf32>, tensor<9x4xf32>)
  return %out : tensor<1x16xf32>
}

// -----

// Static prefill (S = T = 16): 1952 >= 672, naive: the pass must not
// absorb.
// COST-LABEL:  func.func @static_prefill
// COST-NOT:      absorption<absorbed>
// COST-NOT:      absorption<cost>
func.func @static_prefill(%x: tensor<16x16xf32>, %ckv: tensor<0x6xf32>, %kr: tensor<0x4xf32>,
                          %wq: tensor<16x16xf32>, %wkva: tensor<10x16xf32>, %kvn: tensor<6xf32>,
                          %wkvb: tensor<14x6xf32>, %wo: tensor<16x6xf32>) -> tensor<16x16xf32> {
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q(%wq) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 2 : i64, qk_nope_head_dim = 4 : i64, qk_rope_head_dim = 4 : i64, v_head_dim = 3 : i64}
      : (tensor<16x16xf32>, tensor<0x6xf32>, tensor<0x4xf32>, tensor<16x16xf32>,
         tensor<10x16xf32>, tensor<6xf32>, tensor<14x6xf32>, tensor<16x6xf32>)
      -> (tensor<16x16xf32>, tensor<16x6xf32>, tensor<16x4xf32>)
  return %out : tensor<16x16xf32>
}

// -----

// An op that already has a form is left alone, whatever the mode: absorbed
// here, naive in the next one.
// NAIVE-LABEL: func.func @explicit
// NAIVE:         weight_absorption = #mla.absorption<absorbed>
// COST-LABEL:  func.func @explicit
// COST:          weight_absorption = #mla.absorption<absorbed>
func.func @explicit(%x: tensor<16x16xf32>, %ckv: tensor<0x6xf32>, %kr: tensor<0x4xf32>,
                    %wq: tensor<16x16xf32>, %wkva: tensor<10x16xf32>, %kvn: tensor<6xf32>,
                    %wkvb: tensor<14x6xf32>, %wo: tensor<16x6xf32>) -> tensor<16x16xf32> {
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q(%wq) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 2 : i64, qk_nope_head_dim = 4 : i64, qk_rope_head_dim = 4 : i64, v_head_dim = 3 : i64,
       weight_absorption = #mla.absorption<absorbed>}
      : (tensor<16x16xf32>, tensor<0x6xf32>, tensor<0x4xf32>, tensor<16x16xf32>,
         tensor<10x16xf32>, tensor<6xf32>, tensor<14x6xf32>, tensor<16x6xf32>)
      -> (tensor<16x16xf32>, tensor<16x6xf32>, tensor<16x4xf32>)
  return %out : tensor<16x16xf32>
}

// -----

// COST-LABEL:  func.func @explicit_naive
// COST:          weight_absorption = #mla.absorption<naive>
func.func @explicit_naive(%x: tensor<1x16xf32>, %ckv: tensor<8x6xf32>, %kr: tensor<8x4xf32>,
                          %wq: tensor<16x16xf32>, %wkva: tensor<10x16xf32>, %kvn: tensor<6xf32>,
                          %wkvb: tensor<14x6xf32>, %wo: tensor<16x6xf32>) -> tensor<1x16xf32> {
  %out, %c, %k = mla.attention %x cache(%ckv, %kr) q(%wq) kv(%wkva, %kvn, %wkvb) o(%wo)
      {num_heads = 2 : i64, qk_nope_head_dim = 4 : i64, qk_rope_head_dim = 4 : i64, v_head_dim = 3 : i64,
       weight_absorption = #mla.absorption<naive>}
      : (tensor<1x16xf32>, tensor<8x6xf32>, tensor<8x4xf32>, tensor<16x16xf32>,
         tensor<10x16xf32>, tensor<6xf32>, tensor<14x6xf32>, tensor<16x6xf32>)
      -> (tensor<1x16xf32>, tensor<9x6xf32>, tensor<9x4xf32>)
  return %out : tensor<1x16xf32>
}
