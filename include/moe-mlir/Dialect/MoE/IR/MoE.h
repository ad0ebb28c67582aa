//===- MoE.h - the moe dialect ----------------------------------*- C++ -*-===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_DIALECT_MOE_IR_MOE_H
#define MOE_MLIR_DIALECT_MOE_IR_MOE_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "moe-mlir/Dialect/MoE/IR/MoEDialect.h.inc"
#include "moe-mlir/Dialect/MoE/IR/MoEEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "moe-mlir/Dialect/MoE/IR/MoEAttrs.h.inc"

#define GET_OP_CLASSES
#include "moe-mlir/Dialect/MoE/IR/MoEOps.h.inc"

namespace moe_mlir::moe {

/// Per-expert capacity C for `numTokens` tokens (ShapedType::kDynamic when
/// the token count is dynamic and C depends on it): `expertCapacity` if set,
/// else ceil(capacityFactor * T * k / E).
int64_t computeCapacity(std::optional<uint64_t> expertCapacity,
                        std::optional<float> capacityFactor, int64_t numTokens,
                        int64_t k, int64_t numExperts);

} // namespace moe_mlir::moe

#endif // MOE_MLIR_DIALECT_MOE_IR_MOE_H
