//===- LanguageModel.h - prefill, decode and greedy generation --*- C++ -*-===//
//
// Part of moe-mlir's runtime (no MLIR/LLVM dependency).
//
// A compiled decoder-only language model (what moe-import writes) follows a
// naming convention for its entry point:
//
//   input  input_ids   i64 [S]              the S new tokens
//   input  cache.NAME  T   [P, ...]         one per cache tensor (KV cache,
//                                           MLA latent cache): the P tokens
//                                           seen so far
//   input  <tensor>    ...                  weights, named after checkpoint
//                                           tensors (see Weights.h)
//   input  logits_to_keep i64 [1]           optional: N > 0 asks for the
//                                           logits of the last N new tokens
//                                           only (0: all S)
//   output logits      f32 [S, V]           ([min(N, S), V] with N > 0)
//   output cache.NAME  T   [P + S, ...]     the caches with the S new tokens
//
// The new tokens take positions P .. P+S-1. LanguageModel keeps the caches
// between calls: a prefill is one call with the prompt, each decode step a
// call with one token.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_RUNTIME_LANGUAGEMODEL_H
#define MOE_MLIR_RUNTIME_LANGUAGEMODEL_H

#include "moe-mlir/Runtime/Invoke.h"
#include "moe-mlir/Runtime/Weights.h"

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace moe_rt {

/// Runs a model's entry point on checked inputs (CompiledModel::run, or a
/// JIT-compiled entry through invoke()).
using RunFn = std::function<Status(const std::vector<TensorView> &,
                                   std::vector<Array> &)>;

/// Called while weights are bound: `done` of `total` inputs.
using ProgressFn = std::function<void(size_t done, size_t total)>;

struct GenerationStats {
  double prefillMs = 0;  // the prompt's forward pass
  double decodeMs = 0;   // all decode steps
  int64_t decodeSteps = 0;
};

class LanguageModel {
public:
  /// Checks that `info` follows the convention above and binds every weight
  /// input from `weights`. Messages name the input at fault.
  static Status create(const ModelInfo &info, RunFn run, WeightSet &weights,
                       std::unique_ptr<LanguageModel> &out,
                       const ProgressFn &progress = nullptr);

  int64_t vocabSize() const { return vocab_; }
  /// Tokens in the caches (the position of the next token).
  int64_t cachedTokens() const;
  /// Forgets every cached token.
  void reset();

  /// Runs `tokens` at the next positions; `logits` receives f32 [S, V], or
  /// only the last `keepLast` rows when keepLast > 0 and the model has a
  /// logits_to_keep input (models without it always give S rows).
  /// Token ids outside [0, V) are an error (nothing runs).
  Status forward(const std::vector<int64_t> &tokens, Array &logits,
                 int64_t keepLast = 0);

  /// Greedy generation: the prompt (after reset()), then `count` tokens,
  /// each the argmax of the last logits (the lowest id among equal maxima),
  /// fed back one at a time. `stepLogits`, when given, receives the logits
  /// row each token was chosen from: f32 [count, V].
  Status generate(const std::vector<int64_t> &prompt, int64_t count,
                  std::vector<int64_t> &generated,
                  GenerationStats *stats = nullptr,
                  Array *stepLogits = nullptr);

private:
  LanguageModel() = default;

  ModelInfo info_;
  RunFn run_;
  int inputIds_ = -1;
  int logits_ = -1;
  int logitsToKeep_ = -1; // the optional logits_to_keep input
  int64_t keepValue_ = 0; // what it points at during a call
  int64_t vocab_ = 0;
  struct Cache {
    int input;
    int output;
  };
  std::vector<Cache> caches_;
  std::vector<Array> cacheValues_; // one per cache, [P, ...]
  std::vector<TensorView> inputs_; // weights bound; ids and caches per call
};

/// The index of the largest value of row `row` of a [rows, V] f32 array (the
/// lowest index among equal maxima; NaN never wins).
int64_t argmaxRow(const Array &logits, int64_t row);

} // namespace moe_rt

#endif // MOE_MLIR_RUNTIME_LANGUAGEMODEL_H
