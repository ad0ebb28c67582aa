//===- ep-test.cpp - tests of the expert-parallel hooks -------------------===//
//
// Part of moe-mlir's tests (plain C++17, no LLVM/MLIR).
//
// Every check prints "FAIL: ..." when it fails; each rank (or the local
// driver) ends with "<who>: all N checks passed" and exits 0, or exits 1.
//   moe-ep-test local   the hooks on local groups of 1, 2 and 3 ranks:
//                       dispatch (rows, counts, source order), combineBack
//                       (home layout, zeros), allGather, over steps of
//                       several sizes (fewer tokens than ranks, no tokens,
//                       unused slots, rows of odd sizes); a rank that aborts
//                       and one that never exchanges (the peers fail, name
//                       the rank, write zeros, never hang); hooks with no
//                       current rank; invoke() of a fake sharded model
//                       (the EP checks, a failed rank, no rank); the
//                       thread pool driven by several ranks at once
//   moe-ep-test mpi     the same hook steps and fake model, one rank per
//                       MPI process (run under mpirun)
// Every rank computes the expected results from the same seeds itself.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Runtime/AllToAll.h"
#include "moe-mlir/Runtime/ExpertParallel.h"
#include "moe-mlir/Runtime/Invoke.h"
#include "moe-mlir/Runtime/ThreadPool.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace moe_rt;

namespace {

std::mutex printMutex;
std::atomic<int> failures{0}, checks{0};

bool check(bool ok, const std::string &what) {
  ++checks;
  if (ok)
    return true;
  ++failures;
  std::lock_guard<std::mutex> lock(printMutex);
  std::printf("FAIL: %s\n", what.c_str());
  std::fflush(stdout);
  return false;
}

void say(const std::string &line) {
  std::lock_guard<std::mutex> lock(printMutex);
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

bool contains(const std::string &text, const std::string &part) {
  return text.find(part) != std::string::npos;
}

int finish(const std::string &who) {
  if (failures) {
    std::printf("%s: %d of %d checks FAILED\n", who.c_str(), failures.load(),
                checks.load());
    return 1;
  }
  std::printf("%s: all %d checks passed\n", who.c_str(), checks.load());
  return 0;
}

using Clock = std::chrono::steady_clock;
double secondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

uint64_t hash(uint64_t a, uint64_t b, uint64_t c) {
  uint64_t h = 0x9E3779B97F4A7C15ull;
  for (uint64_t v : {a, b, c}) {
    h ^= v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 29;
  }
  return h;
}

/// One MoE step: T tokens of H floats, k choices each among E experts on
/// slotsPerRank = ceil(E / N) slots per rank, slot g holding expert g
/// (slots past E unused); expert outputs of H2 floats.
struct Step {
  int64_t tokens, k, hidden, outHidden;
  int experts;
  uint64_t seed;
};

float xAt(int64_t t, int64_t c) { return static_cast<float>(t * 1000 + c); }

/// The global slot of assignment (t, j), or -1 (about one in E + 1).
int32_t slotOf(const Step &s, int64_t t, int64_t j) {
  return static_cast<int32_t>(hash(s.seed, t, j) % (s.experts + 1)) - 1;
}

/// The expert output for assignment (t, j) on global slot g, column c.
float expertOutAt(int64_t t, int64_t c, int32_t g, int64_t slotsPerRank) {
  return static_cast<float>(t * 1000 + c) + 0.5f * (g % slotsPerRank + 1) +
         1000000.0f * static_cast<float>(g / slotsPerRank);
}

float gatherAt(int64_t t, int64_t c) {
  return static_cast<float>(t * 7 + c) + 0.25f;
}

/// One rank's dispatch, combineBack and allGather of `s`, checked against
/// a direct computation.
void hookStep(ExpertParallelRank &ep, const Step &s, const std::string &who) {
  const MoeEpHooks *hooks = expertParallelHooks();
  int n = ep.size(), r = ep.rank();
  int64_t T = s.tokens, k = s.k, H = s.hidden, H2 = s.outHidden;
  int64_t S = (s.experts + n - 1) / n;
  std::string at = who + " step T=" + std::to_string(T) +
                   " k=" + std::to_string(k) + " H=" + std::to_string(H) +
                   " E=" + std::to_string(s.experts);
  check(hooks->rank() == r, at + ": rank() is not the current rank");

  std::vector<float> x(T * H);
  std::vector<int32_t> slots(T * k);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t c = 0; c < H; ++c)
      x[t * H + c] = xAt(t, c);
    for (int64_t j = 0; j < k; ++j)
      slots[t * k + j] = slotOf(s, t, j);
  }
  std::vector<float> rows(T * k * H + 1, -9.0f);
  std::vector<int32_t> counts(S, -7), source(T * k + 1, -7);
  int64_t got = hooks->dispatch(x.data(), T, H * 4, slots.data(), k, S,
                                rows.data(), counts.data(), source.data());
  if (!check(!ep.failed(), at + ": dispatch failed: " + ep.error()))
    return;

