//===- placement-test.cpp - expert placement unit checks ------------------===//
//
// Part of moe-mlir's runtime tests (plain C++17, no LLVM/MLIR).
//
// moe-placement-unittests: exact placements of the strategies on small
// cases, EPLB replication and packing invariants, the load model against
// hand-computed numbers, the replica rule, profile parsing errors, and the
// generators against fixed values. Prints PASS/FAIL lines and a summary.
// moe-placement-unittests --prng SEED N: the first N outputs of
// SplitMix64(SEED) and of Xoshiro256(SEED), one hex value a line, for the
// independent Python reference in placement.test.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Runtime/Placement.h"

#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
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

static bool near(double a, double b) { return std::fabs(a - b) <= 1e-9; }

static std::string fmt(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.10g", v);
  return buf;
}

static void checkPlacement(const char *name, const Status &st,
                           const ExpertPlacement &p,
                           const std::string &expected) {
  check(st && p.describe() == expected, name,
        st ? "got " + p.describe() : st.message);
}

static void checkError(const char *name, const Status &st,
                       const std::string &expected) {
  check(!st && st.message == expected, name,
        st ? "succeeded" : "got '" + st.message + "'");
}

static void strategies() {
  ExpertPlacement p;
  checkPlacement("contiguous 8 on 4", placeContiguous(8, 4, p), p,
                 "r0: [0 1] r1: [2 3] r2: [4 5] r3: [6 7]");
  checkPlacement("contiguous 10 on 4 (first ranks one more)",
                 placeContiguous(10, 4, p), p,
                 "r0: [0 1 2] r1: [3 4 5] r2: [6 7] r3: [8 9]");
  checkPlacement("round-robin 10 on 4", placeRoundRobin(10, 4, p), p,
                 "r0: [0 4 8] r1: [1 5 9] r2: [2 6] r3: [3 7]");
  check(p.replicas(9).size() == 1 && p.replicas(9)[0] == ReplicaSlot{1, 2},
        "round-robin replica table: expert 9 at (rank 1, slot 2)");
  checkError("contiguous more ranks than experts", placeContiguous(4, 8, p),
             "contiguous placement: 4 experts cannot fill 8 ranks (more ranks "
             "than experts needs redundant replicas)");
  checkError("round-robin zero ranks", placeRoundRobin(4, 0, p),
             "round-robin placement: the number of ranks must be >= 1, got 0");
  checkError("fromRankSlots: expert without replica",
             ExpertPlacement::fromRankSlots(8, {{0, 1, 2}, {3, 4, 5, 6}}, p),
             "placement: expert 7 has no replica");
  checkError("fromRankSlots: id out of range",
             ExpertPlacement::fromRankSlots(2, {{0}, {1, 2}}, p),
             "placement: rank 1 holds expert 2, outside [0, 2)");
  checkError("fromRankSlots: empty rank",
             ExpertPlacement::fromRankSlots(2, {{0, 1}, {}}, p),
             "placement: rank 1 holds no expert");
  // Slots are sorted; duplicates are adjacent and both are replicas.
  Status st = ExpertPlacement::fromRankSlots(3, {{2, 0, 2}, {1}}, p);
  check(st && p.describe() == "r0: [0 2 2] r1: [1]" &&
            p.replicas(2).size() == 2 && p.replicas(2)[0] == ReplicaSlot{0, 1} &&
            p.replicas(2)[1] == ReplicaSlot{0, 2} && p.numSlots() == 4,
        "fromRankSlots sorts slots and lists replicas in (rank, slot) order",
        p.describe());
}

