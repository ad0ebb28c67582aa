// The hand-written DeepSeek-V3 layer in examples/ (sigmoid + selection bias +
// groups + shared expert) parses, verifies and prints back; and the quick
// start's pipeline materializes its router logits and keeps the rest.
// RUN: moe-opt %moe_src/examples/deepseek_v3_moe_layer.mlir | moe-opt | FileCheck %s
// RUN: moe-opt %moe_src/examples/deepseek_v3_moe_layer.mlir --pass-pipeline='builtin.module(func.func(moe-materialize-router-logits,canonicalize,cse))' | FileCheck %s --check-prefix=PIPE

// PIPE-LABEL: func.func @deepseek_v3_moe
// PIPE-SAME:   (%[[X:.+]]: tensor<?x7168xbf16>, %[[G:.+]]: tensor<256x7168xf32>, %[[BIAS:.+]]: tensor<256xf32>
// PIPE:        %[[LOGITS:.+]] = linalg.matmul {{.*}} ins(%[[X]], %[[G]] : tensor<?x7168xbf16>, tensor<256x7168xf32>) outs(%{{.+}} : tensor<?x256xf32>)
// PIPE:        %[[IDS:.+]], %[[W:.+]] = moe.route %[[LOGITS]] selection_bias(%[[BIAS]]) k = 8 scoring = sigmoid
// PIPE-NEXT:   moe.dispatch dropless %[[X]], %[[IDS]] experts = 256
// PIPE:        moe.shared_expert %[[X]]

// CHECK-LABEL: func.func @deepseek_v3_moe
// CHECK:       %[[IDS:.+]], %[[W:.+]] = moe.route %[[X:.+]] weight(%{{.+}}) selection_bias(%{{.+}}) k = 8 scoring = sigmoid
// CHECK-SAME:  group_score = #moe.group_score<top2_sum>, n_group = 8 : i64, renormalize, renormalize_epsilon = 9.99999968E-21 : f32, routed_scaling_factor = 2.500000e+00 : f32, topk_group = 4 : i64
// CHECK-SAME:  -> (tensor<?x8xi32>, tensor<?x8xf32>)
// CHECK-NEXT:  %[[ROWS:.+]], %[[COUNTS:.+]], %[[MAP:.+]] = moe.dispatch dropless %[[X]], %[[IDS]] experts = 256
// CHECK-NEXT:  %[[Y:.+]] = moe.expert_ffn %[[ROWS]], %[[COUNTS]]
// CHECK-NEXT:  %[[ROUTED:.+]] = moe.combine dropless %[[Y]], %[[MAP]], %[[W]]
// CHECK-NEXT:  %[[SHARED:.+]] = moe.shared_expert %[[X]]
// CHECK-NEXT:  %[[SUM:.+]] = arith.addf %[[ROUTED]], %[[SHARED]] : tensor<?x7168xbf16>
// CHECK-NEXT:  return %[[SUM]]
