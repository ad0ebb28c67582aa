// A Mixtral-style MoE layer (router, dispatch, experts, combine) for the
// tool tests.
func.func @layer(%h: tensor<?x32xf32> {moe.name = "h"}, %r: tensor<4x32xf32> {moe.name = "router"},
                 %w1: tensor<4x16x32xf32> {moe.name = "w1"}, %w2: tensor<4x32x16xf32> {moe.name = "w2"},
                 %w3: tensor<4x16x32xf32> {moe.name = "w3"}) -> (tensor<?x32xf32> {moe.name = "out"}) {
  %ids, %w = moe.route %h weight(%r) k = 2 scoring = softmax {renormalize}
      : (tensor<?x32xf32>, tensor<4x32xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  %rows, %counts, %map = moe.dispatch dropless %h, %ids experts = 4
      : (tensor<?x32xf32>, tensor<?x2xi32>) -> (tensor<?x32xf32>, tensor<4xi32>, tensor<?x2xi32>)
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc3(%w3) fc2(%w2) act = silu gating = separate
      : (tensor<?x32xf32>, tensor<4xi32>, tensor<4x16x32xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<?x32xf32>
  %out = moe.combine dropless %y, %map, %w : (tensor<?x32xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x32xf32>
  return %out : tensor<?x32xf32>
}
