// What moe-expert-parallel cannot shard is a one-line error naming the op
// or the option, never a silently different program.
// RUN: moe-opt %s --split-input-file --moe-expert-parallel="ranks=2" --verify-diagnostics
// RUN: not moe-opt %s --split-input-file --moe-expert-parallel="ranks=2 placement=diagonal" 2>&1 | FileCheck %s --check-prefix=PLACEMENT
// RUN: not moe-opt %s --split-input-file --moe-expert-parallel="ranks=2 redundant=2" 2>&1 | FileCheck %s --check-prefix=REDUNDANT
// RUN: not moe-opt %s --split-input-file --moe-expert-parallel="ranks=2 placement=balanced routing-profile=%t.missing.json" 2>&1 | FileCheck %s --check-prefix=PROFILE
// RUN: not moe-opt %s --split-input-file --moe-expert-parallel="ranks=2 placement=balanced redundant=1" 2>&1 | FileCheck %s --check-prefix=INDIVISIBLE
// PLACEMENT: error: moe-expert-parallel: unknown placement 'diagonal' (expected contiguous, round-robin or balanced)
// REDUNDANT: error: moe-expert-parallel: redundant experts and a routing profile need placement=balanced
// PROFILE: error: moe-expert-parallel: {{.*}}missing.json
// INDIVISIBLE: error: moe-expert-parallel: cannot place the 4 experts of MoE layer 0 on 2 ranks (balanced): {{.+}}

// Expert outputs read by more than the layer's combine.
func.func @ffn_two_uses(%x: tensor<?x8xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>,
                        %w1: tensor<4x16x8xf32>, %w2: tensor<4x8x16xf32>) -> (tensor<?x8xf32>, tensor<?x8xf32>) {
  %rows, %counts, %map = moe.dispatch dropless %x, %ids experts = 4
      : (tensor<?x8xf32>, tensor<?x2xi32>) -> (tensor<?x8xf32>, tensor<4xi32>, tensor<?x2xi32>)
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc2(%w2) act = gelu
      : (tensor<?x8xf32>, tensor<4xi32>, tensor<4x16x8xf32>, tensor<4x8x16xf32>) -> tensor<?x8xf32>
  // expected-error @+1 {{moe-expert-parallel: not the combine of a moe.dispatch -> moe.expert_ffn layer whose expert outputs it alone reads; cannot shard it}}
  %out = moe.combine dropless %y, %map, %w
      : (tensor<?x8xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x8xf32>
  return %out, %y : tensor<?x8xf32>, tensor<?x8xf32>
}

// -----

// Expert-choice routing is not sharded yet.
func.func @expert_choice(%x: tensor<6x8xf32>, %ids: tensor<4x3xi32>, %w: tensor<4x3xf32>,
                         %w1: tensor<4x16x8xf32>, %w2: tensor<4x8x16xf32>) -> tensor<6x8xf32> {
  %rows, %counts, %map = moe.dispatch expert_choice %x, %ids experts = 4
      : (tensor<6x8xf32>, tensor<4x3xi32>) -> (tensor<4x3x8xf32>, tensor<4xi32>, tensor<6x4xi32>)
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc2(%w2) act = gelu
      : (tensor<4x3x8xf32>, tensor<4xi32>, tensor<4x16x8xf32>, tensor<4x8x16xf32>) -> tensor<4x3x8xf32>
  // expected-error @+1 {{moe-expert-parallel: expert-choice routing cannot be sharded yet (token-choice layers only)}}
  %out = moe.combine expert_choice %y, %map, %w
      : (tensor<4x3x8xf32>, tensor<6x4xi32>, tensor<4x3xf32>) -> tensor<6x8xf32>
  return %out : tensor<6x8xf32>
}

// -----

// More ranks than experts.
func.func @too_few_experts(%x: tensor<?x8xf32>, %ids: tensor<?x1xi32>, %w: tensor<?x1xf32>,
                           %w1: tensor<1x16x8xf32>, %w2: tensor<1x8x16xf32>) -> tensor<?x8xf32> {
  %rows, %counts, %map = moe.dispatch dropless %x, %ids experts = 1
      : (tensor<?x8xf32>, tensor<?x1xi32>) -> (tensor<?x8xf32>, tensor<1xi32>, tensor<?x1xi32>)
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc2(%w2) act = gelu
      : (tensor<?x8xf32>, tensor<1xi32>, tensor<1x16x8xf32>, tensor<1x8x16xf32>) -> tensor<?x8xf32>
  // expected-error @+1 {{moe-expert-parallel: cannot place the 1 experts of MoE layer 0 on 2 ranks (contiguous)}}
  %out = moe.combine dropless %y, %map, %w
      : (tensor<?x8xf32>, tensor<?x1xi32>, tensor<?x1xf32>) -> tensor<?x8xf32>
  return %out : tensor<?x8xf32>
}

// -----

// Nothing to shard.
// expected-error @below {{moe-expert-parallel: no MoE layer (moe.dispatch -> moe.expert_ffn -> moe.combine) to shard over 2 ranks}}
module {
  func.func @dense(%x: tensor<4x8xf32>) -> tensor<4x8xf32> {
    return %x : tensor<4x8xf32>
  }
}

// -----

// The layer of the INDIVISIBLE run, 4 experts + 1 replica do not fill 2 ranks.
func.func @indivisible(%x: tensor<?x8xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>,
                       %w1: tensor<4x16x8xf32>, %w2: tensor<4x8x16xf32>) -> tensor<?x8xf32> {
  %rows, %counts, %map = moe.dispatch dropless %x, %ids experts = 4
      : (tensor<?x8xf32>, tensor<?x2xi32>) -> (tensor<?x8xf32>, tensor<4xi32>, tensor<?x2xi32>)
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc2(%w2) act = gelu
      : (tensor<?x8xf32>, tensor<4xi32>, tensor<4x16x8xf32>, tensor<4x8x16xf32>) -> tensor<?x8xf32>
  %out = moe.combine dropless %y, %map, %w
      : (tensor<?x8xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x8xf32>
  return %out : tensor<?x8xf32>
}

// -----

// A layer fused by moe-fuse-dispatch-combine: EP must run first.
func.func @fused_layer(%x: tensor<?x16xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>,
                       %w1: tensor<4x16x16xf32>, %w2: tensor<4x16x16xf32>) -> tensor<?x16xf32> {
  // expected-error @+1 {{moe-expert-parallel: a layer already fused by moe-fuse-dispatch-combine cannot be sharded; run moe-expert-parallel before moe-optimize}}
  %y = moe.routed_ffn %x, %ids, %w fc1(%w1) fc2(%w2) act = relu
      : (tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x16x16xf32>, tensor<4x16x16xf32>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}
