//===- Importer.cpp - Hugging Face checkpoints as moe-mlir modules --------===//
//
// Part of moe-mlir's Hugging Face frontend.
//
// Reads config.json, checks the safetensors headers against it (every
// tensor present with the right shape and a supported dtype, no tensor left
// over) and builds the module (ModelBuilder). Weight data is never touched.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Import/HF/Importer.h"

#include "ModelBuilder.h"
#include "TensorLayout.h"

#include "moe-mlir/Dialect/MLA/IR/MLA.h"
#include "moe-mlir/Dialect/MoE/IR/MoE.h"
#include "moe-mlir/Import/HF/Config.h"
#include "moe-mlir/Runtime/ModelInfo.h"
#include "moe-mlir/Runtime/SafeTensors.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/Verifier.h"

#include <climits>
#include <cstdlib>
#include <map>
#include <set>
#include <sys/stat.h>

using namespace mlir;
using namespace moe_mlir;
using namespace moe_mlir::hf;

bool moe_mlir::hf::isCheckpointDirectory(const std::string &path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

void moe_mlir::hf::registerImportDialects(MLIRContext &context) {
  context.loadDialect<arith::ArithDialect, func::FuncDialect,
                      linalg::LinalgDialect, math::MathDialect,
                      tensor::TensorDialect, moe::MoEDialect,
                      mla::MLADialect>();
}

static std::string shapeText(const std::vector<int64_t> &shape) {
  return moe_rt::shapeToString(shape);
}

namespace {
/// The checkpoint's tensors checked against the config.
class CheckpointChecker {
public:
  CheckpointChecker(const ModelConfig &config,
                    const moe_rt::SafeTensorsIndex &index)
      : c_(config), index_(index) {}

  /// Checks every expected tensor and records its element type.
  bool check(std::string &error);
  /// The element type of a weight argument (a name or a stacked name).
  Type typeOf(MLIRContext &ctx, const std::string &name) const;

private:
  bool expect(const std::string &name, const std::vector<int64_t> &shape,
              std::string &error);
  bool expectDecl(const WeightDecl &decl, const std::string &fullName,
                  std::string &error);
  bool isIgnorable(const std::string &name) const;

  const ModelConfig &c_;
  const moe_rt::SafeTensorsIndex &index_;
  std::set<std::string> expected_;
  std::map<std::string, moe_rt::SafeTensorsDType> dtypes_; // by argument
};
} // namespace

bool CheckpointChecker::expect(const std::string &name,
                               const std::vector<int64_t> &shape,
                               std::string &error) {
  const moe_rt::SafeTensorsFile *file = nullptr;
  const moe_rt::TensorInfo *info = index_.find(name, &file);
  if (!info) {
    error = index_.path() + ": missing tensor '" + name + "' (a " +
            c_.modelType + " model with this config.json has it)";
    return false;
  }
  using D = moe_rt::SafeTensorsDType;
  if (info->dtype == D::F8_E4M3 || info->dtype == D::F8_E5M2) {
    error = file->path() + ": tensor '" + name + "' has dtype " +
            moe_rt::safeTensorsDTypeName(info->dtype) +
            ": FP8 checkpoints are not supported; dequantize to bfloat16 "
            "first";
    return false;
  }
  if (info->dtype != D::F32 && info->dtype != D::F16 &&
      info->dtype != D::BF16) {
    error = file->path() + ": tensor '" + name + "' has dtype " +
            moe_rt::safeTensorsDTypeName(info->dtype) +
            " (weights must be F32, F16 or BF16)";
    return false;
  }
  if (info->shape != shape) {
    error = file->path() + ": tensor '" + name + "' has shape " +
            shapeText(info->shape) + ", the config needs " +
            shapeText(shape);
    return false;
  }
  expected_.insert(name);
  return true;
}

bool CheckpointChecker::expectDecl(const WeightDecl &decl,
                                   const std::string &fullName,
                                   std::string &error) {
  if (!decl.stacked) {
    if (!expect(fullName, decl.shape, error))
      return false;
    dtypes_[fullName] = index_.find(fullName)->dtype;
    return true;
  }
  std::vector<int64_t> element(decl.shape.begin() + 1, decl.shape.end());
  size_t star = fullName.find('*');
  for (int64_t i = 0; i < decl.shape[0]; ++i) {
    std::string name = fullName.substr(0, star) + std::to_string(i) +
                       fullName.substr(star + 1);
    if (!expect(name, element, error))
      return false;
    // Experts stored in other float types are converted when bound.
    if (i == 0)
      dtypes_[fullName] = index_.find(name)->dtype;
  }
  return true;
}

bool CheckpointChecker::isIgnorable(const std::string &name) const {
  // Buffers some exporters save; recomputed from the config.
  if (name.find("rotary_emb.inv_freq") != std::string::npos)
    return true;
  // A tied head saved anyway: transformers ties it to the embeddings on
  // load, so its values are never used.
  if (c_.tieWordEmbeddings && name == "lm_head.weight")
    return true;
  // DeepSeek-V3's multi-token-prediction layers follow the decoder layers.
  const std::string prefix = "model.layers.";
  if (c_.ignoredTrailingLayers > 0 && name.rfind(prefix, 0) == 0) {
    int64_t layer = std::atoll(name.c_str() + prefix.size());
    return layer >= c_.numLayers &&
           layer < c_.numLayers + c_.ignoredTrailingLayers;
  }
  return false;
}

bool CheckpointChecker::check(std::string &error) {
  auto global = [&](const WeightDecl &d) {
    return expectDecl(d, d.name, error);
  };
  if (!global(embeddingWeight(c_)) || !global(finalNormWeight(c_)))
    return false;
  if (!c_.tieWordEmbeddings && !global(lmHeadWeight(c_)))
    return false;
  for (int64_t l = 0; l < c_.numLayers; ++l)
    for (const WeightDecl &d : layerWeights(c_, l))
      if (!expectDecl(d, layerTensorName(l, d.name), error))
        return false;
  for (const std::string &name : index_.names()) {
    if (expected_.count(name) || isIgnorable(name))
      continue;
    const moe_rt::SafeTensorsFile *file = nullptr;
    index_.find(name, &file);
    if (name.find("weight_scale_inv") != std::string::npos) {
      error = file->path() + ": tensor '" + name +
              "' is an FP8 block scale: FP8 checkpoints are not supported; "
              "dequantize to bfloat16 first";
      return false;
    }
    error = file->path() + ": unexpected tensor '" + name +
            "' (not part of a " + c_.modelType +
            " model with this config.json)";
    return false;
  }
  return true;
}

static Type mlirType(MLIRContext &ctx, moe_rt::SafeTensorsDType dtype) {
  switch (dtype) {
  case moe_rt::SafeTensorsDType::BF16:
    return BFloat16Type::get(&ctx);
  case moe_rt::SafeTensorsDType::F16:
    return Float16Type::get(&ctx);
  default:
    return Float32Type::get(&ctx);
  }
}

Type CheckpointChecker::typeOf(MLIRContext &ctx,
                               const std::string &name) const {
  auto it = dtypes_.find(name);
  return mlirType(ctx, it == dtypes_.end() ? moe_rt::SafeTensorsDType::F32
                                           : it->second);
}

OwningOpRef<ModuleOp> moe_mlir::hf::importModel(MLIRContext &context,
                                                const std::string &path,
                                                const ImportOptions &options,
                                                std::string &error) {
  registerImportDialects(context);
  struct stat st;
  if (stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    error = path + ": not a directory (a Hugging Face checkpoint is a "
                   "directory with config.json and safetensors files)";
    return nullptr;
  }
  std::string configPath = path + "/config.json";
  if (stat(configPath.c_str(), &st) != 0) {
    error = path + ": no config.json (not a Hugging Face checkpoint)";
    return nullptr;
  }
  ModelConfig config;
  if (moe_rt::Status s = readModelConfig(configPath, config); !s) {
    error = s.message;
    return nullptr;
  }

  std::unique_ptr<moe_rt::SafeTensorsIndex> index;
  std::unique_ptr<CheckpointChecker> checker;
  if (!options.shapeOnly && !config.quantization.empty()) {
    error = configPath + ": field 'quantization_config' (quant_method '" +
            config.quantization +
            "'): quantized checkpoints (e.g. FP8 with block scales) are not "
            "supported; dequantize to bfloat16 first";
    return nullptr;
  }
  if (!options.shapeOnly) {
    bool hasSingle = stat((path + "/model.safetensors").c_str(), &st) == 0;
    bool hasIndex =
        stat((path + "/model.safetensors.index.json").c_str(), &st) == 0;
    if (!hasSingle && !hasIndex) {
      error = path + ": no model.safetensors or model.safetensors.index.json "
                     "(import from config.json alone with --shape-only)";
      return nullptr;
    }
    if (moe_rt::Status s = moe_rt::openSafeTensorsCheckpoint(path, index);
        !s) {
      error = s.message;
      return nullptr;
    }
    checker = std::make_unique<CheckpointChecker>(config, *index);
    if (!checker->check(error))
      return nullptr;
  }

  Type defaultType = Float32Type::get(&context);
  if (config.torchDtype == "bfloat16")
    defaultType = BFloat16Type::get(&context);
  else if (config.torchDtype == "float16")
    defaultType = Float16Type::get(&context);
  WeightTypeFn weightType = [&](const std::string &name) -> Type {
    return checker ? checker->typeOf(context, name) : defaultType;
  };

  // The builder's ops must verify; a failure here is a bug in the builder,
  // reported as one line rather than a crash.
  std::string diagnostics;
  ScopedDiagnosticHandler handler(&context, [&](Diagnostic &diag) {
    if (diagnostics.empty())
      diagnostics = diag.str();
    return success();
  });
  OwningOpRef<ModuleOp> module = buildModel(context, config, weightType);
  OpBuilder b(&context);
  (*module)->setAttr("moe.model_type", b.getStringAttr(config.modelType));
  if (!options.shapeOnly) {
    char resolved[PATH_MAX];
    std::string absolute =
        realpath(path.c_str(), resolved) ? std::string(resolved) : path;
    (*module)->setAttr("moe.checkpoint", b.getStringAttr(absolute));
  }
  if (failed(verify(*module))) {
    error = configPath + ": internal error, the imported module does not "
                         "verify: " +
            diagnostics;
    return nullptr;
  }
  return module;
}
