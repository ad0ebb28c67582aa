//===- DispatchCombineLowering.cpp - moe.dispatch/combine to linalg -------===//
//
// Part of moe-mlir.
//
// Dispatch is split in two: a sequential bookkeeping loop over the
// assignments (integer work only: counts, the row of every assignment and
// the token of every row), then a parallel gather of the hidden rows.
// Combine is a gather, not a scatter: every output element reads the expert
// rows its token was sent to and sums them in slot order in f32, so no two
// iterations write the same element and no atomics are needed.
//
//===----------------------------------------------------------------------===//

#include "../Utils/LoweringUtils.h"
#include "Lowerings.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

using namespace mlir;
using namespace moe_mlir::lowering;
using moe_mlir::moe::CombineOp;
using moe_mlir::moe::DispatchMode;
using moe_mlir::moe::DispatchOp;

namespace {
using utils::IteratorType;
constexpr IteratorType kPar = IteratorType::parallel;
constexpr IteratorType kRed = IteratorType::reduction;

Value i32c(OpBuilder &b, Location l, int64_t v) { return i32Const(b, l, v); }

/// 0 <= v < bound (v i32, bound i32).
Value inRange(OpBuilder &b, Location l, Value v, Value bound) {
  return arith::AndIOp::create(
      b, l, arith::CmpIOp::create(b, l, arith::CmpIPredicate::sge, v,
                                  i32c(b, l, 0)),
      arith::CmpIOp::create(b, l, arith::CmpIPredicate::slt, v, bound));
}

Value toIndex(OpBuilder &b, Location l, Value v) {
  return arith::IndexCastOp::create(b, l, b.getIndexType(), v);
}
Value toI32(OpBuilder &b, Location l, Value v) {
  return arith::IndexCastOp::create(b, l, b.getI32Type(), v);
}

/// A two-level scf.for nest over [0, n0) x [0, n1) carrying `init`.
ValueRange forNest(OpBuilder &b, Location loc, Value n0, Value n1,
                   ValueRange init,
                   function_ref<SmallVector<Value>(OpBuilder &, Location,
                                                   Value, Value, ValueRange)>
                       body) {
  Value zero = indexConst(b, loc, 0), one = indexConst(b, loc, 1);
  auto outer = scf::ForOp::create(
      b, loc, zero, n0, one, init,
      [&](OpBuilder &ob, Location ol, Value i, ValueRange oi) {
        auto inner = scf::ForOp::create(
            ob, ol, zero, n1, one, oi,
            [&](OpBuilder &ib, Location il, Value j, ValueRange ii) {
              scf::YieldOp::create(ib, il, body(ib, il, i, j, ii));
            });
        scf::YieldOp::create(ob, ol, inner.getResults());
      });
  return outer.getResults();
}

/// rows[r..., h] = input[token[r...], h], or 0 where token = -1.
Value gatherRows(OpBuilder &b, Location loc, Value input, Value rowToken) {
  auto tokType = cast<RankedTensorType>(rowToken.getType());
  int64_t rank = tokType.getRank();
  SmallVector<OpFoldResult> sizes = mixedSizes(b, loc, rowToken);
  sizes.push_back(tensor::getMixedSize(b, loc, input, 1));
  Type elementType = cast<RankedTensorType>(input.getType()).getElementType();
  Value init = emptyTensor(b, loc, sizes, elementType);
  MLIRContext *ctx = b.getContext();
  SmallVector<AffineExpr> lead;
  for (int64_t i = 0; i < rank; ++i)
    lead.push_back(getAffineDimExpr(i, ctx));
  AffineMap tokMap = AffineMap::get(rank + 1, 0, lead, ctx);
  SmallVector<IteratorType> iterators(rank + 1, kPar);
  return generic(
      b, loc, rowToken, init, {tokMap, b.getMultiDimIdentityMap(rank + 1)},
      iterators, [&](OpBuilder &nb, Location l, ValueRange a) {
        Value valid = arith::CmpIOp::create(nb, l, arith::CmpIPredicate::sge,
                                            a[0], i32c(nb, l, 0));
        Value tok = toIndex(nb, l,
                            arith::MaxSIOp::create(nb, l, a[0], i32c(nb, l, 0)));
        Value h = linalg::IndexOp::create(nb, l, rank);
        Value v = tensor::ExtractOp::create(nb, l, input, ValueRange{tok, h});
        Value zero = arith::ConstantOp::create(nb, l, elementType,
                                               nb.getZeroAttr(elementType));
        yieldOp(nb, l,
                                arith::SelectOp::create(nb, l, valid, v, zero));
      })[0];
}
} // namespace

