//===- moe-import.cpp - models to MLIR ------------------------------------===//
//
// Part of moe-mlir.
//
// moe-import DIR -o model.mlir [--shape-only]
// moe-import FILE.onnx -o model.mlir [--no-raise]
//
// Reads a Hugging Face checkpoint directory (config.json + safetensors, see
// moe-mlir/Import/HF/Importer.h) or an ONNX model (see
// moe-mlir/Import/ONNX/Importer.h) and writes the whole model as a module
// of moe/mla/linalg ops on tensors. Weights stay arguments, bound by name
// from the checkpoint or the ONNX file when the model runs. Errors are one
// line naming the file and the field, tensor or node; no output file is
// left behind on failure.
//
//===----------------------------------------------------------------------===//

#include "../ToolOptions.h"

#include "moe-mlir/Import/HF/Importer.h"
#include "moe-mlir/Import/ONNX/Importer.h"
#include "moe-mlir/InitAll.h"

#include "mlir/IR/AsmState.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Support/FileUtilities.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/ToolOutputFile.h"

using namespace mlir;
namespace cl = llvm::cl;

using moe_mlir::flags::toolOptions;

static cl::opt<std::string>
    inputDir(cl::Positional, cl::desc("<checkpoint directory | model.onnx>"),
             cl::Required, cl::cat(toolOptions()));
static cl::opt<std::string> outputFile("o", cl::desc("Output MLIR file"),
                                       cl::value_desc("model.mlir"),
                                       cl::init("-"), cl::cat(toolOptions()));
static cl::opt<bool> shapeOnly(
    "shape-only",
    cl::desc("Import from config.json alone, without weight files (weight "
             "dtypes from torch_dtype)"),
    cl::cat(toolOptions()));

static cl::opt<bool> noRaise(
    "no-raise",
    cl::desc("ONNX: import decomposed MoE blocks as plain operators instead "
             "of raising them to moe ops"),
    cl::cat(toolOptions()));

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  moe_mlir::flags::showToolOptions();
  cl::ParseCommandLineOptions(argc, argv,
                              "moe-mlir Hugging Face checkpoint importer\n");
  DialectRegistry registry;
  moe_mlir::registerAllDialects(registry);
  MLIRContext context(registry);
  std::string error;
  OwningOpRef<ModuleOp> module;
  if (moe_mlir::onnx_import::isOnnxFile(inputDir)) {
    if (shapeOnly) {
      llvm::errs() << "moe-import: --shape-only applies to Hugging Face "
                      "checkpoints only\n";
      return 1;
    }
    moe_mlir::onnx_import::ImportOptions options;
    options.raiseMoE = !noRaise;
    module = moe_mlir::onnx_import::importOnnxModel(context, inputDir, options,
                                                    error);
  } else {
    moe_mlir::hf::ImportOptions options;
    options.shapeOnly = shapeOnly;
    module = moe_mlir::hf::importModel(context, inputDir, options, error);
  }
  if (!module) {
    llvm::errs() << "moe-import: " << error << "\n";
    return 1;
  }
  auto output = openOutputFile(outputFile, &error);
  if (!output) {
    llvm::errs() << "moe-import: " << error << "\n";
    return 1;
  }
  module->print(output->os());
  output->os() << "\n";
  if (output->os().has_error()) {
    llvm::errs() << "moe-import: could not write " << outputFile << "\n";
    return 1;
  }
  output->keep();
  return 0;
}
