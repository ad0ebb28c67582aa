//===- RouteLowering.cpp - moe.route to linalg/scf ------------------------===//
//
// Part of moe-mlir.
//
// moe.route on logits [T, E] becomes:
//   scores      elementwise / row-reduction linalg.generic ops (f32)
//   groups      a reduction over each group, then topk_group argmax steps
//   top-k       k argmax steps, each a reduction over the experts that skips
//               the experts already chosen; a strict `>` keeps the first
//               (lowest) index among equal scores
//   weights     a gather of the chosen scores, renormalization, scaling
//   capacity    a sequential scf.for over the assignments, slot-major
// Expert-choice routing runs the argmax steps over the tokens instead.
//
//===----------------------------------------------------------------------===//

#include "../Utils/LoweringUtils.h"
#include "Lowerings.h"

#include "moe-mlir/Dialect/MoE/IR/MoE.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

#include <limits>

using namespace mlir;
using namespace moe_mlir::lowering;
using moe_mlir::moe::GroupScore;
using moe_mlir::moe::MaskFill;
using moe_mlir::moe::RouteOp;
using moe_mlir::moe::RoutingMode;
using moe_mlir::moe::Scoring;

namespace {
using utils::IteratorType;
constexpr IteratorType kPar = IteratorType::parallel;
constexpr IteratorType kRed = IteratorType::reduction;

/// Helper bound to one rewrite: the location, the builder and the sizes.
struct RouteBuilder {
  PatternRewriter &b;
  Location loc;
  OpFoldResult tokens;       // T
  int64_t experts;           // E

  Type f32() { return b.getF32Type(); }
  Type i32() { return b.getI32Type(); }
  MLIRContext *ctx() { return b.getContext(); }
  AffineMap id2() { return b.getMultiDimIdentityMap(2); }
  AffineMap rowMap() { // (d0, d1) -> (d0)
    return AffineMap::get(2, 0, {getAffineDimExpr(0, ctx())}, ctx());
  }
  AffineMap colMap() { // (d0, d1) -> (d1)
    return AffineMap::get(2, 0, {getAffineDimExpr(1, ctx())}, ctx());
  }

  Value filled(ArrayRef<OpFoldResult> sizes, Type type, Value v) {
    return filledTensor(b, loc, sizes, type, v);
  }
  Value negInf() {
    return f32Const(b, loc, -std::numeric_limits<double>::infinity());
  }

  /// f32 scores of the logits for `scoring`.
  Value scores(Value logits, Scoring scoring) {
    Value init = emptyTensor(b, loc, {tokens, b.getIndexAttr(experts)}, f32());
    if (scoring == Scoring::Softmax)
      return softmaxRows(logits);
    return elementwise(
        b, loc, logits, init, [&](OpBuilder &nb, Location l, ValueRange a) {
          Value x = toF32(nb, l, a[0]);
          if (scoring == Scoring::Sigmoid)
            x = sigmoid(nb, l, x);
          yieldOp(nb, l, x);
        });
  }

  static Value sigmoid(OpBuilder &nb, Location l, Value x) {
    Value one = arith::ConstantOp::create(nb, l, nb.getF32Type(),
                                          nb.getF32FloatAttr(1.0f));
    Value e = math::ExpOp::create(nb, l, arith::NegFOp::create(nb, l, x));
    return arith::DivFOp::create(nb, l, one,
                                 arith::AddFOp::create(nb, l, one, e));
  }

  /// Row-wise softmax of x [R, C] (any float type) in f32.
  Value softmaxRows(Value x) {
    SmallVector<OpFoldResult> sizes = mixedSizes(b, loc, x);
    Value rowMax = rowReduceAny(x, sizes, negInf(),
                                [](OpBuilder &nb, Location l, Value v,
                                   Value acc) {
                                  return arith::MaximumFOp::create(nb, l, v,
                                                                   acc);
                                });
    Value exps = generic(
        b, loc, ValueRange{x, rowMax}, emptyTensor(b, loc, sizes, f32()),
        {id2(), rowMap(), id2()}, {kPar, kPar},
        [&](OpBuilder &nb, Location l, ValueRange a) {
          Value d = arith::SubFOp::create(nb, l, toF32(nb, l, a[0]), a[1]);
          yieldOp(nb, l, math::ExpOp::create(nb, l, d));
        })[0];
    Value sums = rowReduceAny(exps, sizes, f32Const(b, loc, 0.0),
                              [](OpBuilder &nb, Location l, Value v,
                                 Value acc) {
                                return arith::AddFOp::create(nb, l, acc, v);
                              });
    return generic(b, loc, ValueRange{exps, sums},
                   emptyTensor(b, loc, sizes, f32()),
                   {id2(), rowMap(), id2()}, {kPar, kPar},
                   [&](OpBuilder &nb, Location l, ValueRange a) {
                     yieldOp(
                         nb, l, arith::DivFOp::create(nb, l, a[0], a[1]));
                   })[0];
  }

