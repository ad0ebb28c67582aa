//===- Passes.h - moe-mlir conversion passes --------------------*- C++ -*-===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_CONVERSION_PASSES_H
#define MOE_MLIR_CONVERSION_PASSES_H

#include "moe-mlir/Conversion/MLAToLinalg/MLAToLinalg.h"
#include "moe-mlir/Conversion/MoEToLinalg/MoEToLinalg.h"

#include "mlir/Pass/Pass.h"

namespace moe_mlir {

#define GEN_PASS_DECL
#include "moe-mlir/Conversion/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "moe-mlir/Conversion/Passes.h.inc"

} // namespace moe_mlir

#endif // MOE_MLIR_CONVERSION_PASSES_H