  // Expected: this rank's assignments grouped by local slot, then (t, j).
  std::vector<std::vector<int32_t>> bySlot(S);
  for (int64_t i = 0; i < T * k; ++i)
    if (slots[i] >= 0 && slots[i] / S == r)
      bySlot[slots[i] % S].push_back(static_cast<int32_t>(i));
  std::vector<int32_t> want;
  for (int64_t l = 0; l < S; ++l) {
    check(counts[l] == static_cast<int32_t>(bySlot[l].size()),
          at + ": counts[" + std::to_string(l) +
              "] = " + std::to_string(counts[l]) + ", want " +
              std::to_string(bySlot[l].size()));
    want.insert(want.end(), bySlot[l].begin(), bySlot[l].end());
  }
  check(got == static_cast<int64_t>(want.size()),
        at + ": dispatch returned " + std::to_string(got) + ", want " +
            std::to_string(want.size()));
  bool order = true, data = true, tail = true;
  for (size_t i = 0; i < want.size(); ++i) {
    order = order && source[i] == want[i];
    for (int64_t c = 0; c < H; ++c)
      data = data && rows[i * H + c] == xAt(want[i] / k, c);
  }
  for (int64_t i = static_cast<int64_t>(want.size()); i < T * k; ++i)
    tail = tail && source[i] == -1;
  check(order, at + ": source is not grouped by slot in (token, j) order");
  check(data, at + ": a received row is not its token's row");
  check(tail, at + ": source is not -1 past the received rows");
  check(source[T * k] == -7 && rows[T * k * H] == -9.0f,
        at + ": dispatch wrote past its buffers");

  // combineBack: row i of the expert output is a function of its assignment
  // and slot, so the home rank can check where it lands.
  std::vector<float> expertOut(std::max<int64_t>(got, 1) * H2);
  int64_t row = 0;
  for (int64_t l = 0; l < S; ++l)
    for (int32_t i = 0; i < counts[l]; ++i, ++row)
      for (int64_t c = 0; c < H2; ++c)
        expertOut[row * H2 + c] =
            expertOutAt(source[row] / k, c, static_cast<int32_t>(r * S + l), S);
  int64_t begin = moeEpHomeBegin(r, T, n), end = moeEpHomeBegin(r + 1, T, n);
  std::vector<float> home((end - begin) * k * H2 + 1, -3.0f);
  hooks->combineBack(expertOut.data(), source.data(), T, k, H2 * 4,
                     home.data());
  if (!check(!ep.failed(), at + ": combineBack failed: " + ep.error()))
    return;
  bool homeOk = true;
  for (int64_t t = begin; t < end; ++t)
    for (int64_t j = 0; j < k; ++j) {
      int32_t g = slots[t * k + j];
      for (int64_t c = 0; c < H2; ++c)
        homeOk = homeOk && home[((t - begin) * k + j) * H2 + c] ==
                               (g < 0 ? 0.0f : expertOutAt(t, c, g, S));
    }
  check(homeOk, at + ": combineBack's home rows are wrong");
  check(home.back() == -3.0f, at + ": combineBack wrote past home");

