// RUN: moe-opt %s --split-input-file --moe-fuse-shared-expert | FileCheck %s
// RUN: moe-opt %s --split-input-file --moe-optimize=fuse-dispatch-combine=false | FileCheck %s --check-prefix=PIPELINE
// RUN: moe-opt %s --split-input-file --moe-optimize=fuse-shared-expert=false | FileCheck %s --check-prefix=OFF
// RUN: moe-opt %s --split-input-file --moe-fuse-shared-expert --remarks-filter=moe-fuse-shared-expert -o /dev/null 2>&1 | FileCheck %s --check-prefix=REMARK
// The numbers of fused layers are checked against the PyTorch reference and
// against the unfused layer in test/Integration/test_hf_models.py.

// OFF-NOT: moe.stack_experts

// DeepSeek-V3: a shared expert of the routed width, no gate. It becomes
// expert 8, selected by every token with weight 1 after the router's two
// choices; its weights are appended to the routed stacks.
// CHECK-LABEL: func.func @deepseek_v3(
// CHECK-SAME:      %[[H:[^:]*]]: tensor<?x32xf32>, %[[R:[^:]*]]: tensor<8x32xf32>, %[[W1:[^:]*]]: tensor<8x16x32xf32>, %[[W2:[^:]*]]: tensor<8x32x16xf32>, %[[W3:[^:]*]]: tensor<8x16x32xf32>, %[[S1:[^:]*]]: tensor<16x32xf32>, %[[S2:[^:]*]]: tensor<32x16xf32>, %[[S3:[^:]*]]: tensor<16x32xf32>
// CHECK:         %[[IDS:.*]], %[[WTS:.*]] = moe.route %[[H]]
// CHECK:         %[[EXTRA:.*]] = linalg.generic
// CHECK:           linalg.index 1
// CHECK:           arith.constant 8 : i32
// CHECK:         %[[ONES:.*]] = linalg.fill ins(%{{.*}} : f32) outs(%{{.*}} : tensor<?x1xf32>)
// CHECK:         %[[I0:.*]] = tensor.insert_slice %[[IDS]] into %{{.*}}[0, 0] [%{{.*}}, 2] [1, 1] : tensor<?x2xi32> into tensor<?x3xi32>
// CHECK:         %[[ALLIDS:.*]] = tensor.insert_slice %[[EXTRA]] into %[[I0]][0, 2] [%{{.*}}, 1] [1, 1] : tensor<?x1xi32> into tensor<?x3xi32>
// CHECK:         %[[W0:.*]] = tensor.insert_slice %[[WTS]] into
// CHECK:         %[[ALLW:.*]] = tensor.insert_slice %[[ONES]] into %[[W0]][0, 2]
// CHECK:         %[[ROWS:.*]], %[[COUNTS:.*]], %[[MAP:.*]] = moe.dispatch dropless %[[H]], %[[ALLIDS]] experts = 9 : (tensor<?x32xf32>, tensor<?x3xi32>) -> (tensor<?x32xf32>, tensor<9xi32>, tensor<?x3xi32>)
// CHECK-DAG:     %[[F1:.*]] = moe.stack_experts %[[W1]], %[[S1]] {split_dim = 0 : i64} : (tensor<8x16x32xf32>, tensor<16x32xf32>) -> tensor<9x16x32xf32>
// CHECK-DAG:     %[[F2:.*]] = moe.stack_experts %[[W2]], %[[S2]] {split_dim = 1 : i64} : (tensor<8x32x16xf32>, tensor<32x16xf32>) -> tensor<9x32x16xf32>
// CHECK-DAG:     %[[F3:.*]] = moe.stack_experts %[[W3]], %[[S3]] {split_dim = 0 : i64}
// CHECK:         %[[Y:.*]] = moe.expert_ffn %[[ROWS]], %[[COUNTS]] fc1(%[[F1]]) fc3(%[[F3]]) fc2(%[[F2]]) act = silu gating = separate
// CHECK:         %[[OUT:.*]] = moe.combine dropless %[[Y]], %[[MAP]], %[[ALLW]]
// CHECK-NOT:     moe.shared_expert
// CHECK-NOT:     arith.addf
// CHECK:         return %[[OUT]]
// In the pipeline (dispatch/combine fusion off here; with it, the chain
// becomes moe.routed_ffn: fuse-dispatch-combine.mlir) gate/up fusion follows.
// PIPELINE-LABEL: func.func @deepseek_v3(
// PIPELINE:         moe.expert_ffn {{.*}} fc1(%{{.*}}) fc3(%{{.*}}) fc2(%{{.*}}) act = silu gating = separate {fuse_gate_up} : (tensor<?x32xf32>, tensor<9xi32>, tensor<9x16x32xf32>, tensor<9x32x16xf32>, tensor<9x16x32xf32>)
// PIPELINE-NOT:     moe.shared_expert
// PIPELINE:         return
// REMARK: [Passed] SharedExpertFusion | Category:moe-fuse-shared-expert:moe.shared_expert | Remark="shared expert fused as ", Remark=1, Remark=" always-selected slot", Remark=" of the routed experts"
func.func @deepseek_v3(%h: tensor<?x32xf32>, %r: tensor<8x32xf32>, %w1: tensor<8x16x32xf32>, %w2: tensor<8x32x16xf32>, %w3: tensor<8x16x32xf32>,
                       %s1: tensor<16x32xf32>, %s2: tensor<32x16xf32>, %s3: tensor<16x32xf32>) -> tensor<?x32xf32> {
  %ids, %w = moe.route %h weight(%r) k = 2 scoring = sigmoid {renormalize, routed_scaling_factor = 2.5 : f32}
      : (tensor<?x32xf32>, tensor<8x32xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  %rows, %counts, %map = moe.dispatch dropless %h, %ids experts = 8
      : (tensor<?x32xf32>, tensor<?x2xi32>) -> (tensor<?x32xf32>, tensor<8xi32>, tensor<?x2xi32>)
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc3(%w3) fc2(%w2) act = silu gating = separate
      : (tensor<?x32xf32>, tensor<8xi32>, tensor<8x16x32xf32>, tensor<8x32x16xf32>, tensor<8x16x32xf32>) -> tensor<?x32xf32>
  %routed = moe.combine dropless %y, %map, %w : (tensor<?x32xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x32xf32>
  %shared = moe.shared_expert %h fc1(%s1) fc3(%s3) fc2(%s2) act = silu gating = separate
      : (tensor<?x32xf32>, tensor<16x32xf32>, tensor<32x16xf32>, tensor<16x32xf32>) -> tensor<?x32xf32>
  %out = arith.addf %routed, %shared : tensor<?x32xf32>
  return %out : tensor<?x32xf32>
}

// -----

// Qwen2-MoE: a gated shared expert three routed widths wide (48 = 3 x 16),
// added first. It becomes experts 4, 5 and 6, each with the weight
// sigmoid(h · gateᵀ) (an f32 x·Wᵀ matmul, then the sigmoid) in every
// token's columns 4..6 of the routing weights.
// CHECK-LABEL: func.func @qwen2_moe(
// CHECK-SAME:      %[[H:[^:]*]]: tensor<5x32xbf16>, %{{[^:]*}}: tensor<5x4xf32>, %[[W1:[^:]*]]: tensor<4x16x32xbf16>, %[[W2:[^:]*]]: tensor<4x32x16xbf16>, %{{[^:]*}}: tensor<4x16x32xbf16>, %[[S1:[^:]*]]: tensor<48x32xbf16>, %[[S2:[^:]*]]: tensor<32x48xbf16>, %{{[^:]*}}: tensor<48x32xbf16>, %[[G:[^:]*]]: tensor<1x32xbf16>
// CHECK:         %[[IDS:.*]], %[[WTS:.*]] = moe.route
// CHECK:         linalg.generic
// CHECK:           arith.constant 4 : i32
// CHECK:         %[[LOGIT:.*]] = linalg.matmul indexing_maps = [#{{.*}}, #{{.*}}, #{{.*}}] ins(%[[H]], %[[G]] : tensor<5x32xbf16>, tensor<1x32xbf16>) outs(%{{.*}} : tensor<5x1xf32>)
// CHECK:         %[[GATE:.*]] = linalg.generic {{.*}} ins(%[[LOGIT]] : tensor<5x1xf32>) outs(%{{.*}} : tensor<5x3xf32>)
// CHECK:           math.exp
// CHECK:           arith.divf
// CHECK:         tensor.insert_slice %[[GATE]] into %{{.*}}[0, 2] [5, 3] [1, 1] : tensor<5x3xf32> into tensor<5x5xf32>
// CHECK:         moe.dispatch dropless %[[H]], %{{.*}} experts = 7 : (tensor<5x32xbf16>, tensor<5x5xi32>) -> (tensor<25x32xbf16>, tensor<7xi32>, tensor<5x5xi32>)
// CHECK-DAG:     moe.stack_experts %[[W1]], %[[S1]] {split_dim = 0 : i64} : (tensor<4x16x32xbf16>, tensor<48x32xbf16>) -> tensor<7x16x32xbf16>
// CHECK-DAG:     moe.stack_experts %[[W2]], %[[S2]] {split_dim = 1 : i64} : (tensor<4x32x16xbf16>, tensor<32x48xbf16>) -> tensor<7x32x16xbf16>
// CHECK:         moe.expert_ffn
// CHECK:         %[[OUT:.*]] = moe.combine dropless
// CHECK:         return %[[OUT]]
// REMARK: Remark="shared expert fused as ", Remark=3, Remark=" always-selected slots"
func.func @qwen2_moe(%h: tensor<5x32xbf16>, %logits: tensor<5x4xf32>, %w1: tensor<4x16x32xbf16>, %w2: tensor<4x32x16xbf16>, %w3: tensor<4x16x32xbf16>,
                     %s1: tensor<48x32xbf16>, %s2: tensor<32x48xbf16>, %s3: tensor<48x32xbf16>, %g: tensor<1x32xbf16>) -> tensor<5x32xbf16> {
  %ids, %w = moe.route %logits k = 2 scoring = softmax : (tensor<5x4xf32>) -> (tensor<5x2xi32>, tensor<5x2xf32>)
  %rows, %counts, %map = moe.dispatch dropless %h, %ids experts = 4
      : (tensor<5x32xbf16>, tensor<5x2xi32>) -> (tensor<10x32xbf16>, tensor<4xi32>, tensor<5x2xi32>)
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc3(%w3) fc2(%w2) act = silu gating = separate
      : (tensor<10x32xbf16>, tensor<4xi32>, tensor<4x16x32xbf16>, tensor<4x32x16xbf16>, tensor<4x16x32xbf16>) -> tensor<10x32xbf16>
  %routed = moe.combine dropless %y, %map, %w : (tensor<10x32xbf16>, tensor<5x2xi32>, tensor<5x2xf32>) -> tensor<5x32xbf16>
  %shared = moe.shared_expert %h fc1(%s1) fc3(%s3) fc2(%s2) gate(%g) act = silu gating = separate
      : (tensor<5x32xbf16>, tensor<48x32xbf16>, tensor<32x48xbf16>, tensor<48x32xbf16>, tensor<1x32xbf16>) -> tensor<5x32xbf16>
  %out = arith.addf %shared, %routed : tensor<5x32xbf16>
  return %out : tensor<5x32xbf16>
}

// -----

// A dense MLP (DeepSeek's first layers): added to the residual, not to a routed output.
// CHECK-LABEL: func.func @dense_mlp(
// CHECK-NOT:     moe.stack_experts
// CHECK:         moe.shared_expert
// CHECK-NOT:     moe.stack_experts
// REMARK: [Missed] SharedExpertFusion | Category:moe-fuse-shared-expert:moe.shared_expert | Remark="not fused: ", Remark="the shared output is not added to a routed output (a dense MLP)"
func.func @dense_mlp(%h: tensor<?x32xf32>, %x: tensor<?x32xf32>, %r: tensor<8x32xf32>, %w1: tensor<8x16x32xf32>, %w2: tensor<8x32x16xf32>, %w3: tensor<8x16x32xf32>, %s1: tensor<16x32xf32>, %s2: tensor<32x16xf32>, %s3: tensor<16x32xf32>) -> tensor<?x32xf32> {
  %ids, %w = moe.route %h weight(%r) k = 2 scoring = softmax : (tensor<?x32xf32>, tensor<8x32xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  %rows, %counts, %map = moe.dispatch dropless %h, %ids experts = 8
      : (tensor<?x32xf32>, tensor<?x2xi32>) -> (tensor<?x32xf32>, tensor<8xi32>, tensor<?x2xi32>)
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc3(%w3) fc2(%w2) act = silu gating = separate
      : (tensor<?x32xf32>, tensor<8xi32>, tensor<8x16x32xf32>, tensor<8x32x16xf32>, tensor<8x16x32xf32>) -> tensor<?x32xf32>
  %routed = moe.combine dropless %y, %map, %w : (tensor<?x32xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x32xf32>
  %shared = moe.shared_expert %h fc1(%s1) fc3(%s3) fc2(%s2) act = silu gating = separate
      : (tensor<?x32xf32>, tensor<16x32xf32>, tensor<32x16xf32>, tensor<16x32xf32>) -> tensor<?x32xf32>
  %out = arith.addf %x, %shared : tensor<?x32xf32>
  %both = arith.addf %out, %routed : tensor<?x32xf32>
  return %both : tensor<?x32xf32>
}

// -----

// FFN biases (not supported by the stacked form).
// CHECK-LABEL: func.func @biases(
// CHECK-NOT:     moe.stack_experts
// CHECK:         moe.shared_expert
// CHECK-NOT:     moe.stack_experts
// REMARK: [Missed] SharedExpertFusion | Category:moe-fuse-shared-expert:moe.shared_expert | Remark="not fused: ", Remark="an FFN has biases"
func.func @biases(%h: tensor<?x32xf32>, %x: tensor<?x32xf32>, %r: tensor<8x32xf32>, %w1: tensor<8x16x32xf32>, %w2: tensor<8x32x16xf32>, %w3: tensor<8x16x32xf32>, %s1: tensor<16x32xf32>, %s2: tensor<32x16xf32>, %s3: tensor<16x32xf32>, %b: tensor<32xf32>) -> tensor<?x32xf32> {
  %ids, %w = moe.route %h weight(%r) k = 2 scoring = softmax : (tensor<?x32xf32>, tensor<8x32xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  %rows, %counts, %map = moe.dispatch dropless %h, %ids experts = 8
      : (tensor<?x32xf32>, tensor<?x2xi32>) -> (tensor<?x32xf32>, tensor<8xi32>, tensor<?x2xi32>)
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc3(%w3) fc2(%w2) act = silu gating = separate
      : (tensor<?x32xf32>, tensor<8xi32>, tensor<8x16x32xf32>, tensor<8x32x16xf32>, tensor<8x16x32xf32>) -> tensor<?x32xf32>
  %routed = moe.combine dropless %y, %map, %w : (tensor<?x32xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x32xf32>
  %shared = moe.shared_expert %h fc1(%s1) fc3(%s3) fc2(%s2) fc2_bias(%b) act = silu gating = separate
      : (tensor<?x32xf32>, tensor<16x32xf32>, tensor<32x16xf32>, tensor<16x32xf32>, tensor<32xf32>) -> tensor<?x32xf32>
  %out = arith.addf %routed, %shared : tensor<?x32xf32>
  return %out : tensor<?x32xf32>
}

// -----

// Different activations: the experts cannot share one FFN op.
// CHECK-LABEL: func.func @activation(
// CHECK-NOT:     moe.stack_experts
// CHECK:         moe.shared_expert
// CHECK-NOT:     moe.stack_experts
// REMARK: [Missed] SharedExpertFusion | Category:moe-fuse-shared-expert:moe.shared_expert | Remark="not fused: ", Remark="the shared and routed FFNs differ in activation, gating or clamp"
func.func @activation(%h: tensor<?x32xf32>, %x: tensor<?x32xf32>, %r: tensor<8x32xf32>, %w1: tensor<8x16x32xf32>, %w2: tensor<8x32x16xf32>, %w3: tensor<8x16x32xf32>, %s1: tensor<16x32xf32>, %s2: tensor<32x16xf32>, %s3: tensor<16x32xf32>) -> tensor<?x32xf32> {
  %ids, %w = moe.route %h weight(%r) k = 2 scoring = softmax : (tensor<?x32xf32>, tensor<8x32xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  %rows, %counts, %map = moe.dispatch dropless %h, %ids experts = 8
      : (tensor<?x32xf32>, tensor<?x2xi32>) -> (tensor<?x32xf32>, tensor<8xi32>, tensor<?x2xi32>)
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc3(%w3) fc2(%w2) act = gelu gating = separate
      : (tensor<?x32xf32>, tensor<8xi32>, tensor<8x16x32xf32>, tensor<8x32x16xf32>, tensor<8x16x32xf32>) -> tensor<?x32xf32>
  %routed = moe.combine dropless %y, %map, %w : (tensor<?x32xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x32xf32>
  %shared = moe.shared_expert %h fc1(%s1) fc3(%s3) fc2(%s2) act = silu gating = separate
      : (tensor<?x32xf32>, tensor<16x32xf32>, tensor<32x16xf32>, tensor<16x32xf32>) -> tensor<?x32xf32>
  %out = arith.addf %routed, %shared : tensor<?x32xf32>
  return %out : tensor<?x32xf32>
}

// -----

// A shared width (24) that is not a multiple of the routed width (16).
// CHECK-LABEL: func.func @width(
// CHECK-NOT:     moe.stack_experts
// CHECK:         moe.shared_expert
// CHECK-NOT:     moe.stack_experts
// REMARK: [Missed] SharedExpertFusion | Category:moe-fuse-shared-expert:moe.shared_expert | Remark="not fused: ", Remark="the shared width is not a multiple of the routed width 16"
func.func @width(%h: tensor<?x32xf32>, %x: tensor<?x32xf32>, %r: tensor<8x32xf32>, %w1: tensor<8x16x32xf32>, %w2: tensor<8x32x16xf32>, %w3: tensor<8x16x32xf32>, %s1: tensor<24x32xf32>, %s2: tensor<32x24xf32>, %s3: tensor<24x32xf32>) -> tensor<?x32xf32> {
  %ids, %w = moe.route %h weight(%r) k = 2 scoring = softmax : (tensor<?x32xf32>, tensor<8x32xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  %rows, %counts, %map = moe.dispatch dropless %h, %ids experts = 8
      : (tensor<?x32xf32>, tensor<?x2xi32>) -> (tensor<?x32xf32>, tensor<8xi32>, tensor<?x2xi32>)
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc3(%w3) fc2(%w2) act = silu gating = separate
      : (tensor<?x32xf32>, tensor<8xi32>, tensor<8x16x32xf32>, tensor<8x32x16xf32>, tensor<8x16x32xf32>) -> tensor<?x32xf32>
  %routed = moe.combine dropless %y, %map, %w : (tensor<?x32xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x32xf32>
  %shared = moe.shared_expert %h fc1(%s1) fc3(%s3) fc2(%s2) act = silu gating = separate
      : (tensor<?x32xf32>, tensor<24x32xf32>, tensor<32x24xf32>, tensor<24x32xf32>) -> tensor<?x32xf32>
  %out = arith.addf %routed, %shared : tensor<?x32xf32>
  return %out : tensor<?x32xf32>
}

// -----

// The shared expert reads other hidden states than the routed experts.
// CHECK-LABEL: func.func @other_input(
// CHECK-NOT:     moe.stack_experts
// CHECK:         moe.shared_expert
// CHECK-NOT:     moe.stack_experts
// REMARK: [Missed] SharedExpertFusion | Category:moe-fuse-shared-expert:moe.shared_expert | Remark="not fused: ", Remark="the shared and routed experts read different inputs"
func.func @other_input(%h: tensor<?x32xf32>, %x: tensor<?x32xf32>, %r: tensor<8x32xf32>, %w1: tensor<8x16x32xf32>, %w2: tensor<8x32x16xf32>, %w3: tensor<8x16x32xf32>, %s1: tensor<16x32xf32>, %s2: tensor<32x16xf32>, %s3: tensor<16x32xf32>) -> tensor<?x32xf32> {
  %ids, %w = moe.route %h weight(%r) k = 2 scoring = softmax : (tensor<?x32xf32>, tensor<8x32xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  %rows, %counts, %map = moe.dispatch dropless %h, %ids experts = 8
      : (tensor<?x32xf32>, tensor<?x2xi32>) -> (tensor<?x32xf32>, tensor<8xi32>, tensor<?x2xi32>)
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc3(%w3) fc2(%w2) act = silu gating = separate
      : (tensor<?x32xf32>, tensor<8xi32>, tensor<8x16x32xf32>, tensor<8x32x16xf32>, tensor<8x16x32xf32>) -> tensor<?x32xf32>
  %routed = moe.combine dropless %y, %map, %w : (tensor<?x32xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x32xf32>
  %shared = moe.shared_expert %x fc1(%s1) fc3(%s3) fc2(%s2) act = silu gating = separate
      : (tensor<?x32xf32>, tensor<16x32xf32>, tensor<32x16xf32>, tensor<16x32xf32>) -> tensor<?x32xf32>
  %out = arith.addf %routed, %shared : tensor<?x32xf32>
  return %out : tensor<?x32xf32>
}

// -----

// A capacity layout (dropped tokens, [E, C, H] slabs).
// CHECK-LABEL: func.func @capacity(
// CHECK-NOT:     moe.stack_experts
// CHECK:         moe.shared_expert
// CHECK-NOT:     moe.stack_experts
// REMARK: [Missed] SharedExpertFusion | Category:moe-fuse-shared-expert:moe.shared_expert | Remark="not fused: ", Remark="the routed experts are not dropless"
func.func @capacity(%h: tensor<?x32xf32>, %x: tensor<?x32xf32>, %r: tensor<8x32xf32>, %w1: tensor<8x16x32xf32>, %w2: tensor<8x32x16xf32>, %w3: tensor<8x16x32xf32>, %s1: tensor<16x32xf32>, %s2: tensor<32x16xf32>, %s3: tensor<16x32xf32>) -> tensor<?x32xf32> {
  %ids, %w = moe.route %h weight(%r) k = 2 scoring = softmax : (tensor<?x32xf32>, tensor<8x32xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  %rows, %counts, %map = moe.dispatch capacity %h, %ids experts = 8 {expert_capacity = 2}
      : (tensor<?x32xf32>, tensor<?x2xi32>) -> (tensor<8x2x32xf32>, tensor<8xi32>, tensor<?x2xi32>)
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc3(%w3) fc2(%w2) act = silu gating = separate
      : (tensor<8x2x32xf32>, tensor<8xi32>, tensor<8x16x32xf32>, tensor<8x32x16xf32>, tensor<8x16x32xf32>) -> tensor<8x2x32xf32>
  %routed = moe.combine capacity %y, %map, %w : (tensor<8x2x32xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x32xf32>
  %shared = moe.shared_expert %h fc1(%s1) fc3(%s3) fc2(%s2) act = silu gating = separate
      : (tensor<?x32xf32>, tensor<16x32xf32>, tensor<32x16xf32>, tensor<16x32xf32>) -> tensor<?x32xf32>
  %out = arith.addf %routed, %shared : tensor<?x32xf32>
  return %out : tensor<?x32xf32>
}

// -----

// The routed output is also returned on its own.
// CHECK-LABEL: func.func @routed_used_twice(
// CHECK-NOT:     moe.stack_experts
// CHECK:         moe.shared_expert
// CHECK-NOT:     moe.stack_experts
// REMARK: [Missed] SharedExpertFusion | Category:moe-fuse-shared-expert:moe.shared_expert | Remark="not fused: ", Remark="the routed output has other uses"
func.func @routed_used_twice(%h: tensor<?x32xf32>, %x: tensor<?x32xf32>, %r: tensor<8x32xf32>, %w1: tensor<8x16x32xf32>, %w2: tensor<8x32x16xf32>, %w3: tensor<8x16x32xf32>, %s1: tensor<16x32xf32>, %s2: tensor<32x16xf32>, %s3: tensor<16x32xf32>) -> (tensor<?x32xf32>, tensor<?x32xf32>) {
  %ids, %w = moe.route %h weight(%r) k = 2 scoring = softmax : (tensor<?x32xf32>, tensor<8x32xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  %rows, %counts, %map = moe.dispatch dropless %h, %ids experts = 8
      : (tensor<?x32xf32>, tensor<?x2xi32>) -> (tensor<?x32xf32>, tensor<8xi32>, tensor<?x2xi32>)
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc3(%w3) fc2(%w2) act = silu gating = separate
      : (tensor<?x32xf32>, tensor<8xi32>, tensor<8x16x32xf32>, tensor<8x32x16xf32>, tensor<8x16x32xf32>) -> tensor<?x32xf32>
  %routed = moe.combine dropless %y, %map, %w : (tensor<?x32xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x32xf32>
  %shared = moe.shared_expert %h fc1(%s1) fc3(%s3) fc2(%s2) act = silu gating = separate
      : (tensor<?x32xf32>, tensor<16x32xf32>, tensor<32x16xf32>, tensor<16x32xf32>) -> tensor<?x32xf32>
  %out = arith.addf %routed, %shared : tensor<?x32xf32>
  return %out, %routed : tensor<?x32xf32>, tensor<?x32xf32>
}

// -----

// The shared output is also returned on its own.
// CHECK-LABEL: func.func @shared_used_twice(
// CHECK-NOT:     moe.stack_experts
// CHECK:         moe.shared_expert
// CHECK-NOT:     moe.stack_experts
// REMARK: [Missed] SharedExpertFusion | Category:moe-fuse-shared-expert:moe.shared_expert | Remark="not fused: ", Remark="the shared output has other uses than one addition"
func.func @shared_used_twice(%h: tensor<?x32xf32>, %x: tensor<?x32xf32>, %r: tensor<8x32xf32>, %w1: tensor<8x16x32xf32>, %w2: tensor<8x32x16xf32>, %w3: tensor<8x16x32xf32>, %s1: tensor<16x32xf32>, %s2: tensor<32x16xf32>, %s3: tensor<16x32xf32>) -> (tensor<?x32xf32>, tensor<?x32xf32>) {
  %ids, %w = moe.route %h weight(%r) k = 2 scoring = softmax : (tensor<?x32xf32>, tensor<8x32xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  %rows, %counts, %map = moe.dispatch dropless %h, %ids experts = 8
      : (tensor<?x32xf32>, tensor<?x2xi32>) -> (tensor<?x32xf32>, tensor<8xi32>, tensor<?x2xi32>)
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc3(%w3) fc2(%w2) act = silu gating = separate
      : (tensor<?x32xf32>, tensor<8xi32>, tensor<8x16x32xf32>, tensor<8x32x16xf32>, tensor<8x16x32xf32>) -> tensor<?x32xf32>
  %routed = moe.combine dropless %y, %map, %w : (tensor<?x32xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x32xf32>
  %shared = moe.shared_expert %h fc1(%s1) fc3(%s3) fc2(%s2) act = silu gating = separate
      : (tensor<?x32xf32>, tensor<16x32xf32>, tensor<32x16xf32>, tensor<16x32xf32>) -> tensor<?x32xf32>
  %out = arith.addf %routed, %shared : tensor<?x32xf32>
  return %out, %shared : tensor<?x32xf32>, tensor<?x32xf32>
}
