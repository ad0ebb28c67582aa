//===- moe-opt.cpp - the moe-mlir optimizer driver ------------------------===//
//
// Part of moe-mlir.
//
// mlir-opt with the moe and mla dialects and moe-mlir's passes registered
// next to every upstream dialect and pass.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/InitAll.h"
#include "moe-mlir/Support/PassStatistics.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/Support/FileUtilities.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/ToolOutputFile.h"

int main(int argc, char **argv) {
  moe_mlir::handlePassStatisticsFlag(argc, argv);
  mlir::registerAllPasses();
  moe_mlir::registerAllPasses();

  mlir::DialectRegistry registry;
  mlir::registerAllDialects(registry);
  mlir::registerAllExtensions(registry);
  moe_mlir::registerAllDialects(registry);

  if (!moe_mlir::passStatisticsEnabled())
    return mlir::asMainReturnCode(mlir::MlirOptMain(
        argc, argv, "moe-mlir optimizer driver\n", registry));

  // --mlir-pass-statistics: mlir-opt's driver, with the instrumentation
  // that tells the report which passes ran.
  auto [inputFile, outputFile] = mlir::registerAndParseCLIOptions(
      argc, argv, "moe-mlir optimizer driver\n", registry);
  mlir::MlirOptMainConfig fromFlags =
      mlir::MlirOptMainConfig::createFromCLOptions();
  if (fromFlags.shouldShowDialects() || fromFlags.shouldListPasses())
    return mlir::asMainReturnCode(
        mlir::MlirOptMain(argc, argv, inputFile, outputFile, registry));
  llvm::InitLLVM init(argc, argv);
  mlir::MlirOptMainConfig config = fromFlags;
  config.setPassPipelineSetupFn([fromFlags](mlir::PassManager &pm) {
    if (mlir::failed(fromFlags.setupPassPipeline(pm)))
      return mlir::failure();
    moe_mlir::addPassStatisticsInstrumentation(pm);
    return mlir::success();
  });
  std::string error;
  std::unique_ptr<llvm::MemoryBuffer> input =
      mlir::openInputFile(inputFile, &error);
  std::unique_ptr<llvm::ToolOutputFile> output =
      input ? mlir::openOutputFile(outputFile, &error) : nullptr;
  if (!output) {
    llvm::errs() << error << "\n";
    return 1;
  }
  if (mlir::failed(
          mlir::MlirOptMain(output->os(), std::move(input), registry, config)))
    return 1;
  output->keep();
  return 0;
}
