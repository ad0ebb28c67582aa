//===- RaiseMatcher.h - recognise one decomposed MoE block ------*- C++ -*-===//
//
// Part of moe-mlir's ONNX frontend (internal header).
//
// matchMoEBlock() starts from a TopK node and decides whether it routes a
// MoE block, and if so which one. It matches the router above the TopK (a
// MatMul or Gemm of the hidden states x by a constant weight, an optional
// bias, softmax or sigmoid scoring), then interprets the graph below it
// abstractly: every value derived from x and the TopK outputs gets a list
// of axis labels (tokens t, top-k slots k, their t-major flattening tk,
// experts e, unit axes, feature axes of a known width, axes of a stacked
// weight) and, for per-(token, slot) activations, an expression over x
// (linear maps by gathered expert weights, biases, elementwise ops). Ops
// are understood only where their effect on the labels is unambiguous:
// reshapes must keep or flatten axes in t-major order, matrix products must
// contract the feature axis with a weight axis, the routing weights must
// multiply the expert outputs and be summed over k. The walk ends at the
// first value that is the routing-weighted sum over k with axes exactly
// [t, H]. The expert expression is then matched against
// fc2(act(fc1 x + b1) [* (fc3 x + b3)]) + b2 for the activations moe ops
// implement.
//
// Sizes come from the weights, the router and k, never from value_info: the
// token count stays symbolic (T) and dynamic token counts work.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_LIB_IMPORT_ONNX_RAISEMATCHER_H
#define MOE_MLIR_LIB_IMPORT_ONNX_RAISEMATCHER_H

#include "RaiseGraph.h"

#include <optional>
#include <string>
#include <vector>

namespace moe_mlir::onnx_import::raise {

/// One stacked expert matrix as the block applies it.
struct LinearMatch {
  /// The weight [E, out, in] ("out_in") or [E, in, out] (inOut).
  std::string weight;
  bool inOut = false;
  /// Rows of the output axis used (a chunk of a fused projection); absent
  /// when all are.
  std::optional<std::vector<int64_t>> rows; // {begin, end, step}
  /// Bias [E, out] (or [E, rows of the slice]); empty when none.
  std::string bias;
};

/// A recognised block: what the raised node needs, and which nodes it
/// replaces.
struct MoEMatch {
  std::string x, output;
  int64_t k = 0, experts = 0, hidden = 0;
  std::string routerWeight, routerBias;
  /// The router weight is [H, E] (logits = x W).
  bool routerHE = false;
  /// "softmax" | "sigmoid" | "topk_softmax".
  std::string scoring;
  bool renormalize = false;
  double epsilon = 0.0, scale = 1.0;
  /// "silu" | "gelu" | "gelu_tanh" | "relu" | "identity".
  std::string activation;
  /// "none" | "separate" | "concatenated" | "interleaved".
  std::string gating;
  LinearMatch fc1, fc2;
  std::optional<LinearMatch> fc3;
  /// The node computing `output` (the raised node takes its place) and the
  /// nodes to remove with it (`result` included), in increasing order.
  int result = -1;
  std::vector<int> remove;
};

/// Matches the MoE block routed by TopK node `topk` of `index`'s graph.
/// Returns nullopt, with the reason in `why`, when it is not one.
std::optional<MoEMatch> matchMoEBlock(const GraphIndex &index, int topk,
                                      std::string &why);

} // namespace moe_mlir::onnx_import::raise

#endif // MOE_MLIR_LIB_IMPORT_ONNX_RAISEMATCHER_H
