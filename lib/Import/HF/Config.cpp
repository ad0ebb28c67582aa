//===- Config.cpp - a Hugging Face config.json, checked -------------------===//
//
// Part of moe-mlir's Hugging Face frontend.
//
// Defaults are those of the transformers configuration classes
// (MixtralConfig, Qwen2MoeConfig, Qwen3MoeConfig, DeepseekV2Config,
// DeepseekV3Config) for the fields a real checkpoint may leave out.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Import/HF/Config.h"

#include <algorithm>
#include <cmath>

using namespace moe_mlir::hf;
using moe_rt::JsonValue;
using moe_rt::Status;

namespace {
/// Typed access to the members of config.json with one-line messages.
class FieldReader {
public:
  FieldReader(const JsonValue &object, std::string origin)
      : object_(object), origin_(std::move(origin)) {}

  const std::string &origin() const { return origin_; }
  bool has(const char *name) const {
    const JsonValue *v = object_.get(name);
    return v && !v->isNull();
  }
  const JsonValue *get(const char *name) const {
    const JsonValue *v = object_.get(name);
    return v && !v->isNull() ? v : nullptr;
  }

  Status error(const std::string &field, const std::string &what) const {
    return Status::error(origin_ + ": field '" + field + "' " + what);
  }
  Status missing(const char *name) const {
    return Status::error(origin_ + ": missing field '" + name + "'");
  }
  /// An absent field: `fallback` when there is one, else an error.
  template <typename T>
  Status absent(const char *name, T &out,
                const std::optional<T> &fallback) const {
    if (!fallback)
      return missing(name);
    out = *fallback;
    return Status::success();
  }

  /// An integer field; absent or null gives `fallback` (required when none).
  Status integer(const char *name, int64_t &out,
                 std::optional<int64_t> fallback = std::nullopt) const {
    const JsonValue *v = get(name);
    if (!v)
      return absent(name, out, fallback);
    if (v->isDouble() && std::floor(v->asDouble()) == v->asDouble() &&
        std::fabs(v->asDouble()) < 9e15) {
      out = static_cast<int64_t>(v->asDouble());
      return Status::success();
    }
    if (!v->isInt())
      return error(name, std::string("must be an integer, got ") +
                             moe_rt::jsonKindName(v->kind()));
    out = v->asInt();
    return Status::success();
  }
  Status positive(const char *name, int64_t &out,
                  std::optional<int64_t> fallback = std::nullopt) const {
    if (Status st = integer(name, out, fallback); !st)
      return st;
    if (out <= 0)
      return error(name, "must be positive, got " + std::to_string(out));
    // Far beyond any real model; keeps every product of sizes in int64_t.
    if (out > kMaxSize)
      return error(name, std::to_string(out) + " exceeds " +
                             std::to_string(kMaxSize));
    return Status::success();
  }
  static constexpr int64_t kMaxSize = int64_t(1) << 24;
  Status optionalPositive(const char *name,
                          std::optional<int64_t> &out) const {
    if (!get(name)) {
      out.reset();
      return Status::success();
    }
    int64_t v;
    if (Status st = positive(name, v); !st)
      return st;
    out = v;
    return Status::success();
  }
  Status number(const char *name, double &out,
                std::optional<double> fallback = std::nullopt) const {
    const JsonValue *v = get(name);
    if (!v)
      return absent(name, out, fallback);
    if (!v->isNumber())
      return error(name, std::string("must be a number, got ") +
                             moe_rt::jsonKindName(v->kind()));
    out = v->asDouble();
    if (!std::isfinite(out))
      return error(name, "must be finite");
    return Status::success();
  }
  Status boolean(const char *name, bool &out, bool fallback) const {
    const JsonValue *v = get(name);
    if (!v) {
      out = fallback;
      return Status::success();
    }
    if (!v->isBool())
      return error(name, std::string("must be true or false, got ") +
                             moe_rt::jsonKindName(v->kind()));
    out = v->asBool();
    return Status::success();
  }
  Status string(const char *name, std::string &out,
                std::optional<std::string> fallback = std::nullopt) const {
    const JsonValue *v = get(name);
    if (!v)
      return absent(name, out, fallback);
    if (!v->isString())
      return error(name, std::string("must be a string, got ") +
                             moe_rt::jsonKindName(v->kind()));
    out = v->asString();
    return Status::success();
  }

private:
  const JsonValue &object_;
  std::string origin_;
};
} // namespace

#define TRY(expr)                                                              \
  do {                                                                         \
    if (Status st_ = (expr); !st_)                                             \
      return st_;                                                              \
  } while (false)