DroplessPlan moe_mlir::lowering::planDropless(OpBuilder &b, Location loc,
                                              Value indices, int64_t experts) {
  Value numTokens = dimValue(b, loc, indices, 0);
  Value k = dimValue(b, loc, indices, 1);
  Value expertsI32 = i32c(b, loc, experts);
  Type i32 = b.getI32Type();
  OpFoldResult eSize = b.getIndexAttr(experts);
  Value counts = filledTensor(b, loc, {eSize}, i32, i32c(b, loc, 0));
  Value mapping = emptyTensor(b, loc, mixedSizes(b, loc, indices), i32);
  // Pass 1: rows per expert.
  counts = forNest(b, loc, numTokens, k, counts,
                   [&](OpBuilder &nb, Location l, Value t, Value j,
                       ValueRange it) -> SmallVector<Value> {
                     Value e = tensor::ExtractOp::create(nb, l, indices,
                                                         ValueRange{t, j});
                     Value valid = inRange(nb, l, e, expertsI32);
                     Value slot = toIndex(
                         nb, l,
                         arith::SelectOp::create(nb, l, valid, e,
                                                 i32c(nb, l, 0)));
                     Value c = tensor::ExtractOp::create(nb, l, it[0], slot);
                     Value c1 = arith::AddIOp::create(nb, l, c,
                                                      i32c(nb, l, 1));
                     return {tensor::InsertOp::create(
                         nb, l, arith::SelectOp::create(nb, l, valid, c1, c),
                         it[0], slot)};
                   })[0];
  // Exclusive prefix sum: the first row of every expert.
  Value next = emptyTensor(b, loc, {eSize}, i32);
  auto scan = scf::ForOp::create(
      b, loc, indexConst(b, loc, 0), indexConst(b, loc, experts),
      indexConst(b, loc, 1), ValueRange{next, i32c(b, loc, 0)},
      [&](OpBuilder &nb, Location l, Value e, ValueRange it) {
        Value updated = tensor::InsertOp::create(nb, l, it[1], it[0], e);
        Value c = tensor::ExtractOp::create(nb, l, counts, e);
        scf::YieldOp::create(
            nb, l,
            ValueRange{updated, arith::AddIOp::create(nb, l, it[1], c)});
      });
  next = scan.getResult(0);
  Value numRows = arith::MulIOp::create(b, loc, numTokens, k);
  Value rowToken = filledTensor(b, loc, {OpFoldResult(numRows)}, i32,
                                i32c(b, loc, -1));
  // Pass 2: (token, slot) order within each expert.
  ValueRange res = forNest(
      b, loc, numTokens, k, ValueRange{mapping, rowToken, next},
      [&](OpBuilder &nb, Location l, Value t, Value j,
          ValueRange it) -> SmallVector<Value> {
        Value e = tensor::ExtractOp::create(nb, l, indices, ValueRange{t, j});
        Value valid = inRange(nb, l, e, expertsI32);
        Value slot = toIndex(
            nb, l, arith::SelectOp::create(nb, l, valid, e, i32c(nb, l, 0)));
        Value row = tensor::ExtractOp::create(nb, l, it[2], slot);
        Value newMapping = tensor::InsertOp::create(
            nb, l, arith::SelectOp::create(nb, l, valid, row, i32c(nb, l, -1)),
            it[0], ValueRange{t, j});
        auto ifOp = scf::IfOp::create(
            nb, l, valid,
            [&](OpBuilder &tb, Location tl) {
              Value tokens = tensor::InsertOp::create(
                  tb, tl, toI32(tb, tl, t), it[1], toIndex(tb, tl, row));
              Value bumped = tensor::InsertOp::create(
                  tb, tl, arith::AddIOp::create(tb, tl, row, i32c(tb, tl, 1)),
                  it[2], slot);
              scf::YieldOp::create(tb, tl, ValueRange{tokens, bumped});
            },
            [&](OpBuilder &eb, Location el) {
              scf::YieldOp::create(eb, el, ValueRange{it[1], it[2]});
            });
        return {newMapping, ifOp.getResult(0), ifOp.getResult(1)};
      });
  return DroplessPlan{counts, res[0], res[1]};
}

