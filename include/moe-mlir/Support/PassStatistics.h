//===- PassStatistics.h - statistics of moe-mlir passes ---------*- C++ -*-===//
//
// Part of moe-mlir.
//
// mlir::Pass::Statistic is llvm::Statistic, which compiles to a no-op when
// LLVM is built with NDEBUG (as Debian's is): there, --mlir-pass-statistics
// prints an empty report. moe-mlir's passes count with PassCounter instead,
// which keeps its value in a process-wide table whatever the LLVM build,
// and the tools print that table for --mlir-pass-statistics.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_SUPPORT_PASSSTATISTICS_H
#define MOE_MLIR_SUPPORT_PASSSTATISTICS_H

#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/raw_ostream.h"

#include <atomic>
#include <cstdint>

namespace moe_mlir {

/// One statistic of a pass: a member of the pass,
///   PassCounter numFused{this, "fused", "Ops fused"};
/// counted with ++ or +=. Every instance of one pass (the pass manager
/// clones a pass per thread) adds to one entry, keyed by the pass's
/// argument and the statistic's name.
class PassCounter {
public:
  PassCounter(mlir::Pass *owner, const char *name, const char *description);
  PassCounter &operator++() { return *this += 1; }
  PassCounter &operator+=(uint64_t n) {
    value->fetch_add(n, std::memory_order_relaxed);
    return *this;
  }

private:
  std::atomic<uint64_t> *value;
};

/// For a tool's main, before the command line is parsed: removes
/// --mlir-pass-statistics[=BOOL] (and --mlir-pass-statistics-display=...)
/// from it and, when on, prints printPassStatistics to stderr when the
/// process exits. (MLIR's own report would be empty, see above; upstream
/// passes' statistics are therefore not reported.)
void handlePassStatisticsFlag(int &argc, char **argv);

/// Whether the tool was asked for the report (handlePassStatisticsFlag).
bool passStatisticsEnabled();

/// When the report is on, adds to `pm` an instrumentation that records the
/// passes that run: the report lists those (every pass is also built once
/// by the pass registry, so being built does not mean having run).
void addPassStatisticsInstrumentation(mlir::PassManager &pm);

/// Prints the statistics of every pass that ran, passes in alphabetical
/// order of their argument, in the layout of MLIR's list report.
void printPassStatistics(llvm::raw_ostream &os);

} // namespace moe_mlir

#endif // MOE_MLIR_SUPPORT_PASSSTATISTICS_H
