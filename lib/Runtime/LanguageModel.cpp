//===- LanguageModel.cpp - prefill, decode and greedy generation ----------===//
//
// Part of moe-mlir's runtime (no MLIR/LLVM dependency).
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Runtime/LanguageModel.h"

#include <chrono>
#include <cstring>

using namespace moe_rt;

static bool startsWith(const std::string &s, const char *prefix) {
  return s.rfind(prefix, 0) == 0;
}

Status LanguageModel::create(const ModelInfo &info, RunFn run,
                             WeightSet &weights,
                             std::unique_ptr<LanguageModel> &out,
                             const ProgressFn &progress) {
  std::unique_ptr<LanguageModel> lm(new LanguageModel());
  lm->info_ = info;
  lm->run_ = std::move(run);
  auto bad = [&](const std::string &what) {
    return Status::error("@" + info.entry +
                         " is not a language model entry point: " + what);
  };
  for (size_t i = 0; i < info.outputs.size(); ++i) {
    const TensorSpec &spec = info.outputs[i];
    if (spec.name == "logits") {
      if (spec.dtype != DType::F32 || spec.shape.size() != 2 ||
          spec.shape[1] <= 0)
        return bad("output 'logits' must be f32 [S, V] with a static V");
      lm->logits_ = static_cast<int>(i);
      lm->vocab_ = spec.shape[1];
    }
  }
  if (lm->logits_ < 0)
    return bad("no output named 'logits'");

  std::vector<size_t> weightInputs;
  for (size_t i = 0; i < info.inputs.size(); ++i) {
    const TensorSpec &spec = info.inputs[i];
    if (spec.name == "input_ids") {
      if (spec.dtype != DType::I64 || spec.shape.size() != 1)
        return bad("input 'input_ids' must be i64 [S]");
      lm->inputIds_ = static_cast<int>(i);
    } else if (spec.name == "logits_to_keep") {
      if (spec.dtype != DType::I64 || spec.shape != std::vector<int64_t>{1})
        return bad("input 'logits_to_keep' must be i64 [1]");
      lm->logitsToKeep_ = static_cast<int>(i);
    } else if (startsWith(spec.name, "cache.")) {
      int output = -1;
      for (size_t o = 0; o < info.outputs.size(); ++o)
        if (info.outputs[o].name == spec.name)
          output = static_cast<int>(o);
      if (output < 0)
        return bad("cache input '" + spec.name + "' has no output");
      const TensorSpec &result = info.outputs[output];
      if (spec.shape.empty() || spec.shape[0] != -1 ||
          result.dtype != spec.dtype ||
          result.shape.size() != spec.shape.size())
        return bad("cache '" + spec.name +
                   "' must be [P, ...] in and [P+S, ...] out, same dtype");
      for (size_t d = 1; d < spec.shape.size(); ++d)
        if (spec.shape[d] < 0)
          return bad("cache '" + spec.name + "' has a dynamic dimension " +
                     std::to_string(d));
      lm->caches_.push_back({static_cast<int>(i), output});
    } else {
      weightInputs.push_back(i);
    }
  }
  if (lm->inputIds_ < 0)
    return bad("no input named 'input_ids'");

  lm->inputs_.resize(info.inputs.size());
  for (size_t n = 0; n < weightInputs.size(); ++n) {
    size_t i = weightInputs[n];
    if (Status st = weights.bind(info.inputs[i], lm->inputs_[i]); !st)
      return st;
    if (progress)
      progress(n + 1, weightInputs.size());
  }
  lm->reset();
  out = std::move(lm);
  return Status::success();
}

void LanguageModel::reset() {
  cacheValues_.clear();
  for (const Cache &cache : caches_) {
    Array empty;
    empty.dtype = info_.inputs[cache.input].dtype;
    empty.shape = info_.inputs[cache.input].shape;
    empty.shape[0] = 0;
    cacheValues_.push_back(std::move(empty));
  }
}

int64_t LanguageModel::cachedTokens() const {
  return cacheValues_.empty() ? 0 : cacheValues_.front().shape[0];
}

Status LanguageModel::forward(const std::vector<int64_t> &tokens,
                              Array &logits, int64_t keepLast) {
  if (tokens.empty())
    return Status::error("no tokens to run");
  for (size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] < 0 || tokens[i] >= vocab_)
      return Status::error("token id " + std::to_string(tokens[i]) +
                           " (position " + std::to_string(i) +
                           ") is outside the vocabulary [0, " +
                           std::to_string(vocab_) + ")");
  std::vector<TensorView> inputs = inputs_;
  inputs[inputIds_] = TensorView{
      DType::I64, {static_cast<int64_t>(tokens.size())}, tokens.data()};
  for (size_t c = 0; c < caches_.size(); ++c)
    inputs[caches_[c].input] = TensorView::of(cacheValues_[c]);
  if (logitsToKeep_ >= 0) {
    keepValue_ = keepLast > 0 ? keepLast : 0;
    inputs[logitsToKeep_] = TensorView{DType::I64, {1}, &keepValue_};
  }
  std::vector<Array> outputs;
  if (Status st = run_(inputs, outputs); !st)
    return st;
  for (size_t c = 0; c < caches_.size(); ++c)
    cacheValues_[c] = std::move(outputs[caches_[c].output]);
  logits = std::move(outputs[logits_]);
  return Status::success();
}

int64_t moe_rt::argmaxRow(const Array &logits, int64_t row) {
  int64_t vocab = logits.shape[1];
  const float *values =
      reinterpret_cast<const float *>(logits.data.data()) + row * vocab;
  int64_t best = 0;
  for (int64_t v = 1; v < vocab; ++v)
    if (values[v] > values[best] || (values[best] != values[best] &&
                                     values[v] == values[v]))
      best = v;
  return best;
}

Status LanguageModel::generate(const std::vector<int64_t> &prompt,
                               int64_t count, std::vector<int64_t> &generated,
                               GenerationStats *stats, Array *stepLogits) {
  using Clock = std::chrono::steady_clock;
  auto ms = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
  };
  reset();
  generated.clear();
  if (stepLogits) {
    stepLogits->dtype = DType::F32;
    stepLogits->shape = {0, vocab_};
    stepLogits->data.clear();
  }
  if (count <= 0)
    return Status::success();
  auto keepRow = [&](const Array &logits, int64_t row) {
    if (!stepLogits)
      return;
    const uint8_t *begin = logits.data.data() + row * vocab_ * 4;
    stepLogits->data.insert(stepLogits->data.end(), begin,
                            begin + vocab_ * 4);
    stepLogits->shape[0] += 1;
  };
  Array logits;
  auto t0 = Clock::now();
  // Only the prompt's last logits row is needed.
  if (Status st = forward(prompt, logits, /*keepLast=*/1); !st)
    return st;
  auto t1 = Clock::now();
  generated.push_back(argmaxRow(logits, logits.shape[0] - 1));
  keepRow(logits, logits.shape[0] - 1);
  while (static_cast<int64_t>(generated.size()) < count) {
    if (Status st = forward({generated.back()}, logits); !st)
      return st;
    generated.push_back(argmaxRow(logits, 0));
    keepRow(logits, 0);
  }
  auto t2 = Clock::now();
  if (stats) {
    stats->prefillMs = ms(t0, t1);
    stats->decodeMs = ms(t1, t2);
    stats->decodeSteps = count - 1;
  }
  return Status::success();
}
