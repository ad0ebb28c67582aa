//===- MLAOps.cpp - mla dialect operations --------------------------------===//
//
// Part of moe-mlir.
//
// As in the moe dialect, result-type inference is lenient (dynamic sizes
// where an operand is malformed) so that the verifier names the operand.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Dialect/MLA/IR/MLA.h"
#include "moe-mlir/Support/ShapeChecks.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/TypeUtilities.h"

#include <cmath>

using namespace mlir;
using namespace moe_mlir;
using namespace moe_mlir::mla;

static Type elementTypeOr(Type type, Type fallback) {
  if (auto tensor = llvm::dyn_cast<RankedTensorType>(type))
    return tensor.getElementType();
  return fallback;
}

static int64_t addSizes(int64_t a, int64_t b) {
  if (ShapedType::isDynamic(a) || ShapedType::isDynamic(b))
    return ShapedType::kDynamic;
  return a + b;
}

// Sizes are bounded so that the products of sizes the verifiers form
// (N * (D_n + D_r), KV * D, ...) cannot overflow.
static constexpr int64_t kMaxSize = int64_t{1} << 24;

static LogicalResult
checkSizeBounds(Operation *op,
                ArrayRef<std::pair<StringRef, int64_t>> namedSizes) {
  for (auto [name, value] : namedSizes)
    if (value > kMaxSize)
      return op->emitOpError()
             << name << " = " << value << " exceeds " << kMaxSize;
  return success();
}

/// The scalar attributes both attention ops carry.
static LogicalResult checkScalars(Operation *op, APFloat rmsNormEps,
                                  APFloat ropeTheta,
                                  std::optional<APFloat> softmaxScale) {
  if (!(rmsNormEps.convertToFloat() >= 0.0f))
    return op->emitOpError("rms_norm_eps must be non-negative");
  if (!(ropeTheta.convertToDouble() > 0.0))
    return op->emitOpError("rope_theta must be positive");
  if (softmaxScale && !(softmaxScale->convertToFloat() > 0.0f))
    return op->emitOpError("softmax_scale must be positive");
  return success();
}

//===----------------------------------------------------------------------===//
// AttentionOp
//===----------------------------------------------------------------------===//

bool AttentionOp::isCompatibleReturnTypes(TypeRange lhs, TypeRange rhs) {
  return tensorTypesCompatible(lhs, rhs);
}

LogicalResult AttentionOp::inferReturnTypes(MLIRContext *context,
                                            std::optional<Location>,
                                            Adaptor adaptor,
                                            SmallVectorImpl<Type> &types) {
  Type f32 = Float32Type::get(context);
  Type hiddenType = adaptor.getHidden().getType();
  Type ckvType = adaptor.getCKvCache().getType();
  Type kropeType = adaptor.getKRopeCache().getType();
  int64_t tokens = dimOrDynamic(hiddenType, 0);
  int64_t past = dimOrDynamic(ckvType, 0);
  int64_t total = addSizes(past, tokens);
  int64_t rope = static_cast<int64_t>(adaptor.getQkRopeHeadDim());
  types.push_back(RankedTensorType::get(
      {tokens, dimOrDynamic(hiddenType, 1)}, elementTypeOr(hiddenType, f32)));
  types.push_back(RankedTensorType::get(
      {total, dimOrDynamic(adaptor.getKvANorm().getType(), 0)},
      elementTypeOr(ckvType, f32)));
  types.push_back(
      RankedTensorType::get({total, rope}, elementTypeOr(kropeType, f32)));
  return success();
}

double AttentionOp::getEffectiveSoftmaxScale() {
  if (auto scale = getSoftmaxScale())
    return scale->convertToDouble();
  double headDim =
      static_cast<double>(getQkNopeHeadDim() + getQkRopeHeadDim());
  double scale = 1.0 / std::sqrt(headDim);
  if (auto yarn = getYarnAttr();
      yarn && !yarn.getMscaleAllDim().isZero()) {
    double m = yarnMscale(yarn.getFactor().convertToDouble(),
                          yarn.getMscaleAllDim().convertToDouble());
    scale *= m * m;
  }
  return scale;
}