static void eplb() {
  // Replication: load per replica 10/1 -> 10/2 -> 10/3 (still above 1).
  std::vector<int> c = eplbReplicaCounts({10, 1, 1, 1}, 2);
  check(c == std::vector<int>({3, 1, 1, 1}), "EPLB replicates the heaviest");
  // Ties go to the lower expert: 6/1 = 6/1 -> expert 0; then 6 > 3 ->
  // expert 1; then 6/2 = 6/2 -> expert 0 again.
  c = eplbReplicaCounts({6, 6, 2, 1}, 3);
  check(c == std::vector<int>({3, 2, 1, 1}),
        "EPLB replication, ties to the lower index (6,6,2,1 +3 -> 3,2,1,1)",
        std::to_string(c[0]) + "," + std::to_string(c[1]) + "," +
            std::to_string(c[2]) + "," + std::to_string(c[3]));
  // Hand-worked packing (see the file comment in Placement.h):
  // replicas 3.33 x3 (expert 0), 1, 1, 1 onto 2 ranks of 3 slots.
  ExpertPlacement p;
  checkPlacement("EPLB packing 4 experts + 2 on 2 ranks",
                 placeBalanced({10, 1, 1, 1}, 2, 2, p), p,
                 "r0: [0 0 3] r1: [0 1 2]");
  // Uniform loads: heaviest-first packing with ties to the lower rank is a
  // round robin.
  checkPlacement("EPLB with equal loads is round robin",
                 placeBalanced({1, 1, 1, 1, 1, 1}, 3, 0, p), p,
                 "r0: [0 3] r1: [1 4] r2: [2 5]");
  checkError("EPLB divisibility",
             placeBalanced(std::vector<double>(256, 1.0), 64, 32, p),
             "balanced placement: 256 experts + 32 redundant replicas = 288 "
             "slots do not split evenly over 64 ranks");
  checkError("EPLB too few slots",
             placeBalanced(std::vector<double>(4, 1.0), 8, 0, p),
             "balanced placement: 4 experts + 0 redundant replicas = 4 slots "
             "cannot fill 8 ranks");
  checkError("EPLB negative load", placeBalanced({1, -1}, 1, 0, p),
             "balanced placement: load of expert 1 must be finite and >= 0");

  // Invariants on a skewed load: E = 64, N = 8, R = 16.
  const int E = 64, N = 8, R = 16;
  std::vector<double> load(E);
  for (int e = 0; e < E; ++e)
    load[e] = 1000.0 / (e + 1); // hottest experts contiguous on rank 0
  std::vector<int> counts;
  Status st = placeBalanced(load, N, R, p, &counts);
  check(static_cast<bool>(st), "EPLB E=64 N=8 R=16 succeeds", st.message);
  if (!st)
    return;
  bool slotsOk = true, replicasOk = true, distinctOk = true, countsOk = true;
  int total = 0;
  for (int r = 0; r < N; ++r)
    slotsOk = slotsOk && p.rankSlots(r).size() == (E + R) / N;
  for (int e = 0; e < E; ++e) {
    total += counts[e];
    replicasOk = replicasOk && !p.replicas(e).empty();
    countsOk = countsOk && p.replicas(e).size() ==
                               static_cast<size_t>(counts[e]);
    const auto &reps = p.replicas(e);
    for (size_t i = 0; i < reps.size(); ++i)
      for (size_t j = 0; j < i; ++j)
        distinctOk = distinctOk && reps[i].rank != reps[j].rank;
  }
  check(total == E + R, "EPLB: E + R replicas in all",
        std::to_string(total));
  check(slotsOk, "EPLB: every rank has (E+R)/N = 10 slots");
  check(replicasOk, "EPLB: every expert has at least one replica");
  check(countsOk, "EPLB: the placement holds the replication counts");
  check(distinctOk, "EPLB: replicas of an expert on distinct ranks");
  check(counts[0] > 1 && counts[E - 1] == 1,
        "EPLB: the hottest expert is replicated, the coldest is not");
  check(static_cast<bool>(p.validate()), "EPLB placement validates");

  // Balance improves over contiguous (one layer, counts = load).
  RoutingLayer layer;
  for (int e = 0; e < E; ++e)
    layer.expertCounts.push_back(static_cast<int64_t>(load[e]));
  int64_t tokens = 0;
  for (int64_t v : layer.expertCounts)
    tokens += v;
  ExpertPlacement contiguous, balanced0;
  placeContiguous(E, N, contiguous);
  placeBalanced(load, N, 0, balanced0);
  LayerLoad lc, lb0, lbr;
  evaluateLayer(contiguous, layer, tokens, 1, 1, 1, lc);
  evaluateLayer(balanced0, layer, tokens, 1, 1, 1, lb0);
  evaluateLayer(p, layer, tokens, 1, 1, 1, lbr);
  check(lb0.imbalance < lc.imbalance && lbr.imbalance < lb0.imbalance &&
            lbr.imbalance < 1.1 && lc.imbalance > 2.5,
        "EPLB max/mean: contiguous > balanced > balanced + redundant",
        fmt(lc.imbalance) + " " + fmt(lb0.imbalance) + " " +
            fmt(lbr.imbalance));
  check(near(lbr.meanLoad, lc.meanLoad), "EPLB keeps the total load");

  // More replicas than ranks: expert 1 (6 -> 3 replicas of 2) must double
  // up on 2 ranks; expert 0 (2 -> 2 replicas of 1, tie with 6/3 to the
  // lower id) is on both ranks.
  checkPlacement("EPLB 5 experts + 3 on 2 ranks",
                 placeBalanced({2, 6, 1, 1, 1}, 2, 3, p), p,
                 "r0: [0 1 1 4] r1: [0 1 2 3]");
  // Expert 0 gets 3 replicas on 3 ranks of 2 slots: all distinct.
  st = placeBalanced({100, 1, 1, 1}, 3, 2, p, &counts);
  distinctOk = static_cast<bool>(st);
  for (int e = 0; st && e < 4; ++e)
    for (size_t i = 1; i < p.replicas(e).size(); ++i)
      distinctOk = distinctOk &&
                   p.replicas(e)[i].rank != p.replicas(e)[i - 1].rank;
  check(distinctOk && counts[0] == 3,
        "EPLB 4 experts + 2 on 3 ranks: expert 0 on 3 distinct ranks",
        p.describe());

  // Determinism: the same input twice gives the same placement.
  ExpertPlacement again;
  placeBalanced(load, N, R, again);
  ExpertPlacement first;
  placeBalanced(load, N, R, first);
  check(first.describe() == again.describe(), "EPLB is deterministic");
}