  // allGather of rows every home rank computes for its own tokens.
  std::vector<float> mine((end - begin) * H);
  for (int64_t t = begin; t < end; ++t)
    for (int64_t c = 0; c < H; ++c)
      mine[(t - begin) * H + c] = gatherAt(t, c);
  std::vector<float> out(T * H + 1, -5.0f);
  hooks->allGather(mine.data(), T, H * 4, out.data());
  if (!check(!ep.failed(), at + ": allGather failed: " + ep.error()))
    return;
  bool gathered = true;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t c = 0; c < H; ++c)
      gathered = gathered && out[t * H + c] == gatherAt(t, c);
  check(gathered, at + ": allGather's rows are not in token order");
  check(out.back() == -5.0f, at + ": allGather wrote past out");
}

const std::vector<Step> &steps() {
  static const std::vector<Step> all = {
      {10, 2, 3, 5, 5, 1}, {37, 3, 4, 4, 7, 2}, {1, 1, 2, 2, 5, 3},
      {0, 2, 3, 3, 5, 4},  {2, 2, 2, 1, 3, 5},  {64, 2, 8, 8, 8, 6},
      {5, 4, 1, 3, 2, 7},  {37, 3, 4, 4, 7, 8}, {3, 1, 6, 6, 1, 9},
  };
  return all;
}

void allHookSteps(ExpertParallelRank &ep, const std::string &who) {
  ExpertParallelRank::Scope scope(ep);
  for (const Step &s : steps())
    hookStep(ep, s, who);
}

/// Runs fn(rank, handle) on one thread per rank of a fresh local group.
void withLocalGroup(int size, double timeout,
                    const std::function<void(int, MoeA2A *)> &fn) {
  std::vector<MoeA2A *> ranks(size);
  if (!check(moeA2ACreateLocalGroup(size, timeout, ranks.data()) == MOE_A2A_OK,
             std::string("create local group: ") + moeA2AError(nullptr)))
    return;
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r)
    threads.emplace_back([&, r] { fn(r, ranks[r]); });
  for (auto &t : threads)
    t.join();
  for (MoeA2A *h : ranks)
    moeA2ADestroy(h);
}

// --- a fake sharded model ----------------------------------------------------

/// What the fake model was "compiled" for.
std::atomic<int> fakeRanks{2};
constexpr int64_t kFakeSlots = 2;

/// y = allGather(home sum over j of 2 * x[t]): args[1] x f32 [T, H],
/// args[2] slots i32 [T, k]; result y f32 [T, H], malloc'ed.
void fakeEpModel(void **args) {
  const MoeEpHooks *hooks = expertParallelHooks();
  auto *result = static_cast<int64_t *>(args[0]);
  auto *xd = static_cast<int64_t *>(args[1]);
  auto *sd = static_cast<int64_t *>(args[2]);
  const float *x = reinterpret_cast<const float *>(xd[1]) + xd[2];
  int64_t T = xd[3], H = xd[4], k = sd[4];
  const int32_t *slots = reinterpret_cast<const int32_t *>(sd[1]) + sd[2];
  int64_t r = hooks->rank();
  std::vector<float> rows(T * k * H + 1);
  std::vector<int32_t> counts(kFakeSlots), source(T * k + 1);
  int64_t got = hooks->dispatch(x, T, H * 4, slots, k, kFakeSlots, rows.data(),
                                counts.data(), source.data());
  for (int64_t i = 0; i < got * H; ++i)
    rows[i] *= 2;
  int64_t begin = moeEpHomeBegin(r, T, fakeRanks),
          end = moeEpHomeBegin(r + 1, T, fakeRanks);
  std::vector<float> home((end - begin) * k * H + 1);
  hooks->combineBack(rows.data(), source.data(), T, k, H * 4, home.data());
  std::vector<float> y((end - begin) * H + 1, 0.0f);
  for (int64_t t = 0; t < end - begin; ++t)
    for (int64_t j = 0; j < k; ++j)
      for (int64_t c = 0; c < H; ++c)
        y[t * H + c] += home[(t * k + j) * H + c];
  auto *out = static_cast<float *>(std::malloc((T * H + 1) * 4));
  hooks->allGather(y.data(), T, H * 4, out);
  result[0] = result[1] = reinterpret_cast<int64_t>(out);
  result[2] = 0;
  result[3] = T;
  result[4] = H;
  result[5] = H;
  result[6] = 1;
}

