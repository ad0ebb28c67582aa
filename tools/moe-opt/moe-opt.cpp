//===- moe-opt.cpp - the moe-mlir optimizer driver ------------------------===//
//
// Part of moe-mlir.
//
// mlir-opt with the moe and mla dialects and moe-mlir's passes registered
// next to every upstream dialect and pass.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/InitAll.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"

int main(int argc, char **argv) {
  mlir::registerAllPasses();
  moe_mlir::registerAllPasses();

  mlir::DialectRegistry registry;
  mlir::registerAllDialects(registry);
  mlir::registerAllExtensions(registry);
  moe_mlir::registerAllDialects(registry);

  return mlir::asMainReturnCode(mlir::MlirOptMain(
      argc, argv, "moe-mlir optimizer driver\n", registry));
}
