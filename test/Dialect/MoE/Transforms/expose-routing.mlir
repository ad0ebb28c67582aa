// RUN: moe-opt %s --split-input-file --moe-expose-routing | FileCheck %s

// Two token-choice routers: their indices become results routing.0.e5 and
// routing.1.e4 after the function's own results; nothing else changes.
// CHECK-LABEL: func.func @two_layers(
// CHECK-SAME:    -> (tensor<?x8xf32> {moe.name = "y"}, tensor<?x2xi32> {moe.name = "routing.0.e5"}, tensor<?x1xi32> {moe.name = "routing.1.e4"})
// CHECK:         %[[I0:.+]], %{{.+}} = moe.route
// CHECK:         %[[I1:.+]], %{{.+}} = moe.route
// CHECK:         return %{{.+}}, %[[I0]], %[[I1]] : tensor<?x8xf32>, tensor<?x2xi32>, tensor<?x1xi32>
func.func @two_layers(%x: tensor<?x8xf32>, %l0: tensor<?x5xf32>, %l1: tensor<?x4xf32>) -> (tensor<?x8xf32> {moe.name = "y"}) {
  %i0, %w0 = moe.route %l0 k = 2 scoring = softmax : (tensor<?x5xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  %i1, %w1 = moe.route %l1 k = 1 scoring = sigmoid : (tensor<?x4xf32>) -> (tensor<?x1xi32>, tensor<?x1xf32>)
  return %x : tensor<?x8xf32>
}

// -----

// Expert-choice routers (token ids, not expert ids) and private functions
// are left alone.
// CHECK-LABEL: func.func @expert_choice(
// CHECK-SAME:    -> tensor<4x2xi32>
// CHECK-LABEL: func.func private @helper(
// CHECK-SAME:    -> tensor<?x8xf32>
func.func @expert_choice(%l: tensor<6x4xf32>) -> tensor<4x2xi32> {
  %i, %w = moe.route %l k = 1 scoring = softmax {mode = #moe.routing_mode<expert_choice>, expert_capacity = 2}
      : (tensor<6x4xf32>) -> (tensor<4x2xi32>, tensor<4x2xf32>)
  return %i : tensor<4x2xi32>
}
func.func private @helper(%x: tensor<?x8xf32>, %l: tensor<?x5xf32>) -> tensor<?x8xf32> {
  %i, %w = moe.route %l k = 2 scoring = softmax : (tensor<?x5xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return %x : tensor<?x8xf32>
}
