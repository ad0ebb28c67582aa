//===- moe-plan.cpp - plan expert placement for expert parallelism --------===//
//
// Part of moe-mlir. Links only the runtime (no MLIR, no LLVM).
//
// moe-plan [--profile FILE.json | --synthetic --experts E --top-k K
//           --tokens T [--skew S] [--seed N] [--layers L]]
//          [--preset deepseek-v3] --ep N[,N2,...]
//          [--placement contiguous|round-robin|balanced]
//          [--redundant R[,R2,...]] [--hidden H] [--dtype-bytes B]
//          [--verbose] [--plot load.svg] [--json out.json]
//          [--write-profile profile.json]
//
// For each EP degree and placement it evaluates the load model of
// moe-mlir/Runtime/Placement.h on every layer of the routing profile and
// prints one table row: per-rank token load (min/mean/max of the load summed
// over the layers; the full list and the layer-0 placement with --verbose),
// max/mean imbalance (per layer, averaged over the layers), all-to-all MB
// (10^6 bytes) per step (summed over the layers), the tokens whose k
// experts all run on their home rank and the token-slots served at home. Without --placement, contiguous,
// round-robin and balanced are all shown; --redundant (one value, or one per
// EP degree) adds balanced rows with that many redundant replicas. The
// balanced placement of a layer is computed from that layer's own counts
// (the profile is both the measurement and the evaluation).
//
// Design: everything is computed before anything is printed or written;
// output files go to a temporary name in the same directory and are renamed
// into place, so an error (one line "moe-plan: ...", exit 1) leaves no
// partial output. The SVG is written by hand (bar charts).
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Runtime/Json.h"
#include "moe-mlir/Runtime/Placement.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unistd.h>
#include <vector>

using namespace moe_rt;

namespace {

[[noreturn]] void fail(const std::string &message) {
  std::fprintf(stderr, "moe-plan: %s\n", message.c_str());
  std::exit(1);
}

void check(const Status &st) {
  if (!st)
    fail(st.message);
}

std::string format(const char *fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), fmt, v);
  return buf;
}

bool parseInt64(const std::string &text, int64_t &out) {
  if (text.empty() || text.size() > 18)
    return false;
  int64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9')
      return false;
    v = v * 10 + (c - '0');
  }
  out = v;
  return true;
}

int64_t intArg(const std::string &flag, const std::string &text, int64_t lo,
               int64_t hi) {
  int64_t v;
  if (!parseInt64(text, v) || v < lo || v > hi)
    fail(flag + " expects an integer in " + std::to_string(lo) + ".." +
         std::to_string(hi) + ", got '" + text + "'");
  return v;
}

std::vector<int64_t> intListArg(const std::string &flag,
                                const std::string &text, int64_t lo,
                                int64_t hi) {
  std::vector<int64_t> out;
  size_t start = 0;
  for (;;) {
    size_t comma = text.find(',', start);
    std::string item = text.substr(start, comma == std::string::npos
                                              ? std::string::npos
                                              : comma - start);
    int64_t v;
    if (!parseInt64(item, v) || v < lo || v > hi)
      fail(flag + " expects comma-separated integers in " +
           std::to_string(lo) + ".." + std::to_string(hi) + ", got '" + text +
           "'");
    out.push_back(v);
    if (comma == std::string::npos)
      break;
    start = comma + 1;
  }
  return out;
}

double doubleArg(const std::string &flag, const std::string &text) {
  errno = 0;
  char *end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end || errno || !std::isfinite(v) || v < 0)
    fail(flag + " expects a number >= 0, got '" + text + "'");
  return v;
}

/// Writes `data` to `path` through a temporary file renamed into place.
Status writeFileAtomic(const std::string &path, const std::string &data) {
  std::string tmp = path + ".tmp." + std::to_string(getpid());
  FILE *f = std::fopen(tmp.c_str(), "wb");
  if (!f)
    return Status::error("cannot write " + path + ": " + std::strerror(errno));
  bool ok = std::fwrite(data.data(), 1, data.size(), f) == data.size();
  ok = (std::fclose(f) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    return Status::error("cannot write " + path + ": " + why);
  }
  return Status::success();
}

