//===- Passes.h - moe dialect passes ----------------------------*- C++ -*-===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_DIALECT_MOE_TRANSFORMS_PASSES_H
#define MOE_MLIR_DIALECT_MOE_TRANSFORMS_PASSES_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Pass/Pass.h"

namespace mlir {
class RewritePatternSet;
} // namespace mlir

namespace moe_mlir::moe {

#define GEN_PASS_DECL
#include "moe-mlir/Dialect/MoE/Transforms/Passes.h.inc"

/// Patterns that turn a router matmul inside moe.route into linalg.
void populateMaterializeRouterLogitsPatterns(mlir::RewritePatternSet &patterns);

#define GEN_PASS_REGISTRATION
#include "moe-mlir/Dialect/MoE/Transforms/Passes.h.inc"

} // namespace moe_mlir::moe

#endif // MOE_MLIR_DIALECT_MOE_TRANSFORMS_PASSES_H
