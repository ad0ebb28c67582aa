//===- AttentionCore.cpp - scores, masked softmax, values -----------------===//
//
// Part of moe-mlir.
//
// The part of attention that every mla op shares once its queries, keys and
// values are formed: the per-head scores, the causal (optionally windowed)
// mask, the max-subtracted softmax and the weighted sum of the values, all
// in f32. With static head dimensions this is the vectorized kernel of
// AttentionKernel.cpp; otherwise (here) linalg.generic ops, every reduction
// over its index in order. Either way the result does not depend on the
// thread count. Shapes of the generic form (S new tokens, P cached ones,
// T = P + S, N query heads, group query heads per key/value head):
//
//   q [S, N, D], k [T, N/group, D]         -> scores, exp [N, S, T]
//   max, sum [N, S]; values [T, N/group, D_v] -> o [S, N, D_v]
//
//===----------------------------------------------------------------------===//

#include "../Utils/LoweringUtils.h"
#include "AttentionLowering.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/AffineMap.h"

#include <limits>

using namespace mlir;

namespace moe_mlir::lowering::mla {

namespace {
using utils::IteratorType;
constexpr IteratorType kPar = IteratorType::parallel;
constexpr IteratorType kRed = IteratorType::reduction;

/// Key j is visible to the new token s: j <= past + s and, with a window W,
/// past + s - j < W.
Value visible(OpBuilder &b, Location loc, Value past, Value s, Value j,
              std::optional<int64_t> window) {
  Value last = arith::AddIOp::create(b, loc, past, s);
  Value causal =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sle, j, last);
  if (!window)
    return causal;
  Value distance = arith::SubIOp::create(b, loc, last, j);
  Value inWindow = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt,
                                         distance, indexConst(b, loc, *window));
  return arith::AndIOp::create(b, loc, causal, inWindow);
}
} // namespace

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

Value insertAt(OpBuilder &b, Location loc, Value src, Value dest,
               ArrayRef<OpFoldResult> offsets) {
  SmallVector<OpFoldResult> strides(offsets.size(), b.getIndexAttr(1));
  return tensor::InsertSliceOp::create(b, loc, src, dest, offsets,
                                       mixedSizes(b, loc, src), strides);
}

/// scores[n, s, j] += Σ_d f32(q[s, n, d]) · f32(k[j, n / group, d]) for
/// q [S, N, D] and k [T, N / group, D], the reduction over d in order.
static Value accumulateScores(OpBuilder &b, Location loc, Value q, Value k,
                              int64_t group, Value scores) {
  MLIRContext *ctx = b.getContext();
  AffineExpr n, s, j, d;
  bindDims(ctx, n, s, j, d);
  auto map4 = [&](ArrayRef<AffineExpr> exprs) {
    return AffineMap::get(4, 0, exprs, ctx);
  };
  return generic(
      b, loc, ValueRange{q, k}, scores,
      {map4({s, n, d}), map4({j, n.floorDiv(group), d}), map4({n, s, j})},
      {kPar, kPar, kPar, kRed}, [](OpBuilder &nb, Location l, ValueRange a) {
        Value p = arith::MulFOp::create(nb, l, toF32(nb, l, a[0]),
                                        toF32(nb, l, a[1]));
        yieldOp(nb, l, arith::AddFOp::create(nb, l, a[2], p));
      })[0];
}