  Value rowReduceAny(Value x, ArrayRef<OpFoldResult> sizes, Value init,
                     function_ref<Value(OpBuilder &, Location, Value, Value)>
                         combine) {
    Value acc = filled({sizes[0]}, f32(), init);
    return generic(b, loc, x, acc, {id2(), rowMap()}, {kPar, kRed},
                   [&](OpBuilder &nb, Location l, ValueRange a) {
                     yieldOp(
                         nb, l, combine(nb, l, toF32(nb, l, a[0]), a[1]));
                   })[0];
  }

  /// One argmax step over the columns of x [R, C] f32 that `chosen` [R, C]
  /// (i1) does not mark: the index (i32, -1 if none is left) of the first
  /// largest value of each row.
  Value argmaxStep(Value x, Value chosen) {
    OpFoldResult rows = tensor::getMixedSize(b, loc, x, 0);
    Value best = filled({rows}, f32(), negInf());
    Value bestIdx = filled({rows}, i32(), i32Const(b, loc, -1));
    return generic(
        b, loc, ValueRange{x, chosen}, ValueRange{best, bestIdx},
        {id2(), id2(), rowMap(), rowMap()}, {kPar, kRed},
        [&](OpBuilder &nb, Location l, ValueRange a) {
          Value col = arith::IndexCastOp::create(
              nb, l, nb.getI32Type(), linalg::IndexOp::create(nb, l, 1));
          Value none = arith::CmpIOp::create(
              nb, l, arith::CmpIPredicate::eq, a[3],
              arith::ConstantIntOp::create(nb, l, nb.getI32Type(), -1));
          Value greater = arith::CmpFOp::create(
              nb, l, arith::CmpFPredicate::OGT, a[0], a[2]);
          Value free = arith::XOrIOp::create(
              nb, l, a[1], arith::ConstantIntOp::create(nb, l, 1, 1));
          Value take = arith::AndIOp::create(
              nb, l, free, arith::OrIOp::create(nb, l, none, greater));
          yieldOp(
              nb, l,
              ValueRange{arith::SelectOp::create(nb, l, take, a[0], a[2]),
                         arith::SelectOp::create(nb, l, take, col, a[3])});
        })[1];
  }

  /// chosen[r, c] |= (c == idx[r]).
  Value markChosen(Value chosen, Value idx) {
    return generic(
        b, loc, ValueRange{idx}, chosen, {rowMap(), id2()}, {kPar, kPar},
        [&](OpBuilder &nb, Location l, ValueRange a) {
          Value col = arith::IndexCastOp::create(
              nb, l, nb.getI32Type(), linalg::IndexOp::create(nb, l, 1));
          Value hit =
              arith::CmpIOp::create(nb, l, arith::CmpIPredicate::eq, col, a[0]);
          yieldOp(nb, l,
                                  arith::OrIOp::create(nb, l, a[1], hit));
        })[0];
  }

  /// Runs `steps` argmax steps over x [R, C] and returns the chosen column
  /// indices [R, steps] (i32) in the order they were chosen.
  Value topk(Value x, int64_t steps) {
    OpFoldResult rows = tensor::getMixedSize(b, loc, x, 0);
    OpFoldResult cols = tensor::getMixedSize(b, loc, x, 1);
    Value chosen = filled({rows, cols}, b.getI1Type(),
                          arith::ConstantIntOp::create(b, loc, 0, 1));
    Value indices = emptyTensor(b, loc, {rows, b.getIndexAttr(steps)}, i32());
    auto loop = scf::ForOp::create(
        b, loc, indexConst(b, loc, 0), indexConst(b, loc, steps),
        indexConst(b, loc, 1), ValueRange{chosen, indices},
        [&](OpBuilder &nb, Location l, Value j, ValueRange iter) {
          Value idx = argmaxStepWith(nb, l, x, iter[0]);
          Value newChosen = markChosenWith(nb, l, iter[0], idx);
          Value newIndices = insertColumn(nb, l, idx, iter[1], j);
          scf::YieldOp::create(nb, l, ValueRange{newChosen, newIndices});
        });
    return loop.getResult(1);
  }

