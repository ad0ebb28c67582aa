//===- GqaLowering.cpp - mla.gqa_attention to linalg ----------------------===//
//
// Part of moe-mlir.
//
// Grouped-query attention with a KV cache. The projections go through the
// vectorized x · Wᵀ contraction; their [S, heads·D] results are viewed as
// [S, heads, D] (tensor.expand_shape, no copy); RMSNorm of q and k (Qwen3),
// RoPE with HF's f32 tables, the caches, the scores and the causal softmax
// are the pieces shared with mla.attention (the vectorized attention
// kernel for static sizes). Every contraction accumulates in f32. Shapes
// (S new tokens, P cached ones, T = P + S, G = N / KV):
//
//   q [S, N, D] f32; k, v [S, KV, D] f32; the rope halves [S, ., D/2]
//   k_out, v_out [T, KV, D]                      (cache element type)
//   o [S, N, D] -> [S, N·D]; out [S, H]
//
//===----------------------------------------------------------------------===//

#include "../Utils/LoweringUtils.h"
#include "AttentionLowering.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/AffineMap.h"

using namespace mlir;
using moe_mlir::mla::GqaAttentionOp;

namespace moe_mlir::lowering::mla {

namespace {
Type elementTypeOf(Value v) {
  return cast<RankedTensorType>(v.getType()).getElementType();
}

/// m[s, c] += f32(bias[c]), in place.
Value addBias(OpBuilder &b, Location loc, Value m, Value bias) {
  MLIRContext *ctx = b.getContext();
  AffineExpr s, c;
  bindDims(ctx, s, c);
  return generic(
      b, loc, bias, m,
      {AffineMap::get(2, 0, {c}, ctx), b.getMultiDimIdentityMap(2)},
      {utils::IteratorType::parallel, utils::IteratorType::parallel},
      [](OpBuilder &nb, Location l, ValueRange a) {
        yieldOp(nb, l, arith::AddFOp::create(nb, l, a[1], toF32(nb, l, a[0])));
      })[0];
}

/// x · wᵀ (+ bias) [S, heads·D] in f32, viewed as [S, heads, D].
Value projectHeads(OpBuilder &b, Location loc, Value x, Value w, Value bias,
                   int64_t heads, int64_t headDim,
                   const ContractionOptions &options) {
  Type f32 = b.getF32Type();
  Value m = contractTransposedB(b, loc, x, w, options);
  // The width heads·D is known from the attributes even when w's is not.
  auto type = cast<RankedTensorType>(m.getType());
  auto flatType =
      RankedTensorType::get({type.getDimSize(0), heads * headDim}, f32);
  if (type != flatType)
    m = tensor::CastOp::create(b, loc, flatType, m);
  if (bias)
    m = addBias(b, loc, m, bias);
  auto headType =
      RankedTensorType::get({type.getDimSize(0), heads, headDim}, f32);
  SmallVector<OpFoldResult> shape = {tensor::getMixedSize(b, loc, m, 0),
                                     b.getIndexAttr(heads),
                                     b.getIndexAttr(headDim)};
  return tensor::ExpandShapeOp::create(b, loc, headType, m, {{0}, {1, 2}},
                                       shape);
}

/// t[..., offset : offset + size] of a tensor [..., D].
Value lastDimSlice(OpBuilder &b, Location loc, Value t, int64_t offset,
                   int64_t size) {
  auto rank = cast<RankedTensorType>(t.getType()).getRank();
  SmallVector<OpFoldResult> offsets(rank, b.getIndexAttr(0));
  SmallVector<OpFoldResult> sizes = mixedSizes(b, loc, t);
  SmallVector<OpFoldResult> strides(rank, b.getIndexAttr(1));
  offsets.back() = b.getIndexAttr(offset);
  sizes.back() = b.getIndexAttr(size);
  return tensor::ExtractSliceOp::create(b, loc, t, offsets, sizes, strides);
}

/// The halves (x[i], x[i + D/2]) of the rows of t [S, heads, D] rotated by
/// the RoPE tables and rounded to `elementType`.
std::pair<Value, Value> rotateHalves(OpBuilder &b, Location loc, Value t,
                                     Value cos, Value sin, Type elementType) {
  int64_t half = cast<RankedTensorType>(t.getType()).getDimSize(2) / 2;
  return rotatePairs(b, loc, lastDimSlice(b, loc, t, 0, half),
                     lastDimSlice(b, loc, t, half, half), cos, sin,
                     elementType);
}
} // namespace

LogicalResult lowerGqaAttention(GqaAttentionOp op, PatternRewriter &b,
                                const ContractionOptions &options) {
  Location loc = op.getLoc();
  Type f32 = b.getF32Type();
  auto heads = static_cast<int64_t>(op.getNumHeads());
  auto kvHeads = static_cast<int64_t>(op.getNumKvHeads());
  auto headDim = static_cast<int64_t>(op.getHeadDim());
  int64_t half = headDim / 2;

  Value x = op.getHidden();
  Value kCache = op.getKCache(), vCache = op.getVCache();
  Type cacheType = elementTypeOf(kCache);
  OpFoldResult tokens = tensor::getMixedSize(b, loc, x, 0);
  Value past = dimValue(b, loc, kCache, 0);
  OpFoldResult pastSize = getAsOpFoldResult(past);
  OpFoldResult total = addSizes(b, loc, pastSize, tokens);
  OpFoldResult zero = b.getIndexAttr(0);

  // Projections [S, heads, D] in f32, biases added (Qwen2).
  Value q =
      projectHeads(b, loc, x, op.getQProj(), op.getQBias(), heads, headDim, options);
  Value k =
      projectHeads(b, loc, x, op.getKProj(), op.getKBias(), kvHeads, headDim, options);
  Value v =
      projectHeads(b, loc, x, op.getVProj(), op.getVBias(), kvHeads, headDim, options);

  // Per-head RMSNorm of q and k before RoPE (Qwen3).
  if (op.hasQkNorm()) {
    float eps = op.getRmsNormEps().convertToFloat();
    q = rmsNorm(b, loc, q, op.getQNorm(), eps);
    k = rmsNorm(b, loc, k, op.getKNorm(), eps);
  }

  // RoPE at positions P .. P+S-1 with HF's f32 tables; q stays f32, the new
  // keys are rounded to the cache element type.
  SmallVector<double> freqs =
      hfInverseFrequencies(headDim, op.getRopeTheta().convertToDouble());
  auto [cos, sin] =
      ropeTables(b, loc, past, tokens, freqs, /*factor=*/1.0, RopeAngles::F32);
  auto [q0, q1] = rotateHalves(b, loc, q, cos, sin, f32);
  auto [k0, k1] = rotateHalves(b, loc, k, cos, sin, cacheType);
  Value qRot = emptyTensor(b, loc, mixedSizes(b, loc, q), f32);
  qRot = insertAt(b, loc, q0, qRot, {zero, zero, zero});
  qRot = insertAt(b, loc, q1, qRot, {zero, zero, b.getIndexAttr(half)});

  // The caches: the P old rows, then the S new ones (rounded).
  SmallVector<OpFoldResult> cacheSizes = {total, b.getIndexAttr(kvHeads),
                                          b.getIndexAttr(headDim)};
  Value kAll = emptyTensor(b, loc, cacheSizes, cacheType);
  kAll = insertAt(b, loc, kCache, kAll, {zero, zero, zero});
  kAll = insertAt(b, loc, k0, kAll, {pastSize, zero, zero});
  kAll = insertAt(b, loc, k1, kAll, {pastSize, zero, b.getIndexAttr(half)});
  Value vAll = emptyTensor(b, loc, cacheSizes, elementTypeOf(vCache));
  vAll = insertAt(b, loc, vCache, vAll, {zero, zero, zero});
  vAll = insertAt(b, loc, convertTensor(b, loc, v, elementTypeOf(vCache)), vAll,
                  {pastSize, zero, zero});

  // Attention of query head h over KV head h / G: o [S, N, D].
  std::optional<int64_t> window;
  if (auto w = op.getSlidingWindow())
    window = static_cast<int64_t>(*w);
  Value o = attention(b, loc, {ScoreTerm{qRot, kAll}}, vAll, past, tokens,
                      total, op.getEffectiveSoftmaxScale(), window);

  // out [S, H] = o [S, N·D] · o_projᵀ, heads concatenated.
  Value flat = tensor::CollapseShapeOp::create(
      b, loc, o, ArrayRef<ReassociationIndices>{{0}, {1, 2}});
  Value out = contractTransposedB(b, loc, flat, op.getOProj(), options);
  out = convertTensor(b, loc, out, elementTypeOf(x));

  b.replaceOp(op, ValueRange{castToResult(b, loc, out, op.getOutput()),
                             castToResult(b, loc, kAll, op.getKOut()),
                             castToResult(b, loc, vAll, op.getVOut())});
  return success();
}

} // namespace moe_mlir::lowering::mla