bool ModelConfig::isMoeLayer(int64_t layer) const {
  if (numExperts <= 0)
    return false;
  switch (family) {
  case ModelFamily::Mixtral:
    return true;
  case ModelFamily::Qwen2Moe:
  case ModelFamily::Qwen3Moe:
    return std::find(mlpOnlyLayers.begin(), mlpOnlyLayers.end(), layer) ==
               mlpOnlyLayers.end() &&
           (layer + 1) % decoderSparseStep == 0;
  case ModelFamily::DeepseekV2:
  case ModelFamily::DeepseekV3:
    return layer >= firstKDenseReplace && layer % moeLayerFreq == 0;
  }
  return false;
}

/// Fields every family shares.
static Status readCommon(const FieldReader &f, ModelConfig &c,
                         double defaultEps, double defaultTheta) {
  TRY(f.positive("hidden_size", c.hiddenSize));
  TRY(f.positive("vocab_size", c.vocabSize));
  TRY(f.positive("num_hidden_layers", c.numLayers));
  TRY(f.positive("num_attention_heads", c.numHeads));
  TRY(f.positive("num_key_value_heads", c.numKvHeads, c.numHeads));
  TRY(f.number("rms_norm_eps", c.rmsNormEps, defaultEps));
  if (!(c.rmsNormEps > 0))
    return f.error("rms_norm_eps", "must be positive");
  // Since transformers 5, rope_theta and the scaling live in
  // "rope_parameters" ({"rope_type": ..., "rope_theta": ...}).
  if (!f.has("rope_theta") && f.has("rope_parameters")) {
    const JsonValue *params = f.get("rope_parameters");
    if (!params->isObject())
      return f.error("rope_parameters", "must be an object");
    FieldReader p(*params, f.origin());
    if (!p.number("rope_theta", c.ropeTheta, defaultTheta))
      return f.error("rope_parameters.rope_theta", "must be a number");
  } else {
    TRY(f.number("rope_theta", c.ropeTheta, defaultTheta));
  }
  if (!(c.ropeTheta > 0))
    return f.error("rope_theta", "must be positive");
  TRY(f.boolean("tie_word_embeddings", c.tieWordEmbeddings, false));
  // Every supported family's MLPs are SwiGLU.
  std::string activation;
  TRY(f.string("hidden_act", activation, "silu"));
  if (activation != "silu" && activation != "swish")
    return f.error("hidden_act", "'" + activation +
                                     "' is not supported (silu)");
  // transformers writes "torch_dtype" (and, since 4.56, "dtype").
  std::string dtype;
  TRY(f.string("torch_dtype", dtype, ""));
  if (dtype.empty())
    TRY(f.string("dtype", dtype, ""));
  if (!dtype.empty() && dtype != "float32" && dtype != "bfloat16" &&
      dtype != "float16")
    return f.error(f.has("torch_dtype") ? "torch_dtype" : "dtype",
                   "'" + dtype +
                       "' is not supported (float32, bfloat16, float16)");
  c.torchDtype = dtype;
  if (const JsonValue *q = f.get("quantization_config")) {
    const JsonValue *method = q->isString() ? q : q->get("quant_method");
    c.quantization = method && method->isString() ? method->asString()
                                                  : std::string("unknown");
  }
  return Status::success();
}

/// The RoPE scaling entry: "rope_scaling", else "rope_parameters"; null
/// when neither is set.
static const JsonValue *ropeScaling(const FieldReader &f) {
  if (const JsonValue *scaling = f.get("rope_scaling"))
    return scaling;
  return f.get("rope_parameters");
}

/// Its "rope_type" (or the older "type"); "default" when absent.
static Status ropeType(const FieldReader &f, const char *field,
                       const JsonValue &scaling, std::string &type) {
  if (!scaling.isObject())
    return f.error(field, "must be an object or null");
  type = "default";
  for (const char *key : {"rope_type", "type"})
    if (const JsonValue *v = scaling.get(key); v && !v->isNull()) {
      if (!v->isString())
        return f.error(std::string(field) + "." + key,
                       std::string("must be a string, got ") +
                           moe_rt::jsonKindName(v->kind()));
      type = v->asString();
      return Status::success();
    }
  return Status::success();
}

