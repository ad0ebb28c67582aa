//===- MoEToLinalg.h - moe ops to upstream tensor ops -----------*- C++ -*-===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_CONVERSION_MOETOLINALG_MOETOLINALG_H
#define MOE_MLIR_CONVERSION_MOETOLINALG_MOETOLINALG_H

#include "moe-mlir/Conversion/ContractionOptions.h"

namespace mlir {
class RewritePatternSet;
} // namespace mlir

namespace moe_mlir {

/// Patterns lowering moe.route (on logits), moe.dispatch, moe.expert_ffn,
/// moe.shared_expert and moe.combine to linalg/tensor/scf/arith/math.
void populateMoEToLinalgPatterns(mlir::RewritePatternSet &patterns,
                                 const ContractionOptions &options = {});

} // namespace moe_mlir

#endif // MOE_MLIR_CONVERSION_MOETOLINALG_MOETOLINALG_H