  // Variants of the helpers above usable inside a loop body builder.
  Value argmaxStepWith(OpBuilder &nb, Location l, Value x, Value chosen) {
    OpBuilder::InsertionGuard g(b);
    b.setInsertionPoint(nb.getInsertionBlock(), nb.getInsertionPoint());
    Location saved = loc;
    loc = l;
    Value r = argmaxStep(x, chosen);
    loc = saved;
    return r;
  }
  Value markChosenWith(OpBuilder &nb, Location l, Value chosen, Value idx) {
    OpBuilder::InsertionGuard g(b);
    b.setInsertionPoint(nb.getInsertionBlock(), nb.getInsertionPoint());
    return markChosen(chosen, idx);
  }

  /// dest[:, col] = column (rank-reducing insert of [R] into [R, K]).
  static Value insertColumn(OpBuilder &nb, Location l, Value column,
                            Value dest, Value col) {
    OpFoldResult rows = tensor::getMixedSize(nb, l, dest, 0);
    SmallVector<OpFoldResult> offsets = {nb.getIndexAttr(0), col};
    SmallVector<OpFoldResult> sizes = {rows, nb.getIndexAttr(1)};
    SmallVector<OpFoldResult> strides = {nb.getIndexAttr(1),
                                         nb.getIndexAttr(1)};
    return tensor::InsertSliceOp::create(nb, l, column, dest, offsets, sizes,
                                         strides);
  }
};
} // namespace

/// Selection scores after expert-group limiting.
static Value limitToGroups(RouteBuilder &rb, RouteOp op, Value selection) {
  PatternRewriter &b = rb.b;
  Location loc = rb.loc;
  int64_t groups = static_cast<int64_t>(op.getNGroup());
  int64_t groupSize = rb.experts / groups;
  MLIRContext *ctx = b.getContext();
  AffineExpr t, g;
  bindDims(ctx, t, g);
  // View the selection scores as [T, G, E/G]: (t, g, i) indexes group g's
  // member i.
  SmallVector<OpFoldResult> gsizes = {rb.tokens, b.getIndexAttr(groups)};
  auto groupedType = RankedTensorType::get(
      {cast<RankedTensorType>(selection.getType()).getDimSize(0), groups,
       groupSize},
      rb.f32());
  Value grouped = tensor::ExpandShapeOp::create(
      b, loc, groupedType, selection,
      SmallVector<ReassociationIndices>{{0}, {1, 2}},
      SmallVector<OpFoldResult>{rb.tokens, b.getIndexAttr(groups),
                                b.getIndexAttr(groupSize)});
  AffineMap member = b.getMultiDimIdentityMap(3);
  AffineMap perGroup = AffineMap::get(3, 0, {t, g}, ctx);
  Value groupScores;
  if (*op.getGroupScore() == GroupScore::Max) {
    Value acc = rb.filled(gsizes, rb.f32(), rb.negInf());
    groupScores =
        generic(b, loc, grouped, acc, {member, perGroup},
                {kPar, kPar, kRed},
                [](OpBuilder &nb, Location l, ValueRange a) {
                  yieldOp(
                      nb, l, arith::MaximumFOp::create(nb, l, a[0], a[1]));
                })[0];
  } else {
    // Running top-2 (first, second); equal maxima count twice.
    Value first = rb.filled(gsizes, rb.f32(), rb.negInf());
    Value second = rb.filled(gsizes, rb.f32(), rb.negInf());
    ValueRange top2 = generic(
        b, loc, grouped, ValueRange{first, second},
        {member, perGroup, perGroup}, {kPar, kPar, kRed},
        [](OpBuilder &nb, Location l, ValueRange a) {
          Value x = a[0], m1 = a[1], m2 = a[2];
          Value above = arith::CmpFOp::create(nb, l, arith::CmpFPredicate::OGT,
                                              x, m1);
          Value newSecond = arith::SelectOp::create(
              nb, l, above, m1, arith::MaximumFOp::create(nb, l, m2, x));
          Value newFirst = arith::SelectOp::create(nb, l, above, x, m1);
          yieldOp(nb, l, ValueRange{newFirst, newSecond});
        });
    groupScores = elementwise(
        b, loc, ValueRange{top2[0], top2[1]},
        emptyTensor(b, loc, gsizes, rb.f32()),
        [](OpBuilder &nb, Location l, ValueRange a) {
          yieldOp(nb, l,
                                  arith::AddFOp::create(nb, l, a[0], a[1]));
        });
  }

  // Keep the topk_group best groups.
  Value keptIdx = rb.topk(groupScores, static_cast<int64_t>(*op.getTopkGroup()));
  Value kept = rb.filled(gsizes, b.getI1Type(),
                         arith::ConstantIntOp::create(b, loc, 0, 1));
  for (int64_t j = 0, e = static_cast<int64_t>(*op.getTopkGroup()); j < e;
       ++j) {
    auto idxType = cast<RankedTensorType>(keptIdx.getType());
    Value column = tensor::ExtractSliceOp::create(
        b, loc, RankedTensorType::get({idxType.getDimSize(0)}, rb.i32()),
        keptIdx, SmallVector<OpFoldResult>{b.getIndexAttr(0), b.getIndexAttr(j)},
        SmallVector<OpFoldResult>{rb.tokens, b.getIndexAttr(1)},
        SmallVector<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1)});
    kept = rb.markChosen(kept, column);
  }

  // Mask the experts of the other groups.
  double fill = op.getGroupMaskFill() == MaskFill::NegInf
                    ? -std::numeric_limits<double>::infinity()
                    : 0.0;
  AffineExpr te, ee;
  bindDims(ctx, te, ee);
  AffineMap groupOf = AffineMap::get(2, 0, {te, ee.floorDiv(groupSize)}, ctx);
  return generic(b, loc, ValueRange{selection, kept},
                 emptyTensor(b, loc, {rb.tokens, b.getIndexAttr(rb.experts)},
                             rb.f32()),
                 {rb.id2(), groupOf, rb.id2()}, {kPar, kPar},
                 [&](OpBuilder &nb, Location l, ValueRange a) {
                   Value f = arith::ConstantOp::create(
                       nb, l, nb.getF32Type(),
                       nb.getF32FloatAttr(static_cast<float>(fill)));
                   yieldOp(
                       nb, l, arith::SelectOp::create(nb, l, a[1], a[0], f));
                 })[0];
}

