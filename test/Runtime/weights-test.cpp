//===- weights-test.cpp - WeightSet and LanguageModel unit checks ---------===//
//
// Part of moe-mlir's runtime tests (plain C++17, no LLVM/MLIR).
//
// moe-weights-unittests DIR: writes small safetensors files into DIR and
// checks weight binding (plain and stacked names, in place or gathered,
// converted between float types, errors; the expert slots of one rank of
// an expert-parallel model) and the language-model session
// (caches carried between calls, greedy argmax with ties, token checks)
// against a model function written in C++.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Runtime/AllToAll.h"
#include "moe-mlir/Runtime/ExpertParallel.h"
#include "moe-mlir/Runtime/LanguageModel.h"
#include "moe-mlir/Runtime/Weights.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

using namespace moe_rt;

static int checks = 0, failures = 0;

static void check(bool ok, const std::string &name,
                  const std::string &detail = "") {
  ++checks;
  if (ok) {
    std::printf("PASS: %s\n", name.c_str());
  } else {
    ++failures;
    std::printf("FAIL: %s%s%s\n", name.c_str(), detail.empty() ? "" : ": ",
                detail.c_str());
  }
}

namespace {
struct Entry {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};
} // namespace

static Entry f32Tensor(const std::string &name, std::vector<int64_t> shape,
                       float start) {
  Entry e{name, "F32", shape, {}};
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  for (int64_t i = 0; i < n; ++i) {
    float v = start + static_cast<float>(i);
    uint8_t raw[4];
    std::memcpy(raw, &v, 4);
    e.bytes.insert(e.bytes.end(), raw, raw + 4);
  }
  return e;
}

static Entry bf16Tensor(const std::string &name, std::vector<int64_t> shape,
                        float start) {
  Entry e{name, "BF16", shape, {}};
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  for (int64_t i = 0; i < n; ++i) {
    uint16_t bits = floatToBF16(start + static_cast<float>(i));
    uint8_t raw[2];
    std::memcpy(raw, &bits, 2);
    e.bytes.insert(e.bytes.end(), raw, raw + 2);
  }
  return e;
}

static void writeFile(const std::string &path,
                      const std::vector<Entry> &entries) {
  std::string header = "{";
  uint64_t offset = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    const Entry &e = entries[i];
    header += (i ? "," : "") + std::string("\"") + e.name + "\":{\"dtype\":\"" +
              e.dtype + "\",\"shape\":[";
    for (size_t d = 0; d < e.shape.size(); ++d)
      header += (d ? "," : "") + std::to_string(e.shape[d]);
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," +
              std::to_string(offset + e.bytes.size()) + "]}";
    offset += e.bytes.size();
  }
  header += "}";
  while (header.size() % 8)
    header += ' ';
  std::ofstream out(path, std::ios::binary);
  uint64_t length = header.size();
  out.write(reinterpret_cast<const char *>(&length), 8);
  out << header;
  for (const Entry &e : entries)
    out.write(reinterpret_cast<const char *>(e.bytes.data()), e.bytes.size());
}

static float at(const TensorView &view, int64_t i) {
  float v;
  std::memcpy(&v, static_cast<const uint8_t *>(view.data) + 4 * i, 4);
  return v;
}