LogicalResult AttentionOp::verify() {
  Operation *op = getOperation();
  using Dims = SmallVector<NamedDim>;
  auto heads = static_cast<int64_t>(getNumHeads());
  auto nope = static_cast<int64_t>(getQkNopeHeadDim());
  auto rope = static_cast<int64_t>(getQkRopeHeadDim());
  auto vdim = static_cast<int64_t>(getVHeadDim());
  if (failed(checkSizeBounds(op, {{"num_heads", heads},
                                  {"qk_nope_head_dim", nope},
                                  {"qk_rope_head_dim", rope},
                                  {"v_head_dim", vdim}})))
    return failure();
  int64_t qkWidth = heads * (nope + rope);
  int64_t kvWidth = heads * (nope + vdim);
  int64_t oWidth = heads * vdim;

  if (rope % 2 != 0)
    return emitOpError() << "qk_rope_head_dim must be even (RoPE rotates "
                            "pairs), got "
                         << rope;
  if (failed(checkRank(op, "hidden", getHidden(), {"S", "H"})))
    return failure();
  int64_t hidden = dimOrDynamic(getHidden().getType(), 1);

  // The query: a full projection or the q LoRA triple, never both.
  bool lora = getQAProj() || getQANorm() || getQBProj();
  if (getQProj() && lora)
    return emitOpError("takes either 'q_proj' or the q LoRA operands "
                       "('q_a_proj', 'q_a_norm', 'q_b_proj'), not both");
  if (!getQProj() && !lora)
    return emitOpError("requires 'q_proj' or the q LoRA operands "
                       "('q_a_proj', 'q_a_norm', 'q_b_proj')");
  if (lora && !(getQAProj() && getQANorm() && getQBProj()))
    return emitOpError("q LoRA requires all of 'q_a_proj', 'q_a_norm' and "
                       "'q_b_proj'");
  if (getQProj()) {
    if (failed(checkOperandShape(
            op, "q_proj", getQProj(),
            Dims{{"N*(D_n+D_r)", qkWidth}, {"H", hidden}})))
      return failure();
  } else {
    if (failed(checkRank(op, "q_a_proj", getQAProj(), {"R_q", "H"})))
      return failure();
    int64_t qRank = dimOrDynamic(getQAProj().getType(), 0);
    if (failed(checkOperandShape(op, "q_a_proj", getQAProj(),
                                 Dims{{"R_q", qRank}, {"H", hidden}})) ||
        failed(checkOperandShape(op, "q_a_norm", getQANorm(),
                                 Dims{{"R_q", qRank}})) ||
        failed(checkOperandShape(
            op, "q_b_proj", getQBProj(),
            Dims{{"N*(D_n+D_r)", qkWidth}, {"R_q", qRank}})))
      return failure();
  }

  // The latent KV path.
  if (failed(checkRank(op, "kv_a_norm", getKvANorm(), {"R_kv"})))
    return failure();
  int64_t kvRank = dimOrDynamic(getKvANorm().getType(), 0);
  if (failed(checkOperandShape(
          op, "kv_a_proj", getKvAProj(),
          Dims{{"R_kv+D_r", addSizes(kvRank, rope)}, {"H", hidden}})) ||
      failed(checkOperandShape(op, "kv_b_proj", getKvBProj(),
                               Dims{{"N*(D_n+D_v)", kvWidth},
                                    {"R_kv", kvRank}})) ||
      failed(checkOperandShape(op, "o_proj", getOProj(),
                               Dims{{"H", hidden}, {"N*D_v", oWidth}})))
    return failure();

  // The cache.
  if (failed(checkRank(op, "c_kv_cache", getCKvCache(), {"P", "R_kv"})))
    return failure();
  int64_t past = dimOrDynamic(getCKvCache().getType(), 0);
  if (failed(checkOperandShape(op, "c_kv_cache", getCKvCache(),
                               Dims{{"P", past}, {"R_kv", kvRank}})) ||
      failed(checkOperandShape(op, "k_rope_cache", getKRopeCache(),
                               Dims{{"P", past}, {"D_r", rope}})) ||
      failed(checkElementType(op, "k_rope_cache", getKRopeCache(),
                              getElementTypeOrSelf(getCKvCache().getType()),
                              "c_kv_cache")))
    return failure();

  // One element type for all weights.
  Type weightType = getElementTypeOrSelf(getKvAProj().getType());
  std::pair<StringRef, Value> weights[] = {
      {"q_proj", getQProj()},       {"q_a_proj", getQAProj()},
      {"q_a_norm", getQANorm()},    {"q_b_proj", getQBProj()},
      {"kv_a_norm", getKvANorm()},  {"kv_b_proj", getKvBProj()},
      {"o_proj", getOProj()}};
  for (auto [name, value] : weights)
    if (value &&
        failed(checkElementType(op, name, value, weightType, "kv_a_proj")))
      return failure();

  return checkScalars(op, getRmsNormEps(), getRopeTheta(), getSoftmaxScale());
}

//===----------------------------------------------------------------------===//
// GqaAttentionOp
//===----------------------------------------------------------------------===//

bool GqaAttentionOp::isCompatibleReturnTypes(TypeRange lhs, TypeRange rhs) {
  return tensorTypesCompatible(lhs, rhs);
}

LogicalResult GqaAttentionOp::inferReturnTypes(MLIRContext *context,
                                               std::optional<Location>,
                                               Adaptor adaptor,
                                               SmallVectorImpl<Type> &types) {
  Type f32 = Float32Type::get(context);
  Type hiddenType = adaptor.getHidden().getType();
  Type kType = adaptor.getKCache().getType();
  int64_t tokens = dimOrDynamic(hiddenType, 0);
  int64_t total = addSizes(dimOrDynamic(kType, 0), tokens);
  auto kvHeads = static_cast<int64_t>(adaptor.getNumKvHeads());
  auto headDim = static_cast<int64_t>(adaptor.getHeadDim());
  types.push_back(RankedTensorType::get(
      {tokens, dimOrDynamic(hiddenType, 1)}, elementTypeOr(hiddenType, f32)));
  types.push_back(RankedTensorType::get({total, kvHeads, headDim},
                                        elementTypeOr(kType, f32)));
  types.push_back(RankedTensorType::get(
      {total, kvHeads, headDim},
      elementTypeOr(adaptor.getVCache().getType(), f32)));
  return success();
}

