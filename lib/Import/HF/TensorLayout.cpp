//===- TensorLayout.cpp - the tensors of a Hugging Face checkpoint --------===//
//
// Part of moe-mlir's Hugging Face frontend.
//
// nn.Linear weights are [out, in]; names as transformers saves them.
//
//===----------------------------------------------------------------------===//

#include "TensorLayout.h"

using namespace moe_mlir::hf;

std::string moe_mlir::hf::layerTensorName(int64_t layer,
                                          const std::string &relative) {
  return "model.layers." + std::to_string(layer) + "." + relative;
}

static void gqaAttention(const ModelConfig &c, std::vector<WeightDecl> &w) {
  int64_t h = c.hiddenSize, q = c.numHeads * c.headDim,
          kv = c.numKvHeads * c.headDim;
  w.push_back({"self_attn.q_proj.weight", {q, h}});
  w.push_back({"self_attn.k_proj.weight", {kv, h}});
  w.push_back({"self_attn.v_proj.weight", {kv, h}});
  w.push_back({"self_attn.o_proj.weight", {h, q}});
  if (c.qkvBias) {
    w.push_back({"self_attn.q_proj.bias", {q}});
    w.push_back({"self_attn.k_proj.bias", {kv}});
    w.push_back({"self_attn.v_proj.bias", {kv}});
  }
  if (c.qkNorm) {
    w.push_back({"self_attn.q_norm.weight", {c.headDim}});
    w.push_back({"self_attn.k_norm.weight", {c.headDim}});
  }
}

static void mlaAttention(const ModelConfig &c, std::vector<WeightDecl> &w) {
  int64_t h = c.hiddenSize;
  int64_t q = c.numHeads * (c.qkNopeHeadDim + c.qkRopeHeadDim);
  if (c.qLoraRank) {
    w.push_back({"self_attn.q_a_proj.weight", {*c.qLoraRank, h}});
    w.push_back({"self_attn.q_a_layernorm.weight", {*c.qLoraRank}});
    w.push_back({"self_attn.q_b_proj.weight", {q, *c.qLoraRank}});
  } else {
    w.push_back({"self_attn.q_proj.weight", {q, h}});
  }
  w.push_back({"self_attn.kv_a_proj_with_mqa.weight",
               {c.kvLoraRank + c.qkRopeHeadDim, h}});
  w.push_back({"self_attn.kv_a_layernorm.weight", {c.kvLoraRank}});
  w.push_back({"self_attn.kv_b_proj.weight",
               {c.numHeads * (c.qkNopeHeadDim + c.vHeadDim), c.kvLoraRank}});
  w.push_back({"self_attn.o_proj.weight", {h, c.numHeads * c.vHeadDim}});
}

/// A SwiGLU MLP (gate, up, down) under `prefix`, of width `inter`.
static void gatedMlp(const std::string &prefix, int64_t hidden, int64_t inter,
                     std::vector<WeightDecl> &w) {
  w.push_back({prefix + "gate_proj.weight", {inter, hidden}});
  w.push_back({prefix + "up_proj.weight", {inter, hidden}});
  w.push_back({prefix + "down_proj.weight", {hidden, inter}});
}

static void sparseBlock(const ModelConfig &c, std::vector<WeightDecl> &w) {
  int64_t h = c.hiddenSize, e = c.numExperts, i = c.moeIntermediateSize;
  if (c.family == ModelFamily::Mixtral) {
    w.push_back({"block_sparse_moe.gate.weight", {e, h}});
    w.push_back({"block_sparse_moe.experts.*.w1.weight", {e, i, h}, true});
    w.push_back({"block_sparse_moe.experts.*.w3.weight", {e, i, h}, true});
    w.push_back({"block_sparse_moe.experts.*.w2.weight", {e, h, i}, true});
    return;
  }
  w.push_back({"mlp.gate.weight", {e, h}});
  if (c.router.selectionBias)
    w.push_back({"mlp.gate.e_score_correction_bias", {e}, false, true});
  w.push_back({"mlp.experts.*.gate_proj.weight", {e, i, h}, true});
  w.push_back({"mlp.experts.*.up_proj.weight", {e, i, h}, true});
  w.push_back({"mlp.experts.*.down_proj.weight", {e, h, i}, true});
  if (c.sharedIntermediateSize > 0) {
    if (c.sharedExpertGate) {
      gatedMlp("mlp.shared_expert.", h, c.sharedIntermediateSize, w);
      w.push_back({"mlp.shared_expert_gate.weight", {1, h}});
    } else {
      gatedMlp("mlp.shared_experts.", h, c.sharedIntermediateSize, w);
    }
  }
}

std::vector<WeightDecl> moe_mlir::hf::layerWeights(const ModelConfig &c,
                                                   int64_t layer) {
  std::vector<WeightDecl> w;
  w.push_back({"input_layernorm.weight", {c.hiddenSize}});
  if (c.isMla())
    mlaAttention(c, w);
  else
    gqaAttention(c, w);
  w.push_back({"post_attention_layernorm.weight", {c.hiddenSize}});
  if (c.isMoeLayer(layer))
    sparseBlock(c, w);
  else
    gatedMlp("mlp.", c.hiddenSize, c.intermediateSize, w);
  return w;
}

WeightDecl moe_mlir::hf::embeddingWeight(const ModelConfig &c) {
  return {"model.embed_tokens.weight", {c.vocabSize, c.hiddenSize}};
}
WeightDecl moe_mlir::hf::finalNormWeight(const ModelConfig &c) {
  return {"model.norm.weight", {c.hiddenSize}};
}
WeightDecl moe_mlir::hf::lmHeadWeight(const ModelConfig &c) {
  if (c.tieWordEmbeddings)
    return embeddingWeight(c);
  return {"lm_head.weight", {c.vocabSize, c.hiddenSize}};
}

std::vector<CacheDecl> moe_mlir::hf::layerCaches(const ModelConfig &c) {
  if (c.isMla())
    return {{"c_kv", {c.kvLoraRank}}, {"k_rope", {c.qkRopeHeadDim}}};
  return {{"k", {c.numKvHeads, c.headDim}}, {"v", {c.numKvHeads, c.headDim}}};
}