static void loadModel() {
  // E=4, k=2, N=2, contiguous: rank 0 {0,1}, rank 1 {2,3}; 4 tokens, homes
  // 0,0,1,1. t0 [0,1] local; t1 [0,2] -> rank 1; t2 [2,3] local; t3 [0,1]
  // -> rank 0. Remote sends 2, bytes 2 * 2 * 8 * 2 = 64; loads 5 and 3.
  ExpertPlacement p;
  placeContiguous(4, 2, p);
  RoutingLayer layer;
  layer.expertCounts = {3, 2, 2, 1};
  layer.assignments = {0, 1, 0, 2, 2, 3, 0, 1};
  LayerLoad ll;
  Status st = evaluateLayer(p, layer, 4, 2, 8, 2, ll);
  check(st && near(ll.rankLoad[0], 5) && near(ll.rankLoad[1], 3) &&
            near(ll.imbalance, 1.25) && near(ll.meanLoad, 4),
        "load model loads 5/3, max/mean 1.25",
        fmt(ll.rankLoad[0]) + " " + fmt(ll.rankLoad[1]));
  check(st && near(ll.alltoallBytes, 64) && near(ll.remoteSends, 2) &&
            !ll.estimated,
        "load model exact bytes 64", fmt(ll.alltoallBytes));
  check(st && near(ll.localTokens, 2) && near(ll.localSlots, 5),
        "load model local tokens 2, local slots 5",
        fmt(ll.localTokens) + " " + fmt(ll.localSlots));
  // A token with two experts on the same remote rank sends once:
  // t1 [2,3] from home 0 -> one send.
  layer.assignments = {0, 1, 2, 3, 2, 3, 0, 1};
  layer.expertCounts = {2, 2, 2, 2};
  st = evaluateLayer(p, layer, 4, 2, 8, 2, ll);
  check(st && near(ll.remoteSends, 2) && near(ll.alltoallBytes, 64),
        "one send per distinct remote rank", fmt(ll.remoteSends));

  // Counts only: independence estimate. q = (5/8, 3/8); home 0 hits rank 1
  // with 1 - (5/8)^2 = 0.609375, home 1 hits rank 0 with 1 - (3/8)^2 =
  // 0.859375; 2 tokens each: 2.9375 sends, 94 bytes.
  layer.expertCounts = {3, 2, 2, 1};
  layer.assignments.clear();
  st = evaluateLayer(p, layer, 4, 2, 8, 2, ll);
  check(st && ll.estimated && near(ll.remoteSends, 2.9375) &&
            near(ll.alltoallBytes, 94) && near(ll.rankLoad[0], 5),
        "load model independence estimate 94 bytes", fmt(ll.alltoallBytes));

  // Redundant replicas split an expert's count evenly.
  ExpertPlacement q;
  ExpertPlacement::fromRankSlots(2, {{0, 1}, {0}}, q);
  layer.expertCounts = {6, 3};
  st = evaluateLayer(q, layer, 9, 1, 1, 1, ll);
  check(st && near(ll.rankLoad[0], 6) && near(ll.rankLoad[1], 3),
        "replicas split the load evenly (3 + 3, 3)");
  layer.expertCounts = {1, 2, 3};
  checkError("load model: wrong count length",
             evaluateLayer(q, layer, 9, 1, 1, 1, ll),
             "load model: layer 0 has 3 expert counts, the placement 2 "
             "experts");
}