/// w[t, j] = source[t, indices[t, j]] (source [T, E] f32).
static Value gatherChosen(RouteBuilder &rb, Value source, Value indices,
                          int64_t k) {
  PatternRewriter &b = rb.b;
  SmallVector<OpFoldResult> sizes = {rb.tokens, b.getIndexAttr(k)};
  return elementwise(
      b, rb.loc, indices, emptyTensor(b, rb.loc, sizes, rb.f32()),
      [&](OpBuilder &nb, Location l, ValueRange a) {
        Value t = linalg::IndexOp::create(nb, l, 0);
        Value e = arith::IndexCastOp::create(nb, l, nb.getIndexType(), a[0]);
        yieldOp(
            nb, l, tensor::ExtractOp::create(nb, l, source, ValueRange{t, e}));
      });
}

/// w / (Σ_row w + epsilon) over the rows of w [T, k].
static Value renormalizeRows(RouteBuilder &rb, Value w, float epsilon,
                             Value onlyWhere = nullptr) {
  PatternRewriter &b = rb.b;
  Location loc = rb.loc;
  SmallVector<OpFoldResult> sizes = mixedSizes(b, loc, w);
  Value acc = rb.filled({sizes[0]}, rb.f32(), f32Const(b, loc, 0.0));
  SmallVector<Value> inputs = {w};
  SmallVector<AffineMap> maps = {rb.id2()};
  if (onlyWhere) {
    inputs.push_back(onlyWhere);
    maps.push_back(rb.id2());
  }
  maps.push_back(rb.rowMap());
  Value sums = generic(b, loc, inputs, acc, maps, {kPar, kRed},
                       [&](OpBuilder &nb, Location l, ValueRange a) {
                         Value v = a[0];
                         Value out = a.back();
                         Value sum = arith::AddFOp::create(nb, l, out, v);
                         if (onlyWhere) {
                           Value valid = arith::CmpIOp::create(
                               nb, l, arith::CmpIPredicate::sge, a[1],
                               arith::ConstantIntOp::create(
                                   nb, l, nb.getI32Type(), 0));
                           sum = arith::SelectOp::create(nb, l, valid, sum,
                                                         out);
                         }
                         yieldOp(nb, l, sum);
                       })[0];
  SmallVector<Value> ins = {w, sums};
  SmallVector<AffineMap> m2 = {rb.id2(), rb.rowMap()};
  if (onlyWhere) {
    ins.push_back(onlyWhere);
    m2.push_back(rb.id2());
  }
  m2.push_back(rb.id2());
  return generic(
      b, loc, ins, emptyTensor(b, loc, sizes, rb.f32()), m2, {kPar, kPar},
      [&](OpBuilder &nb, Location l, ValueRange a) {
        Value eps = arith::ConstantOp::create(nb, l, nb.getF32Type(),
                                              nb.getF32FloatAttr(epsilon));
        Value denom = onlyWhere ? arith::MaximumFOp::create(nb, l, a[1], eps)
                                : arith::AddFOp::create(nb, l, a[1], eps)
                                      .getResult();
        Value q = arith::DivFOp::create(nb, l, a[0], denom);
        if (onlyWhere) {
          Value valid = arith::CmpIOp::create(
              nb, l, arith::CmpIPredicate::sge, a[2],
              arith::ConstantIntOp::create(nb, l, nb.getI32Type(), 0));
          q = arith::SelectOp::create(
              nb, l, valid, q,
              arith::ConstantOp::create(nb, l, nb.getF32Type(),
                                        nb.getF32FloatAttr(0.0f)));
        }
        yieldOp(nb, l, q);
      })[0];
}

