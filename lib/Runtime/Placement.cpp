//===- Placement.cpp - Expert placement, routing profiles, load model -----===//
//
// Part of the moe-mlir runtime (C++17 standard library only).
//
// Design: placements are plain vectors (rank -> slots, expert -> replicas),
// built by the strategies and checked by one validator; the EPLB steps are
// the greedy replicate / pack described in Placement.h with explicit tie
// rules; synthetic profiles use integer weights and integer sampling so that
// they do not depend on the platform's libm or <random>. Floating-point
// contraction is off in this file so that the little arithmetic there is
// (exp/log series, load sums) rounds the same everywhere.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Runtime/Placement.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#pragma STDC FP_CONTRACT OFF

namespace moe_rt {

namespace {
std::string str(int64_t v) { return std::to_string(v); }
} // namespace

//===----------------------------------------------------------------------===//
// ExpertPlacement
//===----------------------------------------------------------------------===//

Status ExpertPlacement::fromRankSlots(int numExperts,
                                      std::vector<std::vector<int>> rankSlots,
                                      ExpertPlacement &out) {
  ExpertPlacement p;
  p.numExperts_ = numExperts;
  p.rankSlots_ = std::move(rankSlots);
  for (auto &slots : p.rankSlots_)
    std::sort(slots.begin(), slots.end());
  if (numExperts >= 1) {
    p.replicas_.assign(numExperts, {});
    for (size_t r = 0; r < p.rankSlots_.size(); ++r)
      for (size_t s = 0; s < p.rankSlots_[r].size(); ++s) {
        int e = p.rankSlots_[r][s];
        if (e >= 0 && e < numExperts)
          p.replicas_[e].push_back(
              {static_cast<int>(r), static_cast<int>(s)});
      }
  }
  Status st = p.validate();
  if (!st)
    return st;
  out = std::move(p);
  return Status::success();
}

Status ExpertPlacement::validate() const {
  if (numExperts_ < 1)
    return Status::error("placement: the number of experts must be >= 1, got " +
                         str(numExperts_));
  if (rankSlots_.empty())
    return Status::error("placement: no ranks");
  for (size_t r = 0; r < rankSlots_.size(); ++r) {
    if (rankSlots_[r].empty())
      return Status::error("placement: rank " + str(r) + " holds no expert");
    for (int e : rankSlots_[r])
      if (e < 0 || e >= numExperts_)
        return Status::error("placement: rank " + str(r) + " holds expert " +
                             str(e) + ", outside [0, " + str(numExperts_) +
                             ")");
  }
  if (replicas_.size() != static_cast<size_t>(numExperts_))
    return Status::error("placement: replica table has " +
                         str(replicas_.size()) + " experts, expected " +
                         str(numExperts_));
  for (int e = 0; e < numExperts_; ++e) {
    if (replicas_[e].empty())
      return Status::error("placement: expert " + str(e) + " has no replica");
    for (const ReplicaSlot &rs : replicas_[e])
      if (rs.rank < 0 || rs.rank >= numRanks() || rs.slot < 0 ||
          rs.slot >= static_cast<int>(rankSlots_[rs.rank].size()) ||
          rankSlots_[rs.rank][rs.slot] != e)
        return Status::error("placement: replica (rank " + str(rs.rank) +
                             ", slot " + str(rs.slot) + ") of expert " +
                             str(e) + " does not hold it");
  }
  return Status::success();
}

int ExpertPlacement::numSlots() const {
  int n = 0;
  for (const auto &slots : rankSlots_)
    n += static_cast<int>(slots.size());
  return n;
}

ReplicaSlot ExpertPlacement::chooseReplica(int expert, int64_t token) const {
  const std::vector<ReplicaSlot> &reps = replicas_[expert];
  uint64_t t = static_cast<uint64_t>(token);
  return reps[t % reps.size()];
}

std::string ExpertPlacement::describe() const {
  std::string s;
  for (size_t r = 0; r < rankSlots_.size(); ++r) {
    if (r)
      s += ' ';
    s += 'r' + str(r) + ": [";
    for (size_t i = 0; i < rankSlots_[r].size(); ++i)
      s += (i ? " " : "") + str(rankSlots_[r][i]);
    s += ']';
  }
  return s;
}

//===----------------------------------------------------------------------===//
// Strategies
//===----------------------------------------------------------------------===//

static Status checkSizes(const char *what, int numExperts, int numRanks) {
  if (numExperts < 1)
    return Status::error(std::string(what) +
                         " placement: the number of experts must be >= 1, "
                         "got " +
                         str(numExperts));
  if (numRanks < 1)
    return Status::error(std::string(what) +
                         " placement: the number of ranks must be >= 1, got " +
                         str(numRanks));
  if (numRanks > numExperts)
    return Status::error(std::string(what) + " placement: " + str(numExperts) +
                         " experts cannot fill " + str(numRanks) +
                         " ranks (more ranks than experts needs redundant "
                         "replicas)");
  return Status::success();
}

Status placeContiguous(int numExperts, int numRanks, ExpertPlacement &out) {
  Status st = checkSizes("contiguous", numExperts, numRanks);
  if (!st)
    return st;
  std::vector<std::vector<int>> slots(numRanks);
  int base = numExperts / numRanks, extra = numExperts % numRanks, e = 0;
  for (int r = 0; r < numRanks; ++r)
    for (int i = 0; i < base + (r < extra ? 1 : 0); ++i)
      slots[r].push_back(e++);
  return ExpertPlacement::fromRankSlots(numExperts, std::move(slots), out);
}

Status placeRoundRobin(int numExperts, int numRanks, ExpertPlacement &out) {
  Status st = checkSizes("round-robin", numExperts, numRanks);
  if (!st)
    return st;
  std::vector<std::vector<int>> slots(numRanks);
  for (int e = 0; e < numExperts; ++e)
    slots[e % numRanks].push_back(e);
  return ExpertPlacement::fromRankSlots(numExperts, std::move(slots), out);
}

std::vector<int> eplbReplicaCounts(const std::vector<double> &load,
                                   int redundant) {
  std::vector<int> count(load.size(), 1);
  if (load.empty())
    return count;
  for (int i = 0; i < redundant; ++i) {
    size_t best = 0;
    for (size_t e = 1; e < load.size(); ++e) {
      // load[e] / count[e] > load[best] / count[best], without division.
      double lhs = load[e] * count[best], rhs = load[best] * count[e];
      if (lhs > rhs)
        best = e;
    }
    ++count[best];
  }
  return count;
}

Status placeBalanced(const std::vector<double> &load, int numRanks,
                     int redundant, ExpertPlacement &out,
                     std::vector<int> *replicaCounts) {
  int numExperts = static_cast<int>(load.size());
  if (numExperts < 1)
    return Status::error("balanced placement: empty load vector");
  if (numRanks < 1)
    return Status::error(
        "balanced placement: the number of ranks must be >= 1, got " +
        str(numRanks));
  if (redundant < 0)
    return Status::error(
        "balanced placement: redundant replicas must be >= 0, got " +
        str(redundant));
  for (int e = 0; e < numExperts; ++e)
    if (!(load[e] >= 0) || !std::isfinite(load[e]))
      return Status::error("balanced placement: load of expert " + str(e) +
                           " must be finite and >= 0");
  int64_t total = static_cast<int64_t>(numExperts) + redundant;
  std::string slotsText = str(numExperts) + " experts + " + str(redundant) +
                          " redundant replicas = " + str(total) + " slots";
  if (total < numRanks)
    return Status::error("balanced placement: " + slotsText +
                         " cannot fill " + str(numRanks) + " ranks");
  if (total % numRanks != 0)
    return Status::error("balanced placement: " + slotsText +
                         " do not split evenly over " + str(numRanks) +
                         " ranks");
  int capacity = static_cast<int>(total / numRanks);

  std::vector<int> count = eplbReplicaCounts(load, redundant);
  std::vector<double> weight(numExperts);
  for (int e = 0; e < numExperts; ++e)
    weight[e] = load[e] / count[e];

  // Replicas heaviest first; ties by lower expert id.
  std::vector<int> items;
  items.reserve(total);
  for (int e = 0; e < numExperts; ++e)
    for (int i = 0; i < count[e]; ++i)
      items.push_back(e);
  std::sort(items.begin(), items.end(), [&](int a, int b) {
    if (weight[a] != weight[b])
      return weight[a] > weight[b];
    return a < b;
  });

  std::vector<double> rankLoad(numRanks, 0.0);
  std::vector<std::vector<int>> rankItems(numRanks);
  std::vector<int> holds(static_cast<size_t>(numRanks) * numExperts, 0);
  auto held = [&](int r, int e) -> int & {
    return holds[static_cast<size_t>(r) * numExperts + e];
  };
  for (int e : items) {
    int best = -1;
    for (int pass = 0; pass < 2 && best < 0; ++pass)
      for (int r = 0; r < numRanks; ++r) {
        if (static_cast<int>(rankItems[r].size()) >= capacity)
          continue;
        if (pass == 0 && held(r, e))
          continue;
        if (best < 0 || rankLoad[r] < rankLoad[best])
          best = r;
      }
    rankItems[best].push_back(e);
    rankLoad[best] += weight[e];
    ++held(best, e);
  }

  // Repair: a rank holding expert e twice swaps one copy for the replica of
  // closest weight on another rank, when neither rank then holds a duplicate.
  for (int r = 0; r < numRanks; ++r) {
    for (size_t i = 0; i < rankItems[r].size(); ++i) {
      int e = rankItems[r][i];
      if (held(r, e) < 2)
        continue;
      int bestRank = -1;
      size_t bestSlot = 0;
      double bestDiff = 0;
      for (int r2 = 0; r2 < numRanks; ++r2) {
        if (r2 == r || held(r2, e))
          continue;
        for (size_t j = 0; j < rankItems[r2].size(); ++j) {
          int f = rankItems[r2][j];
          if (held(r, f))
            continue;
          double diff = std::fabs(weight[e] - weight[f]);
          if (bestRank < 0 || diff < bestDiff) {
            bestRank = r2;
            bestSlot = j;
            bestDiff = diff;
          }
        }
      }
      if (bestRank < 0)
        continue;
      int f = rankItems[bestRank][bestSlot];
      rankItems[r][i] = f;
      rankItems[bestRank][bestSlot] = e;
      --held(r, e);
      ++held(r, f);
      --held(bestRank, f);
      ++held(bestRank, e);
      rankLoad[r] += weight[f] - weight[e];
      rankLoad[bestRank] += weight[e] - weight[f];
    }
  }

  if (replicaCounts)
    *replicaCounts = count;
  return ExpertPlacement::fromRankSlots(numExperts, std::move(rankItems), out);
}

//===----------------------------------------------------------------------===//
// Routing profiles
//===----------------------------------------------------------------------===//

static const char *kFormat = "moe-mlir-routing-profile";
static const int64_t kMaxExperts = 1 << 20;

static Status fieldError(const std::string &msg) {
  return Status::error("routing profile: " + msg);
}

static Status getInt(const JsonValue &obj, const std::string &key,
                     const std::string &where, int64_t lo, int64_t hi,
                     int64_t &out) {
  const JsonValue *v = obj.get(key);
  if (!v)
    return fieldError("missing field '" + where + key + "'");
  if (!v->isInt())
    return fieldError("'" + where + key + "' must be an integer, got " +
                      jsonKindName(v->kind()));
  if (v->asInt() < lo || v->asInt() > hi)
    return fieldError("'" + where + key + "' is " + str(v->asInt()) +
                      ", expected " + str(lo) + ".." + str(hi));
  out = v->asInt();
  return Status::success();
}

Status parseRoutingProfile(const JsonValue &json, RoutingProfile &out) {
  if (!json.isObject())
    return fieldError("expected a JSON object, got " +
                      std::string(jsonKindName(json.kind())));
  const JsonValue *format = json.get("format");
  if (!format)
    return fieldError("missing field 'format'");
  if (!format->isString() || format->asString() != kFormat)
    return fieldError("'format' must be \"" + std::string(kFormat) + "\"");
  int64_t version, experts, topK, tokens;
  Status st = getInt(json, "version", "", 1, 1, version);
  if (st)
    st = getInt(json, "num_experts", "", 1, kMaxExperts, experts);
  if (st)
    st = getInt(json, "top_k", "", 1, experts, topK);
  if (st)
    st = getInt(json, "tokens", "", 1, int64_t(1) << 40, tokens);
  if (!st)
    return st;
  const JsonValue *layers = json.get("layers");
  if (!layers)
    return fieldError("missing field 'layers'");
  if (!layers->isArray() || layers->size() == 0)
    return fieldError("'layers' must be a non-empty array");

  RoutingProfile p;
  p.numExperts = static_cast<int>(experts);
  p.topK = static_cast<int>(topK);
  p.tokens = tokens;
  for (size_t li = 0; li < layers->size(); ++li) {
    const JsonValue &lv = *layers->at(li);
    std::string where = "layers[" + str(li) + "]";
    if (!lv.isObject())
      return fieldError("'" + where + "' must be an object");
    RoutingLayer layer;
    int64_t index;
    st = getInt(lv, "layer", where + ".", 0, std::numeric_limits<int>::max(),
                index);
    if (!st)
      return st;
    layer.layer = static_cast<int>(index);
    const JsonValue *counts = lv.get("expert_counts");
    const JsonValue *assign = lv.get("assignments");
    if (!counts && !assign)
      return fieldError("missing field '" + where + ".expert_counts'");
    if (counts) {
      if (!counts->isArray())
        return fieldError("'" + where + ".expert_counts' must be an array");
      if (counts->size() != static_cast<size_t>(experts))
        return fieldError("'" + where + ".expert_counts' has " +
                          str(counts->size()) +
                          " entries, expected num_experts " + str(experts));
      for (size_t e = 0; e < counts->size(); ++e) {
        const JsonValue &c = *counts->at(e);
        if (!c.isInt() || c.asInt() < 0)
          return fieldError("'" + where + ".expert_counts[" + str(e) +
                            "]' must be an integer >= 0");
        layer.expertCounts.push_back(c.asInt());
      }
    }
    if (assign) {
      if (!assign->isArray())
        return fieldError("'" + where + ".assignments' must be an array");
      if (assign->size() != static_cast<size_t>(tokens))
        return fieldError("'" + where + ".assignments' has " +
                          str(assign->size()) + " tokens, expected tokens " +
                          str(tokens));
      std::vector<int64_t> derived(experts, 0);
      layer.assignments.reserve(static_cast<size_t>(tokens * topK));
      for (size_t t = 0; t < assign->size(); ++t) {
        const JsonValue &row = *assign->at(t);
        std::string rw = where + ".assignments[" + str(t) + "]";
        if (!row.isArray() || row.size() != static_cast<size_t>(topK))
          return fieldError("'" + rw + "' must be an array of top_k " +
                            str(topK) + " expert ids");
        for (size_t j = 0; j < row.size(); ++j) {
          const JsonValue &id = *row.at(j);
          if (!id.isInt() || id.asInt() < 0 || id.asInt() >= experts)
            return fieldError("'" + rw + "[" + str(j) +
                              "]' must be an expert id in [0, " +
                              str(experts) + ")");
          for (size_t j2 = 0; j2 < j; ++j2)
            if (row.at(j2)->asInt() == id.asInt())
              return fieldError("'" + rw + "' repeats expert " +
                                str(id.asInt()));
          layer.assignments.push_back(static_cast<int32_t>(id.asInt()));
          ++derived[id.asInt()];
        }
      }
      if (counts) {
        for (int64_t e = 0; e < experts; ++e)
          if (derived[e] != layer.expertCounts[e])
            return fieldError("'" + where + ".expert_counts[" + str(e) +
                              "]' is " + str(layer.expertCounts[e]) +
                              " but the assignments route " +
                              str(derived[e]) + " tokens to expert " + str(e));
      } else {
        layer.expertCounts = std::move(derived);
      }
    }
    p.layers.push_back(std::move(layer));
  }
  out = std::move(p);
  return Status::success();
}

Status readRoutingProfile(const std::string &path, RoutingProfile &out) {
  JsonValue json;
  JsonParseOptions options;
  options.maxSize = size_t(1) << 32;
  Status st = readJsonFile(path, json, options);
  if (!st)
    return st;
  st = parseRoutingProfile(json, out);
  if (!st)
    return Status::error(path + ": " + st.message);
  return Status::success();
}

JsonValue routingProfileToJson(const RoutingProfile &profile) {
  JsonValue root = JsonValue::object();
  root.set("format", JsonValue::string(kFormat));
  root.set("version", JsonValue::integer(1));
  root.set("num_experts", JsonValue::integer(profile.numExperts));
  root.set("top_k", JsonValue::integer(profile.topK));
  root.set("tokens", JsonValue::integer(profile.tokens));
  JsonValue layers = JsonValue::array();
  for (const RoutingLayer &layer : profile.layers) {
    JsonValue lv = JsonValue::object();
    lv.set("layer", JsonValue::integer(layer.layer));
    JsonValue counts = JsonValue::array();
    for (int64_t c : layer.expertCounts)
      counts.push(JsonValue::integer(c));
    lv.set("expert_counts", std::move(counts));
    if (!layer.assignments.empty()) {
      JsonValue rows = JsonValue::array();
      for (int64_t t = 0; t < profile.tokens; ++t) {
        JsonValue row = JsonValue::array();
        for (int j = 0; j < profile.topK; ++j)
          row.push(JsonValue::integer(layer.assignments[t * profile.topK + j]));
        rows.push(std::move(row));
      }
      lv.set("assignments", std::move(rows));
    }
    layers.push(std::move(lv));
  }
  root.set("layers", std::move(layers));
  return root;
}

//===----------------------------------------------------------------------===//
// Generators and synthetic profiles
//===----------------------------------------------------------------------===//

uint64_t SplitMix64::next() {
  state_ += 0x9E3779B97F4A7C15ULL;
  uint64_t z = state_;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

Xoshiro256::Xoshiro256(uint64_t seed) {
  SplitMix64 sm(seed);
  for (uint64_t &s : s_)
    s = sm.next();
}

static inline uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

uint64_t Xoshiro256::next() {
  uint64_t result = rotl(s_[1] * 5, 7) * 9;
  uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

uint64_t Xoshiro256::below(uint64_t bound) {
  // Reject the lowest (2^64 mod bound) values so that x mod bound is
  // uniform.
  uint64_t threshold = (0 - bound) % bound;
  for (;;) {
    uint64_t x = next();
    if (x >= threshold)
      return x % bound;
  }
}

// Natural logarithm and exponential from basic operations only (frexp and
// ldexp are exact), so the results do not depend on the platform's libm.
static const double kLn2 = 0.693147180559945309417232121458;

static double detLog(double x) {
  int j = 0;
  double m = std::frexp(x, &j); // x = m * 2^j, m in [0.5, 1)
  if (m < 0.70710678118654752440) {
    m = m * 2;
    j = j - 1;
  }
  double z = (m - 1) / (m + 1);
  double z2 = z * z;
  double term = z, sum = 0;
  for (int n = 1; n < 60; n += 2) {
    double add = term / n;
    sum = sum + add;
    term = term * z2;
  }
  double scaled = j * kLn2;
  return scaled + 2 * sum;
}

static double detExp(double x) {
  double n = std::floor(x / kLn2 + 0.5);
  double nl = n * kLn2;
  double f = x - nl;
  double term = 1, sum = 1;
  for (int i = 1; i < 30; ++i) {
    term = term * f / i;
    sum = sum + term;
  }
  return std::ldexp(sum, static_cast<int>(n));
}

uint64_t zipfWeight(int rank, double skew) {
  const double scale = 1099511627776.0; // 2^40
  double lr = detLog(static_cast<double>(rank) + 1);
  double e = -skew * lr;
  double w = std::floor(scale * detExp(e) + 0.5);
  if (!(w >= 1))
    return 1;
  if (w > scale)
    return static_cast<uint64_t>(scale);
  return static_cast<uint64_t>(w);
}

Status syntheticRoutingProfile(const SyntheticProfileOptions &o,
                               RoutingProfile &out) {
  if (o.numExperts < 1 || o.numExperts > kMaxExperts)
    return Status::error("synthetic profile: experts must be in 1.." +
                         str(kMaxExperts) + ", got " + str(o.numExperts));
  if (o.topK < 1 || o.topK > o.numExperts)
    return Status::error("synthetic profile: top-k must be in 1.." +
                         str(o.numExperts) + ", got " + str(o.topK));
  if (o.tokens < 1 || o.tokens > (int64_t(1) << 32))
    return Status::error("synthetic profile: tokens must be in 1..2^32, got " +
                         str(o.tokens));
  if (!(o.skew >= 0) || !std::isfinite(o.skew))
    return Status::error("synthetic profile: skew must be finite and >= 0");
  if (o.layers < 1)
    return Status::error("synthetic profile: layers must be >= 1, got " +
                         str(o.layers));
  RoutingProfile p;
  p.numExperts = o.numExperts;
  p.topK = o.topK;
  p.tokens = o.tokens;
  const int E = o.numExperts, K = o.topK;
  std::vector<uint64_t> rankWeight(E);
  for (int i = 0; i < E; ++i)
    rankWeight[i] = zipfWeight(i, o.skew);
  for (int l = 0; l < o.layers; ++l) {
    Xoshiro256 rng(o.seed + static_cast<uint64_t>(l) * 0x9E3779B97F4A7C15ULL);
    std::vector<int> perm(E);
    for (int i = 0; i < E; ++i)
      perm[i] = i;
    for (int i = E - 1; i > 0; --i)
      std::swap(perm[i], perm[rng.below(static_cast<uint64_t>(i) + 1)]);
    std::vector<uint64_t> weight(E);
    uint64_t total = 0;
    for (int i = 0; i < E; ++i) {
      weight[perm[i]] = rankWeight[i];
      total += rankWeight[i];
    }
    RoutingLayer layer;
    layer.layer = l;
    layer.expertCounts.assign(E, 0);
    layer.assignments.resize(static_cast<size_t>(o.tokens) * K);
    std::vector<char> taken(E, 0);
    for (int64_t t = 0; t < o.tokens; ++t) {
      uint64_t remaining = total;
      int32_t *row = &layer.assignments[static_cast<size_t>(t) * K];
      for (int j = 0; j < K; ++j) {
        uint64_t u = rng.below(remaining);
        int chosen = -1;
        for (int e = 0; e < E; ++e) {
          if (taken[e])
            continue;
          if (u < weight[e]) {
            chosen = e;
            break;
          }
          u -= weight[e];
        }
        taken[chosen] = 1;
        remaining -= weight[chosen];
        row[j] = chosen;
        ++layer.expertCounts[chosen];
      }
      for (int j = 0; j < K; ++j)
        taken[row[j]] = 0;
    }
    p.layers.push_back(std::move(layer));
  }
  out = std::move(p);
  return Status::success();
}

//===----------------------------------------------------------------------===//
// Load model
//===----------------------------------------------------------------------===//

int homeRank(int64_t token, int64_t tokens, int numRanks) {
  return static_cast<int>(token * numRanks / tokens);
}

Status evaluateLayer(const ExpertPlacement &placement,
                     const RoutingLayer &layer, int64_t tokens, int topK,
                     int64_t hidden, int64_t bytesPerElement, LayerLoad &out) {
  Status st = placement.validate();
  if (!st)
    return st;
  const int E = placement.numExperts(), N = placement.numRanks();
  if (layer.expertCounts.size() != static_cast<size_t>(E))
    return Status::error("load model: layer " + str(layer.layer) + " has " +
                         str(layer.expertCounts.size()) +
                         " expert counts, the placement " + str(E) +
                         " experts");
  if (tokens < 1 || topK < 1 || topK > E)
    return Status::error("load model: bad tokens " + str(tokens) +
                         " or top-k " + str(topK));
  if (!layer.assignments.empty() &&
      layer.assignments.size() != static_cast<size_t>(tokens * topK))
    return Status::error("load model: layer " + str(layer.layer) + " has " +
                         str(layer.assignments.size()) +
                         " assignments, expected tokens * top-k = " +
                         str(tokens * topK));
  LayerLoad r;
  r.rankLoad.assign(N, 0.0);
  for (int e = 0; e < E; ++e) {
    const auto &reps = placement.replicas(e);
    double share = static_cast<double>(layer.expertCounts[e]) /
                   static_cast<double>(reps.size());
    for (const ReplicaSlot &rs : reps)
      r.rankLoad[rs.rank] += share;
  }
  double sum = 0;
  r.minLoad = r.maxLoad = r.rankLoad[0];
  for (double v : r.rankLoad) {
    sum += v;
    r.minLoad = std::min(r.minLoad, v);
    r.maxLoad = std::max(r.maxLoad, v);
  }
  r.meanLoad = sum / N;
  r.imbalance = r.meanLoad > 0 ? r.maxLoad / r.meanLoad : 1.0;
  const double rowBytes =
      static_cast<double>(hidden) * static_cast<double>(bytesPerElement);

  if (!layer.assignments.empty()) {
    std::vector<int> ranks(topK);
    int64_t remote = 0, localTokens = 0, localSlots = 0;
    for (int64_t t = 0; t < tokens; ++t) {
      int home = homeRank(t, tokens, N);
      int distinctRemote = 0;
      bool allLocal = true;
      for (int j = 0; j < topK; ++j) {
        int e = layer.assignments[static_cast<size_t>(t) * topK + j];
        if (e < 0 || e >= E)
          return Status::error("load model: layer " + str(layer.layer) +
                               " token " + str(t) + " routes to expert " +
                               str(e) + ", outside [0, " + str(E) + ")");
        int rank = placement.chooseReplica(e, t).rank;
        ranks[j] = rank;
        if (rank == home) {
          ++localSlots;
          continue;
        }
        allLocal = false;
        bool seen = false;
        for (int j2 = 0; j2 < j; ++j2)
          seen = seen || ranks[j2] == rank;
        if (!seen)
          ++distinctRemote;
      }
      remote += distinctRemote;
      localTokens += allLocal ? 1 : 0;
    }
    r.remoteSends = static_cast<double>(remote);
    r.localTokens = static_cast<double>(localTokens);
    r.localSlots = static_cast<double>(localSlots);
  } else {
    r.estimated = true;
    double countSum = 0;
    for (int64_t c : layer.expertCounts)
      countSum += static_cast<double>(c);
    std::vector<double> q(N, 0.0);
    if (countSum > 0)
      for (int e = 0; e < E; ++e) {
        const auto &reps = placement.replicas(e);
        double p = static_cast<double>(layer.expertCounts[e]) / countSum /
                   static_cast<double>(reps.size());
        for (const ReplicaSlot &rs : reps)
          q[rs.rank] += p;
      }
    std::vector<double> hit(N); // P(rank hit by at least one of k choices)
    double hitSum = 0;
    for (int rr = 0; rr < N; ++rr) {
      double miss = 1;
      for (int j = 0; j < topK; ++j)
        miss = miss * (1 - q[rr]);
      hit[rr] = 1 - miss;
      hitSum += hit[rr];
    }
    for (int h = 0; h < N; ++h) {
      // Tokens t with floor(t * N / T) == h: t in [ceil(hT/N), ceil((h+1)T/N)).
      int64_t lo = (static_cast<int64_t>(h) * tokens + N - 1) / N;
      int64_t hi = (static_cast<int64_t>(h + 1) * tokens + N - 1) / N;
      double count = static_cast<double>(hi - lo);
      double allHome = 1;
      for (int j = 0; j < topK; ++j)
        allHome = allHome * q[h];
      r.remoteSends += count * (hitSum - hit[h]);
      r.localSlots += count * topK * q[h];
      r.localTokens += count * allHome;
    }
  }
  r.alltoallBytes = 2 * r.remoteSends * rowBytes;
  out = std::move(r);
  return Status::success();
}

} // namespace moe_rt
