// The hand-written Mixtral layer in examples/ parses, verifies and prints
// back, in the custom and in the generic form.
// RUN: moe-opt %moe_src/examples/mixtral_moe_layer.mlir | moe-opt | FileCheck %s
// RUN: moe-opt %moe_src/examples/mixtral_moe_layer.mlir --mlir-print-op-generic | moe-opt | FileCheck %s

// CHECK-LABEL: func.func @mixtral_moe
// CHECK-SAME:  (%[[X:.+]]: tensor<?x4096xbf16>, %[[G:.+]]: tensor<8x4096xbf16>, %[[W1:.+]]: tensor<8x14336x4096xbf16>, %[[W2:.+]]: tensor<8x4096x14336xbf16>, %[[W3:.+]]: tensor<8x14336x4096xbf16>)
// CHECK:       %[[IDS:.+]], %[[W:.+]] = moe.route %[[X]] weight(%[[G]]) k = 2 scoring = softmax {renormalize, round_logits}
// CHECK-NEXT:  %[[ROWS:.+]], %[[COUNTS:.+]], %[[MAP:.+]] = moe.dispatch dropless %[[X]], %[[IDS]] experts = 8
// CHECK-NEXT:  %[[Y:.+]] = moe.expert_ffn %[[ROWS]], %[[COUNTS]] fc1(%[[W1]]) fc3(%[[W3]]) fc2(%[[W2]]) act = silu gating = separate
// CHECK-NEXT:  %[[OUT:.+]] = moe.combine dropless %[[Y]], %[[MAP]], %[[W]]
// CHECK-NEXT:  return %[[OUT]] : tensor<?x4096xbf16>
