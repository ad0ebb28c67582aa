//===- Pipelines.h - moe-mlir's named pass pipelines ------------*- C++ -*-===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_PIPELINES_PIPELINES_H
#define MOE_MLIR_PIPELINES_PIPELINES_H

#include "moe-mlir/Conversion/ContractionOptions.h"

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/LogicalResult.h"

#include <string>

namespace mlir {
class OpPassManager;
} // namespace mlir

namespace moe_mlir {

/// The textual form of the CPU pipeline: moe/mla ops on tensors to the LLVM
/// dialect for the host (moe-opt --moe-cpu-pipeline[=bf16-dot-products=1]).
std::string cpuPipelineText(const ContractionOptions &options = {});

/// Adds the CPU pipeline to `pm` (anchored on builtin.module).
llvm::LogicalResult buildCpuPipeline(mlir::OpPassManager &pm,
                                     const ContractionOptions &options = {});

/// The choices of the optimization pipeline, one per pass.
struct OptimizeOptions {
  /// mla-weight-absorption's mode: "cost", "absorbed" or "naive"; "off"
  /// skips the pass.
  std::string weightAbsorption = "cost";
  /// moe-fuse-gate-up: the FFNs' gate and up projections as one
  /// contraction with the activation in its epilogue.
  bool fuseGateUp = true;
  /// moe-fuse-shared-expert: a shared expert as always-selected slots of
  /// its layer's routed experts (one grouped FFN).
  bool fuseSharedExpert = true;
  /// moe-fuse-dispatch-combine: each dropless dispatch -> expert_ffn ->
  /// combine chain as one moe.routed_ffn (rows read in place, the combine
  /// in the down projection's epilogue).
  bool fuseDispatchCombine = true;
};

/// Reads the optimization choices from text: "" (the defaults), "off" (no
/// optimization pipeline: `enabled` false) or moe-optimize's options
/// ("fuse-shared-expert=false weight-absorption=naive", spaces or commas
/// between them). Fails with a one-line `error` naming the bad option.
llvm::LogicalResult parseOptimizeOptions(llvm::StringRef text, bool &enabled,
                                         OptimizeOptions &options,
                                         std::string &error);

/// The textual form of the default optimization pipeline, run on moe/mla
/// ops before the CPU pipeline (moe-opt --moe-optimize).
std::string optimizePipelineText(const OptimizeOptions &options = {});

/// Adds the optimization pipeline to `pm` (anchored on builtin.module).
llvm::LogicalResult buildOptimizePipeline(mlir::OpPassManager &pm,
                                          const OptimizeOptions &options = {});

/// Registers the named pipelines with the global registry.
void registerPipelines();

} // namespace moe_mlir

#endif // MOE_MLIR_PIPELINES_PIPELINES_H