struct Row {
  int ep = 0;
  std::string strategy;
  int redundant = 0;
  std::string slotsPerRank;
  std::vector<double> rankLoad; // summed over layers
  double minLoad = 0, meanLoad = 0, maxLoad = 0;
  double imbalance = 0;      // mean over layers of per-layer max/mean
  double worstImbalance = 0; // worst layer
  double bytes = 0;          // per step, all layers
  double localTokens = 0;    // summed over layers
  double localSlots = 0;     // summed over layers
  ExpertPlacement layer0;
};

std::string xmlEscape(const std::string &s) {
  std::string out;
  for (char c : s) {
    if (c == '&')
      out += "&amp;";
    else if (c == '<')
      out += "&lt;";
    else if (c == '>')
      out += "&gt;";
    else
      out += c;
  }
  return out;
}

std::string num(double v) { return format("%.6g", v); }

/// One bar-chart panel at vertical offset `top`.
void svgPanel(std::string &svg, double top, const std::string &title,
              const std::vector<double> &values, const std::string &xLabel,
              bool meanLine) {
  const double left = 70, width = 820, height = 150;
  double maxV = 0, sum = 0;
  for (double v : values) {
    maxV = std::max(maxV, v);
    sum += v;
  }
  double scaleMax = maxV > 0 ? maxV : 1;
  double base = top + 30 + height;
  svg += "<text x=\"" + num(left) + "\" y=\"" + num(top + 18) +
         "\" font-size=\"13\" font-weight=\"bold\">" + xmlEscape(title) +
         "</text>\n";
  // Axes.
  svg += "<line x1=\"" + num(left) + "\" y1=\"" + num(top + 30) + "\" x2=\"" +
         num(left) + "\" y2=\"" + num(base) +
         "\" stroke=\"black\"/>\n<line x1=\"" + num(left) + "\" y1=\"" +
         num(base) + "\" x2=\"" + num(left + width) + "\" y2=\"" + num(base) +
         "\" stroke=\"black\"/>\n";
  for (int i = 0; i <= 2; ++i) {
    double v = scaleMax * i / 2, y = base - height * i / 2;
    svg += "<line x1=\"" + num(left - 4) + "\" y1=\"" + num(y) + "\" x2=\"" +
           num(left) + "\" y2=\"" + num(y) + "\" stroke=\"black\"/>\n";
    svg += "<text x=\"" + num(left - 6) + "\" y=\"" + num(y + 4) +
           "\" font-size=\"10\" text-anchor=\"end\">" + format("%.0f", v) +
           "</text>\n";
  }
  svg += "<text x=\"" + num(left - 55) + "\" y=\"" + num(top + 30 + height / 2) +
         "\" font-size=\"10\" transform=\"rotate(-90 " + num(left - 55) + " " +
         num(top + 30 + height / 2) +
         ")\" text-anchor=\"middle\">token-slots</text>\n";
  size_t n = values.size();
  double slot = width / static_cast<double>(n ? n : 1);
  double gap = slot > 4 ? slot * 0.15 : 0;
  for (size_t i = 0; i < n; ++i) {
    double h = height * values[i] / scaleMax;
    svg += "<rect x=\"" + num(left + slot * i + gap / 2) + "\" y=\"" +
           num(base - h) + "\" width=\"" + num(slot - gap) + "\" height=\"" +
           num(h) + "\" fill=\"#4a7ab5\"/>\n";
  }
  if (meanLine && n) {
    double y = base - height * (sum / n) / scaleMax;
    svg += "<line x1=\"" + num(left) + "\" y1=\"" + num(y) + "\" x2=\"" +
           num(left + width) + "\" y2=\"" + num(y) +
           "\" stroke=\"#c0392b\" stroke-dasharray=\"4 3\"/>\n";
    svg += "<text x=\"" + num(left + width + 4) + "\" y=\"" + num(y + 4) +
           "\" font-size=\"10\" fill=\"#c0392b\">mean</text>\n";
  }
  svg += "<text x=\"" + num(left) + "\" y=\"" + num(base + 14) +
         "\" font-size=\"10\">0</text>\n";
  svg += "<text x=\"" + num(left + width) + "\" y=\"" + num(base + 14) +
         "\" font-size=\"10\" text-anchor=\"end\">" +
         std::to_string(n ? n - 1 : 0) + "</text>\n";
  svg += "<text x=\"" + num(left + width / 2) + "\" y=\"" + num(base + 14) +
         "\" font-size=\"10\" text-anchor=\"middle\">" + xmlEscape(xLabel) +
         "</text>\n";
}

} // namespace

