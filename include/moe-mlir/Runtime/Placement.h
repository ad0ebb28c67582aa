//===- Placement.h - Expert placement, routing profiles, load model -*- C++ -*-===//
//
// Part of the moe-mlir runtime: C++17 standard library only (no MLIR, no
// LLVM), no exceptions (fallible operations return a Status with a one-line
// message).
//
// Expert parallelism places the E experts of an MoE layer on N ranks. A
// placement lists, for each rank, its local expert slots (expert ids, sorted
// ascending; a rank may hold several replicas of one expert, which are then
// adjacent) and, derived from that, for each expert its replicas as
// (rank, local slot) pairs in ascending (rank, slot) order. Strategies:
//  - contiguous: rank r holds the experts [start(r), start(r+1)); when
//    E % N != 0 the first E % N ranks hold one expert more (so 10 experts
//    on 4 ranks are 3, 3, 2, 2);
//  - round-robin: expert e is on rank e mod N (local slot e / N);
//  - balanced: DeepSeek's EPLB, from its published description. R
//    redundant replicas are added one at a time, each to the expert with the
//    largest load per replica (load[e] / replicas[e], ties to the lower
//    expert id); then the E + R replicas, each weighing its expert's load per
//    replica, are packed heaviest first (ties: lower expert id) onto N ranks
//    of (E + R) / N slots each (E + R must be a multiple of N), each to the
//    rank of least load that has a free slot and does not yet hold that
//    expert (ties: lower rank), or, when every rank with a free slot holds
//    it, the least loaded rank with a free slot. A repair pass then swaps a
//    duplicate replica with the replica of closest weight on another rank
//    when that makes both ranks' experts distinct, so replicas of one expert
//    are on distinct ranks wherever the greedy result allows it.
// Everything is deterministic (integer and IEEE basic arithmetic only).
//
// Replica rule (what the sharding pass and the runtime compute on every
// rank, identically): token t of a step (its index in the step's global
// token order, tokens laid out rank-major as homeRank() says) routed to
// expert e is served by replica  t mod replicas(e).size()  of e, i.e.
// replicas(e)[t % replicas(e).size()]. Over a step an expert's tokens thus
// split evenly (to within one) over its replicas, whatever the rank.
//
// Token home rank: in a step of T tokens on N ranks, token t lives on rank
// floor(t * N / T) (contiguous blocks; sizes differ by at most one).
//
// Load model (per layer): the load of a rank is the token-slots it serves;
// an expert's count splits evenly over its replicas (fractional). All-to-all
// bytes: each token sends its hidden row once to each DISTINCT rank other
// than its home among its k experts' chosen replicas, and receives it back,
// so bytes = 2 * remoteRanks * hidden * bytesPerElement summed over tokens.
// This needs the token -> experts assignment; with counts only, it is
// estimated under independence: each of the k choices picks expert e with
// probability p(e) = count(e) / sum(counts) and its replicas evenly, rank r
// is hit by one choice with probability q(r) = sum of p(e) * (replicas of
// e on r) / replicas(e), and by at least one of k with 1 - (1 - q(r))^k.
//
// Routing profile (JSON, see docs/expert-placement.md):
//   {"format": "moe-mlir-routing-profile", "version": 1, "num_experts": E,
//    "top_k": k, "tokens": T,
//    "layers": [{"layer": 0, "expert_counts": [E ints],
//                "assignments": [[k expert ids] per token]  (optional)}]}
// Synthetic profiles: expert popularity 1 / rank^s over a seeded random
// permutation of the experts (s = 0: uniform), each token drawing k distinct
// experts (without replacement) with probability proportional to that
// popularity. The generator is xoshiro256** seeded through splitmix64; the
// popularity weights are integers computed with the library's own exp/log
// (basic IEEE operations only), so profiles are the same on every platform.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_RUNTIME_PLACEMENT_H
#define MOE_MLIR_RUNTIME_PLACEMENT_H

#include "moe-mlir/Runtime/Json.h"
#include "moe-mlir/Runtime/Npy.h" // Status

#include <cstdint>
#include <string>
#include <vector>

namespace moe_rt {

//===----------------------------------------------------------------------===//
// Placement
//===----------------------------------------------------------------------===//

struct ReplicaSlot {
  int rank = 0;
  int slot = 0; // index into the rank's local slots
  bool operator==(const ReplicaSlot &o) const {
    return rank == o.rank && slot == o.slot;
  }
};

class ExpertPlacement {
public:
  /// Builds a placement from each rank's local slots (sorted here) and
  /// validates it: N >= 1, every rank holds at least one slot, every id is in
  /// [0, E), every expert has at least one replica.
  static Status fromRankSlots(int numExperts,
                              std::vector<std::vector<int>> rankSlots,
                              ExpertPlacement &out);

