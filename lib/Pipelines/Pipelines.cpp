//===- Pipelines.cpp - moe-mlir's named pass pipelines --------------------===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Pipelines/Pipelines.h"

#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"

using namespace mlir;

// Tensors -> linalg -> buffers (function boundaries included, identity
// layouts so that the C interface sees plain strided buffers; temporaries
// freed, results owned by the caller) -> loops -> LLVM. Transcendental math
// goes through libm.
static constexpr llvm::StringLiteral kCpuPipeline =
    "builtin.module("
    "convert-moe-to-linalg,"
    "convert-mla-to-linalg,"
    "func.func(convert-linalg-matmul-to-kernel),"
    "func.func(convert-elementwise-to-linalg),"
    "canonicalize,cse,"
    "one-shot-bufferize{bufferize-function-boundaries=1 "
    "function-boundary-type-conversion=identity-layout-map},"
    "buffer-deallocation-pipeline,"
    "convert-bufferization-to-memref,"
    "convert-memref-copy-to-linalg,"
    "convert-linalg-to-loops,"
    "func.func(scf-forall-to-parallel),"
    "moe-outline-parallel-loops,"
    "convert-math-to-libm,"
    "expand-strided-metadata,"
    "lower-affine,"
    "convert-scf-to-cf,"
    "convert-vector-to-llvm,"
    "convert-to-llvm,"
    "reconcile-unrealized-casts)";

llvm::StringRef moe_mlir::cpuPipelineText() { return kCpuPipeline; }

LogicalResult moe_mlir::buildCpuPipeline(OpPassManager &pm) {
  // The text names the builtin.module anchor; parse its body into `pm`.
  llvm::StringRef text = kCpuPipeline;
  text = text.drop_front(llvm::StringRef("builtin.module(").size())
             .drop_back(1);
  return parsePassPipeline(text, pm, llvm::errs());
}

void moe_mlir::registerPipelines() {
  PassPipelineRegistration<>(
      "moe-cpu-pipeline",
      "Lower moe ops on tensors to the LLVM dialect for the host CPU",
      [](OpPassManager &pm) {
        // The pipeline text is fixed and tested; a parse failure is a bug.
        LogicalResult parsed = buildCpuPipeline(pm);
        assert(succeeded(parsed) && "moe-cpu-pipeline does not parse");
        (void)parsed;
      });
}
