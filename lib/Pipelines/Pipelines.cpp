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
std::string moe_mlir::cpuPipelineText(const ContractionOptions &options) {
  std::string kernel =
      options.bf16DotProducts ? "{bf16-dot-products=1}" : "";
  return "builtin.module("
         "convert-moe-to-linalg" + kernel + ","
         "convert-mla-to-linalg" + kernel + ","
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
         "convert-vector-to-llvm{enable-x86vector=1},"
         "convert-to-llvm,"
         "reconcile-unrealized-casts)";
}

LogicalResult moe_mlir::buildCpuPipeline(OpPassManager &pm,
                                         const ContractionOptions &options) {
  // The text names the builtin.module anchor; parse its body into `pm`.
  std::string text = cpuPipelineText(options);
  llvm::StringRef body = llvm::StringRef(text)
                             .drop_front(llvm::StringRef("builtin.module(").size())
                             .drop_back(1);
  return parsePassPipeline(body, pm, llvm::errs());
}

namespace {
struct CpuPipelineOptions : PassPipelineOptions<CpuPipelineOptions> {
  Option<bool> bf16DotProducts{
      *this, "bf16-dot-products",
      llvm::cl::desc("bf16 weights: round the activations to bf16 and use "
                     "AVX512-BF16 dot products (targets with avx512bf16)"),
      llvm::cl::init(false)};
};
} // namespace

void moe_mlir::registerPipelines() {
  PassPipelineRegistration<CpuPipelineOptions>(
      "moe-cpu-pipeline",
      "Lower moe ops on tensors to the LLVM dialect for the host CPU",
      [](OpPassManager &pm, const CpuPipelineOptions &cli) {
        ContractionOptions options;
        options.bf16DotProducts = cli.bf16DotProducts;
        // The pipeline text is fixed and tested; a parse failure is a bug.
        LogicalResult parsed = buildCpuPipeline(pm, options);
        assert(succeeded(parsed) && "moe-cpu-pipeline does not parse");
        (void)parsed;
      });
}
