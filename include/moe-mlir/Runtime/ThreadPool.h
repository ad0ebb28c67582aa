//===- ThreadPool.h - the pool compiled models run their loops on -*- C++ -*-===//
//
// Part of moe-mlir's runtime (no MLIR/LLVM dependency).
//
// A compiled model outlines its parallel loops into tasks
// `task(closure, begin, end)` over iterations [0, n) and hands them to the
// pool installed with `moe_model_set_parallel_for` (see Invoke.h). The pool
// splits [0, n) into one contiguous chunk per thread; iterations write
// disjoint data, so the result does not depend on the number of threads.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_RUNTIME_THREADPOOL_H
#define MOE_MLIR_RUNTIME_THREADPOOL_H

#include <cstdint>

namespace moe_rt {

using ParallelTask = void (*)(void *closure, int64_t begin, int64_t end);

/// Runs task over [0, n) on the process-wide pool (nested calls run on the
/// calling thread). Safe to call from several threads at once: while the
/// pool runs one caller's loop, the others run theirs on their own thread.
void parallelFor(ParallelTask task, void *closure, int64_t n);

/// Threads of the pool: MOE_NUM_THREADS if set, else the hardware's; may be
/// changed before or between runs.
int numThreads();
void setNumThreads(int threads);

} // namespace moe_rt

extern "C" {
/// The C entry point installed into compiled models.
void moe_rt_parallel_for(moe_rt::ParallelTask task, void *closure, int64_t n);
}

#endif // MOE_MLIR_RUNTIME_THREADPOOL_H
