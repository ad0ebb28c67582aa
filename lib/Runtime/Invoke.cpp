//===- Invoke.cpp - call a compiled model's entry point -------------------===//
//
// Part of moe-mlir's runtime.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Runtime/Invoke.h"
#include "moe-mlir/Runtime/ExpertParallel.h"

#include <cstdlib>
#include <cstring>
#include <set>

namespace moe_rt {

static size_t descriptorWords(size_t rank) { return 3 + 2 * rank; }

Status checkInput(const TensorSpec &spec, const TensorView &view) {
  if (view.dtype != spec.dtype)
    return Status::error("input '" + spec.name + "': dtype " +
                         dtypeName(view.dtype) + " does not match the model's " +
                         dtypeName(spec.dtype));
  bool ok = view.shape.size() == spec.shape.size();
  for (size_t i = 0; ok && i < spec.shape.size(); ++i)
    ok = view.shape[i] >= 0 && (spec.shape[i] < 0 || spec.shape[i] == view.shape[i]);
  if (!ok)
    return Status::error("input '" + spec.name + "': expected shape " +
                         shapeToString(spec.shape) + ", got " +
                         shapeToString(view.shape));
  return Status::success();
}

/// Copies one result (described at `words`) into `out` and returns the
/// allocated pointer the model handed over.
static void copyResult(const int64_t *words, const TensorSpec &spec,
                       Array &out) {
  size_t rank = spec.shape.size();
  size_t eb = dtypeSize(spec.dtype);
  const auto *base = reinterpret_cast<const uint8_t *>(words[1]);
  int64_t offset = words[2];
  out.dtype = spec.dtype;
  out.shape.assign(words + 3, words + 3 + rank);
  const int64_t *strides = words + 3 + rank;
  int64_t n = 1;
  for (int64_t s : out.shape)
    n *= s;
  out.data.resize(static_cast<size_t>(n) * eb);
  // Contiguous row-major results (the usual case) are one copy.
  bool contiguous = true;
  int64_t expect = 1;
  for (size_t d = rank; d-- > 0;) {
    if (out.shape[d] != 1 && strides[d] != expect)
      contiguous = false;
    expect *= out.shape[d];
  }
  if (contiguous || n == 0) {
    if (n)
      std::memcpy(out.data.data(), base + offset * eb, n * eb);
    return;
  }
  std::vector<int64_t> idx(rank, 0);
  for (int64_t i = 0; i < n; ++i) {
    int64_t at = offset;
    for (size_t d = 0; d < rank; ++d)
      at += idx[d] * strides[d];
    std::memcpy(out.data.data() + i * eb, base + at * eb, eb);
    for (size_t d = rank; d-- > 0;) {
      if (++idx[d] < out.shape[d])
        break;
      idx[d] = 0;
    }
  }
}

Status invoke(InvokeFn fn, const ModelInfo &info,
              const std::vector<TensorView> &inputs,
              std::vector<Array> &outputs) {
  if (inputs.size() != info.inputs.size())
    return Status::error("@" + info.entry + " takes " +
                         std::to_string(info.inputs.size()) + " inputs, got " +
                         std::to_string(inputs.size()));
  // An expert-parallel model runs as one rank of its group: the calling
  // thread's current rank.
  ExpertParallelRank *ep = ExpertParallelRank::current();
  if (info.expertParallel > 1) {
    std::string n = std::to_string(info.expertParallel);
    std::string sharded = "@" + info.entry +
                          ": the model is sharded for expert parallelism "
                          "over " +
                          n + " ranks";
    if (!ep)
      return Status::error(sharded + "; run it as one rank of an EP group of " +
                           n + " (moe-run --ep " + n + ")");
    if (ep->size() != info.expertParallel)
      return Status::error(sharded + ", but this thread's EP group has " +
                           std::to_string(ep->size()));
    if (ep->failed())
      return Status::error(ep->error());
  }
  std::vector<std::vector<int64_t>> descs;
  std::set<int64_t> inputPtrs;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (Status st = checkInput(info.inputs[i], inputs[i]); !st)
      return st;
    const TensorView &v = inputs[i];
    size_t rank = v.shape.size();
    std::vector<int64_t> d(descriptorWords(rank), 0);
    auto ptr = reinterpret_cast<int64_t>(v.data);
    d[0] = d[1] = ptr;
    int64_t stride = 1;
    for (size_t k = rank; k-- > 0;) {
      d[3 + k] = v.shape[k];
      d[3 + rank + k] = stride;
      stride *= v.shape[k];
    }
    descs.push_back(std::move(d));
    inputPtrs.insert(ptr);
  }
  size_t resultWords = 0;
  for (const TensorSpec &spec : info.outputs)
    resultWords += descriptorWords(spec.shape.size());
  std::vector<int64_t> results(resultWords ? resultWords : 1, 0);

  std::vector<void *> args;
  if (!info.outputs.empty())
    args.push_back(results.data());
  for (auto &d : descs)
    args.push_back(d.data());
  uint64_t withoutRank = ExpertParallelRank::callsWithoutRank();
  fn(args.data());

  // A failed exchange (or a hook called where no rank was current) leaves
  // meaningless results: they are freed, not returned.
  Status status = Status::success();
  if (info.expertParallel > 1 && ep->failed())
    status = Status::error(ep->error());
  else if (ExpertParallelRank::callsWithoutRank() != withoutRank)
    status = Status::error("@" + info.entry +
                           ": the model called its expert-parallel hooks "
                           "with no expert-parallel rank on this thread");

  // Copy every result before freeing any buffer: two results (or a result
  // and a view of it) may share one allocation.
  outputs.assign(status ? info.outputs.size() : 0, Array());
  std::vector<int64_t> allocs;
  size_t at = 0;
  for (size_t i = 0; i < info.outputs.size(); ++i) {
    if (status)
      copyResult(results.data() + at, info.outputs[i], outputs[i]);
    allocs.push_back(results[at]);
    at += descriptorWords(info.outputs[i].shape.size());
  }
  std::set<int64_t> freed;
  for (int64_t alloc : allocs)
    if (alloc && !inputPtrs.count(alloc) && freed.insert(alloc).second)
      std::free(reinterpret_cast<void *>(alloc));
  return status;
}

} // namespace moe_rt