static LogicalResult lowerTokenDispatch(DispatchOp op, PatternRewriter &b) {
  Location loc = op.getLoc();
  Value input = op.getInput(), indices = op.getIndices();
  int64_t experts = static_cast<int64_t>(op.getNumExperts());
  bool dropless = op.getMode() == DispatchMode::Dropless;
  Value numTokens = dimValue(b, loc, indices, 0);
  Value k = dimValue(b, loc, indices, 1);
  Value expertsI32 = i32c(b, loc, experts);
  Type i32 = b.getI32Type();
  OpFoldResult eSize = b.getIndexAttr(experts);

  Value counts, mapping, rowToken, capacity;
  if (dropless) {
    DroplessPlan plan = planDropless(b, loc, indices, experts);
    counts = plan.counts;
    mapping = plan.mapping;
    rowToken = plan.rowToken;
  } else {
    counts = filledTensor(b, loc, {eSize}, i32, i32c(b, loc, 0));
    mapping = emptyTensor(b, loc, mixedSizes(b, loc, indices), i32);
    std::optional<float> factor;
    if (auto f = op.getCapacityFactor())
      factor = f->convertToFloat();
    int64_t kStatic = cast<RankedTensorType>(indices.getType()).getDimSize(1);
    capacity = capacityValue(b, loc, op.getExpertCapacity(), factor,
                             numTokens, kStatic, experts);
    Value capI32 = toI32(b, loc, capacity);
    rowToken = filledTensor(b, loc, {eSize, OpFoldResult(capacity)}, i32,
                            i32c(b, loc, -1));
    // Slot-major admission.
    ValueRange res = forNest(
        b, loc, k, numTokens, ValueRange{mapping, rowToken, counts},
        [&](OpBuilder &nb, Location l, Value j, Value t,
            ValueRange it) -> SmallVector<Value> {
          Value e = tensor::ExtractOp::create(nb, l, indices, ValueRange{t, j});
          Value valid = inRange(nb, l, e, expertsI32);
          Value slot = toIndex(
              nb, l, arith::SelectOp::create(nb, l, valid, e, i32c(nb, l, 0)));
          Value used = tensor::ExtractOp::create(nb, l, it[2], slot);
          Value admit = arith::AndIOp::create(
              nb, l, valid,
              arith::CmpIOp::create(nb, l, arith::CmpIPredicate::slt, used,
                                    capI32));
          Value flat = arith::AddIOp::create(
              nb, l, arith::MulIOp::create(nb, l, e, capI32), used);
          Value newMapping = tensor::InsertOp::create(
              nb, l,
              arith::SelectOp::create(nb, l, admit, flat, i32c(nb, l, -1)),
              it[0], ValueRange{t, j});
          auto ifOp = scf::IfOp::create(
              nb, l, admit,
              [&](OpBuilder &tb, Location tl) {
                Value tokens = tensor::InsertOp::create(
                    tb, tl, toI32(tb, tl, t), it[1],
                    ValueRange{slot, toIndex(tb, tl, used)});
                Value bumped = tensor::InsertOp::create(
                    tb, tl,
                    arith::AddIOp::create(tb, tl, used, i32c(tb, tl, 1)),
                    it[2], slot);
                scf::YieldOp::create(tb, tl, ValueRange{tokens, bumped});
              },
              [&](OpBuilder &eb, Location el) {
                scf::YieldOp::create(eb, el, ValueRange{it[1], it[2]});
              });
          return {newMapping, ifOp.getResult(0), ifOp.getResult(1)};
        });
    mapping = res[0];
    rowToken = res[1];
    counts = res[2];
  }

  Value rows = gatherRows(b, loc, input, rowToken);
  b.replaceOp(op, ValueRange{castToResult(b, loc, rows, op.getRows()),
                             castToResult(b, loc, counts, op.getCounts()),
                             castToResult(b, loc, mapping, op.getMapping())});
  return success();
}

