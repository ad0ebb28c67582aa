//===- AttentionLowering.cpp - mla.attention to linalg --------------------===//
//
// Part of moe-mlir.
//
// mla.attention in the form its weight_absorption says: naive (k_nope and
// v expanded from c_kv for every cached and new token), absorbed (kv_b_proj
// folded into the query and the output; the heads attend over the latents)
// or cost (an scf.if on the token counts picks one per call). Every
// contraction accumulates in f32; the scores, the causal mask and the
// softmax are f32. The projections with all heads at once (q, the naive
// expansion of the latents, o_proj) go through the vectorized x · Wᵀ
// kernel, the per-head products of the absorbed form and attention itself
// through the vector kernels of AttentionKernel.cpp (each with a
// linalg.generic form for dynamic sizes). Shapes (S new tokens, P cached
// ones, T = P + S):
//
//   q [S, N, D_n + D_r] f32, viewed as q_nope [S, N, D_n] and the rope
//   pairs [S, N, D_r/2] twice; q_rope [S, N, D_r] rotated, in halves
//   c_kv_out [T, R_kv], k_rope_out [T, D_r]      (cache element type)
//   naive:    [T, N, D_n + D_v] f32, viewed as k_nope [T, N, D_n] and
//             v [T, N, D_v]
//   absorbed: q_lat [S, N, R_kv], o_lat [S, N, R_kv]
//   o [S, N, D_v] -> [S, N·D_v]; out [S, H]
//
//===----------------------------------------------------------------------===//

#include "AttentionLowering.h"
#include "../Utils/LoweringUtils.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"

using namespace mlir;
using moe_mlir::mla::AttentionOp;