static void replicaRule() {
  ExpertPlacement p;
  ExpertPlacement::fromRankSlots(3, {{0, 2}, {0, 1}, {0, 1}}, p);
  // Expert 0: (0,0), (1,0), (2,0); token t -> t mod 3.
  bool ok = true;
  for (int64_t t = 0; t < 30; ++t)
    ok = ok && p.chooseReplica(0, t).rank == static_cast<int>(t % 3) &&
         p.chooseReplica(1, t).rank == 1 + static_cast<int>(t % 2) &&
         p.chooseReplica(2, t) == ReplicaSlot{0, 1};
  check(ok, "replica rule: token t uses replica t mod replicas");
  check(p.chooseReplica(0, int64_t(1) << 40) ==
            p.chooseReplica(0, (int64_t(1) << 40) % 3),
        "replica rule on large token indices");
  check(homeRank(0, 10, 4) == 0 && homeRank(2, 10, 4) == 0 &&
            homeRank(3, 10, 4) == 1 && homeRank(5, 10, 4) == 2 &&
            homeRank(9, 10, 4) == 3,
        "home rank floor(t * N / T)");
}

static void generators() {
  SplitMix64 sm(0);
  check(sm.next() == 0xE220A8397B1DCDAFULL, "splitmix64(0) first value");
  Xoshiro256 a(42), b(42), c(43);
  bool same = true, differ = false;
  for (int i = 0; i < 100; ++i) {
    uint64_t x = a.next(), y = b.next(), z = c.next();
    same = same && x == y;
    differ = differ || x != z;
  }
  check(same && differ, "xoshiro256 reproducible per seed");
  Xoshiro256 d(7);
  bool inRange = true;
  std::vector<int> hist(6, 0);
  for (int i = 0; i < 6000; ++i) {
    uint64_t v = d.below(6);
    inRange = inRange && v < 6;
    if (v < 6)
      ++hist[v];
  }
  bool spread = true;
  for (int h : hist)
    spread = spread && h > 850 && h < 1150;
  check(inRange && spread, "below(6) in range and roughly uniform");

  check(zipfWeight(0, 1.0) == (uint64_t(1) << 40) &&
            zipfWeight(1, 1.0) == (uint64_t(1) << 39) &&
            zipfWeight(3, 1.0) == (uint64_t(1) << 38) &&
            zipfWeight(9, 0.0) == (uint64_t(1) << 40),
        "zipf weights 2^40/(r+1)^s exact at powers of two");
  uint64_t w = zipfWeight(2, 1.0), want = 366503875925; // round(2^40 / 3)
  check(w >= want - 1 && w <= want + 1, "zipf weight 2^40/3",
        std::to_string(w));
  w = zipfWeight(99, 1.5); // 2^40 / 1000
  check(w >= 1099511627 && w <= 1099511628, "zipf weight 2^40/100^1.5",
        std::to_string(w));

  SyntheticProfileOptions o;
  o.numExperts = 16;
  o.topK = 4;
  o.tokens = 500;
  o.skew = 1.2;
  o.seed = 5;
  o.layers = 2;
  RoutingProfile p1, p2;
  Status st = syntheticRoutingProfile(o, p1);
  syntheticRoutingProfile(o, p2);
  bool distinct = static_cast<bool>(st), sums = distinct;
  for (const RoutingLayer &l : p1.layers) {
    int64_t sum = 0;
    for (int64_t v : l.expertCounts)
      sum += v;
    sums = sums && sum == o.tokens * o.topK &&
           l.assignments.size() == static_cast<size_t>(o.tokens * o.topK);
    for (int64_t t = 0; t < o.tokens; ++t)
      for (int i = 0; i < o.topK; ++i)
        for (int j = 0; j < i; ++j)
          distinct = distinct && l.assignments[t * o.topK + i] !=
                                     l.assignments[t * o.topK + j];
  }
  check(sums, "synthetic counts sum to tokens * k");
  check(distinct, "synthetic tokens draw k distinct experts");
  check(st && p1.layers[0].assignments == p2.layers[0].assignments &&
            p1.layers[1].assignments == p2.layers[1].assignments,
        "synthetic profile reproducible");
  check(st && p1.layers[0].assignments != p1.layers[1].assignments,
        "synthetic layers differ");
  // Skew: the busiest expert gets far more than the quietest; s = 0 is
  // roughly uniform.
  int64_t mx = 0, mn = INT64_MAX;
  for (int64_t v : p1.layers[0].expertCounts) {
    mx = std::max(mx, v);
    mn = std::min(mn, v);
  }
  check(mx > 4 * mn, "skew 1.2 concentrates load",
        std::to_string(mx) + " vs " + std::to_string(mn));
  o.skew = 0;
  o.tokens = 4000;
  syntheticRoutingProfile(o, p1);
  mx = 0, mn = INT64_MAX;
  for (int64_t v : p1.layers[0].expertCounts) {
    mx = std::max(mx, v);
    mn = std::min(mn, v);
  }
  check(mx < 1.2 * mn, "skew 0 is near uniform",
        std::to_string(mx) + " vs " + std::to_string(mn));

  // Round trip through JSON, and parse errors naming the field.
  JsonValue json = routingProfileToJson(p2);
  RoutingProfile back;
  st = parseRoutingProfile(json, back);
  check(st && back.layers.size() == 2 &&
            back.layers[1].assignments == p2.layers[1].assignments &&
            back.layers[1].expertCounts == p2.layers[1].expertCounts,
        "profile JSON round trip", st.message);
  auto parseText = [](const std::string &text) {
    JsonValue v;
    Status s = parseJson(text, v);
    RoutingProfile rp;
    return s ? parseRoutingProfile(v, rp) : s;
  };
  std::string head = "{\"format\": \"moe-mlir-routing-profile\", "
                     "\"version\": 1, \"num_experts\": 4, \"top_k\": 2, "
                     "\"tokens\": 2, ";
  checkError("profile: wrong count length",
             parseText(head + "\"layers\": [{\"layer\": 0, "
                              "\"expert_counts\": [1, 2, 1]}]}"),
             "routing profile: 'layers[0].expert_counts' has 3 entries, "
             "expected num_experts 4");
  checkError("profile: missing layers", parseText(head + "\"x\": 1}"),
             "routing profile: missing field 'layers'");
  checkError("profile: repeated expert",
             parseText(head + "\"layers\": [{\"layer\": 0, "
                              "\"assignments\": [[0, 1], [2, 2]]}]}"),
             "routing profile: 'layers[0].assignments[1]' repeats expert 2");
  checkError("profile: counts disagree with assignments",
             parseText(head + "\"layers\": [{\"layer\": 0, "
                              "\"expert_counts\": [1, 1, 1, 0], "
                              "\"assignments\": [[0, 1], [2, 3]]}]}"),
             "routing profile: 'layers[0].expert_counts[3]' is 0 but the "
             "assignments route 1 tokens to expert 3");
  checkError("profile: top_k above num_experts",
             parseText("{\"format\": \"moe-mlir-routing-profile\", "
                       "\"version\": 1, \"num_experts\": 4, \"top_k\": 5}"),
             "routing profile: 'top_k' is 5, expected 1..4");
}

int main(int argc, char **argv) {
  if (argc == 4 && std::strcmp(argv[1], "--prng") == 0) {
    uint64_t seed = std::strtoull(argv[2], nullptr, 10);
    int n = std::atoi(argv[3]);
    SplitMix64 sm(seed);
    Xoshiro256 x(seed);
    for (int i = 0; i < n; ++i)
      std::printf("splitmix64 %016" PRIx64 "\n", sm.next());
    for (int i = 0; i < n; ++i)
      std::printf("xoshiro256 %016" PRIx64 "\n", x.next());
    return 0;
  }
  strategies();
  eplb();
  loadModel();
  replicaRule();
  generators();
  if (failures) {
    std::printf("moe-placement-unittests: %d of %d checks FAILED\n", failures,
                checks);
    return 1;
  }
  std::printf("moe-placement-unittests: all %d checks passed\n", checks);
  return 0;
}
