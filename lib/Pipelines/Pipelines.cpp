//===- Pipelines.cpp - moe-mlir's named pass pipelines --------------------===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Pipelines/Pipelines.h"

#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "llvm/ADT/StringExtras.h"

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

/// Parses the body of a "builtin.module(...)" pipeline text into `pm`.
static LogicalResult parseModulePipeline(OpPassManager &pm,
                                         llvm::StringRef text) {
  llvm::StringRef body = text.drop_front(llvm::StringRef("builtin.module(").size())
                             .drop_back(1);
  if (body.empty())
    return success();
  return parsePassPipeline(body, pm, llvm::errs());
}

LogicalResult moe_mlir::buildCpuPipeline(OpPassManager &pm,
                                         const ContractionOptions &options) {
  return parseModulePipeline(pm, cpuPipelineText(options));
}

// The passes that rewrite moe/mla ops into cheaper equivalent forms before
// lowering; each can be switched off or set by its option.
std::string moe_mlir::optimizePipelineText(const OptimizeOptions &options) {
  SmallVector<std::string> passes;
  if (options.weightAbsorption != "off")
    passes.push_back("mla-weight-absorption{mode=" + options.weightAbsorption +
                     "}");
  // Shared experts join the routed FFN first, so that gate/up fusion sees
  // the FFN they form together.
  if (options.fuseSharedExpert)
    passes.push_back("moe-fuse-shared-expert");
  if (options.fuseGateUp)
    passes.push_back("moe-fuse-gate-up");
  // Last: the chain it fuses is the one the passes above rewrite.
  if (options.fuseDispatchCombine)
    passes.push_back("moe-fuse-dispatch-combine");
  return "builtin.module(" + llvm::join(passes, ",") + ")";
}

LogicalResult moe_mlir::parseOptimizeOptions(StringRef text, bool &enabled,
                                             OptimizeOptions &options,
                                             std::string &error) {
  enabled = true;
  options = OptimizeOptions();
  text = text.trim();
  if (text == "off") {
    enabled = false;
    return success();
  }
  SmallVector<StringRef> items;
  SplitString(text, items, " ,");
  auto parseBool = [&](StringRef key, StringRef value, bool &out) {
    if (value == "true" || value == "1") {
      out = true;
      return success();
    }
    if (value == "false" || value == "0") {
      out = false;
      return success();
    }
    error = "optimization option '" + key.str() + "': expected true or "
            "false, got '" + value.str() + "'";
    return failure();
  };
  for (StringRef item : items) {
    auto [key, value] = item.split('=');
    if (key == "weight-absorption") {
      if (!llvm::is_contained({"cost", "absorbed", "naive", "off"}, value)) {
        error = "optimization option 'weight-absorption': expected cost, "
                "absorbed, naive or off, got '" + value.str() + "'";
        return failure();
      }
      options.weightAbsorption = value.str();
    } else if (key == "fuse-gate-up") {
      if (failed(parseBool(key, value, options.fuseGateUp)))
        return failure();
    } else if (key == "fuse-shared-expert") {
      if (failed(parseBool(key, value, options.fuseSharedExpert)))
        return failure();
    } else if (key == "fuse-dispatch-combine") {
      if (failed(parseBool(key, value, options.fuseDispatchCombine)))
        return failure();
    } else {
      error = "unknown optimization option '" + key.str() +
              "' (known: weight-absorption, fuse-gate-up, "
              "fuse-shared-expert, fuse-dispatch-combine; or 'off')";
      return failure();
    }
  }
  return success();
}

LogicalResult moe_mlir::buildOptimizePipeline(OpPassManager &pm,
                                              const OptimizeOptions &options) {
  // An unknown mode reaches mla-weight-absorption, which reports it.
  return parseModulePipeline(pm, optimizePipelineText(options));
}

namespace {
struct CpuPipelineOptions : PassPipelineOptions<CpuPipelineOptions> {
  Option<bool> bf16DotProducts{
      *this, "bf16-dot-products",
      llvm::cl::desc("bf16 weights: round the activations to bf16 and use "
                     "AVX512-BF16 dot products (targets with avx512bf16)"),
      llvm::cl::init(false)};
};
struct OptimizePipelineOptions
    : PassPipelineOptions<OptimizePipelineOptions> {
  Option<std::string> weightAbsorption{
      *this, "weight-absorption",
      llvm::cl::desc("mla-weight-absorption: cost (default), absorbed, naive "
                     "or off"),
      llvm::cl::init("cost")};
  Option<bool> fuseGateUp{
      *this, "fuse-gate-up",
      llvm::cl::desc("moe-fuse-gate-up: one contraction for the gate and up "
                     "projections, activation in its epilogue (default true)"),
      llvm::cl::init(true)};
  Option<bool> fuseSharedExpert{
      *this, "fuse-shared-expert",
      llvm::cl::desc("moe-fuse-shared-expert: shared experts as "
                     "always-selected slots of the routed grouped FFN "
                     "(default true)"),
      llvm::cl::init(true)};
  Option<bool> fuseDispatchCombine{
      *this, "fuse-dispatch-combine",
      llvm::cl::desc("moe-fuse-dispatch-combine: each dropless "
                     "dispatch/expert_ffn/combine as one moe.routed_ffn "
                     "(rows gathered in place, combine in the down "
                     "projection; default true)"),
      llvm::cl::init(true)};
};
} // namespace

void moe_mlir::registerPipelines() {
  PassPipelineRegistration<OptimizePipelineOptions>(
      "moe-optimize",
      "The default optimizations of moe and mla ops (before lowering)",
      [](OpPassManager &pm, const OptimizePipelineOptions &cli) {
        OptimizeOptions options;
        options.weightAbsorption = cli.weightAbsorption;
        options.fuseGateUp = cli.fuseGateUp;
        options.fuseSharedExpert = cli.fuseSharedExpert;
        options.fuseDispatchCombine = cli.fuseDispatchCombine;
        (void)buildOptimizePipeline(pm, options);
      });
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
