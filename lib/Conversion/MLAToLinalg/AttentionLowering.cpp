//===- AttentionLowering.cpp - mla.attention to linalg --------------------===//
//
// Part of moe-mlir.
//
// The naive form of mla.attention: k_nope and v are expanded from c_kv for
// every cached and new token. Every contraction accumulates in f32; the
// scores, the causal mask and the softmax are f32. Shapes (S new tokens, P
// cached ones, T = P + S):
//
//   q_nope [S, N, D_n], the rope pairs of q_rope [S, N, D_r/2] twice
//   c_kv_out [T, R_kv], k_rope_out [T, D_r]      (cache element type)
//   k_nope [T, N, D_n], v [T, N, D_v]            (expanded latents, f32)
//   scores, exp [N, S, T]; max, sum [N, S]; o [S, N, D_v]; out [S, H]
//
//===----------------------------------------------------------------------===//

#include "AttentionLowering.h"
#include "../Utils/LoweringUtils.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/AffineMap.h"

#include <limits>

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

/// a + b, folded when both are constants.
OpFoldResult addSizes(OpBuilder &b, Location loc, OpFoldResult x,
                      OpFoldResult y) {
  std::optional<int64_t> cx = getConstantIntValue(x);
  std::optional<int64_t> cy = getConstantIntValue(y);
  if (cx && cy)
    return b.getIndexAttr(*cx + *cy);
  if (cx == 0)
    return y;
  if (cy == 0)
    return x;
  auto value = [&](OpFoldResult v) -> Value {
    if (auto c = getConstantIntValue(v))
      return indexConst(b, loc, *c);
    return cast<Value>(v);
  };
  return arith::AddIOp::create(b, loc, value(x), value(y)).getResult();
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

/// `src` written into `dest` at (rowOffset, colOffset).
Value insertAt(OpBuilder &b, Location loc, Value src, Value dest,
               OpFoldResult rowOffset, OpFoldResult colOffset) {
  SmallVector<OpFoldResult> offsets = {rowOffset, colOffset};
  SmallVector<OpFoldResult> strides(2, b.getIndexAttr(1));
  return tensor::InsertSliceOp::create(b, loc, src, dest, offsets,
                                       mixedSizes(b, loc, src), strides);
}

/// j <= past + s: key j is visible to the new token s.
Value visible(OpBuilder &b, Location loc, Value past, Value s, Value j) {
  Value last = arith::AddIOp::create(b, loc, past, s);
  return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sle, j, last);
}
} // namespace

