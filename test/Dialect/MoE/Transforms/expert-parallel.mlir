// RUN: moe-opt %s --split-input-file --moe-expert-parallel="ranks=2" | FileCheck %s --check-prefix=CONTIG
// RUN: moe-opt %s --split-input-file --moe-expert-parallel="ranks=2 placement=round-robin" | FileCheck %s --check-prefix=RR
// RUN: echo '{"format": "moe-mlir-routing-profile", "version": 1, "num_experts": 5, "top_k": 2, "tokens": 9, "layers": [{"layer": 0, "expert_counts": [10, 1, 1, 1, 5]}, {"layer": 1, "expert_counts": [1, 1, 1, 1, 1]}]}' > %t.json
// RUN: not moe-opt %s --split-input-file --moe-expert-parallel="ranks=2 placement=balanced redundant=1 routing-profile=%t.json" 2>&1 | FileCheck %s --check-prefix=EPLB
// RUN: moe-opt %s --moe-expert-parallel="ranks=1" | FileCheck %s --check-prefix=ONE

// The profile is for 5 experts, the second layer has 4 (errors come first):
// EPLB: error: moe-expert-parallel: routing profile '{{.*}}' has num_experts 5, MoE layer 0 has 4

// A dropless layer with 5 experts on 2 ranks. Contiguous: 3 + 2 experts,
// S = 3 slots per rank, the last slot of rank 1 unused. The weights become
// [S, ...] arguments listing every global slot's expert; routing stays, the
// layer becomes dispatch -> local experts -> return -> home combine ->
// all-gather.
// CONTIG-LABEL: func.func @layer(
// CONTIG-SAME:    %[[X:[a-z0-9]+]]: tensor<?x8xf32> {moe.name = "x"}
// CONTIG-SAME:    %[[W1:[a-z0-9]+]]: tensor<3x16x8xf32> {moe.expert_slots = array<i32: 0, 1, 2, 3, 4, -1>, moe.name = "w1"}
// CONTIG-SAME:    %[[W3:[a-z0-9]+]]: tensor<3x16x8xf32> {moe.expert_slots = array<i32: 0, 1, 2, 3, 4, -1>, moe.name = "w3"}
// CONTIG-SAME:    %[[W2:[a-z0-9]+]]: tensor<3x8x16xf32> {moe.expert_slots = array<i32: 0, 1, 2, 3, 4, -1>, moe.name = "w2"}
// CONTIG-SAME:    attributes {moe.expert_parallel = 2 : i64}
// CONTIG:         %[[IDS:.+]], %[[W:.+]] = moe.route %[[X]]
// CONTIG-NOT:     moe.dispatch
// CONTIG:         %[[ROWS:.+]], %[[COUNTS:.+]], %[[SRC:.+]] = moe.ep_dispatch %[[X]], %[[IDS]] ranks = 2 experts = 5 slot_experts = [0, 1, 2, 3, 4, -1]
// CONTIG-SAME:      -> (tensor<?x8xf32>, tensor<3xi32>, tensor<?xi32>)
// CONTIG:         %[[Y:.+]] = moe.expert_ffn %[[ROWS]], %[[COUNTS]] fc1(%[[W1]]) fc3(%[[W3]]) fc2(%[[W2]])
// CONTIG:         %[[BACK:.+]] = moe.ep_return %[[Y]], %[[SRC]], %[[IDS]] ranks = 2
// CONTIG:         %[[HIDS:.+]] = moe.ep_home %[[IDS]] ranks = 2
// CONTIG:         %[[HW:.+]] = moe.ep_home %[[W]] ranks = 2
// The home mapping: row t * k + j, or -1 outside [0, E).
// CONTIG:         %[[HMAP:.+]] = linalg.generic {{.*}} ins(%[[HIDS]] : tensor<?x2xi32>)
// CONTIG:           arith.constant 2 : index
// CONTIG:           arith.constant 5 : i32
// CONTIG:         %[[HOUT:.+]] = moe.combine dropless %[[BACK]], %[[HMAP]], %[[HW]]
// CONTIG:         %[[T:.+]] = tensor.dim %[[X]]
// CONTIG:         %[[OUT:.+]] = moe.ep_all_gather %[[HOUT]] tokens(%[[T]]) ranks = 2 : tensor<?x8xf32> -> tensor<?x8xf32>
// CONTIG:         return %[[OUT]]

