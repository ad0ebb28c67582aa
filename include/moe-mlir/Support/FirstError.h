//===- FirstError.h - keep the first error a step reports -------*- C++ -*-===//
//
// Part of moe-mlir.
//
// The tools report a failure as one line. Steps that work on a module
// (choosing the entry point, lowering) report through MLIR diagnostics;
// while a FirstError is alive it keeps the first error's message and
// swallows the errors, so that the tool can print that message, prefixed by
// the file it concerns, as its one line. Warnings and remarks go on to the
// handlers registered before it.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_SUPPORT_FIRSTERROR_H
#define MOE_MLIR_SUPPORT_FIRSTERROR_H

#include "mlir/IR/Diagnostics.h"

#include <string>

namespace moe_mlir {

class FirstError {
public:
  explicit FirstError(mlir::MLIRContext *context);
  ~FirstError();
  FirstError(const FirstError &) = delete;
  FirstError &operator=(const FirstError &) = delete;

  /// The first error's message (without its location), or `fallback` when
  /// none was reported.
  std::string message(llvm::StringRef fallback) const;

private:
  mlir::MLIRContext *context_;
  mlir::DiagnosticEngine::HandlerID id_;
  std::string first_;
};

} // namespace moe_mlir

#endif // MOE_MLIR_SUPPORT_FIRSTERROR_H
