//===- InitAll.h - register moe-mlir's dialects and passes ------*- C++ -*-===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_INITALL_H
#define MOE_MLIR_INITALL_H

namespace mlir {
class DialectRegistry;
} // namespace mlir

namespace moe_mlir {

/// Adds the moe and mla dialects to `registry`.
void registerAllDialects(mlir::DialectRegistry &registry);

/// Registers moe-mlir's passes and pass pipelines with the global registry.
void registerAllPasses();

} // namespace moe_mlir

#endif // MOE_MLIR_INITALL_H
