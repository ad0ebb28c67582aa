//===- Passes.h - mla dialect passes ----------------------------*- C++ -*-===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_DIALECT_MLA_TRANSFORMS_PASSES_H
#define MOE_MLIR_DIALECT_MLA_TRANSFORMS_PASSES_H

#include "mlir/Pass/Pass.h"

namespace moe_mlir::mla {

#define GEN_PASS_DECL
#include "moe-mlir/Dialect/MLA/Transforms/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "moe-mlir/Dialect/MLA/Transforms/Passes.h.inc"

} // namespace moe_mlir::mla

#endif // MOE_MLIR_DIALECT_MLA_TRANSFORMS_PASSES_H
