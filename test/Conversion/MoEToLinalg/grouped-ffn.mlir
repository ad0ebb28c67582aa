// RUN: moe-opt %s --split-input-file --convert-moe-to-linalg | FileCheck %s
// The grouped GEMM form of moe.expert_ffn; its numbers are checked end to
// end against the PyTorch reference in test/Integration (test_moe_ops.py,
// test_hf_models.py), and bitwise against the per-expert form there.

// Dropless rows, fused gate/up: the experts with rows become the groups
// (expert id, first row, row count), then one parallel loop for the gate/up
// projection of all experts (4 experts x 4 column tiles of 8) and one for
// the down projection (4 x 2), each task on its group's rows (read from
// the group's first row on) and its expert's matrices. The down projection writes into zeros (rows of no
// expert stay 0). No per-expert loop remains.
// CHECK-LABEL: func.func @dropless(
// CHECK-SAME:      %[[ROWS:[^:]*]]: tensor<?x16xf32>, %[[COUNTS:[^:]*]]: tensor<4xi32>, %[[W1:[^:]*]]: tensor<4x32x16xf32>, %[[W2:[^:]*]]: tensor<4x16x32xf32>, %[[W3:[^:]*]]: tensor<4x32x16xf32>
// CHECK:         %[[G:.*]]:5 = scf.for %[[E:[^ ]*]] = %{{.*}} to %{{.*}} step %{{.*}} iter_args(
// CHECK:           tensor.extract %[[COUNTS]][%[[E]]]
// CHECK:           scf.if
// CHECK:             tensor.insert %[[E]] into
// CHECK:         %[[TASKS:.*]] = arith.muli %[[G]]#3, %{{.*}}
// CHECK:         scf.forall (%{{.*}}) in (%[[TASKS]]) shared_outs(%{{.*}}) -> (tensor<?x32xf32>)
// CHECK:           %[[EXPERT:.*]] = tensor.extract %[[G]]#0[
// CHECK:           %[[START:.*]] = tensor.extract %[[G]]#1[
// CHECK:           %[[COUNT:.*]] = tensor.extract %[[G]]#2[
// CHECK-DAG:       tensor.extract_slice %[[W1]][%[[EXPERT]], 0, 0] [1, 32, 16] [1, 1, 1] : tensor<4x32x16xf32> to tensor<32x16xf32>
// CHECK-DAG:       tensor.extract_slice %[[W3]][%[[EXPERT]], 0, 0] [1, 32, 16] [1, 1, 1] : tensor<4x32x16xf32> to tensor<32x16xf32>
// CHECK:           %[[ROW:.*]] = arith.addi %[[START]], %{{.*}} : index
// CHECK:           vector.transfer_read %[[ROWS]][%[[ROW]], %{{.*}}]
// CHECK:           math.exp
// CHECK:           tensor.parallel_insert_slice %{{.*}} into %{{.*}}[%[[START]], %{{.*}}] [%[[COUNT]], 8] [1, 1] : tensor<?x8xf32> into tensor<?x32xf32>
// CHECK:         linalg.fill
// CHECK:         %[[TASKS2:.*]] = arith.muli %[[G]]#3, %{{.*}}
// CHECK:         scf.forall (%{{.*}}) in (%[[TASKS2]]) shared_outs(%{{.*}}) -> (tensor<?x16xf32>)
// CHECK:           tensor.extract_slice %[[W2]][%{{.*}}, 0, 0] [1, 16, 32] [1, 1, 1] : tensor<4x16x32xf32> to tensor<16x32xf32>
// CHECK:           tensor.parallel_insert_slice
// CHECK-NOT:     scf.forall
// CHECK:         return
func.func @dropless(%rows: tensor<?x16xf32>, %counts: tensor<4xi32>, %w1: tensor<4x32x16xf32>,
                    %w2: tensor<4x16x32xf32>, %w3: tensor<4x32x16xf32>) -> tensor<?x16xf32> {
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc3(%w3) fc2(%w2) act = silu gating = separate {fuse_gate_up}
      : (tensor<?x16xf32>, tensor<4xi32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>, tensor<4x32x16xf32>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// Without fuse_gate_up: a grouped GEMM each for the gate and the up
// projection, the activation over their [rows, 32] products, then the down
// projection; the per-expert biases of the interleaved fc1 and of fc2 are
// added in the epilogues, sliced at the task's expert and columns.
// CHECK-LABEL: func.func @unfused_bias(
// CHECK-SAME:      %[[B1:[^:]*]]: tensor<4x64xf32>, %[[B2:[^:]*]]: tensor<4x16xf32>
// CHECK:         %[[GB:.*]] = tensor.extract_slice %[[B1]][0, 0] [4, 32] [1, 2]
// CHECK:         %[[UB:.*]] = tensor.extract_slice %[[B1]][0, 1] [4, 32] [1, 2]
// CHECK:         scf.forall
// CHECK:           %[[EXPERT:.*]] = tensor.extract
// CHECK:           %[[ONE:.*]] = tensor.extract_slice %[[GB]][%[[EXPERT]], 0] [1, 32] [1, 1] : tensor<4x32xf32> to tensor<32xf32>
// CHECK:           tensor.extract_slice %[[ONE]][%{{.*}}] [8] [1]
// CHECK-NOT:       math.exp
// CHECK:         scf.forall
// CHECK:           tensor.extract_slice %[[UB]][
// CHECK-NOT:       math.exp
// CHECK:         linalg.generic {{.*}} ins(%{{.*}}, %{{.*}} : tensor<?x32xf32>, tensor<?x32xf32>)
// CHECK:           math.exp
// CHECK:         scf.forall
// CHECK:           tensor.extract_slice %[[B2]][
// CHECK:         return
func.func @unfused_bias(%rows: tensor<?x16xf32>, %counts: tensor<4xi32>, %w1: tensor<4x64x16xf32>,
                        %w2: tensor<4x16x32xf32>, %b1: tensor<4x64xf32>, %b2: tensor<4x16xf32>) -> tensor<?x16xf32> {
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc2(%w2) fc1_bias(%b1) fc2_bias(%b2) act = silu gating = interleaved
      : (tensor<?x16xf32>, tensor<4xi32>, tensor<4x64x16xf32>, tensor<4x16x32xf32>, tensor<4x64xf32>, tensor<4x16xf32>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// Capacity slabs [E, C, H]: seen as one row list, expert e's rows from
// e * C, counts clamped to C; the result is reshaped back.
// CHECK-LABEL: func.func @slabs(
// CHECK:         tensor.collapse_shape %{{.*}} {{\[}}[0, 1], [2]] : tensor<4x?x16xbf16> into tensor<?x16xbf16>
// CHECK:         scf.for
// CHECK:           arith.muli
// CHECK:           arith.minsi
// CHECK:         scf.forall
// CHECK:         scf.forall
// CHECK:         tensor.expand_shape
// CHECK-SAME:      into tensor<4x?x16xbf16>
func.func @slabs(%rows: tensor<4x?x16xbf16>, %counts: tensor<4xi32>, %w1: tensor<4x32x16xbf16>,
                 %w2: tensor<4x16x32xbf16>, %w3: tensor<4x32x16xbf16>) -> tensor<4x?x16xbf16> {
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc3(%w3) fc2(%w2) act = silu gating = separate {fuse_gate_up}
      : (tensor<4x?x16xbf16>, tensor<4xi32>, tensor<4x32x16xbf16>, tensor<4x16x32xbf16>, tensor<4x32x16xbf16>) -> tensor<4x?x16xbf16>
  return %y : tensor<4x?x16xbf16>
}

// -----

// Where the grouped kernel does not apply (I = 24, not a multiple of 16),
// the FFN runs per expert: a loop over the experts, each with rows running
// its own contractions into its row slice of the output.
// CHECK-LABEL: func.func @per_expert(
// CHECK-NOT:     scf.forall (%{{.*}}) in (%
// CHECK:         scf.for
// CHECK:           scf.if
// CHECK:             tensor.insert_slice
// CHECK:         return
func.func @per_expert(%rows: tensor<?x16xf32>, %counts: tensor<4xi32>, %w1: tensor<4x24x16xf32>,
                      %w2: tensor<4x16x24xf32>, %w3: tensor<4x24x16xf32>) -> tensor<?x16xf32> {
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc3(%w3) fc2(%w2) act = silu gating = separate {fuse_gate_up}
      : (tensor<?x16xf32>, tensor<4xi32>, tensor<4x24x16xf32>, tensor<4x16x24xf32>, tensor<4x24x16xf32>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// Weights stacked by moe-fuse-shared-expert are read where they are: in
// each task, experts 0..3 take their matrices from the routed stacks and
// expert 4 (the shared expert) from the shared matrices, in two copies of
// the kernel (each with the strides of its matrices). Nothing is copied.
// CHECK-LABEL: func.func @stacked_in_place(
// CHECK-SAME:      %[[W1:[^:]*]]: tensor<4x32x16xf32>, %[[W2:[^:]*]]: tensor<4x16x32xf32>, %[[S1:[^:]*]]: tensor<32x16xf32>, %[[S2:[^:]*]]: tensor<16x32xf32>
// CHECK-NOT:     tensor.insert_slice
// CHECK:         scf.forall
// CHECK:           %[[EXPERT:.*]] = tensor.extract
// CHECK:           %[[ROUTED:.*]] = arith.cmpi ult, %[[EXPERT]], %[[C4:.*]] : index
// CHECK:           scf.if %[[ROUTED]] -> (tensor<?x8xf32>)
// CHECK:             tensor.extract_slice %[[W1]][%[[EXPERT]], 0, 0] [1, 32, 16]
// CHECK:           } else {
// CHECK:             %[[J:.*]] = arith.subi %[[EXPERT]], %[[C4]] : index
// CHECK:             %[[ROW:.*]] = arith.muli %[[J]], %{{.*}} : index
// CHECK:             tensor.extract_slice %[[S1]][%[[ROW]], 0] [32, 16] [1, 1] : tensor<32x16xf32> to tensor<32x16xf32>
// CHECK:         scf.forall
// CHECK:           scf.if
// CHECK:             tensor.extract_slice %[[W2]][
// CHECK:           } else {
// CHECK:             tensor.extract_slice %[[S2]][0, %{{.*}}] [16, 32] [1, 1] : tensor<16x32xf32> to tensor<16x32xf32>
// CHECK-NOT:     moe.stack_experts
// CHECK:         return
func.func @stacked_in_place(%rows: tensor<?x16xf32>, %counts: tensor<5xi32>, %w1: tensor<4x32x16xf32>,
                            %w2: tensor<4x16x32xf32>, %s1: tensor<32x16xf32>, %s2: tensor<16x32xf32>) -> tensor<?x16xf32> {
  %f1 = moe.stack_experts %w1, %s1 {split_dim = 0} : (tensor<4x32x16xf32>, tensor<32x16xf32>) -> tensor<5x32x16xf32>
  %f2 = moe.stack_experts %w2, %s2 {split_dim = 1} : (tensor<4x16x32xf32>, tensor<16x32xf32>) -> tensor<5x16x32xf32>
  %y = moe.expert_ffn %rows, %counts fc1(%f1) fc2(%f2) act = gelu {fuse_gate_up}
      : (tensor<?x16xf32>, tensor<5xi32>, tensor<5x32x16xf32>, tensor<5x16x32xf32>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// A stack with another use is copied into one tensor: the routed experts,
// then the shared matrix's chunks (two of 16 columns here).
// CHECK-LABEL: func.func @stacked_copy(
// CHECK-SAME:      %[[W2:[^:]*]]: tensor<4x16x16xf32>, %[[S2:[^:]*]]: tensor<16x32xf32>
// CHECK:         %[[R:.*]] = tensor.insert_slice %[[W2]] into %{{.*}}[0, 0, 0] [4, 16, 16] [1, 1, 1] : tensor<4x16x16xf32> into tensor<6x16x16xf32>
// CHECK:         %[[C0:.*]] = tensor.extract_slice %[[S2]][0, %{{.*}}] [16, 16] [1, 1]
// CHECK:         %[[A:.*]] = tensor.insert_slice %[[C0]] into %[[R]][4, 0, 0] [1, 16, 16]
// CHECK:         %[[C1:.*]] = tensor.extract_slice %[[S2]][0, %{{.*}}] [16, 16] [1, 1]
// CHECK:         %[[B:.*]] = tensor.insert_slice %[[C1]] into %[[A]][5, 0, 0] [1, 16, 16]
// CHECK-NOT:     moe.stack_experts
// CHECK:         return %[[B]]
func.func @stacked_copy(%w2: tensor<4x16x16xf32>, %s2: tensor<16x32xf32>) -> tensor<6x16x16xf32> {
  %f2 = moe.stack_experts %w2, %s2 {split_dim = 1} : (tensor<4x16x16xf32>, tensor<16x32xf32>) -> tensor<6x16x16xf32>
  return %f2 : tensor<6x16x16xf32>
}