static Status readGqaAttention(const FieldReader &f, ModelConfig &c) {
  if (c.numHeads % c.numKvHeads != 0)
    return f.error("num_key_value_heads",
                   "(" + std::to_string(c.numKvHeads) +
                       ") must divide num_attention_heads (" +
                       std::to_string(c.numHeads) + ")");
  if (f.has("head_dim")) {
    TRY(f.positive("head_dim", c.headDim));
  } else {
    if (c.hiddenSize % c.numHeads != 0)
      return f.error("num_attention_heads",
                     "(" + std::to_string(c.numHeads) +
                         ") must divide hidden_size (" +
                         std::to_string(c.hiddenSize) + ")");
    c.headDim = c.hiddenSize / c.numHeads;
  }
  if (c.headDim % 2 != 0)
    return f.error(f.has("head_dim") ? "head_dim" : "hidden_size",
                   "gives an odd head dimension " +
                       std::to_string(c.headDim) + " (RoPE needs pairs)");
  if (const JsonValue *scaling = ropeScaling(f)) {
    const char *field = f.has("rope_scaling") ? "rope_scaling"
                                              : "rope_parameters";
    std::string type;
    TRY(ropeType(f, field, *scaling, type));
    if (type != "default")
      return f.error(field, "has rope_type '" + type +
                                "': RoPE scaling is not supported for " +
                                c.modelType);
  }
  bool attentionBias = false;
  TRY(f.boolean("attention_bias", attentionBias, false));
  if (attentionBias)
    return f.error("attention_bias",
                   "is true: attention projection biases are not supported "
                   "for " +
                       c.modelType);
  return Status::success();
}

static Status readExperts(const FieldReader &f, ModelConfig &c,
                          const char *expertsField, const char *kField) {
  if (c.numExperts <= 0)
    return Status::success();
  if (c.topK > c.numExperts)
    return f.error(kField, "(" + std::to_string(c.topK) +
                               ") is greater than the number of experts, " +
                               expertsField + " (" +
                               std::to_string(c.numExperts) + ")");
  return Status::success();
}

static Status readMixtral(const FieldReader &f, ModelConfig &c) {
  TRY(readCommon(f, c, 1e-5, 1e6));
  TRY(readGqaAttention(f, c));
  TRY(f.positive("intermediate_size", c.intermediateSize));
  c.moeIntermediateSize = c.intermediateSize;
  TRY(f.positive("num_local_experts", c.numExperts, 8));
  TRY(f.positive("num_experts_per_tok", c.topK, 2));
  std::optional<int64_t> window;
  TRY(f.optionalPositive("sliding_window", window));
  c.slidingWindow = window;
  c.router.renormalize = true;
  return readExperts(f, c, "num_local_experts", "num_experts_per_tok");
}

static Status readQwen(const FieldReader &f, ModelConfig &c, bool qwen3) {
  TRY(readCommon(f, c, 1e-6, 10000.0));
  TRY(readGqaAttention(f, c));
  c.qkvBias = !qwen3;
  c.qkNorm = qwen3;
  TRY(f.positive("intermediate_size", c.intermediateSize));
  TRY(f.positive("moe_intermediate_size", c.moeIntermediateSize));
  TRY(f.integer("num_experts", c.numExperts, qwen3 ? 128 : 60));
  if (c.numExperts < 0 || c.numExperts > FieldReader::kMaxSize)
    return f.error("num_experts", "must be between 0 and " +
                                      std::to_string(FieldReader::kMaxSize));
  TRY(f.positive("num_experts_per_tok", c.topK, qwen3 ? 8 : 4));
  TRY(f.boolean("norm_topk_prob", c.router.renormalize, false));
  TRY(f.positive("decoder_sparse_step", c.decoderSparseStep, 1));
  if (const JsonValue *layers = f.get("mlp_only_layers")) {
    if (!layers->isArray())
      return f.error("mlp_only_layers", "must be an array of layer indices");
    for (const JsonValue &v : layers->items()) {
      if (!v.isInt() || v.asInt() < 0)
        return f.error("mlp_only_layers",
                       "must hold non-negative layer indices");
      c.mlpOnlyLayers.push_back(v.asInt());
    }
  }
  bool slidingWindow = false;
  TRY(f.boolean("use_sliding_window", slidingWindow, false));
  if (slidingWindow)
    return f.error("use_sliding_window",
                   "is true: Qwen's layer-dependent sliding window is not "
                   "supported");
  if (!qwen3) {
    TRY(f.integer("shared_expert_intermediate_size",
                  c.sharedIntermediateSize, 0));
    if (c.sharedIntermediateSize < 0 ||
        c.sharedIntermediateSize > FieldReader::kMaxSize)
      return f.error("shared_expert_intermediate_size",
                     "must be between 0 and " +
                         std::to_string(FieldReader::kMaxSize));
    c.sharedExpertGate = c.sharedIntermediateSize > 0;
  }
  return readExperts(f, c, "num_experts", "num_experts_per_tok");
}

