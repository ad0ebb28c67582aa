//===- CompileFlags.h - flags moe-compile and moe-run share -----*- C++ -*-===//
//
// Part of moe-mlir.
//
// The compile choices both tools offer (the optimization pipeline, the
// expert-parallel placement), declared once. Each tool includes this header
// from its one source file; --ep itself stays per tool (moe-compile shards,
// moe-run also runs the ranks).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_TOOLS_COMPILEFLAGS_H
#define MOE_MLIR_TOOLS_COMPILEFLAGS_H

#include "ToolOptions.h"

#include "moe-mlir/Compiler/Compiler.h"

#include "mlir/Pass/PassManager.h"
#include "mlir/Support/Timing.h"
#include "llvm/Support/CommandLine.h"

namespace moe_mlir::flags {

static llvm::cl::opt<bool> optimize(
    "optimize",
    llvm::cl::desc("Run the moe-optimize pipeline before lowering (default "
                   "true; --optimize=false lowers the ops as written)"),
    llvm::cl::init(true), llvm::cl::cat(toolOptions()));
static llvm::cl::opt<std::string> weightAbsorption(
    "weight-absorption",
    llvm::cl::desc("moe-optimize's MLA weight absorption: cost (per call, "
                   "default), absorbed, naive or off"),
    llvm::cl::init("cost"), llvm::cl::cat(toolOptions()));
static llvm::cl::opt<bool> fuseGateUp(
    "fuse-gate-up",
    llvm::cl::desc("moe-optimize's gate/up fusion: one contraction for an "
                   "FFN's gate and up projections, activation in its epilogue "
                   "(default true)"),
    llvm::cl::init(true), llvm::cl::cat(toolOptions()));
static llvm::cl::opt<bool> fuseSharedExpert(
    "fuse-shared-expert",
    llvm::cl::desc("moe-optimize's shared-expert fusion: a shared expert runs "
                   "as always-selected slots of its layer's routed experts "
                   "(default true)"),
    llvm::cl::init(true), llvm::cl::cat(toolOptions()));
static llvm::cl::opt<bool> fuseDispatchCombine(
    "fuse-dispatch-combine",
    llvm::cl::desc("moe-optimize's dispatch/combine fusion: the experts read "
                   "the tokens' rows in place and the combine runs in the "
                   "down projection's epilogue (default true)"),
    llvm::cl::init(true), llvm::cl::cat(toolOptions()));
static llvm::cl::opt<std::string> placement(
    "placement",
    llvm::cl::desc("With --ep, where the experts go: contiguous (default), "
                   "round-robin or balanced"),
    llvm::cl::init("contiguous"), llvm::cl::cat(toolOptions()));
static llvm::cl::opt<int> redundant(
    "redundant",
    llvm::cl::desc("With --ep and --placement balanced: redundant expert "
                   "replicas per layer"),
    llvm::cl::value_desc("R"), llvm::cl::init(0), llvm::cl::cat(toolOptions()));
static llvm::cl::opt<std::string> routingProfile(
    "routing-profile",
    llvm::cl::desc("With --ep and --placement balanced: a routing profile "
                   "(JSON) whose per-layer expert counts balance the "
                   "placement"),
    llvm::cl::value_desc("FILE.json"), llvm::cl::cat(toolOptions()));

/// Whether any placement flag was given.
inline bool placementGiven() {
  return placement.getNumOccurrences() || redundant.getNumOccurrences() ||
         routingProfile.getNumOccurrences();
}

/// The sharding the flags ask for, over `ranks` ranks.
inline ExpertParallelOptions expertParallel(int ranks) {
  ExpertParallelOptions options;
  options.ranks = ranks;
  options.placement = placement;
  options.redundant = redundant;
  options.routingProfile = routingProfile;
  return options;
}

/// Registers MLIR's pass manager flags (--mlir-timing,
/// --mlir-print-ir-after-all, ...) for the compile pipeline; call before
/// parsing the command line.
inline void registerPassManagerFlags() {
  mlir::registerPassManagerCLOptions();
  mlir::registerDefaultTimingManagerCLOptions();
}

/// Sets the optimization choices of `lowering` from the flags.
inline void applyOptimization(LowerOptions &lowering) {
  lowering.passManagerCommandLine = true;
  lowering.optimize = optimize;
  lowering.optimization.weightAbsorption = weightAbsorption;
  lowering.optimization.fuseGateUp = fuseGateUp;
  lowering.optimization.fuseSharedExpert = fuseSharedExpert;
  lowering.optimization.fuseDispatchCombine = fuseDispatchCombine;
}

} // namespace moe_mlir::flags

#endif // MOE_MLIR_TOOLS_COMPILEFLAGS_H