LogicalResult lowerAttention(AttentionOp op, PatternRewriter &b) {
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
    qInput = rmsNorm(b, loc, contractTransposedB(b, loc, x, op.getQAProj()),
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
  Value kv = contractTransposedB(b, loc, x, op.getKvAProj());
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
  cAll = insertAt(b, loc, cKvCache, cAll, b.getIndexAttr(0), b.getIndexAttr(0));
  cAll = insertAt(b, loc, convertTensor(b, loc, cNew, cacheType), cAll,
                  pastSize, b.getIndexAttr(0));
  Value kAll = emptyTensor(b, loc, {total, b.getIndexAttr(rope)}, cacheType);
  kAll =
      insertAt(b, loc, kRopeCache, kAll, b.getIndexAttr(0), b.getIndexAttr(0));
  kAll = insertAt(b, loc, kRope0, kAll, pastSize, b.getIndexAttr(0));
  kAll = insertAt(b, loc, kRope1, kAll, pastSize, b.getIndexAttr(half));

  // Expansion of every cached and new latent (rounded values):
  // k_nope [T, N, D_n], v [T, N, D_v].
  int64_t kvHead = nope + vdim;
  Value kNope =
      headContraction(b, loc, cAll, op.getKvBProj(), heads, kvHead, 0, nope, 1);
  Value v = headContraction(b, loc, cAll, op.getKvBProj(), heads, kvHead, nope,
                            vdim, 1);

  // Raw scores [N, S, T] = q_nope · k_nope + q_rope · k_rope in f32.
  AffineExpr n, s, j, d;
  bindDims(ctx, n, s, j, d);
  auto map4 = [&](ArrayRef<AffineExpr> exprs) {
    return AffineMap::get(4, 0, exprs, ctx);
  };
  SmallVector<OpFoldResult> scoreSizes = {b.getIndexAttr(heads), tokens, total};
  Value scores = filledTensor(b, loc, scoreSizes, f32, f32Const(b, loc, 0.0));
  scores = generic(b, loc, ValueRange{qNope, kNope}, scores,
                   {map4({s, n, d}), map4({j, n, d}), map4({n, s, j})},
                   {kPar, kPar, kPar, kRed},
                   [](OpBuilder &nb, Location l, ValueRange a) {
                     Value p = arith::MulFOp::create(nb, l, a[0], a[1]);
                     yieldOp(nb, l, arith::AddFOp::create(nb, l, a[2], p));
                   })[0];
  // The halves of the (rounded) rope keys: first and second components.
  Value kRopeFirst =
      columns(b, loc, kAll, b.getIndexAttr(0), b.getIndexAttr(half), 1);
  Value kRopeSecond =
      columns(b, loc, kAll, b.getIndexAttr(half), b.getIndexAttr(half), 1);
  scores = generic(
      b, loc, ValueRange{qRope0, qRope1, kRopeFirst, kRopeSecond}, scores,
      {map4({s, n, d}), map4({s, n, d}), map4({j, d}), map4({j, d}),
       map4({n, s, j})},
      {kPar, kPar, kPar, kRed}, [](OpBuilder &nb, Location l, ValueRange a) {
        Value p0 = arith::MulFOp::create(nb, l, a[0], toF32(nb, l, a[2]));
        Value p1 = arith::MulFOp::create(nb, l, a[1], toF32(nb, l, a[3]));
        Value acc = arith::AddFOp::create(nb, l, a[4], p0);
        yieldOp(nb, l, arith::AddFOp::create(nb, l, acc, p1));
      })[0];

  // Softmax over the visible keys j <= P + s of scale · score, in f32.
  Value scale = f32Const(b, loc, op.getEffectiveSoftmaxScale());
  AffineMap id3 = b.getMultiDimIdentityMap(3);
  AffineExpr n3, s3;
  bindDims(ctx, n3, s3);
  AffineMap perRow = AffineMap::get(3, 0, {n3, s3}, ctx);
  SmallVector<OpFoldResult> rowSizes = {b.getIndexAttr(heads), tokens};
  Value maxInit =
      filledTensor(b, loc, rowSizes, f32,
                   f32Const(b, loc, -std::numeric_limits<double>::infinity()));
  Value rowMax = generic(
      b, loc, scores, maxInit, {id3, perRow}, {kPar, kPar, kRed},
      [&](OpBuilder &nb, Location l, ValueRange a) {
        Value ok = visible(nb, l, past, linalg::IndexOp::create(nb, l, 1),
                           linalg::IndexOp::create(nb, l, 2));
        Value scaled = arith::MulFOp::create(nb, l, a[0], scale);
        Value larger = arith::MaximumFOp::create(nb, l, a[1], scaled);
        yieldOp(nb, l, arith::SelectOp::create(nb, l, ok, larger, a[1]));
      })[0];
  Value exps = generic(
      b, loc, ValueRange{scores, rowMax},
      emptyTensor(b, loc, mixedSizes(b, loc, scores), f32), {id3, perRow, id3},
      {kPar, kPar, kPar}, [&](OpBuilder &nb, Location l, ValueRange a) {
        Value ok = visible(nb, l, past, linalg::IndexOp::create(nb, l, 1),
                           linalg::IndexOp::create(nb, l, 2));
        Value scaled = arith::MulFOp::create(nb, l, a[0], scale);
        Value e = math::ExpOp::create(
            nb, l, arith::SubFOp::create(nb, l, scaled, a[1]));
        yieldOp(nb, l,
                arith::SelectOp::create(nb, l, ok, e, f32Const(nb, l, 0.0)));
      })[0];
  Value rowSum = generic(
      b, loc, exps, filledTensor(b, loc, rowSizes, f32, f32Const(b, loc, 0.0)),
      {id3, perRow}, {kPar, kPar, kRed},
      [](OpBuilder &nb, Location l, ValueRange a) {
        yieldOp(nb, l, arith::AddFOp::create(nb, l, a[1], a[0]));
      })[0];

  // o [S, N, D_v] = Σ_j exp_j v_j / Σ_j exp_j.
  AffineExpr os, on, ov, oj;
  bindDims(ctx, os, on, ov, oj);
  SmallVector<OpFoldResult> oSizes = {tokens, b.getIndexAttr(heads),
                                      b.getIndexAttr(vdim)};
  Value weighted = generic(
      b, loc, ValueRange{exps, v},
      filledTensor(b, loc, oSizes, f32, f32Const(b, loc, 0.0)),
      {map4({on, os, oj}), map4({oj, on, ov}), map4({os, on, ov})},
      {kPar, kPar, kPar, kRed}, [](OpBuilder &nb, Location l, ValueRange a) {
        Value p = arith::MulFOp::create(nb, l, a[0], a[1]);
        yieldOp(nb, l, arith::AddFOp::create(nb, l, a[2], p));
      })[0];
  AffineExpr ns, nn;
  bindDims(ctx, ns, nn);
  Value o = generic(
      b, loc, ValueRange{weighted, rowSum}, emptyTensor(b, loc, oSizes, f32),
      {id3, AffineMap::get(3, 0, {nn, ns}, ctx), id3}, {kPar, kPar, kPar},
      [](OpBuilder &nb, Location l, ValueRange a) {
        yieldOp(nb, l, arith::DivFOp::create(nb, l, a[0], a[1]));
      })[0];

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
