// RUN: moe-opt %s --split-input-file --moe-fuse-dispatch-combine | FileCheck %s
// RUN: moe-opt %s --split-input-file --moe-optimize | FileCheck %s --check-prefix=PIPELINE
// RUN: moe-opt %s --split-input-file --moe-optimize=fuse-dispatch-combine=false | FileCheck %s --check-prefix=OFF
// RUN: moe-opt %s --split-input-file --moe-fuse-dispatch-combine --remarks-filter=moe-fuse-dispatch-combine -o /dev/null 2>&1 | FileCheck %s --check-prefix=REMARK
// The numbers of fused layers are checked against the PyTorch reference,
// and bitwise against the unfused chain, in test/Integration
// (test_moe_ops.py, test_hf_models.py).

// OFF-NOT: moe.routed_ffn

// Mixtral: the chain becomes one op on the hidden states, the router's ids
// and weights, with the FFN's weights and attributes.
// CHECK-LABEL: func.func @mixtral(
// CHECK-SAME:      %[[H:[^:]*]]: tensor<?x32xf32>, %[[IDS:[^:]*]]: tensor<?x2xi32>, %[[W:[^:]*]]: tensor<?x2xf32>, %[[W1:[^:]*]]: tensor<4x16x32xf32>, %[[W2:[^:]*]]: tensor<4x32x16xf32>, %[[W3:[^:]*]]: tensor<4x16x32xf32>
// CHECK-NEXT:    %[[OUT:.*]] = moe.routed_ffn %[[H]], %[[IDS]], %[[W]] fc1(%[[W1]]) fc3(%[[W3]]) fc2(%[[W2]]) act = silu gating = separate {clamp_limit = 7.000000e+00 : f32} : (tensor<?x32xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x16x32xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<?x32xf32>
// CHECK-NEXT:    return %[[OUT]]
// The default pipeline fuses gate/up first; the attribute carries over.
// PIPELINE-LABEL: func.func @mixtral(
// PIPELINE:         moe.routed_ffn {{.*}} {clamp_limit = 7.000000e+00 : f32, fuse_gate_up}
// PIPELINE-NOT:     moe.dispatch
// PIPELINE:         return
// REMARK: [Passed] DispatchCombineFusion | Category:moe-fuse-dispatch-combine:moe.combine | Remark="dispatch, expert FFN and combine fused: rows read in place, combine in the down projection"
func.func @mixtral(%h: tensor<?x32xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>,
                   %w1: tensor<4x16x32xf32>, %w2: tensor<4x32x16xf32>, %w3: tensor<4x16x32xf32>) -> tensor<?x32xf32> {
  %rows, %counts, %map = moe.dispatch dropless %h, %ids experts = 4
      : (tensor<?x32xf32>, tensor<?x2xi32>) -> (tensor<?x32xf32>, tensor<4xi32>, tensor<?x2xi32>)
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc3(%w3) fc2(%w2) act = silu gating = separate {clamp_limit = 7.0 : f32}
      : (tensor<?x32xf32>, tensor<4xi32>, tensor<4x16x32xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<?x32xf32>
  %out = moe.combine dropless %y, %map, %w : (tensor<?x32xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x32xf32>
  return %out : tensor<?x32xf32>
}

// -----

// bf16 activations, interleaved gate/up with biases (ONNX Runtime's MoE),
// static token count: everything carries over.
// CHECK-LABEL: func.func @biases_bf16(
// CHECK:         %[[OUT:.*]] = moe.routed_ffn %{{.*}}, %{{.*}}, %{{.*}} fc1(%{{.*}}) fc2(%{{.*}}) fc1_bias(%{{.*}}) fc2_bias(%{{.*}}) act = silu gating = interleaved {activation_alpha = 1.702000e+00 : f32, activation_beta = 1.000000e+00 : f32} : (tensor<5x16xbf16>, tensor<5x2xi32>, tensor<5x2xf32>, tensor<3x32x16xbf16>, tensor<3x16x16xbf16>, tensor<3x32xbf16>, tensor<3x16xbf16>) -> tensor<5x16xbf16>
// CHECK-NOT:     moe.combine
func.func @biases_bf16(%h: tensor<5x16xbf16>, %ids: tensor<5x2xi32>, %w: tensor<5x2xf32>,
                       %w1: tensor<3x32x16xbf16>, %w2: tensor<3x16x16xbf16>,
                       %b1: tensor<3x32xbf16>, %b2: tensor<3x16xbf16>) -> tensor<5x16xbf16> {
  %rows, %counts, %map = moe.dispatch dropless %h, %ids experts = 3
      : (tensor<5x16xbf16>, tensor<5x2xi32>) -> (tensor<10x16xbf16>, tensor<3xi32>, tensor<5x2xi32>)
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc2(%w2) fc1_bias(%b1) fc2_bias(%b2) act = silu gating = interleaved
      {activation_alpha = 1.702 : f32, activation_beta = 1.0 : f32}
      : (tensor<10x16xbf16>, tensor<3xi32>, tensor<3x32x16xbf16>, tensor<3x16x16xbf16>, tensor<3x32xbf16>, tensor<3x16xbf16>) -> tensor<10x16xbf16>
  %out = moe.combine dropless %y, %map, %w : (tensor<10x16xbf16>, tensor<5x2xi32>, tensor<5x2xf32>) -> tensor<5x16xbf16>
  return %out : tensor<5x16xbf16>
}

// -----

// DeepSeek-V3 with a shared expert, through the default pipeline: the
// shared expert joins the routed stack first, then the whole chain is fused;
// the stacked weights feed moe.routed_ffn.
// PIPELINE-LABEL: func.func @shared_then_fused(
// PIPELINE-DAG:     %[[F1:.*]] = moe.stack_experts
// PIPELINE-DAG:     %[[F2:.*]] = moe.stack_experts
// PIPELINE-DAG:     %[[F3:.*]] = moe.stack_experts
// PIPELINE:         moe.routed_ffn %{{.*}}, %{{.*}}, %{{.*}} fc1(%[[F1]]) fc3(%[[F3]]) fc2(%[[F2]]) act = silu gating = separate {fuse_gate_up} : (tensor<?x32xf32>, tensor<?x3xi32>, tensor<?x3xf32>, tensor<9x16x32xf32>, tensor<9x32x16xf32>, tensor<9x16x32xf32>)
// PIPELINE-NOT:     moe.shared_expert
// PIPELINE-NOT:     moe.combine
// PIPELINE:         return
func.func @shared_then_fused(%h: tensor<?x32xf32>, %r: tensor<8x32xf32>,
                             %w1: tensor<8x16x32xf32>, %w2: tensor<8x32x16xf32>, %w3: tensor<8x16x32xf32>,
                             %s1: tensor<16x32xf32>, %s2: tensor<32x16xf32>, %s3: tensor<16x32xf32>) -> tensor<?x32xf32> {
  %ids, %wts = moe.route %h weight(%r) k = 2 scoring = sigmoid
      : (tensor<?x32xf32>, tensor<8x32xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  %rows, %counts, %map = moe.dispatch dropless %h, %ids experts = 8
      : (tensor<?x32xf32>, tensor<?x2xi32>) -> (tensor<?x32xf32>, tensor<8xi32>, tensor<?x2xi32>)
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc3(%w3) fc2(%w2) act = silu gating = separate
      : (tensor<?x32xf32>, tensor<8xi32>, tensor<8x16x32xf32>, tensor<8x32x16xf32>, tensor<8x16x32xf32>) -> tensor<?x32xf32>
  %routed = moe.combine dropless %y, %map, %wts : (tensor<?x32xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x32xf32>
  %shared = moe.shared_expert %h fc1(%s1) fc3(%s3) fc2(%s2) act = silu gating = separate
      : (tensor<?x32xf32>, tensor<16x32xf32>, tensor<32x16xf32>, tensor<16x32xf32>) -> tensor<?x32xf32>
  %out = arith.addf %routed, %shared : tensor<?x32xf32>
  return %out : tensor<?x32xf32>
}

// -----

// Must not fire: capacity layout (the slabs are the FFN's input).
// CHECK-LABEL: func.func @capacity(
// CHECK:         moe.dispatch capacity
// CHECK:         moe.expert_ffn
// CHECK:         moe.combine capacity
// CHECK-NOT:     moe.routed_ffn
func.func @capacity(%h: tensor<8x16xf32>, %ids: tensor<8x1xi32>, %w: tensor<8x1xf32>,
                    %w1: tensor<4x16x16xf32>, %w2: tensor<4x16x16xf32>) -> tensor<8x16xf32> {
  %rows, %counts, %map = moe.dispatch capacity %h, %ids experts = 4 {expert_capacity = 2 : i64}
      : (tensor<8x16xf32>, tensor<8x1xi32>) -> (tensor<4x2x16xf32>, tensor<4xi32>, tensor<8x1xi32>)
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc2(%w2) act = relu
      : (tensor<4x2x16xf32>, tensor<4xi32>, tensor<4x16x16xf32>, tensor<4x16x16xf32>) -> tensor<4x2x16xf32>
  %out = moe.combine capacity %y, %map, %w : (tensor<4x2x16xf32>, tensor<8x1xi32>, tensor<8x1xf32>) -> tensor<8x16xf32>
  return %out : tensor<8x16xf32>
}

// -----

// Must not fire: a passthrough for dropped tokens.
// CHECK-LABEL: func.func @passthrough(
// CHECK:         moe.combine dropless {{.*}} passthrough
// CHECK-NOT:     moe.routed_ffn
// REMARK: [Missed] DispatchCombineFusion | Category:moe-fuse-dispatch-combine:moe.combine | Remark="not fused: ", Remark="the combine has a passthrough for dropped tokens"
func.func @passthrough(%h: tensor<?x16xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>,
                       %w1: tensor<4x16x16xf32>, %w2: tensor<4x16x16xf32>) -> tensor<?x16xf32> {
  %rows, %counts, %map = moe.dispatch dropless %h, %ids experts = 4
      : (tensor<?x16xf32>, tensor<?x2xi32>) -> (tensor<?x16xf32>, tensor<4xi32>, tensor<?x2xi32>)
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc2(%w2) act = relu
      : (tensor<?x16xf32>, tensor<4xi32>, tensor<4x16x16xf32>, tensor<4x16x16xf32>) -> tensor<?x16xf32>
  %out = moe.combine dropless %y, %map, %w passthrough(%h)
      : (tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<?x16xf32>) -> tensor<?x16xf32>
  return %out : tensor<?x16xf32>
}

// -----

// Must not fire: the expert outputs are used elsewhere (returned).
// CHECK-LABEL: func.func @expert_out_used(
// CHECK:         moe.combine dropless
// CHECK-NOT:     moe.routed_ffn
// REMARK: Remark="not fused: ", Remark="the expert output has other uses"
func.func @expert_out_used(%h: tensor<?x16xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>,
                           %w1: tensor<4x16x16xf32>, %w2: tensor<4x16x16xf32>) -> (tensor<?x16xf32>, tensor<?x16xf32>) {
  %rows, %counts, %map = moe.dispatch dropless %h, %ids experts = 4
      : (tensor<?x16xf32>, tensor<?x2xi32>) -> (tensor<?x16xf32>, tensor<4xi32>, tensor<?x2xi32>)
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc2(%w2) act = relu
      : (tensor<?x16xf32>, tensor<4xi32>, tensor<4x16x16xf32>, tensor<4x16x16xf32>) -> tensor<?x16xf32>
  %out = moe.combine dropless %y, %map, %w : (tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x16xf32>
  return %out, %y : tensor<?x16xf32>, tensor<?x16xf32>
}

// -----

// Must not fire: the dispatch's counts are used elsewhere (a load profile).
// CHECK-LABEL: func.func @counts_used(
// CHECK:         moe.dispatch dropless
// CHECK-NOT:     moe.routed_ffn
// REMARK: Remark="not fused: ", Remark="the dispatch results have other uses"
func.func @counts_used(%h: tensor<?x16xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>,
                       %w1: tensor<4x16x16xf32>, %w2: tensor<4x16x16xf32>) -> (tensor<?x16xf32>, tensor<4xi32>) {
  %rows, %counts, %map = moe.dispatch dropless %h, %ids experts = 4
      : (tensor<?x16xf32>, tensor<?x2xi32>) -> (tensor<?x16xf32>, tensor<4xi32>, tensor<?x2xi32>)
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc2(%w2) act = relu
      : (tensor<?x16xf32>, tensor<4xi32>, tensor<4x16x16xf32>, tensor<4x16x16xf32>) -> tensor<?x16xf32>
  %out = moe.combine dropless %y, %map, %w : (tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x16xf32>
  return %out, %counts : tensor<?x16xf32>, tensor<4xi32>
}

// -----

// Must not fire: the FFN runs on rows that are not the dispatch's.
// CHECK-LABEL: func.func @other_rows(
// CHECK:         moe.expert_ffn
// CHECK-NOT:     moe.routed_ffn
// REMARK: Remark="not fused: ", Remark="the expert rows do not come from the dropless moe.dispatch whose mapping the combine reads"
func.func @other_rows(%rows: tensor<?x16xf32>, %counts: tensor<4xi32>, %map: tensor<?x2xi32>, %w: tensor<?x2xf32>,
                      %w1: tensor<4x16x16xf32>, %w2: tensor<4x16x16xf32>) -> tensor<?x16xf32> {
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc2(%w2) act = relu
      : (tensor<?x16xf32>, tensor<4xi32>, tensor<4x16x16xf32>, tensor<4x16x16xf32>) -> tensor<?x16xf32>
  %out = moe.combine dropless %y, %map, %w : (tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x16xf32>
  return %out : tensor<?x16xf32>
}

// -----

// Must not fire: I = 24 is not a multiple of 16 (the FFN runs per expert).
// CHECK-LABEL: func.func @width_24(
// CHECK:         moe.expert_ffn
// CHECK-NOT:     moe.routed_ffn
// REMARK: Remark="not fused: ", Remark="the FFN's weights are dynamic, or I or H is not a multiple of 16"
func.func @width_24(%h: tensor<?x16xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>,
                    %w1: tensor<4x24x16xf32>, %w2: tensor<4x16x24xf32>) -> tensor<?x16xf32> {
  %rows, %counts, %map = moe.dispatch dropless %h, %ids experts = 4
      : (tensor<?x16xf32>, tensor<?x2xi32>) -> (tensor<?x16xf32>, tensor<4xi32>, tensor<?x2xi32>)
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc2(%w2) act = relu
      : (tensor<?x16xf32>, tensor<4xi32>, tensor<4x24x16xf32>, tensor<4x16x24xf32>) -> tensor<?x16xf32>
  %out = moe.combine dropless %y, %map, %w : (tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x16xf32>
  return %out : tensor<?x16xf32>
}

// -----

// Must not fire: dynamic weights.
// CHECK-LABEL: func.func @dynamic_weights(
// CHECK-NOT:     moe.routed_ffn
// REMARK: Remark="not fused: ", Remark="the FFN's weights are dynamic, or I or H is not a multiple of 16"
func.func @dynamic_weights(%h: tensor<?x16xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>,
                           %w1: tensor<4x?x16xf32>, %w2: tensor<4x16x?xf32>) -> tensor<?x16xf32> {
  %rows, %counts, %map = moe.dispatch dropless %h, %ids experts = 4
      : (tensor<?x16xf32>, tensor<?x2xi32>) -> (tensor<?x16xf32>, tensor<4xi32>, tensor<?x2xi32>)
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc2(%w2) act = relu
      : (tensor<?x16xf32>, tensor<4xi32>, tensor<4x?x16xf32>, tensor<4x16x?xf32>) -> tensor<?x16xf32>
  %out = moe.combine dropless %y, %map, %w : (tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x16xf32>
  return %out : tensor<?x16xf32>
}

// -----

// Must not fire: only the combine is inside the branch (fusing would move
// the dispatch and both GEMMs into it).
// CHECK-LABEL: func.func @combine_in_branch(
// CHECK:         moe.expert_ffn
// CHECK:         scf.if
// CHECK:           moe.combine dropless
// CHECK-NOT:     moe.routed_ffn
// REMARK: Remark="not fused: ", Remark="the dispatch, FFN and combine are not in one block (fusing would move work into a loop or branch)"
func.func @combine_in_branch(%c: i1, %h: tensor<?x16xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>,
                             %w1: tensor<4x16x16xf32>, %w2: tensor<4x16x16xf32>) -> tensor<?x16xf32> {
  %rows, %counts, %map = moe.dispatch dropless %h, %ids experts = 4
      : (tensor<?x16xf32>, tensor<?x2xi32>) -> (tensor<?x16xf32>, tensor<4xi32>, tensor<?x2xi32>)
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc2(%w2) act = relu
      : (tensor<?x16xf32>, tensor<4xi32>, tensor<4x16x16xf32>, tensor<4x16x16xf32>) -> tensor<?x16xf32>
  %r = scf.if %c -> tensor<?x16xf32> {
    %out = moe.combine dropless %y, %map, %w : (tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x16xf32>
    scf.yield %out : tensor<?x16xf32>
  } else {
    scf.yield %h : tensor<?x16xf32>
  }
  return %r : tensor<?x16xf32>
}
