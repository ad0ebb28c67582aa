//===- InitAll.cpp - register moe-mlir's dialects and passes --------------===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/InitAll.h"

#include "moe-mlir/Conversion/Passes.h"
#include "moe-mlir/Dialect/MLA/IR/MLA.h"
#include "moe-mlir/Dialect/MLA/Transforms/Passes.h"
#include "moe-mlir/Dialect/MoE/IR/MoE.h"
#include "moe-mlir/Dialect/MoE/Transforms/Passes.h"
#include "moe-mlir/Pipelines/Pipelines.h"

#include "mlir/IR/DialectRegistry.h"

void moe_mlir::registerAllDialects(mlir::DialectRegistry &registry) {
  registry.insert<moe::MoEDialect, mla::MLADialect>();
}

void moe_mlir::registerAllPasses() {
  moe::registerMoEPasses();
  mla::registerMLAPasses();
  registerMoEMlirConversionPasses();
  registerPipelines();
}
