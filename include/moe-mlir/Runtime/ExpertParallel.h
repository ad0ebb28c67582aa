//===- ExpertParallel.h - run a model sharded over an EP group --*- C++ -*-===//
//
// Part of moe-mlir's runtime (no MLIR/LLVM dependency).
//
// A model compiled with expert parallelism (moe-opt --moe-expert-parallel,
// moe-compile --ep N) records `expert-parallel N` in its metadata and runs
// as one of N ranks: every rank runs the whole model on the same inputs
// (attention and dense layers are replicated), holds only its own expert
// slots' weights, and calls back into this runtime at each MoE layer to
// move token rows between the ranks:
//
//   dispatch     each rank sends the rows of its home tokens to the ranks
//                that hold the chosen replicas of their experts;
//   combineBack  each rank sends the expert outputs back to the tokens'
//                home ranks, which combine them (in compiled code);
//   allGather    every rank receives every home rank's combined rows, so
//                the next (replicated) layer sees all tokens again.
//
// Token t of a step of T tokens lives on home rank floor(t * N / T) (see
// homeBegin). The exchanges use the all-to-all of AllToAll.h.
//
// The compiled model exports `void moe_model_set_expert_parallel(const
// MoeEpHooks *)`; the runtime installs its hooks when it loads the model.
// The hooks act for the calling thread's current rank (ExpertParallelRank::
// Scope), so several ranks may be threads of one process (the local
// backend) sharing one loaded model. After the first failed exchange a
// rank aborts its group (the peers fail promptly), and its remaining hooks
// move nothing and write zeros; invoke() then returns the error instead of
// the (meaningless) outputs.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_RUNTIME_EXPERTPARALLEL_H
#define MOE_MLIR_RUNTIME_EXPERTPARALLEL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The callbacks a compiled expert-parallel model calls. Rows are `rowBytes`
   bytes, contiguous; token and row indices are 0-based. */
typedef struct MoeEpHooks {
  /* The calling thread's rank in [0, N). */
  int64_t (*rank)(void);

  /* x: [tokens] rows (every rank has all of them; only this rank's home
     tokens are sent). slots: [tokens * k] global expert slots (rank *
     slotsPerRank + local slot) of each assignment, -1 for none. Fills
     rows (capacity tokens * k rows) with the rows this rank receives,
     grouped by local slot in increasing order and, within a slot, in
     increasing (token, j); counts[slotsPerRank] with the rows per local
     slot; source[tokens * k] with token * k + j of each received row and -1
     past the last one. Returns the number of rows received. */
  int64_t (*dispatch)(const void *x, int64_t tokens, int64_t rowBytes,
                      const int32_t *slots, int64_t k, int64_t slotsPerRank,
                      void *rows, int32_t *counts, int32_t *source);

  /* expertOut: [tokens * k] rows, row i the expert output for the received
     row i of the last dispatch (source as it returned). Sends each back to
     its token's home rank. home: [homeTokens * k] rows; row
     (t - homeBegin) * k + j receives the output for assignment (t, j) of
     the home token t; rows of assignments with no slot are zero. */
  void (*combineBack)(const void *expertOut, const int32_t *source,
                      int64_t tokens, int64_t k, int64_t rowBytes,
                      void *home);

  /* home: [homeTokens] rows of this rank. out: [tokens] rows, every home
     rank's rows in token order. */
  void (*allGather)(const void *home, int64_t tokens, int64_t rowBytes,
                    void *out);
} MoeEpHooks;

/* The first home token of `rank` among `tokens` on `ranks` ranks:
   ceil(rank * tokens / ranks). Rank r's home tokens are
   [moeEpHomeBegin(r), moeEpHomeBegin(r + 1)). */
static inline int64_t moeEpHomeBegin(int64_t rank, int64_t tokens,
                                     int64_t ranks) {
  return (rank * tokens + ranks - 1) / ranks;
}

#ifdef __cplusplus
} /* extern "C" */

#include "moe-mlir/Runtime/Invoke.h"

#include <memory>
#include <string>

struct MoeA2A;

namespace moe_rt {

/// The hooks every compiled expert-parallel model is given.
const MoeEpHooks *expertParallelHooks();

/// One rank of an EP group: the all-to-all handle (borrowed) and the
/// buffers its exchanges reuse from step to step.
class ExpertParallelRank {
public:
  explicit ExpertParallelRank(MoeA2A *comm);
  ~ExpertParallelRank();
  ExpertParallelRank(const ExpertParallelRank &) = delete;
  ExpertParallelRank &operator=(const ExpertParallelRank &) = delete;

  int rank() const;
  int size() const;
  /// The first failure of an exchange ("" when none), one line.
  const std::string &error() const;
  bool failed() const { return !error().empty(); }

  /// Makes `rank` the calling thread's current rank while in scope.
  class Scope {
  public:
    explicit Scope(ExpertParallelRank &rank);
    ~Scope();

  private:
    ExpertParallelRank *previous_;
  };

  /// The calling thread's current rank, or null.
  static ExpertParallelRank *current();

  /// The all-to-all handle (borrowed).
  MoeA2A *comm() const;

  /// Records `message` as this rank's failure (when it has none yet, one
  /// line, prefixed "expert parallel rank R: ") and aborts the group so
  /// that the peers fail promptly. For failures outside the hooks (e.g. a
  /// rank that cannot bind its weights).
  void fail(const std::string &message);

  /// When this rank failed, in the order of all failures in the process
  /// (1, 2, ...; 0: not failed): of the ranks of one process, the first to
  /// fail names the cause, the others mostly that a peer left.
  uint64_t failureOrder() const;

  /// Hook calls so far, process-wide, that found no current rank on their
  /// thread (they moved nothing); invoke() compares it around a call.
  static uint64_t callsWithoutRank();

  struct Impl;
  Impl *impl() { return impl_.get(); }

private:
  std::unique_ptr<Impl> impl_;
};

} // namespace moe_rt
#endif

#endif // MOE_MLIR_RUNTIME_EXPERTPARALLEL_H