ModelInfo fakeInfo(int ranks) {
  ModelInfo info;
  info.entry = "ep_model";
  info.expertParallel = ranks;
  info.inputs = {{"x", DType::F32, {-1, 3}, {}},
                 {"slots", DType::I32, {-1, 2}, {}}};
  info.outputs = {{"y", DType::F32, {-1, 3}, {}}};
  return info;
}

struct FakeInputs {
  Array x, slots;
  std::vector<TensorView> views;
};

FakeInputs fakeInputs(int64_t T, int ranks) {
  FakeInputs in;
  in.x.dtype = DType::F32;
  in.x.shape = {T, 3};
  in.x.data.resize(T * 3 * 4);
  in.slots.dtype = DType::I32;
  in.slots.shape = {T, 2};
  in.slots.data.resize(T * 2 * 4);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t c = 0; c < 3; ++c) {
      float v = xAt(t, c);
      std::memcpy(in.x.data.data() + (t * 3 + c) * 4, &v, 4);
    }
    for (int64_t j = 0; j < 2; ++j) {
      int32_t g =
          static_cast<int32_t>(hash(77, t, j) % (ranks * kFakeSlots + 1)) - 1;
      std::memcpy(in.slots.data.data() + (t * 2 + j) * 4, &g, 4);
    }
  }
  in.views = {TensorView::of(in.x), TensorView::of(in.slots)};
  return in;
}

/// y[t] = 2 * x[t] times the number of t's choices with a slot.
bool fakeOutputOk(const FakeInputs &in, const Array &y) {
  int64_t T = in.x.shape[0];
  if (y.shape != std::vector<int64_t>{T, 3})
    return false;
  for (int64_t t = 0; t < T; ++t) {
    int chosen = 0;
    for (int64_t j = 0; j < 2; ++j) {
      int32_t g;
      std::memcpy(&g, in.slots.data.data() + (t * 2 + j) * 4, 4);
      chosen += g >= 0;
    }
    for (int64_t c = 0; c < 3; ++c) {
      float v;
      std::memcpy(&v, y.data.data() + (t * 3 + c) * 4, 4);
      if (v != 2.0f * chosen * xAt(t, c))
        return false;
    }
  }
  return true;
}

void invokeOnRank(ExpertParallelRank &ep, const std::string &who) {
  ExpertParallelRank::Scope scope(ep);
  fakeRanks = ep.size();
  for (int64_t T : {9, 1, 0, 25}) {
    FakeInputs in = fakeInputs(T, ep.size());
    std::vector<Array> outputs;
    Status st = invoke(fakeEpModel, fakeInfo(ep.size()), in.views, outputs);
    std::string at = who + " fake model T=" + std::to_string(T);
    if (check(static_cast<bool>(st), at + ": invoke failed: " + st.message))
      check(outputs.size() == 1 && fakeOutputOk(in, outputs[0]),
            at + ": wrong output");
  }
}

// --- local driver -----------------------------------------------------------

void localHookChecks() {
  for (int n : {1, 2, 3})
    withLocalGroup(n, 30.0, [&](int r, MoeA2A *h) {
      ExpertParallelRank ep(h);
      check(ep.rank() == r && ep.size() == n && ep.comm() == h,
            "local: rank and size of the EP rank");
      allHookSteps(ep, "local n=" + std::to_string(n) + " rank " +
                           std::to_string(r));
    });
  say("local: hook steps done");
}