static void weightChecks(const std::string &dir) {
  // Experts 0..2 back to back in order, then out of order, then mixed.
  std::string inOrder = dir + "/in-order.safetensors";
  writeFile(inOrder, {f32Tensor("e.0.w", {2, 3}, 0), f32Tensor("e.1.w", {2, 3}, 100),
                      f32Tensor("e.2.w", {2, 3}, 200), f32Tensor("plain", {4}, 7)});
  WeightSet in;
  check(static_cast<bool>(in.addCheckpoint(inOrder)), "open in-order file");
  TensorView view;
  Status st = in.bind(TensorSpec{"e.*.w", DType::F32, {3, 2, 3}, {}}, view);
  check(st && view.shape == std::vector<int64_t>{3, 2, 3} && at(view, 0) == 0 &&
            at(view, 6) == 100 && at(view, 17) == 205 && in.copiedBytes() == 0,
        "stacked experts stored in order are bound in place", st.message);
  st = in.bind(TensorSpec{"plain", DType::F32, {4}, {}}, view);
  check(st && at(view, 3) == 10 && in.copiedBytes() == 0,
        "plain tensor bound in place", st.message);
  st = in.bind(TensorSpec{"plain", DType::BF16, {4}, {}}, view);
  check(st && view.dtype == DType::BF16 && in.copiedBytes() == 8,
        "plain tensor converted to the model's bf16", st.message);

  std::string shuffled = dir + "/shuffled.safetensors";
  writeFile(shuffled, {f32Tensor("e.1.w", {2, 3}, 100), bf16Tensor("e.2.w", {2, 3}, 200),
                       f32Tensor("e.0.w", {2, 3}, 0)});
  WeightSet sh;
  sh.addCheckpoint(shuffled);
  st = sh.bind(TensorSpec{"e.*.w", DType::F32, {3, 2, 3}, {}}, view);
  check(st && at(view, 0) == 0 && at(view, 6) == 100 && at(view, 12) == 200 &&
            at(view, 17) == 205 && sh.copiedBytes() == 72,
        "stacked experts out of order and of mixed dtypes are gathered",
        st.message);
  st = sh.bind(TensorSpec{"e.*.w", DType::F32, {4, 2, 3}, {}}, view);
  check(!st && st.message.find("no tensor 'e.3.w' (element 3 of 'e.*.w')") !=
                   std::string::npos,
        "a missing expert is named", st.message);
  st = sh.bind(TensorSpec{"e.*.w", DType::F32, {3, 3, 2}, {}}, view);
  check(!st && st.message.find("tensor 'e.0.w' has shape [2, 3], expected [3, 2]") !=
                   std::string::npos,
        "an expert of the wrong shape is named", st.message);
  st = sh.bind(TensorSpec{"nothing", DType::F32, {1}, {}}, view);
  check(!st && st.message.find("no tensor 'nothing'") != std::string::npos,
        "a missing tensor is named", st.message);
}

static bool has(const Status &st, const std::string &part) {
  return !st && st.message.find(part) != std::string::npos;
}

