//===- MoEEmitter.h - one MoE block as moe ops ------------------*- C++ -*-===//
//
// Part of moe-mlir's ONNX frontend (internal header).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_LIB_IMPORT_ONNX_MOEEMITTER_H
#define MOE_MLIR_LIB_IMPORT_ONNX_MOEEMITTER_H

#include "GraphImporter.h"

#include "moe-mlir/Dialect/MoE/IR/MoE.h"

#include <optional>

namespace moe_mlir::onnx_import {

/// A routed MoE block, whatever ONNX form it came from.
struct MoESpec {
  /// Hidden states [.., H]; the result has the same shape.
  mlir::Value input;
  /// Router logits [N, E] (or [.., E]); null when routerWeight is given.
  mlir::Value logits;
  /// Router weight [E, H] and optional bias [E] (logits = x Wᵀ + b).
  mlir::Value routerWeight, routerBias;
  int64_t k = 1;
  moe::Scoring scoring = moe::Scoring::Softmax;
  bool renormalize = false;
  /// moe.route's renormalize_epsilon and routed_scaling_factor (emitted
  /// when not the defaults).
  float renormalizeEpsilon = 0.0f;
  float routedScalingFactor = 1.0f;
  /// Expert weights in the moe.expert_ffn layout ([E, out, in]).
  mlir::Value fc1, fc2, fc3, fc1Bias, fc2Bias, fc3Bias;
  moe::Activation activation = moe::Activation::Silu;
  moe::Gating gating = moe::Gating::None;
  float alpha = 1.0f, beta = 0.0f;
  std::optional<float> clampLimit;
};

/// Emits route -> dispatch (dropless) -> expert_ffn -> combine.
mlir::FailureOr<mlir::Value> emitMoE(GraphImporter &g, const MoESpec &spec);

/// Checks that the node's input `slot` (`v`, called `what`) has the dims
/// `expected` (ShapedType::kDynamic: any); the error names the input and
/// the expected shape, also written symbolically (`symbolic`, "[E, I, H]").
mlir::LogicalResult expectShape(GraphImporter &g, size_t slot,
                                llvm::StringRef what, const OnnxValue &v,
                                llvm::ArrayRef<int64_t> expected,
                                llvm::StringRef symbolic);

/// Sets the FFN's activation and gating from the attributes ONNX Runtime's
/// MoE and QMoE share (activation_type, swiglu_fusion, activation_alpha,
/// activation_beta, swiglu_limit); `hasFc3` says whether a separate linear
/// projection is given.
mlir::LogicalResult setFfnActivation(GraphImporter &g, MoESpec &spec,
                                     bool hasFc3);

} // namespace moe_mlir::onnx_import

#endif // MOE_MLIR_LIB_IMPORT_ONNX_MOEEMITTER_H