static Value scaleBy(RouteBuilder &rb, Value w, float factor) {
  if (factor == 1.0f)
    return w;
  PatternRewriter &b = rb.b;
  return elementwise(
      b, rb.loc, w, emptyTensor(b, rb.loc, mixedSizes(b, rb.loc, w), rb.f32()),
      [&](OpBuilder &nb, Location l, ValueRange a) {
        Value f = arith::ConstantOp::create(nb, l, nb.getF32Type(),
                                            nb.getF32FloatAttr(factor));
        yieldOp(nb, l, arith::MulFOp::create(nb, l, a[0], f));
      });
}

/// Slot-major admission: drops (index -1) the assignments that find their
/// expert already holding `capacity` tokens.
static Value applyCapacity(RouteBuilder &rb, Value indices, Value capacity,
                           int64_t k) {
  PatternRewriter &b = rb.b;
  Location loc = rb.loc;
  Value zero = indexConst(b, loc, 0), one = indexConst(b, loc, 1);
  Value counts = rb.filled({b.getIndexAttr(rb.experts)}, rb.i32(),
                           i32Const(b, loc, 0));
  Value numTokens = getValueOrCreateConstantIndexOp(b, loc, rb.tokens);
  Value capI32 = arith::IndexCastOp::create(b, loc, rb.i32(), capacity);
  int64_t experts = rb.experts;
  auto slots = scf::ForOp::create(
      b, loc, zero, indexConst(b, loc, k), one, ValueRange{indices, counts},
      [&](OpBuilder &nb, Location l, Value j, ValueRange outer) {
        auto toks = scf::ForOp::create(
            nb, l, zero, numTokens, one, outer,
            [&](OpBuilder &ib, Location il, Value t, ValueRange it) {
              Value e = tensor::ExtractOp::create(ib, il, it[0],
                                                  ValueRange{t, j});
              Value c0 = arith::ConstantIntOp::create(ib, il, ib.getI32Type(),
                                                      0);
              Value cE = arith::ConstantIntOp::create(ib, il, ib.getI32Type(),
                                                      experts);
              Value valid = arith::AndIOp::create(
                  ib, il,
                  arith::CmpIOp::create(ib, il, arith::CmpIPredicate::sge, e,
                                        c0),
                  arith::CmpIOp::create(ib, il, arith::CmpIPredicate::slt, e,
                                        cE));
              Value slot = arith::IndexCastOp::create(
                  ib, il, ib.getIndexType(),
                  arith::SelectOp::create(ib, il, valid, e, c0));
              Value count = tensor::ExtractOp::create(ib, il, it[1], slot);
              Value room = arith::CmpIOp::create(
                  ib, il, arith::CmpIPredicate::slt, count, capI32);
              Value admit = arith::AndIOp::create(ib, il, valid, room);
              Value bumped = arith::AddIOp::create(
                  ib, il, count,
                  arith::ConstantIntOp::create(ib, il, ib.getI32Type(), 1));
              Value newCounts = tensor::InsertOp::create(
                  ib, il, arith::SelectOp::create(ib, il, admit, bumped, count),
                  it[1], slot);
              Value dropped = arith::AndIOp::create(
                  ib, il, valid,
                  arith::XOrIOp::create(
                      ib, il, room,
                      arith::ConstantIntOp::create(ib, il, 1, 1)));
              Value newE = arith::SelectOp::create(
                  ib, il, dropped,
                  arith::ConstantIntOp::create(ib, il, ib.getI32Type(), -1), e);
              Value newIndices =
                  tensor::InsertOp::create(ib, il, newE, it[0], ValueRange{t, j});
              scf::YieldOp::create(ib, il, ValueRange{newIndices, newCounts});
            });
        scf::YieldOp::create(nb, l, toks.getResults());
      });
  return slots.getResult(0);
}