/// The hooks of a failed rank move nothing and write zeros.
void checkZeros(ExpertParallelRank &ep, const std::string &who) {
  const MoeEpHooks *hooks = expertParallelHooks();
  Step s{6, 2, 2, 2, 4, 11};
  int64_t T = s.tokens, k = s.k, S = 4;
  std::vector<float> x(T * 2, 1.0f), rows(T * k * 2, 1.0f);
  std::vector<int32_t> slots(T * k, 0), counts(S, 5), source(T * k, 5);
  int64_t got = hooks->dispatch(x.data(), T, 8, slots.data(), k, S, rows.data(),
                                counts.data(), source.data());
  bool zeros = got == 0;
  for (int32_t c : counts)
    zeros = zeros && c == 0;
  for (int32_t v : source)
    zeros = zeros && v == -1;
  check(zeros, who + ": a failed dispatch does not return 0, zero counts "
                     "and -1 sources");
  int n = ep.size();
  int64_t homeRows =
      (moeEpHomeBegin(ep.rank() + 1, T, n) - moeEpHomeBegin(ep.rank(), T, n)) *
      k;
  std::vector<float> home(homeRows * 2 + 1, 4.0f), out(T * 2 + 1, 4.0f);
  hooks->combineBack(rows.data(), source.data(), T, k, 8, home.data());
  hooks->allGather(x.data(), T, 8, out.data());
  bool homeZero = home.back() == 4.0f, outZero = out.back() == 4.0f;
  for (size_t i = 0; i + 1 < home.size(); ++i)
    homeZero = homeZero && home[i] == 0.0f;
  for (size_t i = 0; i + 1 < out.size(); ++i)
    outZero = outZero && out[i] == 0.0f;
  check(homeZero, who + ": a failed combineBack does not write zeros");
  check(outZero, who + ": a failed allGather does not write zeros");
}

void localFaultChecks() {
  // Rank 2 aborts instead of exchanging: ranks 0 and 1 fail promptly.
  withLocalGroup(3, 2.0, [&](int r, MoeA2A *h) {
    ExpertParallelRank ep(h);
    std::string who = "local abort rank " + std::to_string(r);
    if (r == 2) {
      moeA2AAbort(h, "rank 2 gives up");
      return;
    }
    ExpertParallelRank::Scope scope(ep);
    auto t0 = Clock::now();
    checkZeros(ep, who);
    double took = secondsSince(t0);
    check(ep.failed(), who + ": did not fail");
    check(took < 1.5,
          who + ": took " + std::to_string(took) + " s to fail (timeout 2 s)");
    check(contains(ep.error(), "expert parallel rank " + std::to_string(r) +
                                   ": dispatch: ") &&
              contains(ep.error(), "left the group"),
          who + ": error is '" + ep.error() + "'");
    if (r == 0)
      say("local abort: " + ep.error());
    // Later steps stay failed and keep writing zeros.
    checkZeros(ep, who + " later");
  });

  // Rank 1 never exchanges: rank 0 fails at the timeout, naming rank 1.
  withLocalGroup(2, 1.0, [&](int r, MoeA2A *h) {
    if (r == 1)
      return;
    ExpertParallelRank ep(h);
    ExpertParallelRank::Scope scope(ep);
    std::string who = "local silent rank 0";
    auto t0 = Clock::now();
    checkZeros(ep, who);
    double took = secondsSince(t0);
    check(ep.failed() && took >= 0.5 && took < 10,
          who + ": failed " + std::to_string(ep.failed()) + " after " +
              std::to_string(took) + " s (timeout 1 s)");
    check(contains(ep.error(), "expert parallel rank 0: dispatch: ") &&
              contains(ep.error(), "rank 1"),
          who + ": error is '" + ep.error() + "'");
    say("local silent: " + ep.error());
  });

  // A bad slot is this rank's error; the peer learns it promptly.
  withLocalGroup(2, 5.0, [&](int r, MoeA2A *h) {
    ExpertParallelRank ep(h);
    ExpertParallelRank::Scope scope(ep);
    const MoeEpHooks *hooks = expertParallelHooks();
    std::vector<float> x(4 * 2, 1.0f), rows(4 * 2, 0.0f);
    std::vector<int32_t> slots = {0, 1, 2, 9}, counts(2), source(4);
    auto t0 = Clock::now();
    hooks->dispatch(x.data(), 4, 8, slots.data(), 1, 2, rows.data(),
                    counts.data(), source.data());
    std::string who = "local bad slot rank " + std::to_string(r);
    check(ep.failed() && secondsSince(t0) < 4, who + ": did not fail promptly");
    if (r == 1) {
      check(contains(ep.error(), "expert parallel rank 1: dispatch: slot 9 "
                                 "of token 3 (choice 0) is outside the 2 "
                                 "ranks x 2 slots"),
            who + ": error is '" + ep.error() + "'");
      say("local bad slot: " + ep.error());
    } else {
      check(contains(ep.error(), "rank 1 left the group"),
            who + ": error is '" + ep.error() + "'");
    }
  });
  say("local: fault checks done");
}