namespace moe_mlir::lowering::mla {

namespace {
Type elementTypeOf(Value v) {
  return cast<RankedTensorType>(v.getType()).getElementType();
}

/// A [rows, cols] window of a matrix starting at (0, colOffset), every
/// `colStride`-th column.
Value columns(OpBuilder &b, Location loc, Value m, OpFoldResult colOffset,
              OpFoldResult cols, int64_t colStride) {
  SmallVector<OpFoldResult> offsets = {b.getIndexAttr(0), colOffset};
  SmallVector<OpFoldResult> sizes = {tensor::getMixedSize(b, loc, m, 0), cols};
  SmallVector<OpFoldResult> strides = {b.getIndexAttr(1),
                                       b.getIndexAttr(colStride)};
  return tensor::ExtractSliceOp::create(b, loc, m, offsets, sizes, strides);
}

/// t[..., offset + stride·i] for i < size, a view of the last dimension of
/// t [S, N, D].
Value lastDimSlice(OpBuilder &b, Location loc, Value t, int64_t offset,
                   int64_t size, int64_t stride) {
  SmallVector<OpFoldResult> offsets = {b.getIndexAttr(0), b.getIndexAttr(0),
                                       b.getIndexAttr(offset)};
  SmallVector<OpFoldResult> sizes = mixedSizes(b, loc, t);
  sizes.back() = b.getIndexAttr(size);
  SmallVector<OpFoldResult> strides = {b.getIndexAttr(1), b.getIndexAttr(1),
                                       b.getIndexAttr(stride)};
  return tensor::ExtractSliceOp::create(b, loc, t, offsets, sizes, strides);
}

/// The contraction options for a product with the activations `a`: the
/// products stay exact f32 ones (as in the per-head generic form) unless
/// `a` is already bf16, where the bf16 dot products round nothing.
ContractionOptions exactProducts(const ContractionOptions &options, Value a) {
  ContractionOptions exact = options;
  exact.bf16DotProducts = options.bf16DotProducts && elementTypeOf(a).isBF16();
  return exact;
}

/// a · wᵀ [S, heads·width] in f32 through the vectorized contraction (all
/// heads of a head-major nn.Linear weight at once), viewed as
/// [S, heads, width].
Value projectHeads(OpBuilder &b, Location loc, Value a, Value w, int64_t heads,
                   int64_t width, const ContractionOptions &options) {
  Value m = contractTransposedB(b, loc, a, w, exactProducts(options, a));
  auto type = cast<RankedTensorType>(m.getType());
  auto flatType = RankedTensorType::get({type.getDimSize(0), heads * width},
                                        b.getF32Type());
  if (type != flatType)
    m = tensor::CastOp::create(b, loc, flatType, m);
  auto headType =
      RankedTensorType::get({type.getDimSize(0), heads, width}, b.getF32Type());
  SmallVector<OpFoldResult> shape = {tensor::getMixedSize(b, loc, m, 0),
                                     b.getIndexAttr(heads),
                                     b.getIndexAttr(width)};
  return tensor::ExpandShapeOp::create(b, loc, headType, m, {{0}, {1, 2}},
                                       shape);
}

} // namespace

LogicalResult lowerAttention(AttentionOp op, PatternRewriter &b,
                             const ContractionOptions &options) {
  Location loc = op.getLoc();
  Type f32 = b.getF32Type();
  auto heads = static_cast<int64_t>(op.getNumHeads());
  auto nope = static_cast<int64_t>(op.getQkNopeHeadDim());
  auto rope = static_cast<int64_t>(op.getQkRopeHeadDim());
  auto vdim = static_cast<int64_t>(op.getVHeadDim());
  int64_t half = rope / 2;
  bool interleave = op.getRopeInterleave();
  float eps = op.getRmsNormEps().convertToFloat();
  // The rope pairs (a, b) of a [.., D_r] row: (x[2i], x[2i+1]) or
  // (x[i], x[i + D_r/2]).
  int64_t pairStride = interleave ? 2 : 1;
  int64_t secondOffset = interleave ? 1 : half;

  Value x = op.getHidden();
  Value cKvCache = op.getCKvCache(), kRopeCache = op.getKRopeCache();
  Type cacheType = elementTypeOf(cKvCache);
  OpFoldResult tokens = tensor::getMixedSize(b, loc, x, 0);
  Value past = dimValue(b, loc, cKvCache, 0);
  OpFoldResult pastSize = getAsOpFoldResult(past);
  OpFoldResult total = addSizes(b, loc, pastSize, tokens);
  OpFoldResult kvRank = tensor::getMixedSize(b, loc, op.getKvANorm(), 0);

  // Query: q [S, N, D_n + D_r] through the vectorized contraction, then
  // views of q_nope [S, N, D_n] and of the two components of the rope pairs
  // of q_rope [S, N, D_r/2].
  Value qInput = x, qWeight = op.getQProj();
  if (op.hasQueryLora()) {
    qInput = rmsNorm(b, loc, contractTransposedB(b, loc, x, op.getQAProj(), options),
                     op.getQANorm(), eps);
    qWeight = op.getQBProj();
  }
  int64_t qHead = nope + rope;
  Value q = projectHeads(b, loc, qInput, qWeight, heads, qHead, options);
  Value qNope = lastDimSlice(b, loc, q, 0, nope, 1);
  Value qFirst = lastDimSlice(b, loc, q, nope, half, pairStride);
  Value qSecond =
      lastDimSlice(b, loc, q, nope + secondOffset, half, pairStride);

  // Latent KV of the new tokens: [c, k_r] = x · kv_a_projᵀ [S, R_kv + D_r].
  Value kv = contractTransposedB(b, loc, x, op.getKvAProj(), options);
  Value cNew =
      rmsNorm(b, loc, columns(b, loc, kv, b.getIndexAttr(0), kvRank, 1),
              op.getKvANorm(), eps);
  Value kFirst = columns(b, loc, kv, kvRank, b.getIndexAttr(half), pairStride);
  Value kSecond = columns(
      b, loc, kv, addSizes(b, loc, kvRank, b.getIndexAttr(secondOffset)),
      b.getIndexAttr(half), pairStride);

  // RoPE at positions P .. P+S-1; the results are in the halves layout.
  SmallVector<double> freqs = ropeFrequencies(
      rope, op.getRopeTheta().convertToDouble(), op.getYarnAttr());
  auto [cos, sin] = ropeTables(b, loc, past, tokens, freqs,
                               ropeCosSinFactor(op.getYarnAttr()));
  auto [qRope0, qRope1] = rotatePairs(b, loc, qFirst, qSecond, cos, sin, f32);
  auto [kRope0, kRope1] =
      rotatePairs(b, loc, kFirst, kSecond, cos, sin, cacheType);

  // The caches: the P old rows, then the S new ones rounded to the cache
  // element type.
  Value cAll = emptyTensor(b, loc, {total, kvRank}, cacheType);
  OpFoldResult zero = b.getIndexAttr(0);
  cAll = insertAt(b, loc, cKvCache, cAll, {zero, zero});
  cAll = insertAt(b, loc, convertTensor(b, loc, cNew, cacheType), cAll,
                  {pastSize, zero});
  Value kAll = emptyTensor(b, loc, {total, b.getIndexAttr(rope)}, cacheType);
  kAll = insertAt(b, loc, kRopeCache, kAll, {zero, zero});
  kAll = insertAt(b, loc, kRope0, kAll, {pastSize, zero});
  kAll = insertAt(b, loc, kRope1, kAll, {pastSize, b.getIndexAttr(half)});

  // q_rope [S, N, D_r] in the halves layout of the cached rope keys: its
  // score with key j is the dot product with k_rope_out[j].
  SmallVector<OpFoldResult> qRopeSizes = mixedSizes(b, loc, qRope0);
  qRopeSizes.back() = b.getIndexAttr(rope);
  Value qRope = emptyTensor(b, loc, qRopeSizes, f32);
  qRope = insertAt(b, loc, qRope0, qRope, {zero, zero, zero});
  qRope = insertAt(b, loc, qRope1, qRope, {zero, zero, b.getIndexAttr(half)});
  ScoreTerm ropeTerm{qRope, kAll};
  double scale = op.getEffectiveSoftmaxScale();
  int64_t kvHead = nope + vdim;

  // Naive: expand every cached and new latent (rounded values) through the
  // vectorized contraction, [T, N, D_n + D_v], whose views are k_nope
  // [T, N, D_n] and v [T, N, D_v]; then attend.
  auto naive = [&](OpBuilder &nb) {
    Value expanded =
        projectHeads(nb, loc, cAll, op.getKvBProj(), heads, kvHead, options);
    Value kNope = lastDimSlice(nb, loc, expanded, 0, nope, 1);
    Value v = lastDimSlice(nb, loc, expanded, nope, vdim, 1);
    return attention(nb, loc, {ScoreTerm{qNope, kNope}, ropeTerm}, v, past,
                     tokens, total, scale, std::nullopt);
  };

  // Absorbed: q_lat [S, N, R_kv] = q_nope · W_kb per head; every head
  // attends over the latents themselves (keys and values [T, R_kv] shared
  // by all heads); o [S, N, D_v] = o_lat · W_vbᵀ per head.
  auto absorbed = [&](OpBuilder &nb) {
    Value qLat = headMatmul(nb, loc, qNope, op.getKvBProj(), kvHead, 0);
    Value oLat = attention(nb, loc, {ScoreTerm{qLat, cAll}, ropeTerm}, cAll,
                           past, tokens, total, scale, std::nullopt);
    return headMatmulTransposed(nb, loc, oLat, op.getKvBProj(), kvHead, nope,
                                vdim);
  };

  // o [S, N, D_v] f32, by the form weight_absorption chooses.
  Value o;
  switch (op.getWeightAbsorption().value_or(moe_mlir::mla::Absorption::Naive)) {
  case moe_mlir::mla::Absorption::Naive:
    o = naive(b);
    break;
  case moe_mlir::mla::Absorption::Absorbed:
    o = absorbed(b);
    break;
  case moe_mlir::mla::Absorption::Cost: {
    // Absorbed when it multiplies less:
    //   S·T·(2R - D_n - D_v) + S·R·(D_n + D_v) < T·R·(D_n + D_v).
    Value sv = getValueOrCreateConstantIndexOp(b, loc, tokens);
    Value tv = getValueOrCreateConstantIndexOp(b, loc, total);
    // R·(D_n + D_v) and 2·R - D_n - D_v, constants when R_kv is static.
    Value expand, perPair;
    if (std::optional<int64_t> r = getConstantIntValue(kvRank)) {
      expand = indexConst(b, loc, *r * (nope + vdim));
      perPair = indexConst(b, loc, 2 * *r - (nope + vdim));
    } else {
      Value rv = getValueOrCreateConstantIndexOp(b, loc, kvRank);
      expand = arith::MulIOp::create(b, loc, rv,
                                     indexConst(b, loc, nope + vdim));
      perPair = arith::SubIOp::create(
          b, loc, arith::MulIOp::create(b, loc, rv, indexConst(b, loc, 2)),
          indexConst(b, loc, nope + vdim));
    }
    Value st = arith::MulIOp::create(b, loc, sv, tv);
    Value absorbedCost = arith::AddIOp::create(
        b, loc, arith::MulIOp::create(b, loc, st, perPair),
        arith::MulIOp::create(b, loc, sv, expand));
    Value naiveCost = arith::MulIOp::create(b, loc, tv, expand);
    Value cheaper = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt,
                                          absorbedCost, naiveCost);
    std::optional<int64_t> staticTokens = getConstantIntValue(tokens);
    auto oType = RankedTensorType::get(
        {staticTokens ? *staticTokens : ShapedType::kDynamic, heads, vdim},
        f32);
    auto ifOp = scf::IfOp::create(
        b, loc, cheaper,
        [&](OpBuilder &nb, Location l) {
          Value v = absorbed(nb);
          if (v.getType() != oType)
            v = tensor::CastOp::create(nb, l, oType, v);
          scf::YieldOp::create(nb, l, v);
        },
        [&](OpBuilder &nb, Location l) {
          Value v = naive(nb);
          if (v.getType() != oType)
            v = tensor::CastOp::create(nb, l, oType, v);
          scf::YieldOp::create(nb, l, v);
        });
    o = ifOp.getResult(0);
    break;
  }
  }

  // out [S, H] = o [S, N·D_v] · o_projᵀ, heads concatenated, through the
  // vectorized contraction (exact f32 products).
  Value flat = tensor::CollapseShapeOp::create(
      b, loc, o, ArrayRef<ReassociationIndices>{{0}, {1, 2}});
  Value out = contractTransposedB(b, loc, flat, op.getOProj(),
                                  exactProducts(options, flat));
  out = convertTensor(b, loc, out, elementTypeOf(x));

  b.replaceOp(op, ValueRange{castToResult(b, loc, out, op.getOutput()),
                             castToResult(b, loc, cAll, op.getCKvOut()),
                             castToResult(b, loc, kAll, op.getKRopeOut())});
  return success();
}

} // namespace moe_mlir::lowering::mla
