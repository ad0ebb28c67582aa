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
  // Bound the sizes so that the products below cannot overflow.
  constexpr int64_t kMaxSize = int64_t{1} << 24;
  for (auto [name, value] : {std::pair{"num_heads", heads},
                             std::pair{"qk_nope_head_dim", nope},
                             std::pair{"qk_rope_head_dim", rope},
                             std::pair{"v_head_dim", vdim}})
    if (value > kMaxSize)
      return emitOpError() << name << " = " << value << " exceeds " << kMaxSize;
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

  if (!(getRmsNormEps().convertToFloat() >= 0.0f))
    return emitOpError("rms_norm_eps must be non-negative");
  if (!(getRopeTheta().convertToDouble() > 0.0))
    return emitOpError("rope_theta must be positive");
  if (auto scale = getSoftmaxScale(); scale && !(scale->convertToFloat() > 0.0f))
    return emitOpError("softmax_scale must be positive");
  return success();
}

#define GET_OP_CLASSES
#include "moe-mlir/Dialect/MLA/IR/MLAOps.cpp.inc"
