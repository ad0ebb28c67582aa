//===- AttentionLowering.cpp - mla.attention to linalg --------------------===//
//
// Part of moe-mlir.
//
// mla.attention in the form its weight_absorption says: naive (k_nope and
// v expanded from c_kv for every cached and new token), absorbed (kv_b_proj
// folded into the query and the output; the heads attend over the latents)
// or cost (an scf.if on the token counts picks one per call). Every
// contraction accumulates in f32; the scores, the causal mask and the
// softmax are f32. Shapes (S new tokens, P cached ones, T = P + S):
//
//   q_nope [S, N, D_n], the rope pairs of q_rope [S, N, D_r/2] twice
//   c_kv_out [T, R_kv], k_rope_out [T, D_r]      (cache element type)
//   naive:    k_nope [T, N, D_n], v [T, N, D_v]  (expanded latents, f32)
//   absorbed: q_lat [S, N, R_kv], o_lat [S, N, R_kv]
//   scores, exp [N, S, T]; max, sum [N, S]; o [S, N, D_v]; out [S, H]
//
//===----------------------------------------------------------------------===//

#include "AttentionLowering.h"
#include "../Utils/LoweringUtils.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/IR/AffineMap.h"

using namespace mlir;
using moe_mlir::mla::AttentionOp;

