//===- Config.h - a Hugging Face config.json, checked -----------*- C++ -*-===//
//
// Part of moe-mlir's Hugging Face frontend. Plain C++ (the runtime's JSON
// parser, no MLIR), so that the parser can be fuzzed on its own.
//
// Reads the fields of config.json that decide the computation of a
// mixtral, qwen2_moe, qwen3_moe, deepseek_v2 or deepseek_v3 model, with the
// defaults of the transformers configuration classes, and checks them:
// missing or mistyped fields, sizes that do not divide, k larger than the
// number of experts, settings this compiler does not implement. Every error
// is one line that names config.json and the field.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_IMPORT_HF_CONFIG_H
#define MOE_MLIR_IMPORT_HF_CONFIG_H

#include "moe-mlir/Runtime/Json.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace moe_mlir::hf {

enum class ModelFamily { Mixtral, Qwen2Moe, Qwen3Moe, DeepseekV2, DeepseekV3 };

/// The router of a model family, in the terms of moe.route.
struct RouterConfig {
  bool sigmoid = false;          // scoring: sigmoid (DeepSeek-V3) or softmax
  bool selectionBias = false;    // e_score_correction_bias (DeepSeek-V3)
  bool renormalize = false;
  double renormalizeEpsilon = 0; // added to the sum (1e-20 for DeepSeek)
  double scalingFactor = 1.0;    // routed_scaling_factor
  int64_t nGroup = 1;            // > 1: group-limited selection
  int64_t topkGroup = 1;
  bool groupTop2Sum = false;     // group score: sum of the best two (V3), else max
};

struct YarnConfig {
  double factor = 1;
  int64_t originalMaxPositionEmbeddings = 0;
  double betaFast = 32, betaSlow = 1, mscale = 1, mscaleAllDim = 0;
};

struct ModelConfig {
  std::string modelType; // as written in config.json
  ModelFamily family = ModelFamily::Mixtral;
  std::string torchDtype; // "float32", "bfloat16", "float16" (or empty)
  /// quantization_config.quant_method ("fp8", ...) or empty. Quantized
  /// weights are not supported: an import with weights rejects them, a
  /// shape-only import treats the weights as torch_dtype.
  std::string quantization;

  int64_t hiddenSize = 0, vocabSize = 0, numLayers = 0;
  int64_t numHeads = 0, numKvHeads = 0, headDim = 0;
  int64_t intermediateSize = 0; // dense MLP
  double rmsNormEps = 1e-6;
  double ropeTheta = 10000;
  bool tieWordEmbeddings = false;
  std::optional<int64_t> slidingWindow;

  // GQA attention (Mixtral, Qwen).
  bool qkvBias = false; // Qwen2
  bool qkNorm = false;  // Qwen3

  // Multi-head latent attention (DeepSeek).
  std::optional<int64_t> qLoraRank;
  int64_t kvLoraRank = 0, qkNopeHeadDim = 0, qkRopeHeadDim = 0, vHeadDim = 0;
  bool ropeInterleave = true;
  std::optional<YarnConfig> yarn;

  // Mixture of experts.
  int64_t numExperts = 0, topK = 0, moeIntermediateSize = 0;
  RouterConfig router;
  int64_t sharedIntermediateSize = 0; // 0: no shared expert
  bool sharedExpertGate = false;      // Qwen2-MoE's sigmoid gate
  int64_t firstKDenseReplace = 0, moeLayerFreq = 1; // DeepSeek
  int64_t decoderSparseStep = 1;                    // Qwen
  std::vector<int64_t> mlpOnlyLayers;               // Qwen

  /// Extra decoder layers that the checkpoint may hold beyond numLayers and
  /// that inference does not use (DeepSeek-V3's multi-token prediction).
  int64_t ignoredTrailingLayers = 0;

  bool isMla() const {
    return family == ModelFamily::DeepseekV2 ||
           family == ModelFamily::DeepseekV3;
  }
  /// Whether decoder layer `layer` has a sparse MoE block (else a dense MLP).
  bool isMoeLayer(int64_t layer) const;
};

/// Reads `config` (the parsed config.json; `origin` names it in messages).
moe_rt::Status parseModelConfig(const moe_rt::JsonValue &config,
                                const std::string &origin, ModelConfig &out);

/// Reads and parses the file at `path`.
moe_rt::Status readModelConfig(const std::string &path, ModelConfig &out);

} // namespace moe_mlir::hf

#endif // MOE_MLIR_IMPORT_HF_CONFIG_H
