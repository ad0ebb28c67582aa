// RUN: moe-opt %s --split-input-file --convert-moe-to-linalg | FileCheck %s
// Structure of the lowering; the numbers are checked end to end against the
// PyTorch reference in test/Integration.

// A whole Mixtral layer lowers to upstream ops only.
// CHECK-LABEL: func.func @mixtral
// CHECK-NOT:   moe.
// Router: the logits x · Wᵀ (a linalg.matmul, which the CPU pipeline puts
// on its vector kernel), the softmax, then k argmax steps that reduce over
// the experts inside an scf.for.
// CHECK:       linalg.matmul
// CHECK:       math.exp
// CHECK:       scf.for
// CHECK:         linalg.generic {{.*}}iterator_types = ["parallel", "reduction"]
// CHECK:           arith.cmpf ogt
// Dispatch: sequential bookkeeping, then a gather of the rows.
// CHECK:       scf.for
// CHECK:         scf.for
// CHECK:           tensor.insert
// CHECK:       linalg.generic
// CHECK:         tensor.extract %{{.+}}[
// Grouped FFN: the list of experts with rows, then a grouped GEMM per
// projection (one parallel loop over (expert, column tile) tasks, each on
// its expert's rows, from its first row, and weight matrix).
// CHECK:       scf.for
// CHECK:         scf.if
// CHECK:           tensor.insert
// CHECK:       scf.forall
// CHECK:         tensor.extract_slice {{.*}} : tensor<4x32x16xf32> to tensor<32x16xf32>
// CHECK:         vector.transfer_read {{.*}} : tensor<10x16xf32>, vector<16xf32>
// CHECK:         tensor.parallel_insert_slice
// Combine: a gather-based reduction over the slots.
// CHECK:       linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "reduction"]
// CHECK:         scf.if
// CHECK-NOT:   moe.
// CHECK:       return
func.func @mixtral(%x: tensor<5x16xf32>, %wg: tensor<4x16xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>, %w3: tensor<4x32x16xf32>) -> tensor<5x16xf32> {
  %ids, %w = moe.route %x weight(%wg) k = 2 scoring = softmax {renormalize} : (tensor<5x16xf32>, tensor<4x16xf32>) -> (tensor<5x2xi32>, tensor<5x2xf32>)
  %rows, %counts, %map = moe.dispatch dropless %x, %ids experts = 4 : (tensor<5x16xf32>, tensor<5x2xi32>) -> (tensor<10x16xf32>, tensor<4xi32>, tensor<5x2xi32>)
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc3(%w3) fc2(%w2) act = silu gating = separate : (tensor<10x16xf32>, tensor<4xi32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>, tensor<4x32x16xf32>) -> tensor<10x16xf32>
  %out = moe.combine dropless %y, %map, %w : (tensor<10x16xf32>, tensor<5x2xi32>, tensor<5x2xf32>) -> tensor<5x16xf32>
  return %out : tensor<5x16xf32>
}

// -----

// Every router, dispatch, activation and gating variant lowers, with static
// and dynamic token counts.
// CHECK-LABEL: func.func @variants
// CHECK-NOT:   moe.
// CHECK:       return
func.func @variants(%l: tensor<?x8xf32>, %x: tensor<?x16xbf16>, %bias: tensor<8xf32>,
                    %w1: tensor<8x64x16xbf16>, %w2: tensor<8x16x32xbf16>, %b1: tensor<8x64xbf16>,
                    %sg: tensor<1x16xbf16>, %s1: tensor<32x16xbf16>, %s2: tensor<16x32xbf16>, %s3: tensor<32x16xbf16>) {
  %i1, %p1 = moe.route %l selection_bias(%bias) k = 2 scoring = sigmoid {n_group = 4, topk_group = 2, group_score = #moe.group_score<top2_sum>, renormalize, renormalize_epsilon = 1.0e-20 : f32, routed_scaling_factor = 2.5 : f32} : (tensor<?x8xf32>, tensor<8xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  %i2, %p2 = moe.route %l k = 3 scoring = softmax {n_group = 4, topk_group = 2, group_score = #moe.group_score<max>, group_mask_fill = #moe.mask_fill<zero>} : (tensor<?x8xf32>) -> (tensor<?x3xi32>, tensor<?x3xf32>)
  %i3, %p3 = moe.route %l k = 2 scoring = topk_softmax {capacity_factor = 1.0 : f32, renormalize_after_drop} : (tensor<?x8xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  %i4, %p4 = moe.route %l k = 2 scoring = softmax {mode = #moe.routing_mode<expert_choice>, expert_capacity = 3} : (tensor<?x8xf32>) -> (tensor<8x3xi32>, tensor<8x3xf32>)
  %r1, %c1, %m1 = moe.dispatch capacity %x, %i1 experts = 8 {expert_capacity = 2} : (tensor<?x16xbf16>, tensor<?x2xi32>) -> (tensor<8x2x16xbf16>, tensor<8xi32>, tensor<?x2xi32>)
  %y1 = moe.expert_ffn %r1, %c1 fc1(%w1) fc2(%w2) fc1_bias(%b1) act = silu gating = interleaved {activation_alpha = 1.702 : f32, activation_beta = 1.0 : f32, clamp_limit = 7.0 : f32} : (tensor<8x2x16xbf16>, tensor<8xi32>, tensor<8x64x16xbf16>, tensor<8x16x32xbf16>, tensor<8x64xbf16>) -> tensor<8x2x16xbf16>
  %o1 = moe.combine capacity %y1, %m1, %p1 passthrough(%x) : (tensor<8x2x16xbf16>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<?x16xbf16>) -> tensor<?x16xbf16>
  %r4, %c4, %m4 = moe.dispatch expert_choice %x, %i4 experts = 8 : (tensor<?x16xbf16>, tensor<8x3xi32>) -> (tensor<8x3x16xbf16>, tensor<8xi32>, tensor<?x8xi32>)
  %y4 = moe.expert_ffn %r4, %c4 fc1(%w1) fc2(%w2) act = gelu gating = concatenated : (tensor<8x3x16xbf16>, tensor<8xi32>, tensor<8x64x16xbf16>, tensor<8x16x32xbf16>) -> tensor<8x3x16xbf16>
  %o4 = moe.combine expert_choice %y4, %m4, %p4 : (tensor<8x3x16xbf16>, tensor<?x8xi32>, tensor<8x3xf32>) -> tensor<?x16xbf16>
  %sh = moe.shared_expert %x fc1(%s1) fc3(%s3) fc2(%s2) gate(%sg) act = silu gating = separate : (tensor<?x16xbf16>, tensor<32x16xbf16>, tensor<16x32xbf16>, tensor<32x16xbf16>, tensor<1x16xbf16>) -> tensor<?x16xbf16>
  %d1 = moe.shared_expert %x fc1(%s1) fc2(%s2) act = gelu_tanh : (tensor<?x16xbf16>, tensor<32x16xbf16>, tensor<16x32xbf16>) -> tensor<?x16xbf16>
  %d2 = moe.shared_expert %x fc1(%s1) fc2(%s2) act = relu {clamp_limit = 3.0 : f32} : (tensor<?x16xbf16>, tensor<32x16xbf16>, tensor<16x32xbf16>) -> tensor<?x16xbf16>
  return
}
