//===- MLAToLinalg.h - mla ops to upstream tensor ops -----------*- C++ -*-===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_CONVERSION_MLATOLINALG_MLATOLINALG_H
#define MOE_MLIR_CONVERSION_MLATOLINALG_MLATOLINALG_H

#include "moe-mlir/Conversion/ContractionOptions.h"

namespace mlir {
class RewritePatternSet;
} // namespace mlir

namespace moe_mlir {

/// Patterns lowering mla.attention and mla.gqa_attention to
/// linalg/tensor/arith/math.
void populateMLAToLinalgPatterns(mlir::RewritePatternSet &patterns,
                                 const ContractionOptions &options = {});

} // namespace moe_mlir

#endif // MOE_MLIR_CONVERSION_MLATOLINALG_MLATOLINALG_H