static LogicalResult lowerExpertChoiceDispatch(DispatchOp op,
                                              PatternRewriter &b) {
  Location loc = op.getLoc();
  Value input = op.getInput(), indices = op.getIndices();
  int64_t experts = static_cast<int64_t>(op.getNumExperts());
  Type i32 = b.getI32Type();
  Value numTokens = dimValue(b, loc, input, 0);
  Value tokensI32 = toI32(b, loc, numTokens);
  Value capacity = dimValue(b, loc, indices, 1);
  Value capI32 = toI32(b, loc, capacity);

  // Token ids outside [0, T) select nothing.
  Value rowToken = elementwise(
      b, loc, indices, emptyTensor(b, loc, mixedSizes(b, loc, indices), i32),
      [&](OpBuilder &nb, Location l, ValueRange a) {
        yieldOp(
            nb, l,
            arith::SelectOp::create(nb, l, inRange(nb, l, a[0], tokensI32),
                                    a[0], i32c(nb, l, -1)));
      });
  Value rows = gatherRows(b, loc, input, rowToken);

  MLIRContext *ctx = b.getContext();
  AffineExpr e, c;
  bindDims(ctx, e, c);
  Value counts = filledTensor(b, loc, {b.getIndexAttr(experts)}, i32,
                              i32c(b, loc, 0));
  counts = generic(b, loc, rowToken, counts,
                   {b.getMultiDimIdentityMap(2), AffineMap::get(2, 0, {e}, ctx)},
                   {kPar, kRed},
                   [&](OpBuilder &nb, Location l, ValueRange a) {
                     Value valid = arith::CmpIOp::create(
                         nb, l, arith::CmpIPredicate::sge, a[0],
                         i32c(nb, l, 0));
                     Value inc = arith::ExtUIOp::create(nb, l, nb.getI32Type(),
                                                        valid);
                     yieldOp(
                         nb, l, arith::AddIOp::create(nb, l, a[1], inc));
                   })[0];

  Value mapping = filledTensor(
      b, loc, {OpFoldResult(numTokens), b.getIndexAttr(experts)}, i32,
      i32c(b, loc, -1));
  mapping = forNest(
      b, loc, indexConst(b, loc, experts), capacity, mapping,
      [&](OpBuilder &nb, Location l, Value ei, Value ci,
          ValueRange it) -> SmallVector<Value> {
        Value tok = tensor::ExtractOp::create(nb, l, rowToken,
                                              ValueRange{ei, ci});
        Value valid = arith::CmpIOp::create(nb, l, arith::CmpIPredicate::sge,
                                            tok, i32c(nb, l, 0));
        auto ifOp = scf::IfOp::create(
            nb, l, valid,
            [&](OpBuilder &tb, Location tl) {
              Value flat = arith::AddIOp::create(
                  tb, tl,
                  arith::MulIOp::create(tb, tl, toI32(tb, tl, ei), capI32),
                  toI32(tb, tl, ci));
              scf::YieldOp::create(
                  tb, tl,
                  ValueRange{tensor::InsertOp::create(
                      tb, tl, flat, it[0],
                      ValueRange{toIndex(tb, tl, tok), ei})});
            },
            [&](OpBuilder &eb, Location el) {
              scf::YieldOp::create(eb, el, it[0]);
            });
        return {ifOp.getResult(0)};
      })[0];

  b.replaceOp(op, ValueRange{castToResult(b, loc, rows, op.getRows()),
                             castToResult(b, loc, counts, op.getCounts()),
                             castToResult(b, loc, mapping, op.getMapping())});
  return success();
}

LogicalResult moe_mlir::lowering::lowerDispatch(DispatchOp op,
                                                PatternRewriter &b) {
  if (op.getMode() == DispatchMode::ExpertChoice)
    return lowerExpertChoiceDispatch(op, b);
  return lowerTokenDispatch(op, b);
}

