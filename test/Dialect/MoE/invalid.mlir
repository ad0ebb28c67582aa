// Every verifier branch of the moe ops, one case each.
// RUN: moe-opt %s --split-input-file --verify-diagnostics
// Without --verify-diagnostics every case is a diagnostic and a non-zero exit, not a crash:
// RUN: not moe-opt %s --split-input-file 2>&1 | FileCheck %s --check-prefix=NOCRASH
// NOCRASH: error:

//===----------------------------------------------------------------------===//
// moe.route
//===----------------------------------------------------------------------===//

// Logits input must be [T, E].
func.func @route_logits_rank(%l: tensor<2x3x8xf32>) {
  // expected-error @+1 {{operand 'input' must have rank 2 [T, E], got 'tensor<2x3x8xf32>'}}
  %i, %w = moe.route %l k = 2 scoring = softmax : (tensor<2x3x8xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// Hidden-state input must be [T, H].
func.func @route_hidden_rank(%x: tensor<16xf32>, %g: tensor<8x16xf32>) {
  // expected-error @+1 {{operand 'input' must have rank 2 [T, H], got 'tensor<16xf32>'}}
  %i, %w = moe.route %x weight(%g) k = 2 scoring = softmax : (tensor<16xf32>, tensor<8x16xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

// The router weight must be [E, H].
func.func @route_weight_rank(%x: tensor<4x16xf32>, %g: tensor<8x16x1xf32>) {
  // expected-error @+1 {{operand 'router_weight' must have rank 2 [E, H], got 'tensor<8x16x1xf32>'}}
  %i, %w = moe.route %x weight(%g) k = 2 scoring = softmax : (tensor<4x16xf32>, tensor<8x16x1xf32>) -> (tensor<4x2xi32>, tensor<4x2xf32>)
  return
}

// -----

// The router weight's H must match the input's.
func.func @route_weight_hidden(%x: tensor<4x16xf32>, %g: tensor<8x32xf32>) {
  // expected-error @+1 {{operand 'router_weight' must have shape [E=8, H=16], got 'tensor<8x32xf32>'}}
  %i, %w = moe.route %x weight(%g) k = 2 scoring = softmax : (tensor<4x16xf32>, tensor<8x32xf32>) -> (tensor<4x2xi32>, tensor<4x2xf32>)
  return
}

// -----

// A router bias belongs to the router matmul.
func.func @route_bias_without_weight(%l: tensor<4x8xf32>, %b: tensor<8xf32>) {
  // expected-error @+1 {{operand 'router_bias' requires 'router_weight'}}
  %i, %w = "moe.route"(%l, %b) <{k = 2 : i64, scoring = #moe<scoring softmax>, operandSegmentSizes = array<i32: 1, 0, 1, 0>}> : (tensor<4x8xf32>, tensor<8xf32>) -> (tensor<4x2xi32>, tensor<4x2xf32>)
  return
}

// -----

// round_logits only makes sense when the op computes the logits.
func.func @route_round_without_weight(%l: tensor<4x8xbf16>) {
  // expected-error @+1 {{round_logits requires 'router_weight'}}
  %i, %w = moe.route %l k = 2 scoring = softmax {round_logits} : (tensor<4x8xbf16>) -> (tensor<4x2xi32>, tensor<4x2xf32>)
  return
}

// -----

// E must be static.
func.func @route_dynamic_experts(%l: tensor<4x?xf32>) {
  // expected-error @+1 {{the number of experts E must be static}}
  %i, %w = moe.route %l k = 2 scoring = softmax : (tensor<4x?xf32>) -> (tensor<4x2xi32>, tensor<4x2xf32>)
  return
}

// -----

// The router bias is [E].
func.func @route_bias_shape(%x: tensor<4x16xf32>, %g: tensor<8x16xf32>, %b: tensor<7xf32>) {
  // expected-error @+1 {{operand 'router_bias' must have shape [E=8], got 'tensor<7xf32>'}}
  %i, %w = moe.route %x weight(%g) router_bias(%b) k = 2 scoring = softmax : (tensor<4x16xf32>, tensor<8x16xf32>, tensor<7xf32>) -> (tensor<4x2xi32>, tensor<4x2xf32>)
  return
}

// -----

// The selection bias is [E].
func.func @route_selection_bias_shape(%l: tensor<4x8xf32>, %b: tensor<8x1xf32>) {
  // expected-error @+1 {{operand 'selection_bias' must have shape [E=8], got 'tensor<8x1xf32>'}}
  %i, %w = moe.route %l selection_bias(%b) k = 2 scoring = sigmoid : (tensor<4x8xf32>, tensor<8x1xf32>) -> (tensor<4x2xi32>, tensor<4x2xf32>)
  return
}

// -----

// The selection bias is f32 (router math is f32).
func.func @route_selection_bias_type(%l: tensor<4x8xf32>, %b: tensor<8xbf16>) {
  // expected-error @+1 {{operand #1 must be ranked tensor of 32-bit float values}}
  %i, %w = moe.route %l selection_bias(%b) k = 2 scoring = sigmoid : (tensor<4x8xf32>, tensor<8xbf16>) -> (tensor<4x2xi32>, tensor<4x2xf32>)
  return
}

// -----

// k must be positive.
func.func @route_k_zero(%l: tensor<4x8xf32>) {
  // expected-error @+1 {{attribute 'k' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
  %i, %w = moe.route %l k = 0 scoring = softmax : (tensor<4x8xf32>) -> (tensor<4x0xi32>, tensor<4x0xf32>)
  return
}

// -----

// k cannot exceed E.
func.func @route_k_too_large(%l: tensor<4x8xf32>) {
  // expected-error @+1 {{k = 9 exceeds the number of experts E = 8}}
  %i, %w = moe.route %l k = 9 scoring = softmax : (tensor<4x8xf32>) -> (tensor<4x9xi32>, tensor<4x9xf32>)
  return
}

// -----

// A capacity is either absolute or a factor.
func.func @route_two_capacities(%l: tensor<4x8xf32>) {
  // expected-error @+1 {{expert_capacity and capacity_factor are mutually exclusive}}
  %i, %w = moe.route %l k = 1 scoring = softmax {expert_capacity = 2, capacity_factor = 1.0 : f32} : (tensor<4x8xf32>) -> (tensor<4x1xi32>, tensor<4x1xf32>)
  return
}

// -----

// A capacity factor is positive.
func.func @route_capacity_factor_zero(%l: tensor<4x8xf32>) {
  // expected-error @+1 {{capacity_factor must be positive, got 0}}
  %i, %w = moe.route %l k = 1 scoring = softmax {capacity_factor = 0.0 : f32} : (tensor<4x8xf32>) -> (tensor<4x1xi32>, tensor<4x1xf32>)
  return
}

// -----

// topk_softmax weights already sum to one.
func.func @route_topk_softmax_renormalize(%l: tensor<4x8xf32>) {
  // expected-error @+1 {{renormalize has no effect with topk_softmax scoring}}
  %i, %w = moe.route %l k = 2 scoring = topk_softmax {renormalize} : (tensor<4x8xf32>) -> (tensor<4x2xi32>, tensor<4x2xf32>)
  return
}

// -----

// Expert choice ranks tokens by an expert's score, not by token-wise top-k.
func.func @route_expert_choice_topk_softmax(%l: tensor<4x8xf32>) {
  // expected-error @+1 {{expert_choice routing needs softmax or sigmoid scoring, not topk_softmax}}
  %i, %w = moe.route %l k = 1 scoring = topk_softmax {mode = #moe.routing_mode<expert_choice>} : (tensor<4x8xf32>) -> (tensor<8x1xi32>, tensor<8x1xf32>)
  return
}

// -----

// Expert choice has no expert groups.
func.func @route_expert_choice_groups(%l: tensor<4x8xf32>) {
  // expected-error @+1 {{expert_choice routing does not take expert groups}}
  %i, %w = moe.route %l k = 1 scoring = softmax {mode = #moe.routing_mode<expert_choice>, n_group = 2, topk_group = 1, group_score = #moe.group_score<max>} : (tensor<4x8xf32>) -> (tensor<8x1xi32>, tensor<8x1xf32>)
  return
}

// -----

// Expert choice has no selection bias.
func.func @route_expert_choice_bias(%l: tensor<4x8xf32>, %b: tensor<8xf32>) {
  // expected-error @+1 {{expert_choice routing does not take a 'selection_bias'}}
  %i, %w = moe.route %l selection_bias(%b) k = 1 scoring = sigmoid {mode = #moe.routing_mode<expert_choice>} : (tensor<4x8xf32>, tensor<8xf32>) -> (tensor<8x1xi32>, tensor<8x1xf32>)
  return
}

// -----

// Expert choice does not renormalize.
func.func @route_expert_choice_renormalize(%l: tensor<4x8xf32>) {
  // expected-error @+1 {{expert_choice routing does not renormalize}}
  %i, %w = moe.route %l k = 1 scoring = softmax {mode = #moe.routing_mode<expert_choice>, renormalize} : (tensor<4x8xf32>) -> (tensor<8x1xi32>, tensor<8x1xf32>)
  return
}

// -----

// Group parameters without groups.
func.func @route_topk_group_without_groups(%l: tensor<4x8xf32>) {
  // expected-error @+1 {{topk_group and group_score require n_group > 1}}
  %i, %w = moe.route %l k = 2 scoring = softmax {topk_group = 1} : (tensor<4x8xf32>) -> (tensor<4x2xi32>, tensor<4x2xf32>)
  return
}

// -----

// Groups partition the experts evenly.
func.func @route_groups_not_divisible(%l: tensor<4x10xf32>) {
  // expected-error @+1 {{the number of experts E = 10 is not divisible by n_group = 4}}
  %i, %w = moe.route %l k = 2 scoring = sigmoid {n_group = 4, topk_group = 2, group_score = #moe.group_score<max>} : (tensor<4x10xf32>) -> (tensor<4x2xi32>, tensor<4x2xf32>)
  return
}

// -----

// Groups need topk_group.
func.func @route_groups_without_topk_group(%l: tensor<4x8xf32>) {
  // expected-error @+1 {{group-limited routing (n_group > 1) requires topk_group}}
  %i, %w = moe.route %l k = 2 scoring = sigmoid {n_group = 4, group_score = #moe.group_score<max>} : (tensor<4x8xf32>) -> (tensor<4x2xi32>, tensor<4x2xf32>)
  return
}

// -----

// Groups need a group score.
func.func @route_groups_without_score(%l: tensor<4x8xf32>) {
  // expected-error @+1 {{group-limited routing (n_group > 1) requires group_score (max or top2_sum)}}
  %i, %w = moe.route %l k = 2 scoring = sigmoid {n_group = 4, topk_group = 2} : (tensor<4x8xf32>) -> (tensor<4x2xi32>, tensor<4x2xf32>)
  return
}

// -----

// Cannot keep more groups than there are.
func.func @route_topk_group_too_large(%l: tensor<4x8xf32>) {
  // expected-error @+1 {{topk_group = 5 exceeds n_group = 4}}
  %i, %w = moe.route %l k = 2 scoring = sigmoid {n_group = 4, topk_group = 5, group_score = #moe.group_score<max>} : (tensor<4x8xf32>) -> (tensor<4x2xi32>, tensor<4x2xf32>)
  return
}

// -----

// top2_sum needs two experts per group.
func.func @route_top2_sum_singletons(%l: tensor<4x8xf32>) {
  // expected-error @+1 {{group_score top2_sum needs at least 2 experts per group, got 1}}
  %i, %w = moe.route %l k = 2 scoring = sigmoid {n_group = 8, topk_group = 4, group_score = #moe.group_score<top2_sum>} : (tensor<4x8xf32>) -> (tensor<4x2xi32>, tensor<4x2xf32>)
  return
}

// -----

// With -inf masking, k must fit in the kept groups.
func.func @route_k_exceeds_kept(%l: tensor<4x8xf32>) {
  // expected-error @+1 {{k = 3 exceeds the 2 experts of the topk_group = 1 kept groups}}
  %i, %w = moe.route %l k = 3 scoring = sigmoid {n_group = 4, topk_group = 1, group_score = #moe.group_score<top2_sum>} : (tensor<4x8xf32>) -> (tensor<4x3xi32>, tensor<4x3xf32>)
  return
}

// -----

// Result types follow from the operands (InferTypeOpInterface).
func.func @route_result_type(%l: tensor<4x8xf32>) {
  // expected-error @+2 {{inferred type(s) 'tensor<4x2xi32>', 'tensor<4x2xf32>' are incompatible with return type(s) of operation 'tensor<4x3xi32>', 'tensor<4x3xf32>'}}
  // expected-error @+1 {{failed to infer returned types}}
  %i, %w = moe.route %l k = 2 scoring = softmax : (tensor<4x8xf32>) -> (tensor<4x3xi32>, tensor<4x3xf32>)
  return
}

//===----------------------------------------------------------------------===//
// moe.dispatch
//===----------------------------------------------------------------------===//

// -----

// The input is [T, H].
func.func @dispatch_input_rank(%x: tensor<16xf32>, %i: tensor<4x2xi32>) {
  // expected-error @+1 {{operand 'input' must have rank 2 [T, H], got 'tensor<16xf32>'}}
  %r, %c, %m = moe.dispatch dropless %x, %i experts = 8 : (tensor<16xf32>, tensor<4x2xi32>) -> (tensor<?x?xf32>, tensor<8xi32>, tensor<?x2xi32>)
  return
}

// -----

// Token-choice indices are [T, k].
func.func @dispatch_indices_rank(%x: tensor<4x16xf32>, %i: tensor<8xi32>) {
  // expected-error @+1 {{operand 'indices' must have rank 2 [T, k], got 'tensor<8xi32>'}}
  %r, %c, %m = moe.dispatch dropless %x, %i experts = 8 : (tensor<4x16xf32>, tensor<8xi32>) -> (tensor<?x16xf32>, tensor<8xi32>, tensor<4x?xi32>)
  return
}

// -----

// Token-choice indices have one row per token.
func.func @dispatch_indices_tokens(%x: tensor<4x16xf32>, %i: tensor<5x2xi32>) {
  // expected-error @+1 {{operand 'indices' must have shape [T=4, k=2], got 'tensor<5x2xi32>'}}
  %r, %c, %m = moe.dispatch dropless %x, %i experts = 8 : (tensor<4x16xf32>, tensor<5x2xi32>) -> (tensor<8x16xf32>, tensor<8xi32>, tensor<4x2xi32>)
  return
}

// -----

// Expert-choice indices are [E, C].
func.func @dispatch_expert_choice_rank(%x: tensor<4x16xf32>, %i: tensor<8xi32>) {
  // expected-error @+1 {{operand 'indices' must have rank 2 [E, C], got 'tensor<8xi32>'}}
  %r, %c, %m = moe.dispatch expert_choice %x, %i experts = 8 : (tensor<4x16xf32>, tensor<8xi32>) -> (tensor<8x?x16xf32>, tensor<8xi32>, tensor<4x8xi32>)
  return
}

// -----

// Expert-choice indices have one row per expert.
func.func @dispatch_expert_choice_experts(%x: tensor<4x16xf32>, %i: tensor<4x2xi32>) {
  // expected-error @+1 {{operand 'indices' must have shape [E=8, C=2], got 'tensor<4x2xi32>'}}
  %r, %c, %m = moe.dispatch expert_choice %x, %i experts = 8 : (tensor<4x16xf32>, tensor<4x2xi32>) -> (tensor<8x2x16xf32>, tensor<8xi32>, tensor<4x8xi32>)
  return
}

// -----

// Capacity dispatch needs a capacity.
func.func @dispatch_capacity_missing(%x: tensor<4x16xf32>, %i: tensor<4x1xi32>) {
  // expected-error @+1 {{capacity dispatch requires expert_capacity or capacity_factor}}
  %r, %c, %m = moe.dispatch capacity %x, %i experts = 8 : (tensor<4x16xf32>, tensor<4x1xi32>) -> (tensor<8x?x16xf32>, tensor<8xi32>, tensor<4x1xi32>)
  return
}

// -----

// ... exactly one.
func.func @dispatch_capacity_both(%x: tensor<4x16xf32>, %i: tensor<4x1xi32>) {
  // expected-error @+1 {{expert_capacity and capacity_factor are mutually exclusive}}
  %r, %c, %m = moe.dispatch capacity %x, %i experts = 8 {expert_capacity = 2, capacity_factor = 2.0 : f32} : (tensor<4x16xf32>, tensor<4x1xi32>) -> (tensor<8x2x16xf32>, tensor<8xi32>, tensor<4x1xi32>)
  return
}

// -----

// ... and a positive factor.
func.func @dispatch_capacity_factor(%x: tensor<4x16xf32>, %i: tensor<4x1xi32>) {
  // expected-error @+1 {{capacity_factor must be positive, got -1}}
  %r, %c, %m = moe.dispatch capacity %x, %i experts = 8 {capacity_factor = -1.0 : f32} : (tensor<4x16xf32>, tensor<4x1xi32>) -> (tensor<8x?x16xf32>, tensor<8xi32>, tensor<4x1xi32>)
  return
}

// -----

// Dropless dispatch drops nothing.
func.func @dispatch_dropless_capacity(%x: tensor<4x16xf32>, %i: tensor<4x1xi32>) {
  // expected-error @+1 {{expert_capacity/capacity_factor only apply to capacity dispatch, not dropless}}
  %r, %c, %m = moe.dispatch dropless %x, %i experts = 8 {expert_capacity = 2} : (tensor<4x16xf32>, tensor<4x1xi32>) -> (tensor<4x16xf32>, tensor<8xi32>, tensor<4x1xi32>)
  return
}

// -----

// Dropless rows are [T*k, H].
func.func @dispatch_result_type(%x: tensor<4x16xf32>, %i: tensor<4x2xi32>) {
  // expected-error @+2 {{inferred type(s) 'tensor<8x16xf32>', 'tensor<8xi32>', 'tensor<4x2xi32>' are incompatible with return type(s) of operation 'tensor<4x16xf32>', 'tensor<8xi32>', 'tensor<4x2xi32>'}}
  // expected-error @+1 {{failed to infer returned types}}
  %r, %c, %m = moe.dispatch dropless %x, %i experts = 8 : (tensor<4x16xf32>, tensor<4x2xi32>) -> (tensor<4x16xf32>, tensor<8xi32>, tensor<4x2xi32>)
  return
}

//===----------------------------------------------------------------------===//
// moe.expert_ffn (and the FFN checks shared with moe.shared_expert)
//===----------------------------------------------------------------------===//

// -----

// Rows are [N, H] or [E, C, H].
func.func @ffn_rows_rank(%r: tensor<16xf32>, %c: tensor<4xi32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error @+1 {{operand 'rows' must have rank 2 [N, H] or rank 3 [E, C, H], got 'tensor<16xf32>'}}
  %y = moe.expert_ffn %r, %c fc1(%w1) fc2(%w2) act = relu : (tensor<16xf32>, tensor<4xi32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<16xf32>
  return
}

// -----

// [E, C, H] rows have one slab per expert.
func.func @ffn_rows_experts(%r: tensor<3x2x16xf32>, %c: tensor<4xi32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error @+1 {{operand 'rows' must have shape [E=4, C=2, H=16], got 'tensor<3x2x16xf32>'}}
  %y = moe.expert_ffn %r, %c fc1(%w1) fc2(%w2) act = relu : (tensor<3x2x16xf32>, tensor<4xi32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<3x2x16xf32>
  return
}

// -----

// One count per expert.
func.func @ffn_counts(%r: tensor<?x16xf32>, %c: tensor<3xi32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error @+1 {{operand 'counts' must have shape [E=4], got 'tensor<3xi32>'}}
  %y = moe.expert_ffn %r, %c fc1(%w1) fc2(%w2) act = relu : (tensor<?x16xf32>, tensor<3xi32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

// Stacked fc1 is [E, I, H].
func.func @ffn_fc1_rank(%r: tensor<?x16xf32>, %c: tensor<4xi32>, %w1: tensor<32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error @+1 {{operand 'fc1' must have rank 3 [E, I, H], got 'tensor<32x16xf32>'}}
  %y = moe.expert_ffn %r, %c fc1(%w1) fc2(%w2) act = relu : (tensor<?x16xf32>, tensor<4xi32>, tensor<32x16xf32>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

// Fused gate/up weights have an even number of rows.
func.func @ffn_fused_odd(%r: tensor<?x16xf32>, %c: tensor<4xi32>, %w1: tensor<4x33x16xf32>, %w2: tensor<4x16x16xf32>) {
  // expected-error @+1 {{operand 'fc1' must have an even number of rows [2I] with interleaved gating, got 33}}
  %y = moe.expert_ffn %r, %c fc1(%w1) fc2(%w2) act = silu gating = interleaved : (tensor<?x16xf32>, tensor<4xi32>, tensor<4x33x16xf32>, tensor<4x16x16xf32>) -> tensor<?x16xf32>
  return
}

// -----

// fc1's H matches the rows'.
func.func @ffn_fc1_hidden(%r: tensor<?x16xf32>, %c: tensor<4xi32>, %w1: tensor<4x32x8xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error @+1 {{operand 'fc1' must have shape [E=4, I=32, H=16], got 'tensor<4x32x8xf32>'}}
  %y = moe.expert_ffn %r, %c fc1(%w1) fc2(%w2) act = relu : (tensor<?x16xf32>, tensor<4xi32>, tensor<4x32x8xf32>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

// fc2 is [E, H, I] (nn.Linear layout), not [E, I, H].
func.func @ffn_fc2_layout(%r: tensor<?x16xf32>, %c: tensor<4xi32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x32x16xf32>) {
  // expected-error @+1 {{operand 'fc2' must have shape [E=4, H=16, I=32], got 'tensor<4x32x16xf32>'}}
  %y = moe.expert_ffn %r, %c fc1(%w1) fc2(%w2) act = relu : (tensor<?x16xf32>, tensor<4xi32>, tensor<4x32x16xf32>, tensor<4x32x16xf32>) -> tensor<?x16xf32>
  return
}

// -----

// Separate gating needs the up projection.
func.func @ffn_separate_without_fc3(%r: tensor<?x16xf32>, %c: tensor<4xi32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error @+1 {{operand 'fc3' (the up projection) is required with separate gating}}
  %y = moe.expert_ffn %r, %c fc1(%w1) fc2(%w2) act = silu gating = separate : (tensor<?x16xf32>, tensor<4xi32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

// fc3 only with separate gating.
func.func @ffn_fc3_without_gating(%r: tensor<?x16xf32>, %c: tensor<4xi32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>, %w3: tensor<4x32x16xf32>) {
  // expected-error @+1 {{operand 'fc3' is only allowed with separate gating, but gating is none}}
  %y = moe.expert_ffn %r, %c fc1(%w1) fc3(%w3) fc2(%w2) act = silu : (tensor<?x16xf32>, tensor<4xi32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>, tensor<4x32x16xf32>) -> tensor<?x16xf32>
  return
}

// -----

// fc3_bias only with separate gating.
func.func @ffn_fc3_bias_without_gating(%r: tensor<?x16xf32>, %c: tensor<4xi32>, %w1: tensor<4x64x16xf32>, %w2: tensor<4x16x32xf32>, %b3: tensor<4x32xf32>) {
  // expected-error @+1 {{operand 'fc3_bias' is only allowed with separate gating}}
  %y = moe.expert_ffn %r, %c fc1(%w1) fc2(%w2) fc3_bias(%b3) act = silu gating = concatenated : (tensor<?x16xf32>, tensor<4xi32>, tensor<4x64x16xf32>, tensor<4x16x32xf32>, tensor<4x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

// fc3 is [E, I, H].
func.func @ffn_fc3_shape(%r: tensor<?x16xf32>, %c: tensor<4xi32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>, %w3: tensor<4x16x32xf32>) {
  // expected-error @+1 {{operand 'fc3' must have shape [E=4, I=32, H=16], got 'tensor<4x16x32xf32>'}}
  %y = moe.expert_ffn %r, %c fc1(%w1) fc3(%w3) fc2(%w2) act = silu gating = separate : (tensor<?x16xf32>, tensor<4xi32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

// fc1_bias covers fc1's rows, 2I when fused.
func.func @ffn_fc1_bias(%r: tensor<?x16xf32>, %c: tensor<4xi32>, %w1: tensor<4x64x16xf32>, %w2: tensor<4x16x32xf32>, %b1: tensor<4x32xf32>) {
  // expected-error @+1 {{operand 'fc1_bias' must have shape [E=4, 2I=64], got 'tensor<4x32xf32>'}}
  %y = moe.expert_ffn %r, %c fc1(%w1) fc2(%w2) fc1_bias(%b1) act = silu gating = concatenated : (tensor<?x16xf32>, tensor<4xi32>, tensor<4x64x16xf32>, tensor<4x16x32xf32>, tensor<4x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

// fc3_bias is [E, I].
func.func @ffn_fc3_bias(%r: tensor<?x16xf32>, %c: tensor<4xi32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>, %w3: tensor<4x32x16xf32>, %b3: tensor<4x16xf32>) {
  // expected-error @+1 {{operand 'fc3_bias' must have shape [E=4, I=32], got 'tensor<4x16xf32>'}}
  %y = moe.expert_ffn %r, %c fc1(%w1) fc3(%w3) fc2(%w2) fc3_bias(%b3) act = silu gating = separate : (tensor<?x16xf32>, tensor<4xi32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>, tensor<4x32x16xf32>, tensor<4x16xf32>) -> tensor<?x16xf32>
  return
}

// -----

// fc2_bias is [E, H].
func.func @ffn_fc2_bias(%r: tensor<?x16xf32>, %c: tensor<4xi32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>, %b2: tensor<4x32xf32>) {
  // expected-error @+1 {{operand 'fc2_bias' must have shape [E=4, H=16], got 'tensor<4x32xf32>'}}
  %y = moe.expert_ffn %r, %c fc1(%w1) fc2(%w2) fc2_bias(%b2) act = relu : (tensor<?x16xf32>, tensor<4xi32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>, tensor<4x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

// All weights share one element type.
func.func @ffn_weight_types(%r: tensor<?x16xf32>, %c: tensor<4xi32>, %w1: tensor<4x32x16xbf16>, %w2: tensor<4x16x32xf32>) {
  // expected-error @+1 {{operand 'fc2' must have element type 'bf16' (that of 'fc1'), got 'f32'}}
  %y = moe.expert_ffn %r, %c fc1(%w1) fc2(%w2) act = relu : (tensor<?x16xf32>, tensor<4xi32>, tensor<4x32x16xbf16>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

// activation_alpha scales silu's sigmoid only.
func.func @ffn_alpha_not_silu(%r: tensor<?x16xf32>, %c: tensor<4xi32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error @+1 {{activation_alpha only applies to silu, but the activation is gelu}}
  %y = moe.expert_ffn %r, %c fc1(%w1) fc2(%w2) act = gelu {activation_alpha = 1.702 : f32} : (tensor<?x16xf32>, tensor<4xi32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

// The clamp limit is positive.
func.func @ffn_clamp_limit(%r: tensor<?x16xf32>, %c: tensor<4xi32>, %w1: tensor<4x64x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error @+1 {{clamp_limit must be positive, got 0}}
  %y = moe.expert_ffn %r, %c fc1(%w1) fc2(%w2) act = silu gating = interleaved {clamp_limit = 0.0 : f32} : (tensor<?x16xf32>, tensor<4xi32>, tensor<4x64x16xf32>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

// The result has the rows' type.
func.func @ffn_result_type(%r: tensor<?x16xf32>, %c: tensor<4xi32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error @+2 {{inferred type(s) 'tensor<?x16xf32>' are incompatible with return type(s) of operation 'tensor<?x16xbf16>'}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = moe.expert_ffn %r, %c fc1(%w1) fc2(%w2) act = relu : (tensor<?x16xf32>, tensor<4xi32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<?x16xbf16>
  return
}

//===----------------------------------------------------------------------===//
// moe.combine
//===----------------------------------------------------------------------===//

// -----

// Dropless expert outputs are a row list.
func.func @combine_rank(%y: tensor<4x3x16xf32>, %m: tensor<?x2xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{operand 'expert_out' must have rank 2 [N, H] in dropless mode, got 'tensor<4x3x16xf32>'}}
  %o = moe.combine dropless %y, %m, %w : (tensor<4x3x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x16xf32>
  return
}

// -----

// Capacity expert outputs are [E, C, H].
func.func @combine_capacity_rank(%y: tensor<12x16xf32>, %m: tensor<?x1xi32>, %w: tensor<?x1xf32>) {
  // expected-error @+1 {{operand 'expert_out' must have rank 3 [E, C, H] in capacity mode, got 'tensor<12x16xf32>'}}
  %o = moe.combine capacity %y, %m, %w : (tensor<12x16xf32>, tensor<?x1xi32>, tensor<?x1xf32>) -> tensor<?x16xf32>
  return
}

// -----

// The mapping is [T, k].
func.func @combine_mapping_rank(%y: tensor<?x16xf32>, %m: tensor<8xi32>, %w: tensor<?x2xf32>) {
  // expected-error @+1 {{operand 'mapping' must have rank 2 [T, k], got 'tensor<8xi32>'}}
  %o = moe.combine dropless %y, %m, %w : (tensor<?x16xf32>, tensor<8xi32>, tensor<?x2xf32>) -> tensor<?x16xf32>
  return
}

// -----

// Weights pair with mapping entries.
func.func @combine_weights(%y: tensor<?x16xf32>, %m: tensor<4x2xi32>, %w: tensor<4x3xf32>) {
  // expected-error @+1 {{operand 'weights' must have shape [T=4, k=2], got 'tensor<4x3xf32>'}}
  %o = moe.combine dropless %y, %m, %w : (tensor<?x16xf32>, tensor<4x2xi32>, tensor<4x3xf32>) -> tensor<4x16xf32>
  return
}

// -----

// The expert-choice mapping is [T, E].
func.func @combine_expert_choice_mapping(%y: tensor<4x8x16xf32>, %m: tensor<16x2xi32>, %w: tensor<4x8xf32>) {
  // expected-error @+1 {{operand 'mapping' must have shape [T=16, E=4], got 'tensor<16x2xi32>'}}
  %o = moe.combine expert_choice %y, %m, %w : (tensor<4x8x16xf32>, tensor<16x2xi32>, tensor<4x8xf32>) -> tensor<16x16xf32>
  return
}

// -----

// Expert-choice weights are the router's [E, C].
func.func @combine_expert_choice_weights(%y: tensor<4x8x16xf32>, %m: tensor<16x4xi32>, %w: tensor<16x4xf32>) {
  // expected-error @+1 {{operand 'weights' must have shape [E=4, C=8], got 'tensor<16x4xf32>'}}
  %o = moe.combine expert_choice %y, %m, %w : (tensor<4x8x16xf32>, tensor<16x4xi32>, tensor<16x4xf32>) -> tensor<16x16xf32>
  return
}

// -----

// The passthrough is the [T, H] MoE input.
func.func @combine_passthrough(%y: tensor<4x3x16xf32>, %m: tensor<10x1xi32>, %w: tensor<10x1xf32>, %x: tensor<10x8xf32>) {
  // expected-error @+1 {{operand 'passthrough' must have shape [T=10, H=16], got 'tensor<10x8xf32>'}}
  %o = moe.combine capacity %y, %m, %w passthrough(%x) : (tensor<4x3x16xf32>, tensor<10x1xi32>, tensor<10x1xf32>, tensor<10x8xf32>) -> tensor<10x16xf32>
  return
}

// -----

// The result is [T, H] of the expert outputs' element type.
func.func @combine_result(%y: tensor<?x16xbf16>, %m: tensor<4x2xi32>, %w: tensor<4x2xf32>) {
  // expected-error @+2 {{inferred type(s) 'tensor<4x16xbf16>' are incompatible with return type(s) of operation 'tensor<4x16xf32>'}}
  // expected-error @+1 {{failed to infer returned types}}
  %o = moe.combine dropless %y, %m, %w : (tensor<?x16xbf16>, tensor<4x2xi32>, tensor<4x2xf32>) -> tensor<4x16xf32>
  return
}

//===----------------------------------------------------------------------===//
// moe.shared_expert
//===----------------------------------------------------------------------===//

// -----

// The input is [T, H].
func.func @shared_input_rank(%x: tensor<16xf32>, %w1: tensor<32x16xf32>, %w2: tensor<16x32xf32>) {
  // expected-error @+1 {{operand 'input' must have rank 2 [T, H], got 'tensor<16xf32>'}}
  %y = moe.shared_expert %x fc1(%w1) fc2(%w2) act = relu : (tensor<16xf32>, tensor<32x16xf32>, tensor<16x32xf32>) -> tensor<16xf32>
  return
}

// -----

// A single FFN's fc1 is [I, H].
func.func @shared_fc1_rank(%x: tensor<?x16xf32>, %w1: tensor<2x32x16xf32>, %w2: tensor<16x32xf32>) {
  // expected-error @+1 {{operand 'fc1' must have rank 2 [I, H], got 'tensor<2x32x16xf32>'}}
  %y = moe.shared_expert %x fc1(%w1) fc2(%w2) act = relu : (tensor<?x16xf32>, tensor<2x32x16xf32>, tensor<16x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

// Qwen's shared expert gate is a Linear H -> 1: [1, H].
func.func @shared_gate_shape(%x: tensor<?x16xf32>, %w1: tensor<32x16xf32>, %w2: tensor<16x32xf32>, %w3: tensor<32x16xf32>, %g: tensor<16xf32>) {
  // expected-error @+1 {{operand 'gate' must have shape [1, H=16], got 'tensor<16xf32>'}}
  %y = moe.shared_expert %x fc1(%w1) fc3(%w3) fc2(%w2) gate(%g) act = silu gating = separate : (tensor<?x16xf32>, tensor<32x16xf32>, tensor<16x32xf32>, tensor<32x16xf32>, tensor<16xf32>) -> tensor<?x16xf32>
  return
}

// -----

// The gate has the weights' element type.
func.func @shared_gate_type(%x: tensor<?x16xf32>, %w1: tensor<32x16xbf16>, %w2: tensor<16x32xbf16>, %w3: tensor<32x16xbf16>, %g: tensor<1x16xf32>) {
  // expected-error @+1 {{operand 'gate' must have element type 'bf16' (that of 'fc1'), got 'f32'}}
  %y = moe.shared_expert %x fc1(%w1) fc3(%w3) fc2(%w2) gate(%g) act = silu gating = separate : (tensor<?x16xf32>, tensor<32x16xbf16>, tensor<16x32xbf16>, tensor<32x16xbf16>, tensor<1x16xf32>) -> tensor<?x16xf32>
  return
}

// -----

// Integer activations are rejected by the type constraints.
func.func @shared_int_input(%x: tensor<?x16xi32>, %w1: tensor<32x16xf32>, %w2: tensor<16x32xf32>) {
  // expected-error @+1 {{operand #0 must be ranked tensor of 32-bit float or 16-bit float or bfloat16 type values}}
  %y = moe.shared_expert %x fc1(%w1) fc2(%w2) act = relu : (tensor<?x16xi32>, tensor<32x16xf32>, tensor<16x32xf32>) -> tensor<?x16xi32>
  return
}

// -----

// An unknown activation is a parse error naming the valid keywords.
func.func @unknown_activation(%x: tensor<?x16xf32>, %w1: tensor<32x16xf32>, %w2: tensor<16x32xf32>) {
  // expected-error @+2 {{expected ::moe_mlir::moe::Activation to be one of: silu, gelu, gelu_tanh, relu, identity}}
  // expected-error @+1 {{failed to parse MoE_ActivationAttr parameter 'value'}}
  %y = moe.shared_expert %x fc1(%w1) fc2(%w2) act = swish : (tensor<?x16xf32>, tensor<32x16xf32>, tensor<16x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

// Renormalizing after drops needs a capacity that drops.
func.func @route_renormalize_after_drop_without_capacity(%l: tensor<4x8xf32>) {
  // expected-error @+1 {{renormalize_after_drop requires a capacity (expert_capacity or capacity_factor)}}
  %i, %w = moe.route %l k = 2 scoring = softmax {renormalize_after_drop} : (tensor<4x8xf32>) -> (tensor<4x2xi32>, tensor<4x2xf32>)
  return
}

// -----

// Expert-choice routing drops nothing, so there is nothing to pass through.
func.func @combine_expert_choice_passthrough(%y: tensor<4x8x16xf32>, %m: tensor<16x4xi32>, %w: tensor<4x8xf32>, %x: tensor<16x16xf32>) {
  // expected-error @+1 {{operand 'passthrough' has no meaning in expert_choice mode}}
  %o = moe.combine expert_choice %y, %m, %w passthrough(%x) : (tensor<4x8x16xf32>, tensor<16x4xi32>, tensor<4x8xf32>, tensor<16x16xf32>) -> tensor<16x16xf32>
  return
}

//===----------------------------------------------------------------------===//
// Expert-parallel ops
//===----------------------------------------------------------------------===//

// slot_experts must fill the ranks.
func.func @ep_dispatch_slots(%x: tensor<?x8xf32>, %ids: tensor<?x2xi32>) {
  // expected-error @+1 {{slot_experts has 3 entries, not a positive multiple of ranks = 2}}
  %r, %c, %s = moe.ep_dispatch %x, %ids ranks = 2 experts = 3 slot_experts = [0, 1, 2]
      : (tensor<?x8xf32>, tensor<?x2xi32>) -> (tensor<?x8xf32>, tensor<1xi32>, tensor<?xi32>)
  return
}

// -----

func.func @ep_dispatch_expert_id(%x: tensor<?x8xf32>, %ids: tensor<?x2xi32>) {
  // expected-error @+1 {{slot_experts[1] = 3 is not an expert id in [0, 3) or -1}}
  %r, %c, %s = moe.ep_dispatch %x, %ids ranks = 2 experts = 3 slot_experts = [0, 3, 1, 2]
      : (tensor<?x8xf32>, tensor<?x2xi32>) -> (tensor<?x8xf32>, tensor<2xi32>, tensor<?xi32>)
  return
}

// -----

func.func @ep_dispatch_unplaced(%x: tensor<?x8xf32>, %ids: tensor<?x2xi32>) {
  // expected-error @+1 {{expert 2 has no slot in slot_experts}}
  %r, %c, %s = moe.ep_dispatch %x, %ids ranks = 2 experts = 3 slot_experts = [0, -1, 1, 1]
      : (tensor<?x8xf32>, tensor<?x2xi32>) -> (tensor<?x8xf32>, tensor<2xi32>, tensor<?xi32>)
  return
}

// -----

func.func @ep_dispatch_rows(%x: tensor<4x8xf32>, %ids: tensor<4x2xi32>) {
  // expected-error @+1 {{result 'rows' must have shape [T*k=8, H=8], got 'tensor<4x8xf32>'}}
  %r, %c, %s = moe.ep_dispatch %x, %ids ranks = 2 experts = 2 slot_experts = [0, 1]
      : (tensor<4x8xf32>, tensor<4x2xi32>) -> (tensor<4x8xf32>, tensor<1xi32>, tensor<8xi32>)
  return
}

// -----

func.func @ep_dispatch_counts(%x: tensor<?x8xf32>, %ids: tensor<?x2xi32>) {
  // expected-error @+1 {{result 'counts' must have shape [S=2], got 'tensor<3xi32>'}}
  %r, %c, %s = moe.ep_dispatch %x, %ids ranks = 2 experts = 3 slot_experts = [0, 1, 2, -1]
      : (tensor<?x8xf32>, tensor<?x2xi32>) -> (tensor<?x8xf32>, tensor<3xi32>, tensor<?xi32>)
  return
}

// -----

func.func @ep_return_source(%y: tensor<8x16xf32>, %src: tensor<6xi32>, %ids: tensor<4x2xi32>) {
  // expected-error @+1 {{operand 'source' must have shape [T*k=8], got 'tensor<6xi32>'}}
  %h = moe.ep_return %y, %src, %ids ranks = 2 : (tensor<8x16xf32>, tensor<6xi32>, tensor<4x2xi32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @ep_home_rank(%x: tensor<?x8xf32>) {
  // expected-error @+1 {{result must have rank 2}}
  %h = moe.ep_home %x ranks = 2 : tensor<?x8xf32> -> tensor<?xf32>
  return
}

// -----

func.func @ep_all_gather_type(%h: tensor<?x8xf32>, %t: index) {
  // expected-error @+1 {{result must have the element type of 'input' ('f32'), got 'tensor<?x8xbf16>'}}
  %o = moe.ep_all_gather %h tokens(%t) ranks = 2 : tensor<?x8xf32> -> tensor<?x8xbf16>
  return
}

// -----

func.func @ep_slots_count(%w: tensor<4x16x8xf32>) {
  // expected-error @+1 {{result must have S = 2 slots in its leading dimension, got 'tensor<3x16x8xf32>'}}
  %l = moe.ep_slots %w ranks = 2 slot_experts = [0, 1, 2, 3] : tensor<4x16x8xf32> -> tensor<3x16x8xf32>
  return
}

// -----

func.func @ep_slots_expert(%w: tensor<4x16x8xf32>) {
  // expected-error @+1 {{slot_experts[3] = 4 is not an expert of the input or -1}}
  %l = moe.ep_slots %w ranks = 2 slot_experts = [0, 1, 2, 4] : tensor<4x16x8xf32> -> tensor<2x16x8xf32>
  return
}

//===----------------------------------------------------------------------===//
// moe.routed_ffn
//===----------------------------------------------------------------------===//

func.func @routed_weights_shape(%h: tensor<5x16xf32>, %ids: tensor<5x2xi32>, %w: tensor<5x3xf32>,
                                %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error @+1 {{operand 'weights' must have shape [T=5, k=2], got 'tensor<5x3xf32>'}}
  %y = moe.routed_ffn %h, %ids, %w fc1(%w1) fc2(%w2) act = relu
      : (tensor<5x16xf32>, tensor<5x2xi32>, tensor<5x3xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<5x16xf32>
  return
}

// -----

func.func @routed_tokens(%h: tensor<5x16xf32>, %ids: tensor<6x2xi32>, %w: tensor<6x2xf32>,
                         %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error @+1 {{operand 'indices' must have shape [T=5, k=2], got 'tensor<6x2xi32>'}}
  %y = moe.routed_ffn %h, %ids, %w fc1(%w1) fc2(%w2) act = relu
      : (tensor<5x16xf32>, tensor<6x2xi32>, tensor<6x2xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<5x16xf32>
  return
}

// -----

func.func @routed_fc2_experts(%h: tensor<5x16xf32>, %ids: tensor<5x2xi32>, %w: tensor<5x2xf32>,
                              %w1: tensor<4x32x16xf32>, %w2: tensor<3x16x32xf32>) {
  // expected-error @+1 {{operand 'fc2' must have shape [E=4, H=16, I=32], got 'tensor<3x16x32xf32>'}}
  %y = moe.routed_ffn %h, %ids, %w fc1(%w1) fc2(%w2) act = relu
      : (tensor<5x16xf32>, tensor<5x2xi32>, tensor<5x2xf32>, tensor<4x32x16xf32>, tensor<3x16x32xf32>) -> tensor<5x16xf32>
  return
}

// -----

func.func @routed_dynamic_experts(%h: tensor<5x16xf32>, %ids: tensor<5x2xi32>, %w: tensor<5x2xf32>,
                                  %w1: tensor<?x32x16xf32>, %w2: tensor<?x16x32xf32>) {
  // expected-error @+1 {{operand 'fc1' must have a static, positive number of experts in dimension 0, got 'tensor<?x32x16xf32>'}}
  %y = moe.routed_ffn %h, %ids, %w fc1(%w1) fc2(%w2) act = relu
      : (tensor<5x16xf32>, tensor<5x2xi32>, tensor<5x2xf32>, tensor<?x32x16xf32>, tensor<?x16x32xf32>) -> tensor<5x16xf32>
  return
}

// -----

func.func @routed_input_rank(%h: tensor<5x2x16xf32>, %ids: tensor<5x2xi32>, %w: tensor<5x2xf32>,
                             %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error @+1 {{operand 'input' must have rank 2 [T, H]}}
  %y = moe.routed_ffn %h, %ids, %w fc1(%w1) fc2(%w2) act = relu
      : (tensor<5x2x16xf32>, tensor<5x2xi32>, tensor<5x2xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<5x2x16xf32>
  return
}

// -----

//===----------------------------------------------------------------------===//
// moe.stack_experts
//===----------------------------------------------------------------------===//

func.func @stack_rank(%r: tensor<16x8xf32>, %s: tensor<16x8xf32>) {
  // expected-error @+1 {{operand 'routed' must have rank 3 [E, R, C], got 'tensor<16x8xf32>'}}
  %a = moe.stack_experts %r, %s {split_dim = 0} : (tensor<16x8xf32>, tensor<16x8xf32>) -> tensor<?x?x?xf32>
  return
}

// -----

func.func @stack_other_dim(%r: tensor<4x16x8xf32>, %s: tensor<32x16xf32>) {
  // expected-error @+1 {{operand 'shared' must have size 8 in dimension 1 (that of 'routed' in dimension 2), got 16}}
  %a = moe.stack_experts %r, %s {split_dim = 0} : (tensor<4x16x8xf32>, tensor<32x16xf32>) -> tensor<6x16x8xf32>
  return
}

// -----

func.func @stack_multiple(%r: tensor<4x16x8xf32>, %s: tensor<24x8xf32>) {
  // expected-error @+1 {{operand 'shared' must have a positive multiple of 16 in dimension 0 (split_dim), got 24}}
  %a = moe.stack_experts %r, %s {split_dim = 0} : (tensor<4x16x8xf32>, tensor<24x8xf32>) -> tensor<5x16x8xf32>
  return
}

// -----

func.func @stack_element_type(%r: tensor<4x16x8xf32>, %s: tensor<16x8xbf16>) {
  // expected-error @+1 {{operands 'routed' and 'shared' must have one element type, got 'f32' and 'bf16'}}
  %a = moe.stack_experts %r, %s {split_dim = 0} : (tensor<4x16x8xf32>, tensor<16x8xbf16>) -> tensor<5x16x8xf32>
  return
}

// -----

func.func @stack_dynamic(%r: tensor<4x16x8xf32>, %s: tensor<?x8xf32>) {
  // expected-error @+1 {{needs static shapes, got 'tensor<4x16x8xf32>' and 'tensor<?x8xf32>'}}
  %a = moe.stack_experts %r, %s {split_dim = 0} : (tensor<4x16x8xf32>, tensor<?x8xf32>) -> tensor<?x16x8xf32>
  return
}