static LogicalResult lowerTokenChoice(RouteOp op, PatternRewriter &b) {
  Location loc = op.getLoc();
  Value logits = op.getInput();
  RouteBuilder rb{b, loc, tensor::getMixedSize(b, loc, logits, 0),
                  op.getNumExperts()};
  int64_t k = static_cast<int64_t>(op.getK());
  Value s = rb.scores(logits, op.getScoring());

  Value selection = s;
  if (Value bias = op.getSelectionBias()) {
    selection = generic(
        b, loc, ValueRange{s, bias},
        emptyTensor(b, loc, mixedSizes(b, loc, s), rb.f32()),
        {rb.id2(), rb.colMap(), rb.id2()}, {kPar, kPar},
        [](OpBuilder &nb, Location l, ValueRange a) {
          yieldOp(nb, l,
                                  arith::AddFOp::create(nb, l, a[0], a[1]));
        })[0];
  }
  if (op.getNGroup() > 1)
    selection = limitToGroups(rb, op, selection);

  Value indices = rb.topk(selection, k);
  Value weights;
  if (op.getScoring() == Scoring::TopkSoftmax)
    weights = rb.softmaxRows(gatherChosen(rb, s, indices, k));
  else
    weights = gatherChosen(rb, s, indices, k);
  if (op.getRenormalize())
    weights = renormalizeRows(rb, weights,
                              op.getRenormalizeEpsilon().convertToFloat());
  if (op.hasCapacity()) {
    std::optional<float> factor;
    if (auto f = op.getCapacityFactor())
      factor = f->convertToFloat();
    Value capacity = capacityValue(
        b, loc, op.getExpertCapacity(), factor,
        getValueOrCreateConstantIndexOp(b, loc, rb.tokens), k, rb.experts);
    indices = applyCapacity(rb, indices, capacity, k);
    // The unscaled weights, renormalized over the admitted assignments.
    if (op.getRenormalizeAfterDrop())
      weights = renormalizeRows(rb, weights, 1.1920929e-07f, indices);
  }
  weights = scaleBy(rb, weights, op.getRoutedScalingFactor().convertToFloat());

  b.replaceOp(op, ValueRange{castToResult(b, loc, indices, op.getIndices()),
                             castToResult(b, loc, weights, op.getWeights())});
  return success();
}

