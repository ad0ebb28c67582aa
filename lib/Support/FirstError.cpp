//===- FirstError.cpp - keep the first error a step reports ---------------===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Support/FirstError.h"

#include "mlir/IR/MLIRContext.h"

using namespace mlir;
using namespace moe_mlir;

FirstError::FirstError(MLIRContext *context) : context_(context) {
  id_ = context->getDiagEngine().registerHandler(
      [this](Diagnostic &diag) -> LogicalResult {
        if (diag.getSeverity() != DiagnosticSeverity::Error)
          return failure();
        if (first_.empty())
          first_ = diag.str();
        return success();
      });
}

FirstError::~FirstError() { context_->getDiagEngine().eraseHandler(id_); }

std::string FirstError::message(llvm::StringRef fallback) const {
  return first_.empty() ? fallback.str() : first_;
}
