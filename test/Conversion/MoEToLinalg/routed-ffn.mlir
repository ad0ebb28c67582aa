// RUN: moe-opt %s --split-input-file --convert-moe-to-linalg | FileCheck %s
// The lowering of moe.routed_ffn; its numbers are checked end to end
// against the PyTorch reference and bitwise against the unfused chain in
// test/Integration (test_moe_ops.py: test_routed_ffn,
// test_dispatch_combine_fusion_changes_no_bit).

// Grouped kernels: the dispatch's bookkeeping (counts, then the row of every
// assignment and the token of every row) with no copy of the hidden rows;
// the gate/up projection reads each group's rows from %h through the row ->
// token list; the down projection is one task per column tile over all
// groups, its [rows, 8] tile buffer summed into the tokens' rows (the
// combine: mapping and weights, a reduction over the k slots) and stored
// into the [T, 32] result.
// CHECK-LABEL: func.func @grouped(
// CHECK-SAME:      %[[H:[^:]*]]: tensor<?x32xf32>, %[[IDS:[^:]*]]: tensor<?x2xi32>, %[[W:[^:]*]]: tensor<?x2xf32>
// CHECK:         %[[PLAN:.*]]:3 = scf.for
// CHECK:         %[[G:.*]]:5 = scf.for
// CHECK-NOT:     linalg.generic
// CHECK:         scf.forall (%{{.*}}) in (%{{.*}}) shared_outs(%{{.*}}) -> (tensor<?x16xf32>)
// CHECK:           %[[START:.*]] = tensor.extract %[[G]]#1[
// CHECK:           %[[ROW:.*]] = arith.addi %[[START]], %{{.*}} : index
// CHECK:           %[[TOKEN:.*]] = tensor.extract %[[PLAN]]#1[%[[ROW]]] : tensor<?xi32>
// CHECK:           %[[T:.*]] = arith.index_cast %[[TOKEN]] : i32 to index
// CHECK:           vector.transfer_read %[[H]][%[[T]], %{{.*}}]
// CHECK:         scf.forall (%{{.*}}) in (4) shared_outs(%{{.*}}) -> (tensor<?x32xf32>)
// CHECK:           %[[BUF:.*]] = scf.for %{{.*}} = %{{.*}} to %[[G]]#3 step %{{.*}} iter_args(%{{.*}}) -> (tensor<?x8xf32>)
// CHECK:             tensor.insert_slice %{{.*}} into %{{.*}} [%{{.*}}, 8] [1, 1] : tensor<?x8xf32> into tensor<?x8xf32>
// CHECK:           %[[SUM:.*]] = linalg.generic {{.*}} iterator_types = ["parallel", "parallel", "reduction"]} ins(%[[PLAN]]#0, %[[W]] : tensor<?x2xi32>, tensor<?x2xf32>)
// CHECK:             tensor.extract %[[BUF]]
// CHECK:           tensor.parallel_insert_slice %[[SUM]] into %{{.*}}[0, %{{.*}}] [%{{.*}}, 8] [1, 1] : tensor<?x8xf32> into tensor<?x32xf32>
// CHECK-NOT:     scf.forall
// CHECK:         return
func.func @grouped(%h: tensor<?x32xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>,
                   %w1: tensor<4x16x32xf32>, %w2: tensor<4x32x16xf32>, %w3: tensor<4x16x32xf32>) -> tensor<?x32xf32> {
  %y = moe.routed_ffn %h, %ids, %w fc1(%w1) fc3(%w3) fc2(%w2) act = silu gating = separate {fuse_gate_up}
      : (tensor<?x32xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x16x32xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<?x32xf32>
  return %y : tensor<?x32xf32>
}

// -----

// bf16 activations: each down-projection tile is rounded to bf16 before the
// combine reads it (as the unfused FFN's result is), and the sum is rounded
// once more into the bf16 result.
// CHECK-LABEL: func.func @bf16(
// CHECK:         scf.forall (%{{.*}}) in (2) shared_outs(%{{.*}}) -> (tensor<?x16xbf16>)
// CHECK:           scf.for {{.*}} -> (tensor<?x8xbf16>)
// CHECK:             arith.truncf %{{.*}} : f32 to bf16
// CHECK:           linalg.generic
// CHECK:             arith.extf %{{.*}} : bf16 to f32
// CHECK:           arith.truncf %{{.*}} : f32 to bf16
// CHECK:           tensor.parallel_insert_slice %{{.*}} : tensor<?x8xbf16> into tensor<?x16xbf16>
func.func @bf16(%h: tensor<?x16xbf16>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>,
                %w1: tensor<4x32x16xbf16>, %w2: tensor<4x16x32xbf16>) -> tensor<?x16xbf16> {
  %y = moe.routed_ffn %h, %ids, %w fc1(%w1) fc2(%w2) act = gelu
      : (tensor<?x16xbf16>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x32x16xbf16>, tensor<4x16x32xbf16>) -> tensor<?x16xbf16>
  return %y : tensor<?x16xbf16>
}

// -----

// I = 24 (not a multiple of 16): lowered as the dispatch (a gather of the
// rows), the per-expert FFN loop and the combine.
// CHECK-LABEL: func.func @per_expert(
// CHECK-SAME:      %[[H:[^:]*]]: tensor<?x16xf32>
// CHECK:         linalg.generic
// CHECK:           tensor.extract %[[H]]
// CHECK:         scf.for
// CHECK:           scf.if
// CHECK:         linalg.generic {{.*}} iterator_types = ["parallel", "parallel", "reduction"]
// CHECK-NOT:     moe.
func.func @per_expert(%h: tensor<?x16xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>,
                      %w1: tensor<4x24x16xf32>, %w2: tensor<4x16x24xf32>) -> tensor<?x16xf32> {
  %y = moe.routed_ffn %h, %ids, %w fc1(%w1) fc2(%w2) act = relu
      : (tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x24x16xf32>, tensor<4x16x24xf32>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}