void noRankChecks() {
  const MoeEpHooks *hooks = expertParallelHooks();
  uint64_t before = ExpertParallelRank::callsWithoutRank();
  check(ExpertParallelRank::current() == nullptr, "no rank: current()");
  std::vector<float> x(4, 1.0f), rows(4, 1.0f), out(4, 1.0f);
  std::vector<int32_t> slots = {0, 0}, counts = {3}, source = {3, 3};
  int64_t got = hooks->dispatch(x.data(), 2, 8, slots.data(), 1, 1, rows.data(),
                                counts.data(), source.data());
  hooks->allGather(x.data(), 2, 8, out.data());
  check(got == 0 && counts[0] == 0 && source[0] == -1 && source[1] == -1 &&
            out[0] == 0 && out[3] == 0,
        "no rank: the hooks do not write zeros");
  check(hooks->rank() == 0, "no rank: rank() is not 0");
  check(ExpertParallelRank::callsWithoutRank() >= before + 3,
        "no rank: the calls are not counted");

  // invoke(): a sharded model without a rank, with a rank of another group
  // size, and a model that calls the hooks where no rank is current.
  FakeInputs in = fakeInputs(4, 2);
  std::vector<Array> outputs;
  Status st = invoke(fakeEpModel, fakeInfo(2), in.views, outputs);
  check(!st && contains(st.message,
                        "@ep_model: the model is sharded for expert "
                        "parallelism over 2 ranks; run it as one rank of an "
                        "EP group of 2 (moe-run --ep 2)"),
        "no rank: invoke says '" + st.message + "'");
  say("no rank: " + st.message);
  std::vector<MoeA2A *> three(3);
  if (check(moeA2ACreateLocalGroup(3, 5.0, three.data()) == MOE_A2A_OK,
            "create a group of 3")) {
    {
      ExpertParallelRank ep(three[0]);
      ExpertParallelRank::Scope scope(ep);
      st = invoke(fakeEpModel, fakeInfo(2), in.views, outputs);
      check(!st && contains(st.message, "over 2 ranks, but this thread's EP "
                                        "group has 3"),
            "size mismatch: invoke says '" + st.message + "'");
    }
    for (MoeA2A *h : three)
      moeA2ADestroy(h);
  }
  check(ExpertParallelRank::current() == nullptr, "Scope restores current()");
  fakeRanks = 1;
  st = invoke(fakeEpModel, fakeInfo(1), in.views, outputs);
  check(!st && contains(st.message, "no expert-parallel rank on this thread") &&
            outputs.empty(),
        "hooks without a rank: invoke says '" + st.message + "'");
  say("no rank in the model: " + st.message);
}

