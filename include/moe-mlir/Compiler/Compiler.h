//===- Compiler.h - from an MLIR module to code for the host ----*- C++ -*-===//
//
// Part of moe-mlir.
//
// The steps moe-compile (ahead of time) and moe-run (JIT) share:
//   prepareEntry    choose and check the entry function, describe it
//   lowerForCpu     the moe-cpu-pipeline, down to the LLVM dialect
//   addModelAbi     the exported moe_model_invoke / moe_model_metadata
// and, ahead of time only, emitObjectFile + linkSharedLibrary.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_COMPILER_COMPILER_H
#define MOE_MLIR_COMPILER_COMPILER_H

#include "moe-mlir/Conversion/ContractionOptions.h"
#include "moe-mlir/Pipelines/Pipelines.h"
#include "moe-mlir/Runtime/ModelInfo.h"

#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/LogicalResult.h"

#include <functional>
#include <string>

namespace moe_mlir {

/// Finds the entry function (`entryName`, else the only public function,
/// else `main`), checks that its arguments and results are ranked tensors of
/// supported element types with unique names (`moe.name`, else argN /
/// resultN), marks the arguments read-only for bufferization and asks for
/// its C interface. Errors are emitted on the module.
llvm::FailureOr<moe_rt::ModelInfo> prepareEntry(mlir::ModuleOp module,
                                                llvm::StringRef entryName);

/// How moe-expert-parallel shards a model (see its pass description).
struct ExpertParallelOptions {
  /// The EP degree N (ranks); 1 leaves the module unchanged.
  int ranks = 1;
  /// "contiguous", "round-robin" or "balanced".
  std::string placement = "contiguous";
  /// Redundant expert replicas per layer (balanced only).
  int redundant = 0;
  /// A routing profile (JSON, see moe-mlir/Runtime/Placement.h) whose
  /// per-layer expert counts the balanced placement uses; empty: uniform.
  std::string routingProfile;
};

/// Runs moe-expert-parallel with `options` on the module; call it before
/// prepareEntry, which records the sharded signature. Errors are emitted on
/// the module.
llvm::LogicalResult shardExpertParallel(mlir::ModuleOp module,
                                        const ExpertParallelOptions &options);

/// Runs moe-expose-routing: every token-choice router's expert choices
/// become extra results `routing.<layer>.e<E>` (for recording a routing
/// profile); call it before prepareEntry.
llvm::LogicalResult exposeRouting(mlir::ModuleOp module);

struct LowerOptions {
  /// The optimization pipeline (moe-optimize) run first, unless `optimize`
  /// is false.
  bool optimize = true;
  OptimizeOptions optimization;
  /// Code generation choices of the x·Wᵀ kernel (see cpuContractionOptions).
  ContractionOptions contraction;
  /// Called before each pass of the pipeline runs on the module (progress).
  std::function<void(llvm::StringRef passName)> beforePass;
  /// Print the pass manager's per-pass timing report to stderr.
  bool timing = false;
  /// Apply MLIR's pass manager command-line options (--mlir-timing,
  /// --mlir-print-ir-after-all, ...) to the pipeline; only for tools that
  /// registered them (mlir::registerPassManagerCLOptions and
  /// mlir::registerDefaultTimingManagerCLOptions) before parsing.
  bool passManagerCommandLine = false;
};

/// The kernel choices for the target CPU `cpu` ("native": the host, else an
/// LLVM CPU name) and the user's choice of bf16 dot products `bf16Dot`:
/// "auto" (used where the CPU has avx512bf16), "on" (an error where it has
/// not) or "off". Errors are one line, in `error`.
llvm::FailureOr<ContractionOptions>
cpuContractionOptions(llvm::StringRef cpu, llvm::StringRef bf16Dot,
                      std::string &error);

/// Runs the optimization pipeline (moe-optimize, unless options.optimize is
/// false), then the CPU pipeline (moe-cpu-pipeline).
llvm::LogicalResult lowerForCpu(mlir::ModuleOp module,
                                const LowerOptions &options = {});

/// Adds `void moe_model_invoke(void **)` and `const char
/// *moe_model_metadata(void)` (see moe-mlir/Runtime/Invoke.h) to a module in
/// the LLVM dialect.
llvm::LogicalResult addModelAbi(mlir::ModuleOp module,
                                const moe_rt::ModelInfo &info);

/// Translates the module to LLVM IR, optimizes it (-O3) for `cpu` ("native"
/// for the host, or an LLVM CPU name) and writes a relocatable object file.
llvm::LogicalResult emitObjectFile(mlir::ModuleOp module, llvm::StringRef path,
                                   llvm::StringRef cpu, std::string &error);

/// Links an object file into a shared library with ld.lld.
llvm::LogicalResult linkSharedLibrary(llvm::StringRef object,
                                      llvm::StringRef output,
                                      std::string &error);

/// A C header describing the compiled model's entry point and ABI.
std::string generateHeader(const moe_rt::ModelInfo &info,
                           llvm::StringRef source);

} // namespace moe_mlir

#endif // MOE_MLIR_COMPILER_COMPILER_H
