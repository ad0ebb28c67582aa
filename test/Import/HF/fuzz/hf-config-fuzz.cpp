//===- hf-config-fuzz.cpp - libFuzzer target of the HF config parser ------===//
//
// Feeds arbitrary bytes to the runtime's JSON parser and, when they parse,
// the value to parseModelConfig (what moe-import does with config.json).
// Built with -fsanitize=fuzzer,address,undefined; Config.cpp and the
// runtime's sources are compiled into the target so that they are
// instrumented too. Besides memory errors and undefined behaviour (integer
// overflow in the sizes derived from the fields, say), it traps when a
// promise of Config.h is broken: an error is one line that names config.json
// and leaves the output untouched; an accepted config satisfies the checks
// the header lists (positive sizes, k no larger than the number of experts,
// groups that divide the experts, even RoPE dimensions, ...), on which the
// tensor layout and the IR builder rely.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Import/HF/Config.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

using namespace moe_mlir::hf;

static const char kOrigin[] = "fuzz/config.json";

/// The promises about a rejected config: one line that starts with the file
/// and names the field (unless the document is not an object at all).
static bool isWellFormedError(const std::string &message) {
  const std::string prefix = std::string(kOrigin) + ": ";
  if (message.compare(0, prefix.size(), prefix) != 0 ||
      message.find('\n') != std::string::npos)
    return false;
  return message.find("field '", prefix.size()) != std::string::npos ||
         message == prefix + "not a JSON object";
}

/// The promises about an accepted config.
static bool isConsistent(const ModelConfig &c) {
  if (c.hiddenSize <= 0 || c.vocabSize <= 0 || c.numLayers <= 0 ||
      c.numHeads <= 0 || c.numKvHeads <= 0 || c.intermediateSize <= 0)
    return false;
  if (!(c.rmsNormEps > 0) || !std::isfinite(c.rmsNormEps) ||
      !(c.ropeTheta > 0) || !std::isfinite(c.ropeTheta))
    return false;
  if (!c.torchDtype.empty() && c.torchDtype != "float32" &&
      c.torchDtype != "bfloat16" && c.torchDtype != "float16")
    return false;
  static const char *const kTypes[] = {"mixtral", "qwen2_moe", "qwen3_moe",
                                       "deepseek_v2", "deepseek_v3"};
  if (c.modelType != kTypes[static_cast<int>(c.family)])
    return false;
  if (c.isMla()) {
    if ((c.qLoraRank && *c.qLoraRank <= 0) || c.kvLoraRank <= 0 ||
        c.qkNopeHeadDim <= 0 || c.qkRopeHeadDim <= 0 ||
        c.qkRopeHeadDim % 2 != 0 || c.vHeadDim <= 0)
      return false;
    if (c.yarn &&
        (!(c.yarn->factor >= 1) || c.yarn->originalMaxPositionEmbeddings <= 0))
      return false;
  } else {
    if (c.numHeads % c.numKvHeads != 0 || c.headDim <= 0 ||
        c.headDim % 2 != 0 || c.yarn)
      return false;
  }
  if (c.numExperts < 0 || c.sharedIntermediateSize < 0 ||
      c.firstKDenseReplace < 0 || c.moeLayerFreq <= 0 ||
      c.decoderSparseStep <= 0 || c.ignoredTrailingLayers < 0)
    return false;
  if (c.numExperts > 0) {
    if (c.topK <= 0 || c.topK > c.numExperts || c.moeIntermediateSize <= 0)
      return false;
    const RouterConfig &r = c.router;
    if (r.nGroup > 1 || r.groupTop2Sum) {
      if (r.nGroup <= 0 || c.numExperts % r.nGroup != 0 || r.topkGroup <= 0 ||
          r.topkGroup > r.nGroup ||
          r.topkGroup * (c.numExperts / r.nGroup) < c.topK)
        return false;
      if (r.groupTop2Sum && c.numExperts / r.nGroup < 2)
        return false;
    }
  }
  // Every layer has a kind (no division by zero, no overflow on the way).
  int64_t moeLayers = 0;
  for (int64_t l = 0; l < std::min<int64_t>(c.numLayers, 1024); ++l)
    moeLayers += c.isMoeLayer(l);
  return c.numExperts > 0 || moeLayers == 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  // As readModelConfig reads config.json.
  moe_rt::JsonParseOptions options;
  options.maxSize = 16 << 20;
  moe_rt::JsonValue json;
  if (!moe_rt::parseJson(reinterpret_cast<const char *>(data), size, json,
                         options))
    return 0;
  ModelConfig config;
  config.modelType = "untouched";
  moe_rt::Status st = parseModelConfig(json, kOrigin, config);
  if (!st) {
    if (!isWellFormedError(st.message) || config.modelType != "untouched")
      __builtin_trap();
    return 0;
  }
  if (!isConsistent(config))
    __builtin_trap();
  return 0;
}
