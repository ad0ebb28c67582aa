//===- TensorLayout.h - the tensors of a Hugging Face checkpoint -*- C++ -*-===//
//
// Part of moe-mlir's Hugging Face frontend (internal).
//
// The names and shapes of the tensors a model family's checkpoint holds,
// derived from its config: what the importer checks the checkpoint against
// and what the model's weight arguments are.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_LIB_IMPORT_HF_TENSORLAYOUT_H
#define MOE_MLIR_LIB_IMPORT_HF_TENSORLAYOUT_H

#include "moe-mlir/Import/HF/Config.h"

#include <cstdint>
#include <string>
#include <vector>

namespace moe_mlir::hf {

/// One weight argument. A stacked weight stands for the tensors named with
/// '*' replaced by 0 .. shape[0]-1, each of shape shape[1:].
struct WeightDecl {
  std::string name; // inside a layer: relative to "model.layers.N."
  std::vector<int64_t> shape;
  bool stacked = false;
  bool needsF32 = false; // the op takes f32 only (a routing bias)
};

/// The weights of decoder layer `layer`, in argument order.
std::vector<WeightDecl> layerWeights(const ModelConfig &config, int64_t layer);

/// "model.layers.N." + the relative name.
std::string layerTensorName(int64_t layer, const std::string &relative);

/// Weights outside the layers: model.embed_tokens.weight, model.norm.weight
/// and (unless tied) lm_head.weight.
WeightDecl embeddingWeight(const ModelConfig &config);
WeightDecl finalNormWeight(const ModelConfig &config);
WeightDecl lmHeadWeight(const ModelConfig &config); // embeddings when tied

/// The per-layer caches: name suffix and the shape after the token axis.
struct CacheDecl {
  std::string name; // "k", "v", "c_kv", "k_rope"
  std::vector<int64_t> trailingShape;
};
std::vector<CacheDecl> layerCaches(const ModelConfig &config);

} // namespace moe_mlir::hf

#endif // MOE_MLIR_LIB_IMPORT_HF_TENSORLAYOUT_H