double GqaAttentionOp::getEffectiveSoftmaxScale() {
  if (auto scale = getSoftmaxScale())
    return scale->convertToDouble();
  return 1.0 / std::sqrt(static_cast<double>(getHeadDim()));
}

LogicalResult GqaAttentionOp::verify() {
  Operation *op = getOperation();
  using Dims = SmallVector<NamedDim>;
  auto heads = static_cast<int64_t>(getNumHeads());
  auto kvHeads = static_cast<int64_t>(getNumKvHeads());
  auto headDim = static_cast<int64_t>(getHeadDim());
  if (failed(checkSizeBounds(op, {{"num_heads", heads},
                                  {"num_kv_heads", kvHeads},
                                  {"head_dim", headDim}})))
    return failure();
  if (heads % kvHeads != 0)
    return emitOpError() << "num_heads = " << heads
                         << " must be a multiple of num_kv_heads = "
                         << kvHeads;
  if (headDim % 2 != 0)
    return emitOpError() << "head_dim must be even (RoPE rotates pairs), got "
                         << headDim;
  int64_t qWidth = heads * headDim;
  int64_t kvWidth = kvHeads * headDim;

  if (failed(checkRank(op, "hidden", getHidden(), {"S", "H"})))
    return failure();
  int64_t hidden = dimOrDynamic(getHidden().getType(), 1);

  // The projections, nn.Linear layout [out, in].
  if (failed(checkOperandShape(op, "q_proj", getQProj(),
                               Dims{{"N*D", qWidth}, {"H", hidden}})) ||
      failed(checkOperandShape(op, "k_proj", getKProj(),
                               Dims{{"KV*D", kvWidth}, {"H", hidden}})) ||
      failed(checkOperandShape(op, "v_proj", getVProj(),
                               Dims{{"KV*D", kvWidth}, {"H", hidden}})) ||
      failed(checkOperandShape(op, "o_proj", getOProj(),
                               Dims{{"H", hidden}, {"N*D", qWidth}})))
    return failure();

  // The optional groups: all of their operands or none (the custom form
  // cannot express a partial group, the generic form can).
  if ((getQBias() || getKBias() || getVBias()) &&
      !(getQBias() && getKBias() && getVBias()))
    return emitOpError("bias requires all of 'q_bias', 'k_bias' and "
                       "'v_bias'");
  if (getQBias() &&
      (failed(checkOperandShape(op, "q_bias", getQBias(),
                                Dims{{"N*D", qWidth}})) ||
       failed(checkOperandShape(op, "k_bias", getKBias(),
                                Dims{{"KV*D", kvWidth}})) ||
       failed(checkOperandShape(op, "v_bias", getVBias(),
                                Dims{{"KV*D", kvWidth}}))))
    return failure();
  if (static_cast<bool>(getQNorm()) != static_cast<bool>(getKNorm()))
    return emitOpError("qk_norm requires both 'q_norm' and 'k_norm'");
  if (getQNorm() &&
      (failed(checkOperandShape(op, "q_norm", getQNorm(),
                                Dims{{"D", headDim}})) ||
       failed(checkOperandShape(op, "k_norm", getKNorm(),
                                Dims{{"D", headDim}}))))
    return failure();

  // The cache.
  if (failed(checkRank(op, "k_cache", getKCache(), {"P", "KV", "D"})))
    return failure();
  int64_t past = dimOrDynamic(getKCache().getType(), 0);
  Dims cacheDims = {{"P", past}, {"KV", kvHeads}, {"D", headDim}};
  if (failed(checkOperandShape(op, "k_cache", getKCache(), cacheDims)) ||
      failed(checkOperandShape(op, "v_cache", getVCache(), cacheDims)) ||
      failed(checkElementType(op, "v_cache", getVCache(),
                              getElementTypeOrSelf(getKCache().getType()),
                              "k_cache")))
    return failure();

  // One element type for all weights.
  Type weightType = getElementTypeOrSelf(getQProj().getType());
  std::pair<StringRef, Value> weights[] = {
      {"k_proj", getKProj()}, {"v_proj", getVProj()},
      {"o_proj", getOProj()}, {"q_bias", getQBias()},
      {"k_bias", getKBias()}, {"v_bias", getVBias()},
      {"q_norm", getQNorm()}, {"k_norm", getKNorm()}};
  for (auto [name, value] : weights)
    if (value &&
        failed(checkElementType(op, name, value, weightType, "q_proj")))
      return failure();

  return checkScalars(op, getRmsNormEps(), getRopeTheta(), getSoftmaxScale());
}

#define GET_OP_CLASSES
#include "moe-mlir/Dialect/MLA/IR/MLAOps.cpp.inc"
