//===- MLA.h - the mla dialect ----------------------------------*- C++ -*-===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_DIALECT_MLA_IR_MLA_H
#define MOE_MLIR_DIALECT_MLA_IR_MLA_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "moe-mlir/Dialect/MLA/IR/MLADialect.h.inc"
#include "moe-mlir/Dialect/MLA/IR/MLAEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "moe-mlir/Dialect/MLA/IR/MLAAttrs.h.inc"

#define GET_OP_CLASSES
#include "moe-mlir/Dialect/MLA/IR/MLAOps.h.inc"

namespace moe_mlir::mla {

/// YaRN's magnitude correction m(s, a) = 0.1 · a · ln(s) + 1 (1 for s ≤ 1).
double yarnMscale(double factor, double mscale);

} // namespace moe_mlir::mla

#endif // MOE_MLIR_DIALECT_MLA_IR_MLA_H
