// RUN: moe-opt %s --split-input-file --moe-fuse-gate-up | FileCheck %s
// RUN: moe-opt %s --split-input-file --moe-optimize | FileCheck %s
// RUN: moe-opt %s --split-input-file --moe-optimize=fuse-gate-up=false | FileCheck %s --check-prefix=OFF
// RUN: moe-opt %s --split-input-file --moe-fuse-gate-up --moe-fuse-gate-up | FileCheck %s
// RUN: moe-opt %s --split-input-file --moe-fuse-gate-up --remarks-filter=moe-fuse-gate-up -o /dev/null 2>&1 | FileCheck %s --check-prefix=REMARK

// OFF-NOT: fuse_gate_up

// Separate gate (fc1) and up (fc3) weights: fused.
// CHECK-LABEL: func.func @separate
// CHECK:         moe.expert_ffn {{.*}} {fuse_gate_up}
// REMARK: [Passed] GateUpFusion | Category:moe-fuse-gate-up:moe.expert_ffn | Remark="gate and up projections fused, activation in the epilogue"
func.func @separate(%rows: tensor<?x32xf32>, %counts: tensor<4xi32>, %w1: tensor<4x48x32xbf16>,
                    %w2: tensor<4x32x48xbf16>, %w3: tensor<4x48x32xbf16>) -> tensor<?x32xf32> {
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc3(%w3) fc2(%w2) act = silu gating = separate
      : (tensor<?x32xf32>, tensor<4xi32>, tensor<4x48x32xbf16>, tensor<4x32x48xbf16>, tensor<4x48x32xbf16>) -> tensor<?x32xf32>
  return %y : tensor<?x32xf32>
}

// -----

// Interleaved gate/up rows (ONNX Runtime's swiglu_fusion = 1) with biases
// and a clamp, and a concatenated shared expert with a sigmoid gate.
// CHECK-LABEL: func.func @interleaved_and_shared
// CHECK:         moe.expert_ffn {{.*}} {activation_beta = 1.000000e+00 : f32, clamp_limit = 7.000000e+00 : f32, fuse_gate_up}
// CHECK:         moe.shared_expert {{.*}} {fuse_gate_up}
// REMARK-COUNT-2: [Passed] GateUpFusion
func.func @interleaved_and_shared(%rows: tensor<?x16xf32>, %counts: tensor<2xi32>, %w1: tensor<2x64x16xf32>,
                                  %b1: tensor<2x64xf32>, %w2: tensor<2x16x32xf32>, %x: tensor<?x16xf32>,
                                  %s1: tensor<32x16xf32>, %s2: tensor<16x16xf32>, %g: tensor<1x16xf32>)
    -> (tensor<?x16xf32>, tensor<?x16xf32>) {
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc2(%w2) fc1_bias(%b1) act = silu gating = interleaved
      {activation_beta = 1.0 : f32, clamp_limit = 7.0 : f32}
      : (tensor<?x16xf32>, tensor<2xi32>, tensor<2x64x16xf32>, tensor<2x16x32xf32>, tensor<2x64xf32>) -> tensor<?x16xf32>
  %s = moe.shared_expert %x fc1(%s1) fc2(%s2) gate(%g) act = silu gating = concatenated
      : (tensor<?x16xf32>, tensor<32x16xf32>, tensor<16x16xf32>, tensor<1x16xf32>) -> tensor<?x16xf32>
  return %y, %s : tensor<?x16xf32>, tensor<?x16xf32>
}

// -----

// Without gating there is nothing to pair, but the activation still moves
// into the fc1 contraction's epilogue.
// CHECK-LABEL: func.func @ungated
// CHECK:         moe.shared_expert {{.*}} {fuse_gate_up}
// REMARK: [Passed] GateUpFusion | Category:moe-fuse-gate-up:moe.shared_expert | Remark="activation fused into the fc1 contraction"
func.func @ungated(%x: tensor<?x16xf32>, %w1: tensor<64x16xf32>, %w2: tensor<16x64xf32>) -> tensor<?x16xf32> {
  %y = moe.shared_expert %x fc1(%w1) fc2(%w2) act = gelu
      : (tensor<?x16xf32>, tensor<64x16xf32>, tensor<16x64xf32>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// Must not fire: H = 24 is not a multiple of the kernel's 16 lanes, and the
// intermediate width of the second op is dynamic.
// CHECK-LABEL: func.func @not_fusable
// CHECK-NOT:     fuse_gate_up
// REMARK-COUNT-2: [Missed] GateUpFusion | Category:moe-fuse-gate-up:{{.*}} | Remark="not fused: the kernel needs a static I and a static H that is a multiple of 16"
func.func @not_fusable(%rows: tensor<?x24xf32>, %counts: tensor<2xi32>, %w1: tensor<2x32x24xf32>,
                       %w2: tensor<2x24x32xf32>, %w3: tensor<2x32x24xf32>, %x: tensor<?x32xf32>,
                       %d1: tensor<?x32xf32>, %d2: tensor<32x?xf32>, %d3: tensor<?x32xf32>)
    -> (tensor<?x24xf32>, tensor<?x32xf32>) {
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc3(%w3) fc2(%w2) act = silu gating = separate
      : (tensor<?x24xf32>, tensor<2xi32>, tensor<2x32x24xf32>, tensor<2x24x32xf32>, tensor<2x32x24xf32>) -> tensor<?x24xf32>
  %s = moe.shared_expert %x fc1(%d1) fc3(%d3) fc2(%d2) act = silu gating = separate
      : (tensor<?x32xf32>, tensor<?x32xf32>, tensor<32x?xf32>, tensor<?x32xf32>) -> tensor<?x32xf32>
  return %y, %s : tensor<?x24xf32>, tensor<?x32xf32>
}
