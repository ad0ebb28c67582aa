// The hand-written DeepSeek-V3 layer in examples/ (sigmoid + selection bias +
// groups + shared expert) parses, verifies and prints back, and survives the
// quick start's canonicalize/CSE pipeline unchanged.
// RUN: moe-opt %moe_src/examples/deepseek_v3_moe_layer.mlir | moe-opt | FileCheck %s
// RUN: moe-opt %moe_src/examples/deepseek_v3_moe_layer.mlir --pass-pipeline='builtin.module(func.func(canonicalize,cse))' | FileCheck %s

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