/// o [S, N, D_v] of the unscaled scores [N, S, T] and the values
/// [T, N / group, D_v] (see `attention`), every reduction over its index in
/// order.
static Value attendValues(OpBuilder &b, Location loc, Value scores,
                          Value values, int64_t group, Value past, double scale,
                          std::optional<int64_t> window) {
  MLIRContext *ctx = b.getContext();
  Type f32 = b.getF32Type();
  auto scoresType = cast<RankedTensorType>(scores.getType());
  int64_t heads = scoresType.getDimSize(0);
  // D_v, or R_kv (possibly dynamic) when the values are the latents.
  OpFoldResult vdim = tensor::getMixedSize(b, loc, values, 2);
  OpFoldResult tokens = tensor::getMixedSize(b, loc, scores, 1);

  // Softmax over the visible keys of scale · score, in f32.
  Value scaleValue = f32Const(b, loc, scale);
  AffineMap id3 = b.getMultiDimIdentityMap(3);
  AffineExpr n3, s3;
  bindDims(ctx, n3, s3);
  AffineMap perRow = AffineMap::get(3, 0, {n3, s3}, ctx);
  SmallVector<OpFoldResult> rowSizes = {b.getIndexAttr(heads), tokens};
  auto isVisible = [&](OpBuilder &nb, Location l) {
    return visible(nb, l, past, linalg::IndexOp::create(nb, l, 1),
                   linalg::IndexOp::create(nb, l, 2), window);
  };
  Value maxInit =
      filledTensor(b, loc, rowSizes, f32,
                   f32Const(b, loc, -std::numeric_limits<double>::infinity()));
  Value rowMax = generic(
      b, loc, scores, maxInit, {id3, perRow}, {kPar, kPar, kRed},
      [&](OpBuilder &nb, Location l, ValueRange a) {
        Value ok = isVisible(nb, l);
        Value scaled = arith::MulFOp::create(nb, l, a[0], scaleValue);
        Value larger = arith::MaximumFOp::create(nb, l, a[1], scaled);
        yieldOp(nb, l, arith::SelectOp::create(nb, l, ok, larger, a[1]));
      })[0];
  Value exps = generic(
      b, loc, ValueRange{scores, rowMax},
      emptyTensor(b, loc, mixedSizes(b, loc, scores), f32), {id3, perRow, id3},
      {kPar, kPar, kPar}, [&](OpBuilder &nb, Location l, ValueRange a) {
        Value ok = isVisible(nb, l);
        Value scaled = arith::MulFOp::create(nb, l, a[0], scaleValue);
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

  // o [S, N, D_v] = Σ_j exp_j v_j / Σ_j exp_j; head n reads values n/group.
  AffineExpr os, on, ov, oj;
  bindDims(ctx, os, on, ov, oj);
  auto map4 = [&](ArrayRef<AffineExpr> exprs) {
    return AffineMap::get(4, 0, exprs, ctx);
  };
  SmallVector<OpFoldResult> oSizes = {tokens, b.getIndexAttr(heads), vdim};
  Value weighted = generic(
      b, loc, ValueRange{exps, values},
      filledTensor(b, loc, oSizes, f32, f32Const(b, loc, 0.0)),
      {map4({on, os, oj}), map4({oj, on.floorDiv(group), ov}),
       map4({os, on, ov})},
      {kPar, kPar, kPar, kRed}, [](OpBuilder &nb, Location l, ValueRange a) {
        Value p = arith::MulFOp::create(nb, l, a[0], toF32(nb, l, a[1]));
        yieldOp(nb, l, arith::AddFOp::create(nb, l, a[2], p));
      })[0];
  AffineExpr ns, nn;
  bindDims(ctx, ns, nn);
  return generic(
      b, loc, ValueRange{weighted, rowSum}, emptyTensor(b, loc, oSizes, f32),
      {id3, AffineMap::get(3, 0, {nn, ns}, ctx), id3}, {kPar, kPar, kPar},
      [](OpBuilder &nb, Location l, ValueRange a) {
        yieldOp(nb, l, arith::DivFOp::create(nb, l, a[0], a[1]));
      })[0];
}

/// t [T, KV, D] as it is, or [T, D] viewed as [T, 1, D].
static Value asHeads(OpBuilder &b, Location loc, Value t) {
  auto type = cast<RankedTensorType>(t.getType());
  if (type.getRank() == 3)
    return t;
  auto headsType = RankedTensorType::get(
      {type.getDimSize(0), 1, type.getDimSize(1)}, type.getElementType());
  return tensor::ExpandShapeOp::create(
      b, loc, headsType, t, ArrayRef<ReassociationIndices>{{0, 1}, {2}});
}

Value attention(OpBuilder &b, Location loc, ArrayRef<ScoreTerm> terms,
                Value values, Value past, OpFoldResult tokens,
                OpFoldResult total, double scale,
                std::optional<int64_t> window) {
  if (canVectorizeAttention(terms, values))
    return vectorAttention(b, loc, terms, values, past, tokens, total, scale,
                           window);
  Type f32 = b.getF32Type();
  int64_t heads =
      cast<RankedTensorType>(terms.front().q.getType()).getDimSize(1);
  auto groupOf = [&](Value t) {
    return heads / cast<RankedTensorType>(t.getType()).getDimSize(1);
  };
  SmallVector<OpFoldResult> sizes = {b.getIndexAttr(heads), tokens, total};
  Value scores = filledTensor(b, loc, sizes, f32, f32Const(b, loc, 0.0));
  for (const ScoreTerm &term : terms) {
    Value k = asHeads(b, loc, term.k);
    scores = accumulateScores(b, loc, term.q, k, groupOf(k), scores);
  }
  Value v = asHeads(b, loc, values);
  return attendValues(b, loc, scores, v, groupOf(v), past, scale, window);
}

} // namespace moe_mlir::lowering::mla
