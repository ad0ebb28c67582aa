// RUN: moe-opt %s --split-input-file --convert-moe-to-linalg | FileCheck %s

// With fuse_gate_up, one parallel loop computes each task's gate tile (fc1)
// and up tile (fc3) and applies SwiGLU to them before storing the [rows, 8]
// result; the down projection follows as its own loop.
// CHECK-LABEL: func.func @fused(
// CHECK-SAME:      %[[X:[^:]*]]: tensor<?x16xf32>, %[[W1:[^:]*]]: tensor<32x16xf32>, %[[W3:[^:]*]]: tensor<32x16xf32>
// CHECK:         scf.forall (%{{.*}}) in (4) shared_outs(%{{.*}}) -> (tensor<?x32xf32>)
// CHECK-DAG:       vector.transfer_read %[[W1]]
// CHECK-DAG:       vector.transfer_read %[[W3]]
// CHECK:           linalg.generic {{.*}} ins(%{{.*}}, %{{.*}} : tensor<?x8xf32>, tensor<?x8xf32>)
// CHECK:             math.exp
// CHECK:           tensor.parallel_insert_slice {{.*}} : tensor<?x8xf32> into tensor<?x32xf32>
// CHECK:         scf.forall (%{{.*}}) in (2) shared_outs(%{{.*}}) -> (tensor<?x16xf32>)
// CHECK-NOT:     math.exp
// CHECK:         return
func.func @fused(%x: tensor<?x16xf32>, %w1: tensor<32x16xf32>, %w3: tensor<32x16xf32>,
                 %w2: tensor<16x32xf32>) -> tensor<?x16xf32> {
  %y = moe.shared_expert %x fc1(%w1) fc3(%w3) fc2(%w2) act = silu gating = separate {fuse_gate_up}
      : (tensor<?x16xf32>, tensor<32x16xf32>, tensor<16x32xf32>, tensor<32x16xf32>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// Biases of an interleaved fc1 are read per task at the task's columns.
// CHECK-LABEL: func.func @fused_bias(
// CHECK:         scf.forall (%[[T:.*]]) in (4)
// CHECK:           %[[COL:.*]] = arith.muli %[[T]], %{{.*}} : index
// CHECK-DAG:       tensor.extract_slice %{{.*}}[%[[COL]]] [8] [1] : tensor<32xf32> to tensor<8xf32>
// CHECK-DAG:       tensor.extract_slice %{{.*}}[%[[COL]]] [8] [1] : tensor<32xf32> to tensor<8xf32>
// CHECK:           linalg.generic {{.*}} ins(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} : tensor<?x8xf32>, tensor<?x8xf32>, tensor<8xf32>, tensor<8xf32>)
func.func @fused_bias(%x: tensor<?x16xf32>, %w1: tensor<64x16xf32>, %b1: tensor<64xf32>,
                      %w2: tensor<16x32xf32>) -> tensor<?x16xf32> {
  %y = moe.shared_expert %x fc1(%w1) fc2(%w2) fc1_bias(%b1) act = silu gating = interleaved {fuse_gate_up}
      : (tensor<?x16xf32>, tensor<64x16xf32>, tensor<16x32xf32>, tensor<64xf32>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// Without the attribute: the gate and up products are two loops, each
// materializing [rows, 32], and the activation a third pass over them.
// CHECK-LABEL: func.func @unfused(
// CHECK:         scf.forall (%{{.*}}) in (4) shared_outs(%{{.*}}) -> (tensor<?x32xf32>)
// CHECK-NOT:       math.exp
// CHECK:         scf.forall (%{{.*}}) in (4) shared_outs(%{{.*}}) -> (tensor<?x32xf32>)
// CHECK-NOT:       math.exp
// CHECK:         linalg.generic {{.*}} ins(%{{.*}}, %{{.*}} : tensor<?x32xf32>, tensor<?x32xf32>)
// CHECK:           math.exp
// CHECK:         scf.forall (%{{.*}}) in (2)
func.func @unfused(%x: tensor<?x16xf32>, %w1: tensor<32x16xf32>, %w3: tensor<32x16xf32>,
                   %w2: tensor<16x32xf32>) -> tensor<?x16xf32> {
  %y = moe.shared_expert %x fc1(%w1) fc3(%w3) fc2(%w2) act = silu gating = separate
      : (tensor<?x16xf32>, tensor<32x16xf32>, tensor<16x32xf32>, tensor<32x16xf32>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// The attribute is a hint: where the kernel does not apply (H = 24) the
// lowering keeps the separate contractions.
// CHECK-LABEL: func.func @hint_ignored(
// CHECK-NOT:     scf.forall
// CHECK:         linalg.generic
// CHECK:         return
func.func @hint_ignored(%x: tensor<?x24xf32>, %w1: tensor<32x24xf32>, %w3: tensor<32x24xf32>,
                        %w2: tensor<24x32xf32>) -> tensor<?x24xf32> {
  %y = moe.shared_expert %x fc1(%w1) fc3(%w3) fc2(%w2) act = silu gating = separate {fuse_gate_up}
      : (tensor<?x24xf32>, tensor<32x24xf32>, tensor<24x32xf32>, tensor<32x24xf32>) -> tensor<?x24xf32>
  return %y : tensor<?x24xf32>
}