static Status readYarn(const FieldReader &f, const JsonValue &scaling,
                       ModelConfig &c) {
  FieldReader r(scaling, f.origin());
  const char *field = f.has("rope_scaling") ? "rope_scaling"
                                            : "rope_parameters";
  auto err = [&](const std::string &member, const std::string &what) {
    return f.error(std::string(field) + "." + member, what);
  };
  std::string type;
  TRY(ropeType(f, field, scaling, type));
  if (type == "default")
    return Status::success();
  if (type != "yarn")
    return err(r.has("rope_type") ? "rope_type" : "type",
               "'" + type + "' is not supported (yarn or default)");
  YarnConfig y;
  Status st = r.number("factor", y.factor);
  if (!st)
    return err("factor", "is missing or not a number");
  if (!(y.factor >= 1))
    return err("factor", "must be at least 1");
  int64_t original = 0;
  if (!r.has("original_max_position_embeddings"))
    return err("original_max_position_embeddings", "is missing");
  if (!r.integer("original_max_position_embeddings", original) ||
      original <= 0)
    return err("original_max_position_embeddings",
               "must be a positive integer");
  y.originalMaxPositionEmbeddings = original;
  struct {
    const char *name;
    double &value;
    double fallback;
  } params[] = {{"beta_fast", y.betaFast, 32.0},
                {"beta_slow", y.betaSlow, 1.0},
                {"mscale", y.mscale, 1.0},
                {"mscale_all_dim", y.mscaleAllDim, 0.0}};
  for (auto &p : params) {
    const JsonValue *v = scaling.get(p.name);
    if (v && !v->isNull() && !v->isNumber())
      return err(p.name, std::string("must be a number, got ") +
                             moe_rt::jsonKindName(v->kind()));
    if (!r.number(p.name, p.value, p.fallback))
      return err(p.name, "must be a finite number");
  }
  c.yarn = y;
  return Status::success();
}

