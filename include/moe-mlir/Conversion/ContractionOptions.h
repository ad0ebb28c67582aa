//===- ContractionOptions.h - code generation of x·Wᵀ ----------*- C++ -*-===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_CONVERSION_CONTRACTIONOPTIONS_H
#define MOE_MLIR_CONVERSION_CONTRACTIONOPTIONS_H

namespace moe_mlir {

/// Choices for the vectorized x·Wᵀ kernel in the moe and mla lowerings: the
/// expert, shared-expert and dense MLP projections and the attention
/// projections. Router logits, the shared expert's gate and generic
/// linalg.matmul ops (the LM head) always multiply exactly in f32.
struct ContractionOptions {
  /// With bf16 weights (and a reduction size that is a multiple of 32), round
  /// the activation operand to bf16 once and accumulate bf16 pair products
  /// in f32 with AVX512-BF16 (`x86vector.avx512.dot`, vdpbf16ps). Only for
  /// targets with the avx512bf16 feature. Off: both operands are widened to
  /// f32 and multiplied with f32 FMAs (the exact product of the bf16 weight
  /// and the f32 activation).
  bool bf16DotProducts = false;
};

} // namespace moe_mlir

#endif // MOE_MLIR_CONVERSION_CONTRACTIONOPTIONS_H