namespace moe_mlir::lowering::mla {

namespace {
using utils::IteratorType;
constexpr IteratorType kPar = IteratorType::parallel;
constexpr IteratorType kRed = IteratorType::reduction;

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

} // namespace

LogicalResult lowerAttention(AttentionOp op, PatternRewriter &b,
                             const ContractionOptions &options) {
  Location loc = op.getLoc();
  MLIRContext *ctx = b.getContext();
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

  // Query: q_nope [S, N, D_n] and the two components of the rope pairs of
  // q_rope [S, N, D_r/2], read straight out of the head-major weight.
  Value qInput = x, qWeight = op.getQProj();
  if (op.hasQueryLora()) {
    qInput = rmsNorm(b, loc, contractTransposedB(b, loc, x, op.getQAProj(), options),
                     op.getQANorm(), eps);
    qWeight = op.getQBProj();
  }
  int64_t qHead = nope + rope;
  Value qNope =
      headContraction(b, loc, qInput, qWeight, heads, qHead, 0, nope, 1);
  Value qFirst = headContraction(b, loc, qInput, qWeight, heads, qHead, nope,
                                 half, pairStride);
  Value qSecond = headContraction(b, loc, qInput, qWeight, heads, qHead,
                                  nope + secondOffset, half, pairStride);

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

  AffineExpr n, s, j, d;
  bindDims(ctx, n, s, j, d);
  auto map4 = [&](ArrayRef<AffineExpr> exprs) {
    return AffineMap::get(4, 0, exprs, ctx);
  };
  // scores [N, S, T] += q_rope · k_rope in f32.
  Value qRopeFirst = qRope0, qRopeSecond = qRope1;
  auto addRopeScores = [&](OpBuilder &nb, Value scores) {
    // The halves of the (rounded) rope keys: first and second components.
    Value kRopeFirst =
        columns(nb, loc, kAll, nb.getIndexAttr(0), nb.getIndexAttr(half), 1);
    Value kRopeSecond = columns(nb, loc, kAll, nb.getIndexAttr(half),
                                nb.getIndexAttr(half), 1);
    Value ropeParts[] = {qRopeFirst, qRopeSecond, kRopeFirst, kRopeSecond};
    return generic(
        nb, loc, ValueRange(ropeParts), scores,
        {map4({s, n, d}), map4({s, n, d}), map4({j, d}), map4({j, d}),
         map4({n, s, j})},
        {kPar, kPar, kPar, kRed}, [](OpBuilder &bb, Location l, ValueRange a) {
          Value p0 = arith::MulFOp::create(bb, l, a[0], toF32(bb, l, a[2]));
          Value p1 = arith::MulFOp::create(bb, l, a[1], toF32(bb, l, a[3]));
          Value acc = arith::AddFOp::create(bb, l, a[4], p0);
          yieldOp(bb, l, arith::AddFOp::create(bb, l, acc, p1));
        })[0];
  };
  double scale = op.getEffectiveSoftmaxScale();
  int64_t kvHead = nope + vdim;

  // Naive: expand every cached and new latent (rounded values),
  // k_nope [T, N, D_n] and v [T, N, D_v], then attend.
  auto naive = [&](OpBuilder &nb) {
    Value kNope = headContraction(nb, loc, cAll, op.getKvBProj(), heads,
                                  kvHead, 0, nope, 1);
    Value v = headContraction(nb, loc, cAll, op.getKvBProj(), heads, kvHead,
                              nope, vdim, 1);
    Value scores = headScores(nb, loc, qNope, kNope, /*group=*/1, tokens,
                              total);
    scores = addRopeScores(nb, scores);
    return attendValues(nb, loc, scores, v, /*group=*/1, past, scale,
                        std::nullopt);
  };

  // Absorbed: q_lat [S, N, R_kv] = q_nope · W_kb per head; every head
  // attends over the latents themselves ([T, 1, R_kv], one "kv head");
  // o [S, N, D_v] = o_lat · W_vbᵀ per head.
  auto absorbed = [&](OpBuilder &nb) {
    AffineExpr as, an, ar, ad;
    bindDims(ctx, as, an, ar, ad);
    SmallVector<OpFoldResult> latSizes = {tokens, nb.getIndexAttr(heads),
                                          kvRank};
    Value qLat = generic(
        nb, loc, ValueRange{qNope, op.getKvBProj()},
        filledTensor(nb, loc, latSizes, f32, f32Const(nb, loc, 0.0)),
        {map4({as, an, ad}), map4({an * kvHead + ad, ar}),
         map4({as, an, ar})},
        {kPar, kPar, kPar, kRed}, [](OpBuilder &bb, Location l, ValueRange a) {
          Value p = arith::MulFOp::create(bb, l, a[0], toF32(bb, l, a[1]));
          yieldOp(bb, l, arith::AddFOp::create(bb, l, a[2], p));
        })[0];
    auto cType = cast<RankedTensorType>(cAll.getType());
    auto latentsType = RankedTensorType::get(
        {cType.getDimSize(0), 1, cType.getDimSize(1)}, cType.getElementType());
    Value latents = tensor::ExpandShapeOp::create(
        nb, loc, latentsType, cAll, ArrayRef<ReassociationIndices>{{0, 1}, {2}});
    Value scores = headScores(nb, loc, qLat, latents, /*group=*/heads, tokens,
                              total);
    scores = addRopeScores(nb, scores);
    Value oLat = attendValues(nb, loc, scores, latents, /*group=*/heads, past,
                              scale, std::nullopt);
    SmallVector<OpFoldResult> oSizes = {tokens, nb.getIndexAttr(heads),
                                        nb.getIndexAttr(vdim)};
    return generic(
        nb, loc, ValueRange{oLat, op.getKvBProj()},
        filledTensor(nb, loc, oSizes, f32, f32Const(nb, loc, 0.0)),
        {map4({as, an, ad}), map4({an * kvHead + nope + ar, ad}),
         map4({as, an, ar})},
        {kPar, kPar, kPar, kRed}, [](OpBuilder &bb, Location l, ValueRange a) {
          Value p = arith::MulFOp::create(bb, l, a[0], toF32(bb, l, a[1]));
          yieldOp(bb, l, arith::AddFOp::create(bb, l, a[2], p));
        })[0];
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

  // out [S, H] = o [S, N·D_v] · o_projᵀ, heads concatenated.
  AffineExpr ps, ph, pn, pv;
  bindDims(ctx, ps, ph, pn, pv);
  SmallVector<OpFoldResult> outSizes = {
      tokens, tensor::getMixedSize(b, loc, op.getOProj(), 0)};
  Value out = generic(
      b, loc, ValueRange{o, op.getOProj()},
      filledTensor(b, loc, outSizes, f32, f32Const(b, loc, 0.0)),
      {map4({ps, pn, pv}), map4({ph, pn * vdim + pv}), map4({ps, ph})},
      {kPar, kPar, kRed, kRed}, [](OpBuilder &nb, Location l, ValueRange a) {
        Value p = arith::MulFOp::create(nb, l, a[0], toF32(nb, l, a[1]));
        yieldOp(nb, l, arith::AddFOp::create(nb, l, a[2], p));
      })[0];
  out = convertTensor(b, loc, out, elementTypeOf(x));

  b.replaceOp(op, ValueRange{castToResult(b, loc, out, op.getOutput()),
                             castToResult(b, loc, cAll, op.getCKvOut()),
                             castToResult(b, loc, kAll, op.getKRopeOut())});
  return success();
}

} // namespace moe_mlir::lowering::mla