int main(int argc, char **argv) {
  std::string profilePath, placementName, plotPath, jsonPath, writeProfile,
      preset;
  bool synthetic = false, verbose = false;
  bool haveExperts = false, haveTopK = false, haveTokens = false,
       haveSkew = false, haveSeed = false, haveLayers = false,
       haveHidden = false, haveDtype = false;
  SyntheticProfileOptions syn;
  std::vector<int64_t> eps, redundant;
  int64_t hidden = 4096, dtypeBytes = 2;

  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i], value;
    bool hasInline = false;
    if (arg.rfind("--", 0) == 0) {
      size_t eq = arg.find('=');
      if (eq != std::string::npos) {
        value = arg.substr(eq + 1);
        arg = arg.substr(0, eq);
        hasInline = true;
      }
    }
    auto next = [&]() -> std::string {
      if (hasInline)
        return value;
      if (i + 1 >= argc)
        fail(arg + " expects a value");
      return argv[++i];
    };
    if (arg == "--profile")
      profilePath = next();
    else if (arg == "--synthetic")
      synthetic = true;
    else if (arg == "--preset")
      preset = next();
    else if (arg == "--experts")
      syn.numExperts = static_cast<int>(intArg(arg, next(), 1, 1 << 20)),
      haveExperts = true;
    else if (arg == "--top-k")
      syn.topK = static_cast<int>(intArg(arg, next(), 1, 1 << 20)),
      haveTopK = true;
    else if (arg == "--tokens")
      syn.tokens = intArg(arg, next(), 1, int64_t(1) << 32), haveTokens = true;
    else if (arg == "--skew")
      syn.skew = doubleArg(arg, next()), haveSkew = true;
    else if (arg == "--seed")
      syn.seed = static_cast<uint64_t>(
          intArg(arg, next(), 0, int64_t(999999999999999999))),
      haveSeed = true;
    else if (arg == "--layers")
      syn.layers = static_cast<int>(intArg(arg, next(), 1, 100000)),
      haveLayers = true;
    else if (arg == "--ep")
      eps = intListArg(arg, next(), 1, 1 << 20);
    else if (arg == "--placement")
      placementName = next();
    else if (arg == "--redundant")
      redundant = intListArg(arg, next(), 0, 1 << 20);
    else if (arg == "--hidden")
      hidden = intArg(arg, next(), 1, int64_t(1) << 24), haveHidden = true;
    else if (arg == "--dtype-bytes")
      dtypeBytes = intArg(arg, next(), 1, 16), haveDtype = true;
    else if (arg == "--plot")
      plotPath = next();
    else if (arg == "--json")
      jsonPath = next();
    else if (arg == "--write-profile")
      writeProfile = next();
    else if (arg == "--verbose" || arg == "-v")
      verbose = true;
    else if (arg == "--help" || arg == "-h") {
      std::printf(
          "usage: moe-plan [--profile FILE.json | --synthetic --experts E "
          "--top-k K --tokens T [--skew S] [--seed N] [--layers L]]\n"
          "                [--preset deepseek-v3] --ep N[,N2,...]\n"
          "                [--placement contiguous|round-robin|balanced]\n"
          "                [--redundant R[,R2,...]] [--hidden H] "
          "[--dtype-bytes B]\n"
          "                [--verbose] [--plot load.svg] [--json out.json] "
          "[--write-profile FILE.json]\n");
      return 0;
    } else
      fail("unknown argument '" + std::string(argv[i]) + "'");
  }

  if (!preset.empty()) {
    if (preset != "deepseek-v3")
      fail("unknown --preset '" + preset + "' (known: deepseek-v3)");
    if (profilePath.empty()) {
      synthetic = true;
      if (!haveExperts)
        syn.numExperts = 256, haveExperts = true;
      if (!haveTopK)
        syn.topK = 8, haveTopK = true;
      if (!haveTokens)
        syn.tokens = 4096, haveTokens = true;
      if (!haveSkew)
        syn.skew = 1.0, haveSkew = true;
    }
    if (!haveHidden)
      hidden = 7168;
    if (!haveDtype)
      dtypeBytes = 2;
  }
  if (!profilePath.empty() && synthetic)
    fail("--profile and --synthetic exclude each other");
  if (profilePath.empty() && !synthetic)
    fail("no routing profile: give --profile FILE.json, --synthetic or "
         "--preset deepseek-v3");
  if (!profilePath.empty() && (haveExperts || haveTopK || haveTokens ||
                               haveSkew || haveSeed || haveLayers))
    fail("--experts, --top-k, --tokens, --skew, --seed and --layers only "
         "apply to --synthetic profiles");
  if (synthetic) {
    if (!haveExperts)
      fail("--synthetic needs --experts");
    if (!haveTopK)
      fail("--synthetic needs --top-k");
    if (!haveTokens)
      fail("--synthetic needs --tokens");
  }
  if (eps.empty())
    fail("missing --ep N[,N2,...]");
  if (!placementName.empty() && placementName != "contiguous" &&
      placementName != "round-robin" && placementName != "balanced")
    fail("unknown --placement '" + placementName +
         "' (known: contiguous, round-robin, balanced)");
  if (!redundant.empty() && !placementName.empty() &&
      placementName != "balanced")
    fail("--redundant needs --placement balanced (only the balanced "
         "placement replicates experts)");
  if (redundant.size() > 1 && redundant.size() != eps.size())
    fail("--redundant has " + std::to_string(redundant.size()) +
         " values for " + std::to_string(eps.size()) +
         " EP degrees (give one, or one per degree)");

  RoutingProfile profile;
  std::string source;
  if (synthetic) {
    check(syntheticRoutingProfile(syn, profile));
    source = "synthetic, Zipf skew " + format("%g", syn.skew) + ", seed " +
             std::to_string(syn.seed);
  } else {
    check(readRoutingProfile(profilePath, profile));
    source = profilePath;
  }
  bool estimated = false;
  for (const RoutingLayer &layer : profile.layers)
    estimated = estimated || layer.assignments.empty();
  const int E = profile.numExperts;
  const size_t L = profile.layers.size();

  // The configurations.
  std::vector<Row> rows;
  for (size_t i = 0; i < eps.size(); ++i) {
    int ep = static_cast<int>(eps[i]);
    std::vector<std::pair<std::string, int>> configs;
    if (placementName.empty() || placementName == "contiguous")
      configs.push_back({"contiguous", 0});
    if (placementName.empty() || placementName == "round-robin")
      configs.push_back({"round-robin", 0});
    if (placementName.empty() || placementName == "balanced") {
      configs.push_back({"balanced", 0});
      if (!redundant.empty()) {
        int r = static_cast<int>(redundant.size() == 1 ? redundant[0]
                                                       : redundant[i]);
        if (r > 0)
          configs.push_back({"balanced", r});
      }
    }
    for (const auto &config : configs) {
      Row row;
      row.ep = ep;
      row.strategy = config.first;
      row.redundant = config.second;
      row.rankLoad.assign(ep, 0.0);
      row.worstImbalance = 0;
      double imbalanceSum = 0;
      for (size_t l = 0; l < L; ++l) {
        const RoutingLayer &layer = profile.layers[l];
        ExpertPlacement placement;
        if (row.strategy == "contiguous") {
          check(placeContiguous(E, ep, placement));
        } else if (row.strategy == "round-robin") {
          check(placeRoundRobin(E, ep, placement));
        } else {
          std::vector<double> load(layer.expertCounts.begin(),
                                   layer.expertCounts.end());
          check(placeBalanced(load, ep, row.redundant, placement));
        }
        LayerLoad ll;
        check(evaluateLayer(placement, layer, profile.tokens, profile.topK,
                            hidden, dtypeBytes, ll));
        for (int r = 0; r < ep; ++r)
          row.rankLoad[r] += ll.rankLoad[r];
        imbalanceSum += ll.imbalance;
        row.worstImbalance = std::max(row.worstImbalance, ll.imbalance);
        row.bytes += ll.alltoallBytes;
        row.localTokens += ll.localTokens;
        row.localSlots += ll.localSlots;
        if (l == 0)
          row.layer0 = placement;
      }
      row.imbalance = imbalanceSum / static_cast<double>(L);
      double sum = 0;
      row.minLoad = row.maxLoad = row.rankLoad[0];
      for (double v : row.rankLoad) {
        sum += v;
        row.minLoad = std::min(row.minLoad, v);
        row.maxLoad = std::max(row.maxLoad, v);
      }
      row.meanLoad = sum / ep;
      size_t lo = row.layer0.rankSlots(0).size(), hi = lo;
      for (int r = 0; r < ep; ++r) {
        lo = std::min(lo, row.layer0.rankSlots(r).size());
        hi = std::max(hi, row.layer0.rankSlots(r).size());
      }
      row.slotsPerRank = std::to_string(lo) +
                         (hi != lo ? ".." + std::to_string(hi) : "");
      rows.push_back(std::move(row));
    }
  }

  // The report text.
  const double totalTokens =
      static_cast<double>(profile.tokens) * static_cast<double>(L);
  std::string text;
  text += "moe-plan: " + std::to_string(E) + " experts, top-" +
          std::to_string(profile.topK) + ", " +
          std::to_string(profile.tokens) + " tokens/step, " +
          std::to_string(L) + " MoE layer" + (L == 1 ? "" : "s") +
          ", hidden " + std::to_string(hidden) + ", " +
          std::to_string(dtypeBytes) + " bytes/element\n";
  text += "routing: " + source +
          (estimated ? " (expert counts only: all-to-all bytes and local "
                       "tokens ESTIMATED assuming independent choices)\n"
                     : " (token assignments: exact all-to-all bytes)\n");
  if (L > 1)
    text += "load: summed over the layers; max/mean: per layer, averaged "
            "over the layers\n";
  char line[512];
  std::snprintf(line, sizeof(line), "%6s  %-12s %9s %10s %28s %9s %12s %13s %12s\n",
                "EP", "placement", "redundant", "slots/rank",
                "token load min/mean/max", "max/mean", "a2a MB/step",
                "local tokens", "local slots");
  text += line;
  for (const Row &row : rows) {
    std::string loads = format("%.1f", row.minLoad) + "/" +
                        format("%.1f", row.meanLoad) + "/" +
                        format("%.1f", row.maxLoad);
    std::snprintf(line, sizeof(line),
                  "%6d  %-12s %9d %10s %28s %9.3f %12.3f %12.1f%% %11.1f%%\n",
                  row.ep, row.strategy.c_str(), row.redundant,
                  row.slotsPerRank.c_str(), loads.c_str(), row.imbalance,
                  row.bytes / 1e6, 100.0 * row.localTokens / totalTokens,
                  100.0 * row.localSlots / (totalTokens * profile.topK));
    text += line;
    if (verbose) {
      text += "        rank load:";
      for (double v : row.rankLoad)
        text += " " + format("%.1f", v);
      text += "\n        layer-0 placement: " + row.layer0.describe() + "\n";
    }
  }

  // Output files, all built before any is written.
  std::string svgText, jsonText, profileText;
  if (!plotPath.empty()) {
    std::vector<double> expertLoad(E, 0.0);
    for (const RoutingLayer &layer : profile.layers)
      for (int e = 0; e < E; ++e)
        expertLoad[e] += static_cast<double>(layer.expertCounts[e]);
    std::sort(expertLoad.begin(), expertLoad.end(),
              [](double a, double b) { return a > b; });
    const double panel = 200;
    double height = 50 + panel * static_cast<double>(rows.size() + 1) + 20;
    svgText = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
              "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"960\" "
              "height=\"" +
              num(height) + "\" viewBox=\"0 0 960 " + num(height) +
              "\" font-family=\"sans-serif\">\n"
              "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
    svgText += "<text x=\"480\" y=\"28\" font-size=\"16\" "
               "text-anchor=\"middle\" font-weight=\"bold\">" +
               xmlEscape("moe-plan: per-rank token load (" +
                         std::to_string(E) + " experts, top-" +
                         std::to_string(profile.topK) + ", " +
                         std::to_string(profile.tokens) + " tokens, " +
                         std::to_string(L) + " layer" + (L == 1 ? "" : "s") +
                         ")") +
               "</text>\n";
    double top = 40;
    for (const Row &row : rows) {
      std::string title = "EP " + std::to_string(row.ep) + ", " +
                          row.strategy +
                          (row.redundant
                               ? " + " + std::to_string(row.redundant) +
                                     " redundant"
                               : "") +
                          ": max/mean " + format("%.3f", row.imbalance) +
                          ", all-to-all " + format("%.3f", row.bytes / 1e6) +
                          " MB/step";
      svgPanel(svgText, top, title, row.rankLoad, "rank", true);
      top += panel;
    }
    svgPanel(svgText, top, "Per-expert load, sorted (token-slots per step)",
             expertLoad, "expert (by load)", true);
    svgText += "</svg>\n";
  }
  if (!jsonPath.empty()) {
    JsonValue root = JsonValue::object();
    root.set("experts", JsonValue::integer(E));
    root.set("top_k", JsonValue::integer(profile.topK));
    root.set("tokens", JsonValue::integer(profile.tokens));
    root.set("layers", JsonValue::integer(static_cast<int64_t>(L)));
    root.set("hidden", JsonValue::integer(hidden));
    root.set("dtype_bytes", JsonValue::integer(dtypeBytes));
    root.set("routing", JsonValue::string(source));
    root.set("estimated", JsonValue::boolean(estimated));
    JsonValue configs = JsonValue::array();
    for (const Row &row : rows) {
      JsonValue c = JsonValue::object();
      c.set("ep", JsonValue::integer(row.ep));
      c.set("placement", JsonValue::string(row.strategy));
      c.set("redundant", JsonValue::integer(row.redundant));
      JsonValue loads = JsonValue::array();
      for (double v : row.rankLoad)
        loads.push(JsonValue::number(v));
      c.set("rank_load", std::move(loads));
      c.set("min_load", JsonValue::number(row.minLoad));
      c.set("mean_load", JsonValue::number(row.meanLoad));
      c.set("max_load", JsonValue::number(row.maxLoad));
      c.set("imbalance", JsonValue::number(row.imbalance));
      c.set("worst_layer_imbalance", JsonValue::number(row.worstImbalance));
      c.set("alltoall_bytes_per_step", JsonValue::number(row.bytes));
      c.set("local_tokens", JsonValue::number(row.localTokens));
      c.set("local_slots", JsonValue::number(row.localSlots));
      JsonValue slots = JsonValue::array();
      for (int r = 0; r < row.ep; ++r) {
        JsonValue s = JsonValue::array();
        for (int e : row.layer0.rankSlots(r))
          s.push(JsonValue::integer(e));
        slots.push(std::move(s));
      }
      c.set("layer0_rank_slots", std::move(slots));
      configs.push(std::move(c));
    }
    root.set("configs", std::move(configs));
    jsonText = serializeJson(root) + "\n";
  }
  if (!writeProfile.empty())
    profileText = serializeJson(routingProfileToJson(profile)) + "\n";

  std::vector<std::string> written;
  auto emit = [&](const std::string &path, const std::string &data) {
    Status st = writeFileAtomic(path, data);
    if (!st) {
      for (const std::string &w : written)
        std::remove(w.c_str());
      fail(st.message);
    }
    written.push_back(path);
  };
  if (!plotPath.empty())
    emit(plotPath, svgText);
  if (!jsonPath.empty())
    emit(jsonPath, jsonText);
  if (!writeProfile.empty())
    emit(writeProfile, profileText);
  std::fputs(text.c_str(), stdout);
  return 0;
}