Value moe_mlir::lowering::combineRows(OpBuilder &b, Location loc,
                                      Value expertOut, Value mapping,
                                      Value weights, Value passthrough,
                                      bool expertChoice) {
  auto outType = cast<RankedTensorType>(expertOut.getType());
  bool slabs = outType.getRank() == 3;
  Value capacity = slabs ? dimValue(b, loc, expertOut, 1) : Value();
  Value numRows = slabs ? arith::MulIOp::create(
                              b, loc, dimValue(b, loc, expertOut, 0), capacity)
                              .getResult()
                        : dimValue(b, loc, expertOut, 0);
  Value numRowsI32 = toI32(b, loc, numRows);

  SmallVector<OpFoldResult> outSizes = {
      tensor::getMixedSize(b, loc, mapping, 0),
      tensor::getMixedSize(b, loc, expertOut, outType.getRank() - 1)};
  Type f32 = b.getF32Type();
  Value acc = filledTensor(b, loc, outSizes, f32, f32Const(b, loc, 0.0));
  MLIRContext *ctx = b.getContext();
  AffineExpr t, h, j;
  bindDims(ctx, t, h, j);
  AffineMap slotMap = AffineMap::get(3, 0, {t, j}, ctx);
  AffineMap tokenMap = AffineMap::get(3, 0, {t, h}, ctx);
  SmallVector<Value> inputs = {mapping};
  SmallVector<AffineMap> maps = {slotMap};
  if (!expertChoice) {
    inputs.push_back(weights);
    maps.push_back(slotMap);
  }
  if (passthrough) {
    inputs.push_back(passthrough);
    maps.push_back(tokenMap);
  }
  maps.push_back(tokenMap);

  // Row r of the flat row list, as indices into expertOut / weights.
  auto rowIndices = [&](OpBuilder &nb, Location l, Value r) {
    SmallVector<Value> idx;
    if (slabs) {
      idx.push_back(arith::DivUIOp::create(nb, l, r, capacity));
      idx.push_back(arith::RemUIOp::create(nb, l, r, capacity));
    } else {
      idx.push_back(r);
    }
    return idx;
  };

  return generic(
      b, loc, inputs, acc, maps, {kPar, kPar, kRed},
      [&](OpBuilder &nb, Location l, ValueRange a) {
        Value accIn = a.back();
        Value r32 = a[0];
        Value valid = inRange(nb, l, r32, numRowsI32);
        Value hIdx = linalg::IndexOp::create(nb, l, 1);
        Value tIdx = linalg::IndexOp::create(nb, l, 0);
        (void)tIdx;
        auto ifOp = scf::IfOp::create(
            nb, l, valid,
            [&](OpBuilder &tb, Location tl) {
              Value r = toIndex(tb, tl, r32);
              SmallVector<Value> at = rowIndices(tb, tl, r);
              Value w = expertChoice
                            ? tensor::ExtractOp::create(tb, tl, weights, at)
                                  .getResult()
                            : a[1];
              at.push_back(hIdx);
              Value y = toF32(tb, tl,
                              tensor::ExtractOp::create(tb, tl, expertOut, at));
              Value p = arith::MulFOp::create(tb, tl, w, y);
              scf::YieldOp::create(tb, tl,
                                   ValueRange{arith::AddFOp::create(tb, tl,
                                                                    accIn, p)});
            },
            [&](OpBuilder &eb, Location el) {
              Value result = accIn;
              if (passthrough && !expertChoice) {
                Value x = toF32(eb, el, a[2]);
                result = arith::AddFOp::create(
                    eb, el, accIn, arith::MulFOp::create(eb, el, a[1], x));
              }
              scf::YieldOp::create(eb, el, result);
            });
        yieldOp(nb, l, ifOp.getResult(0));
      })[0];

}

LogicalResult moe_mlir::lowering::lowerCombine(CombineOp op,
                                               PatternRewriter &b) {
  Location loc = op.getLoc();
  Value sum = combineRows(b, loc, op.getExpertOut(), op.getMapping(),
                          op.getWeights(), op.getPassthrough(),
                          op.getMode() == DispatchMode::ExpertChoice);
  Value result = convertTensor(
      b, loc, sum,
      cast<RankedTensorType>(op.getExpertOut().getType()).getElementType());
  b.replaceOp(op, castToResult(b, loc, result, op.getResult()));
  return success();
}