/// Expert choice: every expert takes its C best tokens by score.
static LogicalResult lowerExpertChoice(RouteOp op, PatternRewriter &b) {
  Location loc = op.getLoc();
  Value logits = op.getInput();
  RouteBuilder rb{b, loc, tensor::getMixedSize(b, loc, logits, 0),
                  op.getNumExperts()};
  int64_t k = static_cast<int64_t>(op.getK());
  Value s = rb.scores(logits, op.getScoring());

  // Transpose to [E, T] so that the argmax steps run over the tokens.
  MLIRContext *ctx = b.getContext();
  AffineExpr d0, d1;
  bindDims(ctx, d0, d1);
  Value sT = generic(b, loc, s,
                     emptyTensor(b, loc, {b.getIndexAttr(rb.experts), rb.tokens},
                                 rb.f32()),
                     {AffineMap::get(2, 0, {d1, d0}, ctx), rb.id2()},
                     {kPar, kPar},
                     [](OpBuilder &nb, Location l, ValueRange a) {
                       yieldOp(nb, l, a[0]);
                     })[0];

  std::optional<float> factor;
  if (auto f = op.getCapacityFactor())
    factor = f->convertToFloat();
  Value numTokens = getValueOrCreateConstantIndexOp(b, loc, rb.tokens);
  Value capacity = capacityValue(b, loc, op.getExpertCapacity(), factor,
                                 numTokens, k, rb.experts);
  // C may exceed T: the steps past T find no token left and yield -1.
  Value chosen = rb.filled({b.getIndexAttr(rb.experts), rb.tokens},
                           b.getI1Type(),
                           arith::ConstantIntOp::create(b, loc, 0, 1));
  SmallVector<OpFoldResult> outSizes = {b.getIndexAttr(rb.experts),
                                        OpFoldResult(capacity)};
  Value indices = emptyTensor(b, loc, outSizes, rb.i32());
  float scale = op.getRoutedScalingFactor().convertToFloat();
  Value weights = emptyTensor(b, loc, outSizes, rb.f32());
  auto loop = scf::ForOp::create(
      b, loc, indexConst(b, loc, 0), capacity, indexConst(b, loc, 1),
      ValueRange{chosen, indices, weights},
      [&](OpBuilder &nb, Location l, Value c, ValueRange it) {
        Value idx = rb.argmaxStepWith(nb, l, sT, it[0]);
        Value newChosen = rb.markChosenWith(nb, l, it[0], idx);
        // weight[e] = s[e, idx[e]] * scale, 0 where idx = -1.
        Value w;
        {
          OpBuilder::InsertionGuard g(b);
          b.setInsertionPoint(nb.getInsertionBlock(), nb.getInsertionPoint());
          w = elementwise(
              b, l, idx,
              emptyTensor(b, l, {b.getIndexAttr(rb.experts)}, rb.f32()),
              [&](OpBuilder &ib, Location il, ValueRange a) {
                Value e = linalg::IndexOp::create(ib, il, 0);
                Value valid = arith::CmpIOp::create(
                    ib, il, arith::CmpIPredicate::sge, a[0],
                    arith::ConstantIntOp::create(ib, il, ib.getI32Type(), 0));
                Value t = arith::IndexCastOp::create(
                    ib, il, ib.getIndexType(),
                    arith::MaxSIOp::create(
                        ib, il, a[0],
                        arith::ConstantIntOp::create(ib, il, ib.getI32Type(),
                                                     0)));
                auto ifOp = scf::IfOp::create(
                    ib, il, valid,
                    [&](OpBuilder &tb, Location tl) {
                      Value v = tensor::ExtractOp::create(tb, tl, sT,
                                                          ValueRange{e, t});
                      v = arith::MulFOp::create(
                          tb, tl, v,
                          arith::ConstantOp::create(
                              tb, tl, tb.getF32Type(),
                              tb.getF32FloatAttr(scale)));
                      scf::YieldOp::create(tb, tl, v);
                    },
                    [&](OpBuilder &eb, Location el) {
                      scf::YieldOp::create(
                          eb, el,
                          ValueRange{arith::ConstantOp::create(
                              eb, el, eb.getF32Type(),
                              eb.getF32FloatAttr(0.0f))});
                    });
                yieldOp(ib, il, ifOp.getResult(0));
              });
        }
        Value newIndices = RouteBuilder::insertColumn(nb, l, idx, it[1], c);
        Value newWeights = RouteBuilder::insertColumn(nb, l, w, it[2], c);
        scf::YieldOp::create(nb, l,
                             ValueRange{newChosen, newIndices, newWeights});
      });
  b.replaceOp(op, ValueRange{castToResult(b, loc, loop.getResult(1),
                                          op.getIndices()),
                             castToResult(b, loc, loop.getResult(2),
                                          op.getWeights())});
  return success();
}

LogicalResult moe_mlir::lowering::lowerRoute(RouteOp op,
                                             PatternRewriter &rewriter) {
  if (op.hasRouterWeight())
    return rewriter.notifyMatchFailure(
        op, "router logits not materialized (moe-materialize-router-logits)");
  if (op.getMode() == RoutingMode::ExpertChoice)
    return lowerExpertChoice(op, rewriter);
  return lowerTokenChoice(op, rewriter);
}