// Round-robin: expert e on rank e mod 2.
// RR-LABEL: func.func @layer(
// RR:         moe.ep_dispatch {{.*}} slot_experts = [0, 2, 4, 1, 3, -1]

// EPLB from the profile: one redundant replica of expert 0 (the hottest),
// the two replicas on different ranks: rank 0 holds [0, 3, 4], rank 1
// [0, 1, 2].
// EPLB-LABEL: func.func @layer(
// EPLB:         moe.ep_dispatch {{.*}} slot_experts = [0, 3, 4, 0, 1, 2]

// ranks=1 leaves the module as it is.
// ONE-LABEL: func.func @layer(
// ONE-NOT:     moe.ep_
// ONE:         moe.dispatch dropless

func.func @layer(%x: tensor<?x8xf32> {moe.name = "x"}, %gate: tensor<5x8xf32> {moe.name = "gate"},
                 %w1: tensor<5x16x8xf32> {moe.name = "w1"}, %w3: tensor<5x16x8xf32> {moe.name = "w3"},
                 %w2: tensor<5x8x16xf32> {moe.name = "w2"}) -> (tensor<?x8xf32> {moe.name = "y"}) {
  %ids, %w = moe.route %x weight(%gate) k = 2 scoring = softmax {renormalize}
      : (tensor<?x8xf32>, tensor<5x8xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  %rows, %counts, %map = moe.dispatch dropless %x, %ids experts = 5
      : (tensor<?x8xf32>, tensor<?x2xi32>) -> (tensor<?x8xf32>, tensor<5xi32>, tensor<?x2xi32>)
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc3(%w3) fc2(%w2) act = silu gating = separate
      : (tensor<?x8xf32>, tensor<5xi32>, tensor<5x16x8xf32>, tensor<5x8x16xf32>, tensor<5x16x8xf32>) -> tensor<?x8xf32>
  %out = moe.combine dropless %y, %map, %w
      : (tensor<?x8xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x8xf32>
  return %out : tensor<?x8xf32>
}

// -----

// A capacity layer (Switch-like, k = 1, biases, passthrough): its dispatch
// stays for its admission decisions, and only admitted assignments are
// exchanged; the passthrough is sliced to the home tokens. Static T.
// CONTIG-LABEL: func.func @capacity(
// CONTIG-SAME:    tensor<2x16x8xbf16> {moe.expert_slots = array<i32: 0, 1, 2, 3>}
// CONTIG-SAME:    tensor<2x16xbf16> {moe.expert_slots = array<i32: 0, 1, 2, 3>}
// CONTIG-SAME:    tensor<2x8x16xbf16> {moe.expert_slots = array<i32: 0, 1, 2, 3>}
// CONTIG-SAME:    tensor<2x8xbf16> {moe.expert_slots = array<i32: 0, 1, 2, 3>}
// CONTIG:         %{{.+}}, %{{.+}}, %[[MAP:.+]] = moe.dispatch capacity
// CONTIG:         %[[ADMITTED:.+]] = linalg.generic {{.*}} ins(%{{.+}}, %[[MAP]] : tensor<6x1xi32>, tensor<6x1xi32>)
// CONTIG:         moe.ep_dispatch %{{.+}}, %[[ADMITTED]] ranks = 2 experts = 4 slot_experts = [0, 1, 2, 3]
// CONTIG-SAME:      -> (tensor<6x8xbf16>, tensor<2xi32>, tensor<6xi32>)
// CONTIG:         moe.ep_return
// CONTIG:         %[[HPASS:.+]] = moe.ep_home %[[XP:.+]] ranks = 2 : tensor<6x8xbf16> -> tensor<?x8xbf16>
// CONTIG:         moe.combine dropless {{.*}} passthrough(%[[HPASS]])
// CONTIG:         moe.ep_all_gather {{.*}} : tensor<?x8xbf16> -> tensor<6x8xbf16>
// RR-LABEL: func.func @capacity(
// RR:         slot_experts = [0, 2, 1, 3]
func.func @capacity(%x: tensor<6x8xbf16>, %gate: tensor<4x8xbf16>,
                    %w1: tensor<4x16x8xbf16>, %b1: tensor<4x16xbf16>,
                    %w2: tensor<4x8x16xbf16>, %b2: tensor<4x8xbf16>) -> tensor<6x8xbf16> {
  %ids, %w = moe.route %x weight(%gate) k = 1 scoring = softmax {expert_capacity = 2}
      : (tensor<6x8xbf16>, tensor<4x8xbf16>) -> (tensor<6x1xi32>, tensor<6x1xf32>)
  %rows, %counts, %map = moe.dispatch capacity %x, %ids experts = 4 {expert_capacity = 2}
      : (tensor<6x8xbf16>, tensor<6x1xi32>) -> (tensor<4x2x8xbf16>, tensor<4xi32>, tensor<6x1xi32>)
  %y = moe.expert_ffn %rows, %counts fc1(%w1) fc2(%w2) fc1_bias(%b1) fc2_bias(%b2) act = relu
      : (tensor<4x2x8xbf16>, tensor<4xi32>, tensor<4x16x8xbf16>, tensor<4x8x16xbf16>, tensor<4x16xbf16>, tensor<4x8xbf16>) -> tensor<4x2x8xbf16>
  %out = moe.combine capacity %y, %map, %w passthrough(%x)
      : (tensor<4x2x8xbf16>, tensor<6x1xi32>, tensor<6x1xf32>, tensor<6x8xbf16>) -> tensor<6x8xbf16>
  return %out : tensor<6x8xbf16>
}

// -----

// Weights the function computes (here a dequantizing conversion) or shares
// with another op are gathered per rank by moe.ep_slots from all E experts;
// the argument used by the layer alone is still bound per rank.
// CONTIG-LABEL: func.func @computed_weights(
// CONTIG-SAME:    %{{[a-z0-9]+}}: tensor<4x16x8xbf16>, %[[W2:[a-z0-9]+]]: tensor<4x8x16xf32>, %[[W3:[a-z0-9]+]]: tensor<2x16x8xf32> {moe.expert_slots = array<i32: 0, 1, 2, 3>})
// CONTIG:         %[[W1F:.+]] = arith.extf
// CONTIG:         %[[W1:.+]] = moe.ep_slots %[[W1F]] ranks = 2 slot_experts = [0, 1, 2, 3] : tensor<4x16x8xf32> -> tensor<2x16x8xf32>
// CONTIG:         %[[W2L:.+]] = moe.ep_slots %[[W2]] ranks = 2 slot_experts = [0, 1, 2, 3] : tensor<4x8x16xf32> -> tensor<2x8x16xf32>
// CONTIG:         moe.expert_ffn {{.*}} fc1(%[[W1]]) fc3(%[[W3]]) fc2(%[[W2L]])
// CONTIG:         return {{.*}}, %[[W2]]
func.func @computed_weights(%x: tensor<?x8xf32>, %ids: tensor<?x2xi32>, %w: tensor<?x2xf32>,
                            %w1: tensor<4x16x8xbf16>, %w2: tensor<4x8x16xf32>, %w3: tensor<4x16x8xf32>)
    -> (tensor<?x8xf32>, tensor<4x8x16xf32>) {
  %w1f = arith.extf %w1 : tensor<4x16x8xbf16> to tensor<4x16x8xf32>
  %rows, %counts, %map = moe.dispatch dropless %x, %ids experts = 4
      : (tensor<?x8xf32>, tensor<?x2xi32>) -> (tensor<?x8xf32>, tensor<4xi32>, tensor<?x2xi32>)
  %y = moe.expert_ffn %rows, %counts fc1(%w1f) fc3(%w3) fc2(%w2) act = silu gating = separate
      : (tensor<?x8xf32>, tensor<4xi32>, tensor<4x16x8xf32>, tensor<4x8x16xf32>, tensor<4x16x8xf32>) -> tensor<?x8xf32>
  %out = moe.combine dropless %y, %map, %w
      : (tensor<?x8xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x8xf32>
  return %out, %w2 : tensor<?x8xf32>, tensor<4x8x16xf32>
}
