//===- ModelBuilder.h - a decoder-only MoE model as IR ----------*- C++ -*-===//
//
// Part of moe-mlir's Hugging Face frontend (internal).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_LIB_IMPORT_HF_MODELBUILDER_H
#define MOE_MLIR_LIB_IMPORT_HF_MODELBUILDER_H

#include "moe-mlir/Import/HF/Config.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

#include <functional>
#include <string>

namespace moe_mlir::hf {

/// The element type of the weight argument named `name` (a tensor name, or
/// a stacked name with '*').
using WeightTypeFn = std::function<mlir::Type(const std::string &name)>;

/// Builds the module: @forward and one private function per distinct
/// decoder layer shape. Activations and caches are f32.
mlir::OwningOpRef<mlir::ModuleOp> buildModel(mlir::MLIRContext &context,
                                             const ModelConfig &config,
                                             const WeightTypeFn &weightType);

} // namespace moe_mlir::hf

#endif // MOE_MLIR_LIB_IMPORT_HF_MODELBUILDER_H