static Status readDeepseek(const FieldReader &f, ModelConfig &c, bool v3) {
  TRY(readCommon(f, c, 1e-6, 10000.0));
  c.headDim = 0;
  TRY(f.optionalPositive("q_lora_rank", c.qLoraRank));
  TRY(f.positive("kv_lora_rank", c.kvLoraRank));
  TRY(f.positive("qk_nope_head_dim", c.qkNopeHeadDim));
  TRY(f.positive("qk_rope_head_dim", c.qkRopeHeadDim));
  TRY(f.positive("v_head_dim", c.vHeadDim));
  if (c.qkRopeHeadDim % 2 != 0)
    return f.error("qk_rope_head_dim", "must be even (RoPE needs pairs)");
  TRY(f.boolean("rope_interleave", c.ropeInterleave, true));
  if (const JsonValue *scaling = ropeScaling(f))
    TRY(readYarn(f, *scaling, c));
  bool attentionBias = false;
  TRY(f.boolean("attention_bias", attentionBias, false));
  if (attentionBias)
    return f.error("attention_bias",
                   "is true: MLA projection biases are not supported");

  TRY(f.positive("intermediate_size", c.intermediateSize));
  if (f.has("n_routed_experts")) {
    TRY(f.positive("n_routed_experts", c.numExperts));
    TRY(f.positive("moe_intermediate_size", c.moeIntermediateSize));
    TRY(f.positive("num_experts_per_tok", c.topK));
  }
  int64_t shared = 0;
  TRY(f.integer("n_shared_experts", shared, 0));
  if (shared < 0 || shared > FieldReader::kMaxSize)
    return f.error("n_shared_experts",
                   "must be between 0 and " +
                       std::to_string(FieldReader::kMaxSize));
  c.sharedIntermediateSize = shared * c.moeIntermediateSize;
  TRY(f.integer("first_k_dense_replace", c.firstKDenseReplace, 0));
  if (c.firstKDenseReplace < 0)
    return f.error("first_k_dense_replace", "must not be negative");
  TRY(f.positive("moe_layer_freq", c.moeLayerFreq, 1));
  TRY(f.number("routed_scaling_factor", c.router.scalingFactor, 1.0));
  if (v3) {
    int64_t nextn = 0;
    TRY(f.integer("num_nextn_predict_layers", nextn, 0));
    c.ignoredTrailingLayers = std::max<int64_t>(nextn, 0);
  }
  if (c.numExperts <= 0)
    return Status::success();

  std::string scoring, method;
  TRY(f.string("scoring_func", scoring, v3 ? "sigmoid" : "softmax"));
  TRY(f.string("topk_method", method, v3 ? "noaux_tc" : "greedy"));
  TRY(f.positive("n_group", c.router.nGroup, 1));
  TRY(f.positive("topk_group", c.router.topkGroup, 1));
  if (v3) {
    if (scoring != "sigmoid")
      return f.error("scoring_func", "'" + scoring +
                                         "' is not supported for "
                                         "deepseek_v3 (sigmoid)");
    if (method != "noaux_tc")
      return f.error("topk_method", "'" + method +
                                        "' is not supported for "
                                        "deepseek_v3 (noaux_tc)");
    c.router.sigmoid = true;
    c.router.selectionBias = true;
    c.router.groupTop2Sum = true;
    TRY(f.boolean("norm_topk_prob", c.router.renormalize, true));
    c.router.renormalizeEpsilon = 1e-20;
  } else {
    if (scoring != "softmax")
      return f.error("scoring_func", "'" + scoring +
                                         "' is not supported for "
                                         "deepseek_v2 (softmax)");
    if (method != "greedy" && method != "group_limited_greedy")
      return f.error("topk_method",
                     "'" + method +
                         "' is not supported for deepseek_v2 (greedy, "
                         "group_limited_greedy)");
    if (method == "greedy") {
      c.router.nGroup = 1;
      c.router.topkGroup = 1;
    }
    // transformers' DeepseekV2 multiplies the top-k softmax weights by
    // routed_scaling_factor and never renormalizes them.
  }
  TRY(readExperts(f, c, "n_routed_experts", "num_experts_per_tok"));
  if (c.router.nGroup == 1) {
    // One group: plain top-k (Moonlight-style DeepSeek-V3 configs).
    c.router.topkGroup = 1;
    c.router.groupTop2Sum = false;
  } else {
    if (c.numExperts % c.router.nGroup != 0)
      return f.error("n_group", "(" + std::to_string(c.router.nGroup) +
                                    ") must divide n_routed_experts (" +
                                    std::to_string(c.numExperts) + ")");
    if (c.router.topkGroup <= 0 || c.router.topkGroup > c.router.nGroup)
      return f.error("topk_group",
                     "(" + std::to_string(c.router.topkGroup) +
                         ") must be between 1 and n_group (" +
                         std::to_string(c.router.nGroup) + ")");
    int64_t groupSize = c.numExperts / c.router.nGroup;
    if (c.router.topkGroup * groupSize < c.topK)
      return f.error("topk_group",
                     "(" + std::to_string(c.router.topkGroup) +
                         " groups of " + std::to_string(groupSize) +
                         " experts) leaves fewer than num_experts_per_tok (" +
                         std::to_string(c.topK) + ") experts to choose from");
    if (c.router.groupTop2Sum && groupSize < 2)
      return f.error("n_group", "gives groups of one expert; the group score "
                                "sums the best two");
  }
  return Status::success();
}

Status moe_mlir::hf::parseModelConfig(const JsonValue &config,
                                      const std::string &origin,
                                      ModelConfig &out) {
  if (!config.isObject())
    return Status::error(origin + ": not a JSON object");
  FieldReader f(config, origin);
  ModelConfig c;
  TRY(f.string("model_type", c.modelType));
  if (c.modelType == "mixtral") {
    c.family = ModelFamily::Mixtral;
    TRY(readMixtral(f, c));
  } else if (c.modelType == "qwen2_moe") {
    c.family = ModelFamily::Qwen2Moe;
    TRY(readQwen(f, c, /*qwen3=*/false));
  } else if (c.modelType == "qwen3_moe") {
    c.family = ModelFamily::Qwen3Moe;
    TRY(readQwen(f, c, /*qwen3=*/true));
  } else if (c.modelType == "deepseek_v2") {
    c.family = ModelFamily::DeepseekV2;
    TRY(readDeepseek(f, c, /*v3=*/false));
  } else if (c.modelType == "deepseek_v3") {
    c.family = ModelFamily::DeepseekV3;
    TRY(readDeepseek(f, c, /*v3=*/true));
  } else {
    return f.error("model_type", "'" + c.modelType +
                                     "' is not supported (mixtral, "
                                     "qwen2_moe, qwen3_moe, deepseek_v2, "
                                     "deepseek_v3)");
  }
  out = std::move(c);
  return Status::success();
}

Status moe_mlir::hf::readModelConfig(const std::string &path,
                                     ModelConfig &out) {
  JsonValue json;
  moe_rt::JsonParseOptions options;
  options.maxSize = 16 << 20;
  if (Status st = moe_rt::readJsonFile(path, json, options); !st)
    return st;
  return parseModelConfig(json, path, out);
}
