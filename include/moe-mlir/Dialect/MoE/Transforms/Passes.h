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
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"

namespace mlir {
class RewritePatternSet;
} // namespace mlir

namespace moe_mlir::moe {

#define GEN_PASS_DECL
#include "moe-mlir/Dialect/MoE/Transforms/Passes.h.inc"

/// Inlines every call of a function that holds a router or an MoE layer
/// (importers put each decoder layer in a function called once per layer),
/// so that each layer's routing and weights are those of the entry function:
/// the passes that treat layers one by one (moe-expert-parallel,
/// moe-expose-routing) run it first. Private functions inlined at every call
/// are erased. Errors are emitted on the call.
mlir::LogicalResult inlineMoELayerCalls(mlir::ModuleOp module);

/// x · Wᵀ for x [T, H] and W [N, H] (nn.Linear layout): a linalg.matmul
/// into zero-filled f32 [T, N] (the products of the operands extended to f32,
/// summed in f32), which the CPU pipeline runs on its vector kernel.
mlir::Value buildMatmulTransposedB(mlir::OpBuilder &b, mlir::Location loc,
                                   mlir::Value x, mlir::Value w);

/// Patterns that turn a router matmul inside moe.route into linalg.
void populateMaterializeRouterLogitsPatterns(mlir::RewritePatternSet &patterns);

#define GEN_PASS_REGISTRATION
#include "moe-mlir/Dialect/MoE/Transforms/Passes.h.inc"

} // namespace moe_mlir::moe

#endif // MOE_MLIR_DIALECT_MOE_TRANSFORMS_PASSES_H
