//===- RaiseMoE.h - decomposed MoE blocks to one node -----------*- C++ -*-===//
//
// Part of moe-mlir's ONNX frontend (internal header).
//
// Exporters that cannot emit com.microsoft.MoE write a MoE block as plain
// operators: a router MatMul or Gemm, TopK, a Softmax (over all experts
// before TopK, or over the k chosen logits after it) or a Sigmoid, Gathers
// of stacked expert weights by the chosen indices (or every expert applied
// to every token), batched MatMuls or Einsums with the activation, and the
// weighted sum over the k slots. raiseDecomposedMoE() finds such blocks on
// the graph (RaiseMatcher.h says how) and replaces each by one node of the
// internal domain `kRaisedDomain`, op `MoE`, which RaisedMoEOps.cpp imports
// as moe ops. The node takes the place of the block's last node and
// produces the block's output under the same name:
//
//   inputs     0 x [T, H]   1 router weight   2 fc1   3 fc2
//              4 fc3 (gated)  5 fc1 bias  6 fc2 bias  7 fc3 bias
//              8 router bias [E]  (absent inputs are empty names; trailing
//              ones are left out)
//   attributes k, scoring ("softmax" | "sigmoid" | "topk_softmax"),
//              renormalize (0|1), renormalize_epsilon (float, default 0),
//              routed_scaling_factor (float, default 1): moe.route's,
//              activation ("silu" | "gelu" | "gelu_tanh" | "relu" |
//              "identity"), gating ("none" | "separate" | "concatenated" |
//              "interleaved"): moe.expert_ffn's,
//              router_layout ("EH": logits = x Wᵀ, "HE": logits = x W),
//              expert_layout ("out_in": fc [E, out, in], "in_out":
//              fc [E, in, out], applied as x W) for every expert matrix,
//              fc1_layout / fc2_layout / fc3_layout overriding it for one,
//              fc1_rows / fc3_rows ([begin, end, step]): the projection
//              uses only these rows of its output axis (gate and up halves
//              of one fused weight that "concatenated" or "interleaved"
//              cannot express); a bias [E, all rows] is sliced the same
//              way, a bias [E, rows of the slice] taken as it is.
//
// Weights and biases are initializers, Constant node values or
// Transpose/Reshape/... of them, so their shapes are known; the sizes of the
// block come from them, k and the router, never from value_info, and the
// token count may be dynamic. Float Casts inside the block (to f32 for the
// softmax, back to the model's type) are taken as exact: moe ops compute in
// f32 and round once.
//
// A block is raised only when every node of it is understood and no value
// inside it is used elsewhere (constants it shares with other nodes stay);
// anything else is left as plain operators, which import and run correctly
// on their own. With MOE_MLIR_DEBUG_RAISE set in the environment, one line
// per TopK on stderr says what was raised, or why not.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_LIB_IMPORT_ONNX_RAISEMOE_H
#define MOE_MLIR_LIB_IMPORT_ONNX_RAISEMOE_H

#include <onnx/onnx_pb.h>

namespace moe_mlir::onnx_import {

inline constexpr const char *kRaisedDomain = "moe_mlir.raised";

/// Rewrites the recognised MoE blocks of `graph`; returns how many.
int raiseDecomposedMoE(onnx::GraphProto &graph);

} // namespace moe_mlir::onnx_import

#endif // MOE_MLIR_LIB_IMPORT_ONNX_RAISEMOE_H