/// The expert slots of one rank of an expert-parallel model: bindSlots and
/// bind() under a rank, from per-expert tensors and from one [E, ...]
/// tensor.
static void slotChecks(const std::string &dir) {
  std::string inOrder = dir + "/in-order.safetensors";
  WeightSet in;
  in.addCheckpoint(inOrder);
  TensorView view;
  // Two ranks of two slots; expert 3 of a 3-expert layer is missing: -1.
  TensorSpec spec{"e.*.w", DType::F32, {2, 2, 3}, {0, 1, 2, -1}};
  check(in.provides(spec), "an expert-slot input is provided");
  Status st = in.bindSlots(spec, {1, 2}, view);
  check(st && at(view, 0) == 100 && at(view, 6) == 200 && at(view, 11) == 205 &&
            in.copiedBytes() == 0,
        "consecutive expert slots stored in order are bound in place",
        st.message);
  st = in.bindSlots(spec, {2, -1}, view);
  check(st && at(view, 0) == 200 && at(view, 5) == 205 && at(view, 6) == 0 &&
            at(view, 11) == 0 && in.copiedBytes() == 48,
        "expert slots are gathered, an unused slot is zeros", st.message);
  const void *first = view.data;
  st = in.bindSlots(spec, {2, -1}, view);
  check(st && view.data == first && in.copiedBytes() == 48,
        "the same slots bound twice share one copy", st.message);
  st = in.bindSlots(spec, {3, 0}, view);
  check(has(st, "in-order.safetensors: no tensor 'e.3.w' (expert 3, slot 0 "
                "of 'e.*.w')"),
        "a missing expert of a slot is named", st.message);
  st = in.bindSlots(spec, {0}, view);
  check(has(st, "input 'e.*.w' of shape [2, 2, 3]: 1 experts for its slots"),
        "a wrong number of slot experts is an error", st.message);
  st = in.bind(spec, view);
  check(has(st, "input 'e.*.w' holds the expert slots of 2 ranks (an "
                "expert-parallel model): bind it for one rank of an EP "
                "group"),
        "bind() of an expert-slot input needs a rank", st.message);
  MoeA2A *group[3] = {nullptr, nullptr, nullptr};
  if (moeA2ACreateLocalGroup(2, 5.0, group) == MOE_A2A_OK) {
    ExpertParallelRank rank1(group[1]);
    ExpertParallelRank::Scope scope(rank1);
    st = in.bind(spec, view);
    check(st && view.data == first, "bind() takes the current rank's slots",
          st.message);
  }
  moeA2ADestroy(group[0]);
  moeA2ADestroy(group[1]);
  if (moeA2ACreateLocalGroup(3, 5.0, group) == MOE_A2A_OK) {
    ExpertParallelRank rank0(group[0]);
    ExpertParallelRank::Scope scope(rank0);
    st = in.bind(spec, view);
    check(has(st, "holds the expert slots of 2 ranks, but this thread's EP "
                  "group has 3"),
          "bind() under a rank of another group size", st.message);
  }
  for (MoeA2A *h : group)
    moeA2ADestroy(h);

  // One tensor [E, ...] with every expert (as an ONNX initializer).
  std::string stacked = dir + "/all-experts.safetensors";
  writeFile(stacked, {f32Tensor("all", {3, 2, 3}, 1),
                      bf16Tensor("all16", {3, 2, 3}, 1)});
  WeightSet all;
  all.addCheckpoint(stacked);
  TensorSpec allSpec{"all", DType::F32, {2, 2, 3}, {}};
  check(all.provides(allSpec), "an [E, ...] tensor is provided");
  st = all.bindSlots(allSpec, {1, 2}, view);
  check(st && at(view, 0) == 7 && at(view, 6) == 13 && all.copiedBytes() == 0,
        "consecutive rows of an [E, ...] tensor are bound in place",
        st.message);
  st = all.bindSlots(allSpec, {2, 0}, view);
  check(st && at(view, 0) == 13 && at(view, 6) == 1 && at(view, 11) == 6 &&
            all.copiedBytes() == 48,
        "rows of an [E, ...] tensor are gathered", st.message);
  st = all.bindSlots(allSpec, {-1, 0}, view);
  check(st && at(view, 0) == 0 && at(view, 5) == 0 && at(view, 6) == 1,
        "an unused slot of an [E, ...] tensor is zeros", st.message);
  st = all.bindSlots(TensorSpec{"all16", DType::F32, {2, 2, 3}, {}}, {2, 1},
                     view);
  check(st && at(view, 0) == 13 && at(view, 6) == 7,
        "rows of a bf16 [E, ...] tensor are converted", st.message);
  st = all.bindSlots(allSpec, {3, 0}, view);
  check(has(st, "all-experts.safetensors: tensor 'all' holds 3 experts; slot "
                "0 takes expert 3"),
        "an expert out of range is named", st.message);
  st =
      all.bindSlots(TensorSpec{"all", DType::F32, {2, 3, 2}, {}}, {0, 1}, view);
  check(has(st, "tensor 'all' has shape [3, 2, 3], expected [?, 3, 2] "
                "(experts along the first dimension)"),
        "an [E, ...] tensor of the wrong shape is named", st.message);
}

