//===- RaiseMoE.h - decomposed MoE blocks to one node -----------*- C++ -*-===//
//
// Part of moe-mlir's ONNX frontend (internal header).
//
// Exporters that cannot emit com.microsoft.MoE write a MoE block as plain
// operators: a router MatMul, TopK, a Softmax (over all experts before TopK,
// or over the k chosen logits after it), Gathers of stacked expert weights
// by the chosen indices, batched MatMuls with the activation, and the
// weighted ReduceSum over the k slots. raiseDecomposedMoE() finds such
// blocks on the graph and replaces each by one node of the internal domain
// `kRaisedDomain`, op `MoE`, which MoEOps.cpp imports as moe ops:
//
//   inputs     0 x [.., H]   1 router weight   2 fc1   3 fc2
//              4 fc3 (gated)  5 fc1 bias  6 fc2 bias  7 fc3 bias
//              8 router bias  (absent inputs are empty names)
//   attributes k, scoring ("softmax" | "topk_softmax"), renormalize (0|1),
//              activation ("silu" | "gelu" | "gelu_tanh" | "relu" |
//              "identity"), gating ("none" | "separate"),
//              router_layout ("EH": logits = x Wᵀ, "HE": logits = x W),
//              expert_layout ("out_in": fc [E, out, in], "in_out":
//              fc [E, in, out], applied as x W)
//
// A block is raised only when every node of it is understood and no value
// inside it is used elsewhere; anything else is left as plain operators,
// which import and run correctly on their own.
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