void localInvokeChecks() {
  for (int n : {2, 3})
    withLocalGroup(n, 30.0, [&](int r, MoeA2A *h) {
      ExpertParallelRank ep(h);
      invokeOnRank(ep, "local n=" + std::to_string(n) + " rank " +
                           std::to_string(r));
    });
  // Rank 1 aborts: rank 0's invoke returns the error and no outputs.
  withLocalGroup(2, 5.0, [&](int r, MoeA2A *h) {
    ExpertParallelRank ep(h);
    if (r == 1) {
      ep.fail("cannot bind its weights");
      check(ep.error() == "expert parallel rank 1: cannot bind its weights",
            "fail(): error is '" + ep.error() + "'");
      return;
    }
    ExpertParallelRank::Scope scope(ep);
    fakeRanks = 2;
    FakeInputs in = fakeInputs(6, 2);
    std::vector<Array> outputs(1);
    Status st = invoke(fakeEpModel, fakeInfo(2), in.views, outputs);
    check(!st && outputs.empty() &&
              contains(st.message, "expert parallel rank 0: dispatch: rank 1 "
                                   "left the group (rank 1: cannot bind its "
                                   "weights)"),
          "failed rank: invoke says '" + st.message + "'");
    say("failed peer: " + st.message);
    st = invoke(fakeEpModel, fakeInfo(2), in.views, outputs);
    check(!st && contains(st.message, "expert parallel rank 0:"),
          "failed rank: a later invoke does not fail");
  });
  say("local: invoke checks done");
}

/// Several threads (ranks) run parallel loops at once: one gets the pool,
/// the others run inline; every loop still covers its range exactly once.
void poolChecks() {
  struct Loop {
    std::vector<int64_t> *out;
    int64_t seed;
  };
  auto task = [](void *closure, int64_t begin, int64_t end) {
    auto *loop = static_cast<Loop *>(closure);
    for (int64_t i = begin; i < end; ++i)
      (*loop->out)[i] += i * loop->seed + 1;
  };
  setNumThreads(3);
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 1);
  for (int r = 0; r < 4; ++r)
    threads.emplace_back([&, r] {
      for (int rep = 0; rep < 200; ++rep) {
        int64_t n = 50 + 37 * ((rep + r) % 9);
        std::vector<int64_t> out(n, 0);
        Loop loop{&out, r + 2};
        parallelFor(task, &loop, n);
        for (int64_t i = 0; i < n; ++i)
          if (out[i] != i * (r + 2) + 1)
            ok[r] = 0;
      }
    });
  for (auto &t : threads)
    t.join();
  for (int r = 0; r < 4; ++r)
    check(ok[r], "pool: thread " + std::to_string(r) +
                     "'s loops did not cover their ranges exactly once");
  say("local: pool checks done");
}

int runLocal() {
  poolChecks();
  localHookChecks();
  localFaultChecks();
  noRankChecks();
  localInvokeChecks();
  return finish("local");
}

// --- MPI driver --------------------------------------------------------------

int runMpi() {
  MoeA2A *h = nullptr;
  if (moeA2ACreateMpi(30.0, &h) != MOE_A2A_OK) {
    std::printf("FAIL: moeA2ACreateMpi: %s\n", moeA2AError(nullptr));
    return 1;
  }
  std::string who = "mpi rank " + std::to_string(moeA2ARank(h));
  {
    ExpertParallelRank ep(h);
    allHookSteps(ep, who);
    invokeOnRank(ep, who);
  }
  moeA2ADestroy(h);
  return finish(who);
}

} // namespace

int main(int argc, char **argv) {
  std::string mode = argc > 1 ? argv[1] : "local";
  if (mode == "local")
    return runLocal();
  if (mode == "mpi")
    return runMpi();
  std::fprintf(stderr, "usage: moe-ep-test local | mpi\n");
  return 2;
}