  int numExperts() const { return numExperts_; }
  int numRanks() const { return static_cast<int>(rankSlots_.size()); }
  /// Total slots (E + number of redundant replicas).
  int numSlots() const;
  const std::vector<int> &rankSlots(int rank) const { return rankSlots_[rank]; }
  const std::vector<ReplicaSlot> &replicas(int expert) const {
    return replicas_[expert];
  }
  /// The replica that serves token `token` routed to `expert` (the rule in
  /// the file comment): replicas(expert)[token % replicas(expert).size()].
  ReplicaSlot chooseReplica(int expert, int64_t token) const;
  /// Checks the invariants fromRankSlots establishes (one-line message).
  Status validate() const;
  /// "r0: [0 1 2] r1: [3 4]" (for messages and --verbose).
  std::string describe() const;

private:
  int numExperts_ = 0;
  std::vector<std::vector<int>> rankSlots_;
  std::vector<std::vector<ReplicaSlot>> replicas_;
};

Status placeContiguous(int numExperts, int numRanks, ExpertPlacement &out);
Status placeRoundRobin(int numExperts, int numRanks, ExpertPlacement &out);
/// EPLB-style placement for the measured per-expert `load` (>= 0, one entry
/// per expert) with `redundant` extra replicas. `replicaCounts`, when given,
/// receives the number of replicas of each expert.
Status placeBalanced(const std::vector<double> &load, int numRanks,
                     int redundant, ExpertPlacement &out,
                     std::vector<int> *replicaCounts = nullptr);
/// The replication step alone: replicas per expert after adding `redundant`.
std::vector<int> eplbReplicaCounts(const std::vector<double> &load,
                                   int redundant);

//===----------------------------------------------------------------------===//
// Routing profiles
//===----------------------------------------------------------------------===//

struct RoutingLayer {
  int layer = 0;
  std::vector<int64_t> expertCounts; // E entries
  /// tokens * topK expert ids, token-major; empty when the profile has none.
  std::vector<int32_t> assignments;
};

struct RoutingProfile {
  int numExperts = 0;
  int topK = 0;
  int64_t tokens = 0;
  std::vector<RoutingLayer> layers;
};

/// Parses and checks a profile; messages name the field
/// ("layers[1].expert_counts has 7 entries, expected num_experts 8").
Status parseRoutingProfile(const JsonValue &json, RoutingProfile &out);
Status readRoutingProfile(const std::string &path, RoutingProfile &out);
JsonValue routingProfileToJson(const RoutingProfile &profile);

/// splitmix64 (Steele, Lea, Flood): the seeding generator.
class SplitMix64 {
public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next();

private:
  uint64_t state_;
};

/// xoshiro256** (Blackman, Vigna), state filled from SplitMix64(seed).
class Xoshiro256 {
public:
  explicit Xoshiro256(uint64_t seed);
  uint64_t next();
  /// Uniform in [0, bound) without modulo bias (rejection); bound >= 1.
  uint64_t below(uint64_t bound);

private:
  uint64_t s_[4];
};

/// Popularity weight of the expert of popularity rank `rank` (0-based):
/// round(2^40 / (rank + 1)^skew), at least 1; deterministic everywhere.
uint64_t zipfWeight(int rank, double skew);

struct SyntheticProfileOptions {
  int numExperts = 0;
  int topK = 0;
  int64_t tokens = 0;
  double skew = 0; // Zipf exponent s >= 0
  uint64_t seed = 0;
  int layers = 1;
};

/// Layer l is generated by Xoshiro256(seed + l * 0x9E3779B97F4A7C15): a
/// Fisher-Yates permutation of the experts (expert perm[i] gets popularity
/// rank i), then for each token k draws without replacement.
Status syntheticRoutingProfile(const SyntheticProfileOptions &options,
                               RoutingProfile &out);

//===----------------------------------------------------------------------===//
// Load model
//===----------------------------------------------------------------------===//

/// floor(token * numRanks / tokens).
int homeRank(int64_t token, int64_t tokens, int numRanks);

struct LayerLoad {
  std::vector<double> rankLoad; // token-slots per rank
  double minLoad = 0, meanLoad = 0, maxLoad = 0;
  double imbalance = 0;        // maxLoad / meanLoad (1 when all zero)
  double alltoallBytes = 0;    // both directions
  double remoteSends = 0;      // token rows sent to remote ranks (one way)
  double localTokens = 0;      // tokens whose k experts all run at home
  double localSlots = 0;       // token-slots served at home
  bool estimated = false;      // counts only: independence estimate
};

Status evaluateLayer(const ExpertPlacement &placement,
                     const RoutingLayer &layer, int64_t tokens, int topK,
                     int64_t hidden, int64_t bytesPerElement, LayerLoad &out);

} // namespace moe_rt

#endif // MOE_MLIR_RUNTIME_PLACEMENT_H
