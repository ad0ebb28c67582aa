// Round trip of every moe op and every router, dispatch and activation
// variant: custom form -> print -> parse, and generic form -> parse.
// RUN: moe-opt %s | moe-opt | FileCheck %s
// RUN: moe-opt %s --mlir-print-op-generic | moe-opt | FileCheck %s
// RUN: moe-opt %s --emit-bytecode | moe-opt | FileCheck %s

// CHECK-LABEL: func.func @route_softmax_logits
// CHECK: moe.route %{{.*}} k = 2 scoring = softmax {renormalize} : (tensor<?x8xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
func.func @route_softmax_logits(%logits: tensor<?x8xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>) {
  %i, %w = moe.route %logits k = 2 scoring = softmax {renormalize}
      : (tensor<?x8xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return %i, %w : tensor<?x2xi32>, tensor<?x2xf32>
}

// Qwen2-MoE without norm_topk_prob; the gate nn.Linear runs in bf16.
// CHECK-LABEL: func.func @route_hidden_bf16
// CHECK: moe.route [[X:%.+]] weight([[W:%.+]]) k = 4 scoring = softmax {round_logits} : (tensor<7x32xbf16>, tensor<60x32xbf16>) -> (tensor<7x4xi32>, tensor<7x4xf32>)
func.func @route_hidden_bf16(%x: tensor<7x32xbf16>, %w: tensor<60x32xbf16>) -> (tensor<7x4xi32>, tensor<7x4xf32>) {
  %i, %p = moe.route %x weight(%w) k = 4 scoring = softmax {round_logits}
      : (tensor<7x32xbf16>, tensor<60x32xbf16>) -> (tensor<7x4xi32>, tensor<7x4xf32>)
  return %i, %p : tensor<7x4xi32>, tensor<7x4xf32>
}

// A router nn.Linear with a bias (the seeds' MoELayer), f16 activations.
// CHECK-LABEL: func.func @route_router_bias
// CHECK: moe.route %{{.*}} weight(%{{.*}}) router_bias(%{{.*}}) k = 2 scoring = topk_softmax : (tensor<?x16xf16>, tensor<4x16xf16>, tensor<4xf16>)
func.func @route_router_bias(%x: tensor<?x16xf16>, %w: tensor<4x16xf16>, %b: tensor<4xf16>) -> (tensor<?x2xi32>, tensor<?x2xf32>) {
  %i, %p = moe.route %x weight(%w) router_bias(%b) k = 2 scoring = topk_softmax
      : (tensor<?x16xf16>, tensor<4x16xf16>, tensor<4xf16>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return %i, %p : tensor<?x2xi32>, tensor<?x2xf32>
}

// DeepSeek-V3: sigmoid, selection bias, top-2-sum groups, -inf mask.
// CHECK-LABEL: func.func @route_deepseek_v3
// CHECK: moe.route %{{.*}} weight(%{{.*}}) selection_bias(%{{.*}}) k = 8 scoring = sigmoid
// CHECK-SAME: group_score = #moe.group_score<top2_sum>
// CHECK-SAME: n_group = 8 : i64
// CHECK-SAME: renormalize
// CHECK-SAME: renormalize_epsilon = 9.99999968E-21 : f32
// CHECK-SAME: routed_scaling_factor = 2.500000e+00 : f32
// CHECK-SAME: topk_group = 4 : i64
func.func @route_deepseek_v3(%x: tensor<?x64xbf16>, %w: tensor<64x64xf32>, %bias: tensor<64xf32>) -> (tensor<?x8xi32>, tensor<?x8xf32>) {
  %i, %p = moe.route %x weight(%w) selection_bias(%bias) k = 8 scoring = sigmoid
      {n_group = 8, topk_group = 4, group_score = #moe.group_score<top2_sum>,
       renormalize, renormalize_epsilon = 1.0e-20 : f32, routed_scaling_factor = 2.5 : f32}
      : (tensor<?x64xbf16>, tensor<64x64xf32>, tensor<64xf32>) -> (tensor<?x8xi32>, tensor<?x8xf32>)
  return %i, %p : tensor<?x8xi32>, tensor<?x8xf32>
}

// DeepSeek-V2 group_limited_greedy (group max), older HF's 0.0 mask fill.
// CHECK-LABEL: func.func @route_deepseek_v2
// CHECK: moe.route %{{.*}} k = 6 scoring = softmax
// CHECK-SAME: group_mask_fill = #moe.mask_fill<zero>
// CHECK-SAME: group_score = #moe.group_score<max>
func.func @route_deepseek_v2(%logits: tensor<?x160xf32>) -> (tensor<?x6xi32>, tensor<?x6xf32>) {
  %i, %p = moe.route %logits k = 6 scoring = softmax
      {n_group = 8, topk_group = 3, group_score = #moe.group_score<max>,
       group_mask_fill = #moe.mask_fill<zero>, routed_scaling_factor = 16.0 : f32}
      : (tensor<?x160xf32>) -> (tensor<?x6xi32>, tensor<?x6xf32>)
  return %i, %p : tensor<?x6xi32>, tensor<?x6xf32>
}

// Switch Transformers: top-1 with a fixed per-expert capacity.
// CHECK-LABEL: func.func @route_switch_capacity
// CHECK: moe.route %{{.*}} k = 1 scoring = softmax {expert_capacity = 3 : i64} : (tensor<10x4xf32>) -> (tensor<10x1xi32>, tensor<10x1xf32>)
func.func @route_switch_capacity(%logits: tensor<10x4xf32>) -> (tensor<10x1xi32>, tensor<10x1xf32>) {
  %i, %p = moe.route %logits k = 1 scoring = softmax {expert_capacity = 3}
      : (tensor<10x4xf32>) -> (tensor<10x1xi32>, tensor<10x1xf32>)
  return %i, %p : tensor<10x1xi32>, tensor<10x1xf32>
}

// GShard-style top-2 with a capacity factor.
// CHECK-LABEL: func.func @route_capacity_factor
// CHECK: moe.route %{{.*}} k = 2 scoring = softmax {capacity_factor = 1.250000e+00 : f32, renormalize}
func.func @route_capacity_factor(%logits: tensor<?x8xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>) {
  %i, %p = moe.route %logits k = 2 scoring = softmax {capacity_factor = 1.25 : f32, renormalize}
      : (tensor<?x8xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return %i, %p : tensor<?x2xi32>, tensor<?x2xf32>
}

// NLLB-MoE / GShard top-2: capacity, weights renormalized after dropping.
// CHECK-LABEL: func.func @route_nllb_top2
// CHECK: moe.route %{{.*}} k = 2 scoring = softmax {expert_capacity = 4 : i64, renormalize_after_drop}
func.func @route_nllb_top2(%logits: tensor<12x8xf32>) -> (tensor<12x2xi32>, tensor<12x2xf32>) {
  %i, %p = moe.route %logits k = 2 scoring = softmax {expert_capacity = 4, renormalize_after_drop}
      : (tensor<12x8xf32>) -> (tensor<12x2xi32>, tensor<12x2xf32>)
  return %i, %p : tensor<12x2xi32>, tensor<12x2xf32>
}

// Expert choice: C = ceil(2.0 * 16 * 1 / 4) = 8 tokens per expert.
// CHECK-LABEL: func.func @route_expert_choice
// CHECK: moe.route %{{.*}} k = 1 scoring = softmax {capacity_factor = 2.000000e+00 : f32, mode = #moe.routing_mode<expert_choice>} : (tensor<16x4xf32>) -> (tensor<4x8xi32>, tensor<4x8xf32>)
func.func @route_expert_choice(%logits: tensor<16x4xf32>) -> (tensor<4x8xi32>, tensor<4x8xf32>) {
  %i, %p = moe.route %logits k = 1 scoring = softmax
      {mode = #moe.routing_mode<expert_choice>, capacity_factor = 2.0 : f32}
      : (tensor<16x4xf32>) -> (tensor<4x8xi32>, tensor<4x8xf32>)
  return %i, %p : tensor<4x8xi32>, tensor<4x8xf32>
}

// Expert choice with dynamic T and a fixed capacity, sigmoid scores.
// CHECK-LABEL: func.func @route_expert_choice_dynamic
// CHECK: moe.route %{{.*}} k = 2 scoring = sigmoid {expert_capacity = 5 : i64, mode = #moe.routing_mode<expert_choice>} : (tensor<?x4xf32>) -> (tensor<4x5xi32>, tensor<4x5xf32>)
func.func @route_expert_choice_dynamic(%logits: tensor<?x4xf32>) -> (tensor<4x5xi32>, tensor<4x5xf32>) {
  %i, %p = moe.route %logits k = 2 scoring = sigmoid
      {mode = #moe.routing_mode<expert_choice>, expert_capacity = 5}
      : (tensor<?x4xf32>) -> (tensor<4x5xi32>, tensor<4x5xf32>)
  return %i, %p : tensor<4x5xi32>, tensor<4x5xf32>
}

// CHECK-LABEL: func.func @dispatch_dropless
// CHECK: moe.dispatch dropless %{{.*}}, %{{.*}} experts = 8 : (tensor<5x16xbf16>, tensor<5x2xi32>) -> (tensor<10x16xbf16>, tensor<8xi32>, tensor<5x2xi32>)
func.func @dispatch_dropless(%x: tensor<5x16xbf16>, %ids: tensor<5x2xi32>) -> (tensor<10x16xbf16>, tensor<8xi32>, tensor<5x2xi32>) {
  %r, %c, %m = moe.dispatch dropless %x, %ids experts = 8
      : (tensor<5x16xbf16>, tensor<5x2xi32>) -> (tensor<10x16xbf16>, tensor<8xi32>, tensor<5x2xi32>)
  return %r, %c, %m : tensor<10x16xbf16>, tensor<8xi32>, tensor<5x2xi32>
}

// CHECK-LABEL: func.func @dispatch_capacity
// CHECK: moe.dispatch capacity %{{.*}}, %{{.*}} experts = 4 {expert_capacity = 3 : i64} : (tensor<?x16xf32>, tensor<?x1xi32>) -> (tensor<4x3x16xf32>, tensor<4xi32>, tensor<?x1xi32>)
func.func @dispatch_capacity(%x: tensor<?x16xf32>, %ids: tensor<?x1xi32>) -> (tensor<4x3x16xf32>, tensor<4xi32>, tensor<?x1xi32>) {
  %r, %c, %m = moe.dispatch capacity %x, %ids experts = 4 {expert_capacity = 3}
      : (tensor<?x16xf32>, tensor<?x1xi32>) -> (tensor<4x3x16xf32>, tensor<4xi32>, tensor<?x1xi32>)
  return %r, %c, %m : tensor<4x3x16xf32>, tensor<4xi32>, tensor<?x1xi32>
}

// C = ceil(1.5 * 10 * 2 / 4) = 8.
// CHECK-LABEL: func.func @dispatch_capacity_factor
// CHECK: moe.dispatch capacity %{{.*}}, %{{.*}} experts = 4 {capacity_factor = 1.500000e+00 : f32} : (tensor<10x16xf16>, tensor<10x2xi32>) -> (tensor<4x8x16xf16>, tensor<4xi32>, tensor<10x2xi32>)
func.func @dispatch_capacity_factor(%x: tensor<10x16xf16>, %ids: tensor<10x2xi32>) -> (tensor<4x8x16xf16>, tensor<4xi32>, tensor<10x2xi32>) {
  %r, %c, %m = moe.dispatch capacity %x, %ids experts = 4 {capacity_factor = 1.5 : f32}
      : (tensor<10x16xf16>, tensor<10x2xi32>) -> (tensor<4x8x16xf16>, tensor<4xi32>, tensor<10x2xi32>)
  return %r, %c, %m : tensor<4x8x16xf16>, tensor<4xi32>, tensor<10x2xi32>
}

// CHECK-LABEL: func.func @dispatch_expert_choice
// CHECK: moe.dispatch expert_choice %{{.*}}, %{{.*}} experts = 4 : (tensor<16x32xf32>, tensor<4x8xi32>) -> (tensor<4x8x32xf32>, tensor<4xi32>, tensor<16x4xi32>)
func.func @dispatch_expert_choice(%x: tensor<16x32xf32>, %ids: tensor<4x8xi32>) -> (tensor<4x8x32xf32>, tensor<4xi32>, tensor<16x4xi32>) {
  %r, %c, %m = moe.dispatch expert_choice %x, %ids experts = 4
      : (tensor<16x32xf32>, tensor<4x8xi32>) -> (tensor<4x8x32xf32>, tensor<4xi32>, tensor<16x4xi32>)
  return %r, %c, %m : tensor<4x8x32xf32>, tensor<4xi32>, tensor<16x4xi32>
}

// CHECK-LABEL: func.func @ffn_swiglu_separate
// CHECK: moe.expert_ffn %{{.*}}, %{{.*}} fc1(%{{.*}}) fc3(%{{.*}}) fc2(%{{.*}}) act = silu gating = separate :
func.func @ffn_swiglu_separate(%rows: tensor<?x16xf32>, %counts: tensor<4xi32>, %w1: tensor<4x32x16xbf16>, %w2: tensor<4x16x32xbf16>, %w3: tensor<4x32x16xbf16>) -> tensor<?x16xf32> {
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc3(%w3) fc2(%w2) act = silu gating = separate
      : (tensor<?x16xf32>, tensor<4xi32>, tensor<4x32x16xbf16>, tensor<4x16x32xbf16>, tensor<4x32x16xbf16>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// Fused gate/up weights, concatenated halves.
// CHECK-LABEL: func.func @ffn_swiglu_concatenated
// CHECK: moe.expert_ffn %{{.*}}, %{{.*}} fc1(%{{.*}}) fc2(%{{.*}}) act = silu gating = concatenated :
func.func @ffn_swiglu_concatenated(%rows: tensor<?x16xf32>, %counts: tensor<4xi32>, %w13: tensor<4x64x16xf32>, %w2: tensor<4x16x32xf32>) -> tensor<?x16xf32> {
  %y = moe.expert_ffn %rows, %counts fc1(%w13) fc2(%w2) act = silu gating = concatenated
      : (tensor<?x16xf32>, tensor<4xi32>, tensor<4x64x16xf32>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// ONNX Runtime's swiglu: interleaved rows, alpha, beta, clamp limit, biases.
// CHECK-LABEL: func.func @ffn_swiglu_interleaved_ort
// CHECK: moe.expert_ffn %{{.*}}, %{{.*}} fc1(%{{.*}}) fc2(%{{.*}}) fc1_bias(%{{.*}}) fc2_bias(%{{.*}}) act = silu gating = interleaved
// CHECK-SAME: activation_alpha = 1.702000e+00 : f32, activation_beta = 1.000000e+00 : f32, clamp_limit = 7.000000e+00 : f32
func.func @ffn_swiglu_interleaved_ort(%rows: tensor<?x16xf32>, %counts: tensor<4xi32>, %w1: tensor<4x64x16xf32>, %w2: tensor<4x16x32xf32>, %b1: tensor<4x64xf32>, %b2: tensor<4x16xf32>) -> tensor<?x16xf32> {
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc2(%w2) fc1_bias(%b1) fc2_bias(%b2)
      act = silu gating = interleaved
      {activation_alpha = 1.702 : f32, activation_beta = 1.0 : f32, clamp_limit = 7.0 : f32}
      : (tensor<?x16xf32>, tensor<4xi32>, tensor<4x64x16xf32>, tensor<4x16x32xf32>, tensor<4x64xf32>, tensor<4x16xf32>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// Two-matrix FFNs: relu with biases (Switch), gelu, gelu_tanh, identity.
// CHECK-LABEL: func.func @ffn_two_matrix
// CHECK: moe.expert_ffn %{{.*}}, %{{.*}} fc1(%{{.*}}) fc2(%{{.*}}) fc1_bias(%{{.*}}) fc2_bias(%{{.*}}) act = relu :
// CHECK: moe.expert_ffn %{{.*}}, %{{.*}} fc1(%{{.*}}) fc2(%{{.*}}) act = gelu :
// CHECK: moe.expert_ffn %{{.*}}, %{{.*}} fc1(%{{.*}}) fc2(%{{.*}}) act = gelu_tanh :
// CHECK: moe.expert_ffn %{{.*}}, %{{.*}} fc1(%{{.*}}) fc2(%{{.*}}) act = identity :
func.func @ffn_two_matrix(%rows: tensor<4x3x16xf16>, %counts: tensor<4xi32>, %w1: tensor<4x32x16xf16>, %w2: tensor<4x16x32xf16>, %b1: tensor<4x32xf16>, %b2: tensor<4x16xf16>) -> tensor<4x3x16xf16> {
  %a = moe.expert_ffn %rows, %counts fc1(%w1) fc2(%w2) fc1_bias(%b1) fc2_bias(%b2) act = relu
      : (tensor<4x3x16xf16>, tensor<4xi32>, tensor<4x32x16xf16>, tensor<4x16x32xf16>, tensor<4x32xf16>, tensor<4x16xf16>) -> tensor<4x3x16xf16>
  %b = moe.expert_ffn %a, %counts fc1(%w1) fc2(%w2) act = gelu
      : (tensor<4x3x16xf16>, tensor<4xi32>, tensor<4x32x16xf16>, tensor<4x16x32xf16>) -> tensor<4x3x16xf16>
  %c = moe.expert_ffn %b, %counts fc1(%w1) fc2(%w2) act = gelu_tanh
      : (tensor<4x3x16xf16>, tensor<4xi32>, tensor<4x32x16xf16>, tensor<4x16x32xf16>) -> tensor<4x3x16xf16>
  %d = moe.expert_ffn %c, %counts fc1(%w1) fc2(%w2) act = identity
      : (tensor<4x3x16xf16>, tensor<4xi32>, tensor<4x32x16xf16>, tensor<4x16x32xf16>) -> tensor<4x3x16xf16>
  return %d : tensor<4x3x16xf16>
}

// Separate gating with every bias.
// CHECK-LABEL: func.func @ffn_all_biases
// CHECK: moe.expert_ffn %{{.*}}, %{{.*}} fc1(%{{.*}}) fc3(%{{.*}}) fc2(%{{.*}}) fc1_bias(%{{.*}}) fc3_bias(%{{.*}}) fc2_bias(%{{.*}}) act = gelu gating = separate :
func.func @ffn_all_biases(%rows: tensor<?x16xf32>, %counts: tensor<2xi32>, %w1: tensor<2x8x16xf32>, %w2: tensor<2x16x8xf32>, %w3: tensor<2x8x16xf32>, %b1: tensor<2x8xf32>, %b2: tensor<2x16xf32>, %b3: tensor<2x8xf32>) -> tensor<?x16xf32> {
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc3(%w3) fc2(%w2) fc1_bias(%b1) fc3_bias(%b3) fc2_bias(%b2)
      act = gelu gating = separate
      : (tensor<?x16xf32>, tensor<2xi32>, tensor<2x8x16xf32>, tensor<2x16x8xf32>, tensor<2x8x16xf32>, tensor<2x8xf32>, tensor<2x16xf32>, tensor<2x8xf32>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// CHECK-LABEL: func.func @combine_variants
// CHECK: moe.combine dropless %{{.*}}, %{{.*}}, %{{.*}} : (tensor<?x16xbf16>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x16xbf16>
// CHECK: moe.combine capacity %{{.*}}, %{{.*}}, %{{.*}} passthrough(%{{.*}}) : (tensor<4x3x16xf32>, tensor<?x1xi32>, tensor<?x1xf32>, tensor<?x16xf32>) -> tensor<?x16xf32>
// CHECK: moe.combine expert_choice %{{.*}}, %{{.*}}, %{{.*}} : (tensor<4x8x16xf32>, tensor<16x4xi32>, tensor<4x8xf32>) -> tensor<16x16xf32>
func.func @combine_variants(%y: tensor<?x16xbf16>, %m: tensor<?x2xi32>, %w: tensor<?x2xf32>,
                            %yc: tensor<4x3x16xf32>, %mc: tensor<?x1xi32>, %wc: tensor<?x1xf32>, %x: tensor<?x16xf32>,
                            %ye: tensor<4x8x16xf32>, %me: tensor<16x4xi32>, %we: tensor<4x8xf32>)
    -> (tensor<?x16xbf16>, tensor<?x16xf32>, tensor<16x16xf32>) {
  %a = moe.combine dropless %y, %m, %w
      : (tensor<?x16xbf16>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x16xbf16>
  %b = moe.combine capacity %yc, %mc, %wc passthrough(%x)
      : (tensor<4x3x16xf32>, tensor<?x1xi32>, tensor<?x1xf32>, tensor<?x16xf32>) -> tensor<?x16xf32>
  %c = moe.combine expert_choice %ye, %me, %we
      : (tensor<4x8x16xf32>, tensor<16x4xi32>, tensor<4x8xf32>) -> tensor<16x16xf32>
  return %a, %b, %c : tensor<?x16xbf16>, tensor<?x16xf32>, tensor<16x16xf32>
}

// Qwen2-MoE's gated shared expert and an ungated two-matrix one.
// CHECK-LABEL: func.func @shared_experts
// CHECK: moe.shared_expert %{{.*}} fc1(%{{.*}}) fc3(%{{.*}}) fc2(%{{.*}}) gate(%{{.*}}) act = silu gating = separate : (tensor<?x16xbf16>, tensor<40x16xbf16>, tensor<16x40xbf16>, tensor<40x16xbf16>, tensor<1x16xbf16>) -> tensor<?x16xbf16>
// CHECK: moe.shared_expert %{{.*}} fc1(%{{.*}}) fc2(%{{.*}}) fc1_bias(%{{.*}}) fc2_bias(%{{.*}}) act = gelu_tanh : (tensor<?x16xbf16>, tensor<64x16xf32>, tensor<16x64xf32>, tensor<64xf32>, tensor<16xf32>) -> tensor<?x16xbf16>
func.func @shared_experts(%x: tensor<?x16xbf16>, %g: tensor<40x16xbf16>, %d: tensor<16x40xbf16>, %u: tensor<40x16xbf16>, %sg: tensor<1x16xbf16>,
                          %w1: tensor<64x16xf32>, %w2: tensor<16x64xf32>, %b1: tensor<64xf32>, %b2: tensor<16xf32>) -> (tensor<?x16xbf16>, tensor<?x16xbf16>) {
  %a = moe.shared_expert %x fc1(%g) fc3(%u) fc2(%d) gate(%sg) act = silu gating = separate
      : (tensor<?x16xbf16>, tensor<40x16xbf16>, tensor<16x40xbf16>, tensor<40x16xbf16>, tensor<1x16xbf16>) -> tensor<?x16xbf16>
  %b = moe.shared_expert %x fc1(%w1) fc2(%w2) fc1_bias(%b1) fc2_bias(%b2) act = gelu_tanh
      : (tensor<?x16xbf16>, tensor<64x16xf32>, tensor<16x64xf32>, tensor<64xf32>, tensor<16xf32>) -> tensor<?x16xbf16>
  return %a, %b : tensor<?x16xbf16>, tensor<?x16xbf16>
}

// A whole Switch layer: top-1 with capacity 3, dropped tokens pass through.
// CHECK-LABEL: func.func @switch_layer
// CHECK:      [[IDX:%.+]], [[W:%.+]] = moe.route
// CHECK-NEXT: [[ROWS:%.+]], [[COUNTS:%.+]], [[MAP:%.+]] = moe.dispatch capacity %{{.*}}, [[IDX]]
// CHECK-NEXT: [[Y:%.+]] = moe.expert_ffn [[ROWS]], [[COUNTS]]
// CHECK-NEXT: moe.combine capacity [[Y]], [[MAP]], [[W]] passthrough(
func.func @switch_layer(%x: tensor<10x16xf32>, %wg: tensor<4x16xf32>, %w1: tensor<4x64x16xf32>, %w2: tensor<4x16x64xf32>) -> tensor<10x16xf32> {
  %i, %w = moe.route %x weight(%wg) k = 1 scoring = softmax {expert_capacity = 3}
      : (tensor<10x16xf32>, tensor<4x16xf32>) -> (tensor<10x1xi32>, tensor<10x1xf32>)
  %r, %c, %m = moe.dispatch capacity %x, %i experts = 4 {expert_capacity = 3}
      : (tensor<10x16xf32>, tensor<10x1xi32>) -> (tensor<4x3x16xf32>, tensor<4xi32>, tensor<10x1xi32>)
  %y = moe.expert_ffn %r, %c fc1(%w1) fc2(%w2) act = relu
      : (tensor<4x3x16xf32>, tensor<4xi32>, tensor<4x64x16xf32>, tensor<4x16x64xf32>) -> tensor<4x3x16xf32>
  %o = moe.combine capacity %y, %m, %w passthrough(%x)
      : (tensor<4x3x16xf32>, tensor<10x1xi32>, tensor<10x1xf32>, tensor<10x16xf32>) -> tensor<10x16xf32>
  return %o : tensor<10x16xf32>
}

// A whole expert-choice layer.
// CHECK-LABEL: func.func @expert_choice_layer
// CHECK:      [[IDX:%.+]], [[W:%.+]] = moe.route {{.*}}expert_choice
// CHECK-NEXT: [[ROWS:%.+]], [[COUNTS:%.+]], [[MAP:%.+]] = moe.dispatch expert_choice %{{.*}}, [[IDX]]
// CHECK-NEXT: [[Y:%.+]] = moe.expert_ffn [[ROWS]], [[COUNTS]]
// CHECK-NEXT: moe.combine expert_choice [[Y]], [[MAP]], [[W]] :
func.func @expert_choice_layer(%x: tensor<16x32xf32>, %wg: tensor<4x32xf32>, %w1: tensor<4x64x32xf32>, %w2: tensor<4x32x64xf32>) -> tensor<16x32xf32> {
  %i, %w = moe.route %x weight(%wg) k = 2 scoring = softmax {mode = #moe.routing_mode<expert_choice>}
      : (tensor<16x32xf32>, tensor<4x32xf32>) -> (tensor<4x8xi32>, tensor<4x8xf32>)
  %r, %c, %m = moe.dispatch expert_choice %x, %i experts = 4
      : (tensor<16x32xf32>, tensor<4x8xi32>) -> (tensor<4x8x32xf32>, tensor<4xi32>, tensor<16x4xi32>)
  %y = moe.expert_ffn %r, %c fc1(%w1) fc2(%w2) act = gelu
      : (tensor<4x8x32xf32>, tensor<4xi32>, tensor<4x64x32xf32>, tensor<4x32x64xf32>) -> tensor<4x8x32xf32>
  %o = moe.combine expert_choice %y, %m, %w
      : (tensor<4x8x32xf32>, tensor<16x4xi32>, tensor<4x8xf32>) -> tensor<16x32xf32>
  return %o : tensor<16x32xf32>
}

// The expert-parallel ops.
// CHECK-LABEL: func.func @expert_parallel
// CHECK: moe.ep_dispatch %{{.*}}, %{{.*}} ranks = 2 experts = 3 slot_experts = [0, 1, 2, 0] : (tensor<?x8xf32>, tensor<?x2xi32>) -> (tensor<?x8xf32>, tensor<2xi32>, tensor<?xi32>)
// CHECK: moe.ep_return %{{.*}}, %{{.*}}, %{{.*}} ranks = 2 : (tensor<?x8xf32>, tensor<?xi32>, tensor<?x2xi32>) -> tensor<?x8xf32>
// CHECK: moe.ep_home %{{.*}} ranks = 2 : tensor<?x2xi32> -> tensor<?x2xi32>
// CHECK: moe.ep_all_gather %{{.*}} tokens(%{{.*}}) ranks = 2 : tensor<?x8xf32> -> tensor<?x8xf32>
// CHECK: moe.ep_slots %{{.*}} ranks = 2 slot_experts = [0, 1, 2, 0] : tensor<3x8x4xf32> -> tensor<2x8x4xf32>
func.func @expert_parallel(%x: tensor<?x8xf32>, %ids: tensor<?x2xi32>, %t: index, %wts: tensor<3x8x4xf32>) -> tensor<?x8xf32> {
  %rows, %counts, %src = moe.ep_dispatch %x, %ids ranks = 2 experts = 3 slot_experts = [0, 1, 2, 0]
      : (tensor<?x8xf32>, tensor<?x2xi32>) -> (tensor<?x8xf32>, tensor<2xi32>, tensor<?xi32>)
  %back = moe.ep_return %rows, %src, %ids ranks = 2 : (tensor<?x8xf32>, tensor<?xi32>, tensor<?x2xi32>) -> tensor<?x8xf32>
  %home = moe.ep_home %ids ranks = 2 : tensor<?x2xi32> -> tensor<?x2xi32>
  %out = moe.ep_all_gather %back tokens(%t) ranks = 2 : tensor<?x8xf32> -> tensor<?x8xf32>
  %local = moe.ep_slots %wts ranks = 2 slot_experts = [0, 1, 2, 0] : tensor<3x8x4xf32> -> tensor<2x8x4xf32>
  return %out : tensor<?x8xf32>
}

// The routed experts of a layer as one op (moe-fuse-dispatch-combine).
// CHECK-LABEL: func.func @routed_ffn
// CHECK: moe.routed_ffn %{{.*}}, %{{.*}}, %{{.*}} fc1(%{{.*}}) fc3(%{{.*}}) fc2(%{{.*}}) act = silu gating = separate {fuse_gate_up} : (tensor<?x16xbf16>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x32x16xbf16>, tensor<4x16x32xbf16>, tensor<4x32x16xbf16>) -> tensor<?x16xbf16>
func.func @routed_ffn(%h: tensor<?x16xbf16>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>,
                      %w1: tensor<4x32x16xbf16>, %w2: tensor<4x16x32xbf16>, %w3: tensor<4x32x16xbf16>) -> tensor<?x16xbf16> {
  %y = moe.routed_ffn %h, %ids, %w fc1(%w1) fc3(%w3) fc2(%w2) act = silu gating = separate {fuse_gate_up}
      : (tensor<?x16xbf16>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x32x16xbf16>, tensor<4x16x32xbf16>, tensor<4x32x16xbf16>) -> tensor<?x16xbf16>
  return %y : tensor<?x16xbf16>
}

// A shared expert appended to the routed experts' stack: DeepSeek-V2's
// shared FFN of twice the routed width becomes two more experts.
// CHECK-LABEL: func.func @stack_experts
// CHECK: moe.stack_experts %{{.*}}, %{{.*}} {split_dim = 0 : i64} : (tensor<4x16x8xf32>, tensor<32x8xf32>) -> tensor<6x16x8xf32>
// CHECK: moe.stack_experts %{{.*}}, %{{.*}} {split_dim = 1 : i64} : (tensor<4x8x16xf32>, tensor<8x32xf32>) -> tensor<6x8x16xf32>
func.func @stack_experts(%r1: tensor<4x16x8xf32>, %s1: tensor<32x8xf32>, %r2: tensor<4x8x16xf32>, %s2: tensor<8x32xf32>) {
  %a = moe.stack_experts %r1, %s1 {split_dim = 0} : (tensor<4x16x8xf32>, tensor<32x8xf32>) -> tensor<6x16x8xf32>
  %b = moe.stack_experts %r2, %s2 {split_dim = 1} : (tensor<4x8x16xf32>, tensor<8x32xf32>) -> tensor<6x8x16xf32>
  return
}