/// A fake language model with V = 4: logits[s] is one-hot at
/// (ids[s] + P + s) mod 4, tied with 3 when that is 1; the cache stores the
/// ids as f32. `seenP` records P at each call.
static ModelInfo fakeInfo() {
  ModelInfo info;
  info.entry = "forward";
  info.inputs = {{"input_ids", DType::I64, {-1}, {}},
                 {"cache.0.k", DType::F32, {-1, 1}, {}},
                 {"plain", DType::F32, {4}, {}}};
  info.outputs = {{"logits", DType::F32, {-1, 4}, {}},
                  {"cache.0.k", DType::F32, {-1, 1}, {}}};
  return info;
}

static RunFn fakeRun(std::vector<int64_t> &seenP) {
  return [&seenP](const std::vector<TensorView> &in, std::vector<Array> &out) {
    int64_t s = in[0].shape[0], p = in[1].shape[0];
    seenP.push_back(p);
    const int64_t *ids = static_cast<const int64_t *>(in[0].data);
    out.assign(2, Array());
    out[0].dtype = DType::F32;
    out[0].shape = {s, 4};
    out[0].data.assign(static_cast<size_t>(s * 16), 0);
    out[1].dtype = DType::F32;
    out[1].shape = {p + s, 1};
    out[1].data.resize(static_cast<size_t>((p + s) * 4));
    if (p)
      std::memcpy(out[1].data.data(), in[1].data, p * 4);
    for (int64_t i = 0; i < s; ++i) {
      float id = static_cast<float>(ids[i]);
      std::memcpy(out[1].data.data() + (p + i) * 4, &id, 4);
      int64_t hot = (ids[i] + p + i) % 4;
      float one = 1.0f;
      std::memcpy(out[0].data.data() + (i * 4 + hot) * 4, &one, 4);
      if (hot == 1) // a tie with 3: the lower id wins
        std::memcpy(out[0].data.data() + (i * 4 + 3) * 4, &one, 4);
    }
    return Status::success();
  };
}

static void languageModelChecks(const std::string &dir) {
  std::vector<int64_t> seenP;
  WeightSet none;
  std::unique_ptr<LanguageModel> lm;
  Status st = LanguageModel::create(fakeInfo(), fakeRun(seenP), none, lm);
  check(!st && st.message.find("no tensor 'plain'") != std::string::npos,
        "a missing weight fails create", st.message);

  WeightSet weights;
  weights.addCheckpoint(dir + "/in-order.safetensors");
  lm.reset();
  st = LanguageModel::create(fakeInfo(), fakeRun(seenP), weights, lm);
  check(st && lm && lm->vocabSize() == 4, "create binds weights", st.message);
  if (!lm)
    return;
  std::vector<int64_t> generated;
  Array steps;
  st = lm->generate({2, 0, 1}, 4, generated, nullptr, &steps);
  // Prompt at P=0: last token 1 at position 2 -> hot 3. Then token 3 at
  // P=3 -> (3+3)%4 = 2; 2 at P=4 -> 2; 2 at P=5 -> 3.
  check(st && generated == std::vector<int64_t>{3, 2, 2, 3},
        "greedy generation feeds tokens back at the right positions");
  check(seenP == std::vector<int64_t>{0, 3, 4, 5} && lm->cachedTokens() == 6,
        "the cache grows by the tokens of each call");
  check(steps.shape == std::vector<int64_t>{4, 4},
        "step logits are one row per generated token");
  Array logits;
  lm->reset();
  st = lm->forward({1}, logits);
  check(st && argmaxRow(logits, 0) == 1, "ties go to the lowest id");
  st = lm->forward({4}, logits);
  check(!st && st.message.find("token id 4 (position 0) is outside the "
                               "vocabulary [0, 4)") != std::string::npos,
        "a token outside the vocabulary is rejected", st.message);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: moe-weights-unittests SCRATCH_DIR\n");
    return 2;
  }
  std::string dir = argv[1];
  weightChecks(dir);
  slotChecks(dir);
  languageModelChecks(dir);
  if (failures) {
    std::printf("moe-weights-unittests: %d of %d checks FAILED\n", failures,
                checks);
    return 1;
  }
  std::printf("moe-weights-unittests: all %d checks passed\n", checks);
  return 0;
}
