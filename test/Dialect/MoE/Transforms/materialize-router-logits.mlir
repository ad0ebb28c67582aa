// RUN: moe-opt %s --split-input-file --moe-materialize-router-logits | FileCheck %s

// f32 router: one contraction over H into zero-initialized f32 logits, and
// the same route (k, scoring, flags) on the logits.
// CHECK-DAG:   #[[X_MAP:.+]] = affine_map<(d0, d1, d2) -> (d0, d2)>
// CHECK-DAG:   #[[W_MAP:.+]] = affine_map<(d0, d1, d2) -> (d1, d2)>
// CHECK-DAG:   #[[OUT_MAP:.+]] = affine_map<(d0, d1, d2) -> (d0, d1)>
// CHECK-LABEL: func.func @f32_router
// CHECK-SAME:  (%[[X:.+]]: tensor<5x16xf32>, %[[W:.+]]: tensor<8x16xf32>, %[[B:.+]]: tensor<8xf32>)
// CHECK:       %[[EMPTY:.+]] = tensor.empty() : tensor<5x8xf32>
// CHECK:       %[[ZERO:.+]] = arith.constant 0.000000e+00 : f32
// CHECK:       %[[INIT:.+]] = linalg.fill ins(%[[ZERO]] : f32) outs(%[[EMPTY]] : tensor<5x8xf32>)
// CHECK:       %[[LOGITS:.+]] = linalg.matmul indexing_maps = [#[[X_MAP]], #[[W_MAP]], #[[OUT_MAP]]]
// CHECK-SAME:      ins(%[[X]], %[[W]] : tensor<5x16xf32>, tensor<8x16xf32>) outs(%[[INIT]] : tensor<5x8xf32>)
// CHECK:       moe.route %[[LOGITS]] selection_bias(%[[B]]) k = 2 scoring = sigmoid {group_score = #moe.group_score<top2_sum>, n_group = 2 : i64, renormalize, routed_scaling_factor = 2.500000e+00 : f32, topk_group = 1 : i64}
// CHECK-SAME:  : (tensor<5x8xf32>, tensor<8xf32>) -> (tensor<5x2xi32>, tensor<5x2xf32>)
func.func @f32_router(%x: tensor<5x16xf32>, %w: tensor<8x16xf32>, %b: tensor<8xf32>) -> (tensor<5x2xi32>, tensor<5x2xf32>) {
  %i, %p = moe.route %x weight(%w) selection_bias(%b) k = 2 scoring = sigmoid
      {n_group = 2, topk_group = 1, group_score = #moe.group_score<top2_sum>, renormalize, routed_scaling_factor = 2.5 : f32}
      : (tensor<5x16xf32>, tensor<8x16xf32>, tensor<8xf32>) -> (tensor<5x2xi32>, tensor<5x2xf32>)
  return %i, %p : tensor<5x2xi32>, tensor<5x2xf32>
}

// -----

// bf16 router with a bias and round_logits (HF Mixtral/Qwen): the product is
// taken in f32 on extended operands, the bias is added in f32, and the
// logits are rounded to bf16 once; T stays dynamic.
// CHECK-LABEL: func.func @bf16_router_bias_round
// CHECK-SAME:  (%[[X:.+]]: tensor<?x16xbf16>, %[[W:.+]]: tensor<8x16xbf16>, %[[B:.+]]: tensor<8xbf16>)
// CHECK:       %[[C0:.+]] = arith.constant 0 : index
// CHECK:       %[[T:.+]] = tensor.dim %[[X]], %[[C0]] : tensor<?x16xbf16>
// CHECK:       tensor.empty(%[[T]]) : tensor<?x8xf32>
// CHECK:       %[[LOGITS:.+]] = linalg.matmul indexing_maps = [#{{.+}}, #{{.+}}, #{{.+}}] ins(%[[X]], %[[W]] : tensor<?x16xbf16>, tensor<8x16xbf16>) outs(%{{.+}} : tensor<?x8xf32>)
// CHECK:       %[[OUT:.+]] = tensor.empty(%{{.+}}) : tensor<?x8xbf16>
// CHECK:       %[[ROUNDED:.+]] = linalg.generic {{.*}} ins(%[[LOGITS]], %[[B]] : tensor<?x8xf32>, tensor<8xbf16>) outs(%[[OUT]] : tensor<?x8xbf16>)
// CHECK-NEXT:  ^bb0(%[[L:.+]]: f32, %[[BV:.+]]: bf16, %{{.+}}: bf16):
// CHECK-NEXT:    %[[BF:.+]] = arith.extf %[[BV]] : bf16 to f32
// CHECK-NEXT:    %[[SUM:.+]] = arith.addf %[[L]], %[[BF]] : f32
// CHECK-NEXT:    %[[R:.+]] = arith.truncf %[[SUM]] : f32 to bf16
// CHECK-NEXT:    linalg.yield %[[R]] : bf16
// CHECK:       moe.route %[[ROUNDED]] k = 2 scoring = softmax {renormalize} : (tensor<?x8xbf16>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
func.func @bf16_router_bias_round(%x: tensor<?x16xbf16>, %w: tensor<8x16xbf16>, %b: tensor<8xbf16>) -> (tensor<?x2xi32>, tensor<?x2xf32>) {
  %i, %p = moe.route %x weight(%w) router_bias(%b) k = 2 scoring = softmax {round_logits, renormalize}
      : (tensor<?x16xbf16>, tensor<8x16xbf16>, tensor<8xbf16>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return %i, %p : tensor<?x2xi32>, tensor<?x2xf32>
}

// -----

// Without round_logits, bf16 hidden states still give f32 logits and no
// epilogue (DeepSeek computes its router in f32).
// CHECK-LABEL: func.func @bf16_router_f32_logits
// CHECK:       %[[LOGITS:.+]] = linalg.matmul
// CHECK-NOT:   arith.truncf
// CHECK:       moe.route %[[LOGITS]] k = 1 scoring = softmax : (tensor<3x4xf32>)
func.func @bf16_router_f32_logits(%x: tensor<3x16xbf16>, %w: tensor<4x16xf32>) -> (tensor<3x1xi32>, tensor<3x1xf32>) {
  %i, %p = moe.route %x weight(%w) k = 1 scoring = softmax
      : (tensor<3x16xbf16>, tensor<4x16xf32>) -> (tensor<3x1xi32>, tensor<3x1xf32>)
  return %i, %p : tensor<3x1xi32>, tensor<3x1xf32>
}

// -----

// Must not fire: the router already takes logits.
// CHECK-LABEL: func.func @logits_router_untouched
// CHECK-NOT:   linalg
// CHECK:       moe.route %{{.+}} k = 2 scoring = topk_softmax : (tensor<?x8xf16>)
// CHECK-NOT:   linalg
func.func @logits_router_untouched(%l: tensor<?x8xf16>) -> (tensor<?x2xi32>, tensor<?x2xf32>) {
  %i, %p = moe.route %l k = 2 scoring = topk_softmax
      : (tensor<?x8xf16>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return %i, %p : tensor<?x2xi32>, tensor<?x2xf32>
}

// -----

// Expert-choice routers are materialized the same way; the results keep
// their [E, C] shape.
// CHECK-LABEL: func.func @expert_choice_router
// CHECK:       %[[LOGITS:.+]] = linalg.matmul
// CHECK:       moe.route %[[LOGITS]] k = 1 scoring = softmax {capacity_factor = 2.000000e+00 : f32, mode = #moe.routing_mode<expert_choice>} : (tensor<8x4xf32>) -> (tensor<4x4xi32>, tensor<4x4xf32>)
func.func @expert_choice_router(%x: tensor<8x16xf32>, %w: tensor<4x16xf32>) -> (tensor<4x4xi32>, tensor<4x4xf32>) {
  %i, %p = moe.route %x weight(%w) k = 1 scoring = softmax {mode = #moe.routing_mode<expert_choice>, capacity_factor = 2.0 : f32}
      : (tensor<8x16xf32>, tensor<4x16xf32>) -> (tensor<4x4xi32>, tensor<4x4xf32>)
  return %i, %p : tensor<4x4xi32>, tensor<4x4xf32>
}
