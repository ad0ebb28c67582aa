//===- ReductionOps.cpp - ONNX reductions, normalizations, TopK -----------===//
//
// Part of moe-mlir's ONNX frontend.
//
// Reduce{Sum,Mean,Max,Min,Prod}, Softmax/LogSoftmax, LayerNormalization,
// SimplifiedLayerNormalization, TopK and ArgMax/ArgMin. Floats narrower
// than f32 are reduced in f32 and the result rounded once.
//
// TopK follows the ONNX specification: values in decreasing (largest = 1)
// or increasing order, equal values ordered by increasing index. It is a
// selection, O(K * L) per row: it becomes plain scf loops, which suits the
// small rows (a router's experts) it is used on in MoE graphs.
//
//===----------------------------------------------------------------------===//

#include "GraphImporter.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"

#include <limits>

using namespace mlir;
using namespace moe_mlir::onnx_import;

namespace {

Type accType(GraphImporter &g, Type elem) {
  if (auto f = dyn_cast<FloatType>(elem); f && f.getWidth() < 32)
    return g.b().getF32Type();
  return elem;
}

Value roundTo(GraphImporter &g, Value v, Type elem) {
  if (cast<RankedTensorType>(v.getType()).getElementType() == elem)
    return v;
  OnnxValue in;
  in.value = v;
  return *g.elementwise({in}, Type(), elem,
                        [&](OpBuilder &b, Location loc, ValueRange s) {
                          return castScalar(b, loc, s[0], elem);
                        });
}

/// The axes to reduce: from the `axes` input (newer opsets) or attribute,
/// normalized and sorted; all axes when none are given (unless
/// noop_with_empty_axes).
std::optional<SmallVector<int64_t>> reductionAxes(GraphImporter &g,
                                                  int64_t rank,
                                                  int64_t axesInputSince,
                                                  bool &noop) {
  noop = false;
  SmallVector<int64_t> axes;
  bool axesAreInput = g.opset() >= axesInputSince;
  // The other form would be ignored: an invalid model, not a wrong result.
  std::string since = std::to_string(axesInputSince);
  if (axesAreInput && g.attribute("axes")) {
    (void)g.fail("axes is an input since opset " + since +
                 ", not an attribute");
    return std::nullopt;
  }
  if (!axesAreInput && g.hasInput(1)) {
    (void)g.fail("axes is an attribute before opset " + since +
                 ", not an input");
    return std::nullopt;
  }
  if (axesAreInput) {
    if (g.hasInput(1)) {
      auto c = g.constantInts(1, "axes");
      if (!c)
        return std::nullopt;
      axes = *c;
    }
  } else if (auto a = g.attrInts("axes")) {
    axes = *a;
  }
  if (axes.empty()) {
    if (g.attrInt("noop_with_empty_axes", 0)) {
      noop = true;
      return axes;
    }
    for (int64_t d = 0; d < rank; ++d)
      axes.push_back(d);
    return axes;
  }
  for (int64_t &a : axes) {
    auto n = g.normalizeAxis(a, rank, "axis");
    if (!n)
      return std::nullopt;
    a = *n;
  }
  llvm::sort(axes);
  axes.erase(std::unique(axes.begin(), axes.end()), axes.end());
  return axes;
}

enum class Reduction { Sum, Mean, Max, Min, Prod, SumSquare };

/// Sum, Prod, Max or Min of known integer elements, folded where constant
/// (i64 values otherwise).
OpFoldResult knownReduce(GraphImporter &g, Reduction kind,
                         ArrayRef<OpFoldResult> elems) {
  OpBuilder &b = g.b();
  OpFoldResult r = elems[0];
  for (OpFoldResult e : elems.drop_front()) {
    std::optional<int64_t> x = getConstantIntValue(r),
                           y = getConstantIntValue(e);
    if (x && y) {
      int64_t v = kind == Reduction::Sum    ? *x + *y
                  : kind == Reduction::Prod ? *x * *y
                  : kind == Reduction::Max  ? std::max(*x, *y)
                                            : std::min(*x, *y);
      r = b.getI64IntegerAttr(v);
      continue;
    }
    Value vx = g.i64Value(r), vy = g.i64Value(e), v;
    switch (kind) {
    case Reduction::Sum: v = arith::AddIOp::create(b, g.loc(), vx, vy); break;
    case Reduction::Prod: v = arith::MulIOp::create(b, g.loc(), vx, vy); break;
    case Reduction::Max: v = arith::MaxSIOp::create(b, g.loc(), vx, vy); break;
    default: v = arith::MinSIOp::create(b, g.loc(), vx, vy); break;
    }
    r = v;
  }
  if (auto c = getConstantIntValue(r))
    return b.getI64IntegerAttr(*c);
  return r;
}

LogicalResult convertReduce(GraphImporter &g, Reduction kind,
                            int64_t axesInputSince) {
  const OnnxValue *x = g.input(0);
  if (!x)
    return failure();
  Type elem = x->elementType();
  bool isFloat = isa<FloatType>(elem);
  bool isUnsigned = x->isUnsigned;
  if (!isFloat && (kind == Reduction::Mean))
    return g.fail("expects a floating-point input");
  bool noop = false;
  auto axes = reductionAxes(g, x->rank(), axesInputSince, noop);
  if (!axes)
    return failure();
  if (noop) {
    g.setOutput(0, *x);
    return success();
  }
  bool keepDims = g.attrInt("keepdims", 1) != 0;
  // Known 1-d integer tensors (shapes) reduce symbolically, so that e.g.
  // ReduceProd(Slice(Shape(x))) stays usable as a Reshape dimension.
  if (x->elements && x->rank() == 1 && !x->elements->empty() &&
      !x->isUnsigned &&
      (kind == Reduction::Sum || kind == Reduction::Prod ||
       kind == Reduction::Max || kind == Reduction::Min)) {
    OpFoldResult r = knownReduce(g, kind, *x->elements);
    g.setOutput(0, g.knownValue({r}, !keepDims, elem));
    return success();
  }
  Type acc = accType(g, elem);
  OpBuilder &b = g.b();
  TypedAttr init;
  if (kind == Reduction::Max || kind == Reduction::Min) {
    bool max = kind == Reduction::Max;
    if (isFloat)
      init = b.getFloatAttr(acc, max ? -std::numeric_limits<double>::infinity()
                                     : std::numeric_limits<double>::infinity());
    else if (isUnsigned)
      init = b.getIntegerAttr(
          acc, max ? APInt::getMinValue(acc.getIntOrFloatBitWidth())
                   : APInt::getMaxValue(acc.getIntOrFloatBitWidth()));
    else
      init = b.getIntegerAttr(
          acc, max ? APInt::getSignedMinValue(acc.getIntOrFloatBitWidth())
                   : APInt::getSignedMaxValue(acc.getIntOrFloatBitWidth()));
  } else if (kind == Reduction::Prod) {
    init = isFloat ? TypedAttr(b.getFloatAttr(acc, 1.0))
                   : TypedAttr(b.getIntegerAttr(acc, 1));
  } else {
    init = cast<TypedAttr>(b.getZeroAttr(acc));
  }
  Value r = g.reduce(
      x->value, *axes, keepDims, init, acc,
      [&](OpBuilder &bb, Location loc, ValueRange s) -> Value {
        Value a = s[0], v = s[1];
        switch (kind) {
        case Reduction::Sum:
        case Reduction::Mean:
          return isFloat ? (Value)arith::AddFOp::create(bb, loc, a, v)
                         : (Value)arith::AddIOp::create(bb, loc, a, v);
        case Reduction::SumSquare:
          return isFloat
                     ? (Value)arith::AddFOp::create(
                           bb, loc, a, arith::MulFOp::create(bb, loc, v, v))
                     : (Value)arith::AddIOp::create(
                           bb, loc, a, arith::MulIOp::create(bb, loc, v, v));
        case Reduction::Prod:
          return isFloat ? (Value)arith::MulFOp::create(bb, loc, a, v)
                         : (Value)arith::MulIOp::create(bb, loc, a, v);
        case Reduction::Max:
          return isFloat      ? (Value)arith::MaximumFOp::create(bb, loc, a, v)
                 : isUnsigned ? (Value)arith::MaxUIOp::create(bb, loc, a, v)
                              : (Value)arith::MaxSIOp::create(bb, loc, a, v);
        case Reduction::Min:
          return isFloat      ? (Value)arith::MinimumFOp::create(bb, loc, a, v)
                 : isUnsigned ? (Value)arith::MinUIOp::create(bb, loc, a, v)
                              : (Value)arith::MinSIOp::create(bb, loc, a, v);
        }
        return a;
      });
  if (kind == Reduction::Mean) {
    // Divide by the number of reduced elements.
    OpFoldResult count = b.getIndexAttr(1);
    Value countValue;
    int64_t staticCount = 1;
    for (int64_t a : *axes) {
      OpFoldResult d = g.dim(x->value, a);
      if (auto c = getConstantIntValue(d)) {
        staticCount *= *c;
        continue;
      }
      Value dv = g.indexValue(d);
      countValue = countValue ? arith::MulIOp::create(b, g.loc(), countValue, dv)
                              : dv;
    }
    Value n = g.scalarConstant(acc, static_cast<double>(staticCount));
    if (countValue) {
      Value dyn = arith::IndexCastOp::create(b, g.loc(), b.getI64Type(),
                                             countValue);
      Value f = arith::SIToFPOp::create(b, g.loc(), acc, dyn);
      n = arith::MulFOp::create(b, g.loc(), n, f);
    }
    (void)count;
    OnnxValue in;
    in.value = r;
    r = *g.elementwise({in}, Type(), acc,
                       [&](OpBuilder &bb, Location loc, ValueRange s) {
                         return arith::DivFOp::create(bb, loc, s[0], n)
                             .getResult();
                       });
  }
  g.setOutput(0, roundTo(g, r, elem), isUnsigned);
  return success();
}

//===----------------------------------------------------------------------===//
// Softmax
//===----------------------------------------------------------------------===//

/// softmax (or log-softmax) of `x` over the single axis `axis`, in f32 for
/// narrow floats; returns the result in x's element type.
Value softmaxAlong(GraphImporter &g, Value x, int64_t axis, bool logSoftmax) {
  auto type = cast<RankedTensorType>(x.getType());
  Type elem = type.getElementType();
  Type acc = accType(g, elem);
  OpBuilder &b = g.b();
  Value max = g.reduce(
      x, {axis}, true,
      b.getFloatAttr(acc, -std::numeric_limits<double>::infinity()), acc,
      [](OpBuilder &bb, Location loc, ValueRange s) -> Value {
        return arith::MaximumFOp::create(bb, loc, s[0], s[1]);
      });
  OnnxValue xv, mv;
  xv.value = x;
  mv.value = max;
  Value shifted = *g.elementwise(
      {xv, mv}, acc, acc, [](OpBuilder &bb, Location loc, ValueRange s) {
        return arith::SubFOp::create(bb, loc, s[0], s[1]).getResult();
      });
  OnnxValue sv;
  sv.value = shifted;
  Value e = *g.elementwise({sv}, Type(), acc,
                           [](OpBuilder &bb, Location loc, ValueRange s) {
                             return math::ExpOp::create(bb, loc, s[0])
                                 .getResult();
                           });
  Value sum = g.reduce(e, {axis}, true, cast<TypedAttr>(b.getZeroAttr(acc)),
                       acc, [](OpBuilder &bb, Location loc, ValueRange s) {
                         return arith::AddFOp::create(bb, loc, s[0], s[1])
                             .getResult();
                       });
  OnnxValue ev, sumv;
  ev.value = logSoftmax ? shifted : e;
  sumv.value = sum;
  return *g.elementwise(
      {ev, sumv}, Type(), elem, [&](OpBuilder &bb, Location loc, ValueRange s) {
        Value r = logSoftmax
                      ? (Value)arith::SubFOp::create(
                            bb, loc, s[0], math::LogOp::create(bb, loc, s[1]))
                      : (Value)arith::DivFOp::create(bb, loc, s[0], s[1]);
        return castScalar(bb, loc, r, elem);
      });
}

LogicalResult convertSoftmax(GraphImporter &g, bool logSoftmax) {
  const OnnxValue *x = g.input(0);
  if (!x)
    return failure();
  if (!isa<FloatType>(x->elementType()))
    return g.fail("expects a floating-point input");
  int64_t rank = x->rank();
  bool legacy = g.opset() < 13;
  auto axis = g.normalizeAxis(g.attrInt("axis", legacy ? 1 : -1), rank, "axis");
  if (!axis)
    return failure();
  if (!legacy || *axis == rank - 1) {
    g.setOutput(0, softmaxAlong(g, x->value, *axis, logSoftmax));
    return success();
  }
  // Before opset 13 the input is seen as 2-d [prod(dims < axis),
  // prod(dims >= axis)].
  SmallVector<OpFoldResult> original = g.dims(x->value);
  Value n = g.indexValue(g.b().getIndexAttr(1));
  Value m = n;
  for (int64_t d = 0; d < rank; ++d) {
    Value dv = g.indexValue(original[d]);
    if (d < *axis)
      n = arith::MulIOp::create(g.b(), g.loc(), n, dv);
    else
      m = arith::MulIOp::create(g.b(), g.loc(), m, dv);
  }
  Value flat = g.reshape(x->value, {n, m});
  Value y = softmaxAlong(g, flat, 1, logSoftmax);
  g.setOutput(0, g.reshape(y, original));
  return success();
}

//===----------------------------------------------------------------------===//
// Layer normalizations
//===----------------------------------------------------------------------===//

LogicalResult convertLayerNorm(GraphImporter &g, bool simplified) {
  const OnnxValue *x = g.input(0);
  const OnnxValue *scale = g.input(1);
  if (!x || !scale)
    return failure();
  Type elem = x->elementType();
  if (!isa<FloatType>(elem))
    return g.fail("expects a floating-point input");
  int64_t rank = x->rank();
  auto axis = g.normalizeAxis(g.attrInt("axis", -1), rank, "axis");
  if (!axis)
    return failure();
  double eps = g.attrFloat("epsilon", 1e-5);
  Type acc = g.b().getF32Type();
  if (auto f = dyn_cast<FloatType>(elem); f && f.getWidth() > 32)
    acc = elem;
  SmallVector<int64_t> axes;
  for (int64_t d = *axis; d < rank; ++d)
    axes.push_back(d);
  // Number of normalized elements.
  Value count = g.scalarConstant(acc, 1.0);
  for (int64_t d : axes) {
    OpFoldResult s = g.dim(x->value, d);
    Value v = g.i64Value(s);
    count = arith::MulFOp::create(
        g.b(), g.loc(), count,
        arith::SIToFPOp::create(g.b(), g.loc(), acc, v));
  }
  auto add = [](OpBuilder &bb, Location loc, ValueRange s) {
    return arith::AddFOp::create(bb, loc, s[0], s[1]).getResult();
  };
  TypedAttr zero = cast<TypedAttr>(g.b().getZeroAttr(acc));
  OnnxValue centered = *x;
  Value mean;
  if (!simplified) {
    Value sum = g.reduce(x->value, axes, true, zero, acc, add);
    OnnxValue sv;
    sv.value = sum;
    mean = *g.elementwise({sv}, Type(), acc,
                          [&](OpBuilder &bb, Location loc, ValueRange s) {
                            return arith::DivFOp::create(bb, loc, s[0], count)
                                .getResult();
                          });
    OnnxValue mv;
    mv.value = mean;
    centered.value = *g.elementwise(
        {*x, mv}, acc, acc, [](OpBuilder &bb, Location loc, ValueRange s) {
          return arith::SubFOp::create(bb, loc, s[0], s[1]).getResult();
        });
    centered.isUnsigned = false;
  }
  Value sumSq = g.reduce(centered.value, axes, true, zero, acc,
                         [&](OpBuilder &bb, Location loc, ValueRange s) {
                           Value sq = arith::MulFOp::create(bb, loc, s[1], s[1]);
                           return arith::AddFOp::create(bb, loc, s[0], sq)
                               .getResult();
                         });
  OnnxValue ssv;
  ssv.value = sumSq;
  // inv_std = 1 / sqrt(sum_sq / n + eps)
  Value invStd = *g.elementwise(
      {ssv}, Type(), acc, [&](OpBuilder &bb, Location loc, ValueRange s) {
        Value var = arith::DivFOp::create(bb, loc, s[0], count);
        Value e = arith::ConstantOp::create(bb, loc, bb.getFloatAttr(acc, eps));
        Value root = math::SqrtOp::create(
            bb, loc, arith::AddFOp::create(bb, loc, var, e));
        Value one = arith::ConstantOp::create(bb, loc, bb.getFloatAttr(acc, 1));
        return arith::DivFOp::create(bb, loc, one, root).getResult();
      });
  OnnxValue iv;
  iv.value = invStd;
  SmallVector<OnnxValue> operands = {centered, iv, *scale};
  bool hasBias = !simplified && g.hasInput(2);
  if (hasBias) {
    const OnnxValue *bias = g.input(2);
    if (!bias)
      return failure();
    operands.push_back(*bias);
  }
  FailureOr<Value> y = g.elementwise(
      operands, acc, elem, [&](OpBuilder &bb, Location loc, ValueRange s) {
        Value r = arith::MulFOp::create(
            bb, loc, arith::MulFOp::create(bb, loc, s[0], s[1]), s[2]);
        if (hasBias)
          r = arith::AddFOp::create(bb, loc, r, s[3]);
        return castScalar(bb, loc, r, elem);
      });
  if (failed(y))
    return failure();
  g.setOutput(0, *y);
  // Optional outputs: LayerNormalization's Mean and InvStdDev,
  // SimplifiedLayerNormalization's inv_std_var (in the stash type, f32).
  if (simplified) {
    g.setOutput(1, invStd);
  } else {
    g.setOutput(1, mean);
    g.setOutput(2, invStd);
  }
  return success();
}

//===----------------------------------------------------------------------===//
// TopK, ArgMax, ArgMin
//===----------------------------------------------------------------------===//

/// Top `k` of each row of the 2-d `x` [N, L]: values [N, k] and i64
/// indices [N, k].
std::pair<Value, Value> topkRows(GraphImporter &g, Value x, int64_t k,
                                 bool largest, bool isUnsigned) {
  OpBuilder &b = g.b();
  Location loc = g.loc();
  auto type = cast<RankedTensorType>(x.getType());
  Type elem = type.getElementType();
  bool isFloat = isa<FloatType>(elem);
  // Compared in f32 (f64 for f64) or i64 (unsigned values zero-extended).
  Type cmpType = !isFloat       ? Type(b.getI64Type())
                 : elem.isF64() ? elem
                                : Type(b.getF32Type());
  Type i64 = b.getI64Type();
  OpFoldResult n = g.dim(x, 0);
  Value rowsN = g.indexValue(n);
  Value lengthL = g.indexValue(g.dim(x, 1));
  Value valsInit = g.empty({n, b.getIndexAttr(k)}, elem);
  Value idxInit = g.empty({n, b.getIndexAttr(k)}, i64);
  Value c0 = arith::ConstantIndexOp::create(b, loc, 0);
  Value c1 = arith::ConstantIndexOp::create(b, loc, 1);
  Value ck = arith::ConstantIndexOp::create(b, loc, k);
  auto extreme = [&](bool positive) -> Value {
    if (isFloat)
      return arith::ConstantOp::create(
          b, loc,
          b.getFloatAttr(cmpType,
                         positive ? std::numeric_limits<double>::infinity()
                                  : -std::numeric_limits<double>::infinity()));
    return arith::ConstantIntOp::create(
        b, loc,
        positive ? std::numeric_limits<int64_t>::max()
                 : std::numeric_limits<int64_t>::min(),
        64);
  };
  // Ordering: a before b when a's value ranks higher (larger when
  // `largest`), equal values by lower index.
  auto ranksHigher = [&](OpBuilder &bb, Location l, Value a, Value c) -> Value {
    if (isFloat)
      return arith::CmpFOp::create(bb, l,
                                   largest ? arith::CmpFPredicate::OGT
                                           : arith::CmpFPredicate::OLT,
                                   a, c);
    return arith::CmpIOp::create(bb, l,
                                 largest ? arith::CmpIPredicate::sgt
                                         : arith::CmpIPredicate::slt,
                                 a, c);
  };
  auto equal = [&](OpBuilder &bb, Location l, Value a, Value c) -> Value {
    if (isFloat)
      return arith::CmpFOp::create(bb, l, arith::CmpFPredicate::OEQ, a, c);
    return arith::CmpIOp::create(bb, l, arith::CmpIPredicate::eq, a, c);
  };
  Value startPrev = extreme(largest);
  Value startWorst = extreme(!largest);
  Value minusOne = arith::ConstantIntOp::create(b, loc, -1, 64);
  auto rows = scf::ForOp::create(
      b, loc, c0, rowsN, c1, ValueRange{valsInit, idxInit},
      [&](OpBuilder &rb, Location rl, Value row, ValueRange rowArgs) {
        auto picks = scf::ForOp::create(
            rb, rl, c0, ck, c1,
            ValueRange{rowArgs[0], rowArgs[1], startPrev, minusOne},
            [&](OpBuilder &pb, Location pl, Value j, ValueRange pa) {
              Value prevV = pa[2], prevI = pa[3];
              auto scan = scf::ForOp::create(
                  pb, pl, c0, lengthL, c1,
                  ValueRange{startWorst, minusOne},
                  [&](OpBuilder &sb, Location sl, Value l, ValueRange sa) {
                    Value raw = tensor::ExtractOp::create(sb, sl, x,
                                                          ValueRange{row, l});
                    Value v = castScalar(sb, sl, raw, cmpType, isUnsigned);
                    Value li = arith::IndexCastOp::create(sb, sl, i64, l);
                    // After the previous pick in the order?
                    Value after = arith::OrIOp::create(
                        sb, sl, ranksHigher(sb, sl, prevV, v),
                        arith::AndIOp::create(
                            sb, sl, equal(sb, sl, v, prevV),
                            arith::CmpIOp::create(sb, sl,
                                                  arith::CmpIPredicate::sgt, li,
                                                  prevI)));
                    Value none = arith::CmpIOp::create(
                        sb, sl, arith::CmpIPredicate::eq, sa[1], minusOne);
                    Value better = arith::OrIOp::create(
                        sb, sl, none, ranksHigher(sb, sl, v, sa[0]));
                    Value take = arith::AndIOp::create(sb, sl, after, better);
                    Value bv = arith::SelectOp::create(sb, sl, take, v, sa[0]);
                    Value bi = arith::SelectOp::create(sb, sl, take, li, sa[1]);
                    scf::YieldOp::create(sb, sl, ValueRange{bv, bi});
                  });
              Value bestV = scan.getResult(0), bestI = scan.getResult(1);
              Value bestIdx = arith::IndexCastOp::create(
                  pb, pl, pb.getIndexType(), bestI);
              Value original = tensor::ExtractOp::create(
                  pb, pl, x, ValueRange{row, bestIdx});
              Value vals = tensor::InsertOp::create(pb, pl, original, pa[0],
                                                    ValueRange{row, j});
              Value idxs = tensor::InsertOp::create(pb, pl, bestI, pa[1],
                                                    ValueRange{row, j});
              scf::YieldOp::create(pb, pl,
                                   ValueRange{vals, idxs, bestV, bestI});
            });
        scf::YieldOp::create(rb, rl, ValueRange{picks.getResult(0),
                                                picks.getResult(1)});
      });
  return {rows.getResult(0), rows.getResult(1)};
}

/// TopK of `x` along `axis`: moves the axis last, flattens to rows, selects
/// and restores the layout.
std::pair<Value, Value> topkAlong(GraphImporter &g, Value x, int64_t axis,
                                  int64_t k, bool largest, bool isUnsigned) {
  auto type = cast<RankedTensorType>(x.getType());
  int64_t rank = type.getRank();
  SmallVector<int64_t> perm;
  for (int64_t d = 0; d < rank; ++d)
    if (d != axis)
      perm.push_back(d);
  perm.push_back(axis);
  Value moved = g.transpose(x, perm);
  SmallVector<OpFoldResult> movedDims = g.dims(moved);
  Value rows = g.indexValue(g.b().getIndexAttr(1));
  bool staticRows = true;
  int64_t staticN = 1;
  for (int64_t d = 0; d + 1 < rank; ++d) {
    if (auto c = getConstantIntValue(movedDims[d])) {
      staticN *= *c;
      continue;
    }
    staticRows = false;
    rows = arith::MulIOp::create(g.b(), g.loc(), rows,
                                 g.indexValue(movedDims[d]));
  }
  OpFoldResult n;
  if (staticRows)
    n = g.b().getIndexAttr(staticN);
  else
    n = arith::MulIOp::create(g.b(), g.loc(), rows,
                              g.indexValue(g.b().getIndexAttr(staticN)))
            .getResult();
  Value flat = g.reshape(moved, {n, movedDims.back()});
  auto [vals, idxs] = topkRows(g, flat, k, largest, isUnsigned);
  SmallVector<OpFoldResult> outDims(movedDims.begin(), movedDims.end() - 1);
  outDims.push_back(g.b().getIndexAttr(k));
  SmallVector<int64_t> inverse(rank);
  for (int64_t d = 0; d < rank; ++d)
    inverse[perm[d]] = d;
  return {g.transpose(g.reshape(vals, outDims), inverse),
          g.transpose(g.reshape(idxs, outDims), inverse)};
}

LogicalResult convertTopK(GraphImporter &g) {
  const OnnxValue *x = g.input(0);
  if (!x)
    return failure();
  if (x->rank() == 0)
    return g.fail("expects an input of rank >= 1");
  int64_t k;
  if (g.opset() < 10) {
    k = g.attrInt("k", -1);
  } else {
    auto c = g.constantInts(1, "K");
    if (!c)
      return failure();
    if (c->size() != 1)
      return g.fail("K must hold one value");
    k = (*c)[0];
  }
  auto axis = g.normalizeAxis(g.attrInt("axis", -1), x->rank(), "axis");
  if (!axis)
    return failure();
  int64_t length = x->type().getDimSize(*axis);
  if (k < 0 || (!ShapedType::isDynamic(length) && k > length))
    return g.fail("K = " + std::to_string(k) + " is out of range for axis " +
                  "size " + std::to_string(length));
  auto [vals, idxs] = topkAlong(g, x->value, *axis, k,
                                g.attrInt("largest", 1) != 0, x->isUnsigned);
  // `sorted = 0` allows any order; the sorted one is a valid choice.
  g.setOutput(0, vals, x->isUnsigned);
  g.setOutput(1, idxs);
  return success();
}

LogicalResult convertArgExtreme(GraphImporter &g, bool max) {
  const OnnxValue *x = g.input(0);
  if (!x)
    return failure();
  if (x->rank() == 0)
    return g.fail("expects an input of rank >= 1");
  auto axis = g.normalizeAxis(g.attrInt("axis", 0), x->rank(), "axis");
  if (!axis)
    return failure();
  // Ties go to the first index, or with select_last_index to the last one:
  // the first one of the input reversed along the axis, i -> size - 1 - i.
  bool last = g.attrInt("select_last_index", 0) != 0;
  Value data = x->value;
  if (last) {
    SmallVector<bool> reversed(x->rank(), false);
    reversed[*axis] = true;
    data = g.reverse(data, reversed);
  }
  auto [vals, idxs] = topkAlong(g, data, *axis, 1, max, x->isUnsigned);
  (void)vals;
  if (last) {
    OnnxValue iv;
    iv.value = idxs;
    Value lastIndex = arith::SubIOp::create(
        g.b(), g.loc(), g.i64Value(g.dim(x->value, *axis)),
        arith::ConstantIntOp::create(g.b(), g.loc(), 1, 64));
    idxs = *g.elementwise(
        {iv}, Type(), g.b().getI64Type(),
        [&](OpBuilder &b, Location loc, ValueRange s) {
          return arith::SubIOp::create(b, loc, lastIndex, s[0]).getResult();
        });
  }
  if (!g.attrInt("keepdims", 1)) {
    SmallVector<OpFoldResult> shape = g.dims(idxs);
    shape.erase(shape.begin() + *axis);
    idxs = g.reshape(idxs, shape);
  }
  g.setOutput(0, idxs);
  return success();
}

} // namespace

void moe_mlir::onnx_import::registerReductionConverters(
    ConverterTable &table) {
  table["ReduceSum"] = [](GraphImporter &g) {
    return convertReduce(g, Reduction::Sum, 13);
  };
  table["ReduceMean"] = [](GraphImporter &g) {
    return convertReduce(g, Reduction::Mean, 18);
  };
  table["ReduceMax"] = [](GraphImporter &g) {
    return convertReduce(g, Reduction::Max, 18);
  };
  table["ReduceMin"] = [](GraphImporter &g) {
    return convertReduce(g, Reduction::Min, 18);
  };
  table["ReduceProd"] = [](GraphImporter &g) {
    return convertReduce(g, Reduction::Prod, 18);
  };
  table["ReduceSumSquare"] = [](GraphImporter &g) {
    return convertReduce(g, Reduction::SumSquare, 18);
  };
  table["Softmax"] = [](GraphImporter &g) { return convertSoftmax(g, false); };
  table["LogSoftmax"] = [](GraphImporter &g) {
    return convertSoftmax(g, true);
  };
  table["LayerNormalization"] = [](GraphImporter &g) {
    return convertLayerNorm(g, false);
  };
  table["SimplifiedLayerNormalization"] = [](GraphImporter &g) {
    return convertLayerNorm(g, true);
  };
  table["com.microsoft:SimplifiedLayerNormalization"] = [](GraphImporter &g) {
    return convertLayerNorm(g, true);
  };
  table["TopK"] = convertTopK;
  table["ArgMax"] = [](GraphImporter &g) { return convertArgExtreme(g, true); };
  table["ArgMin"] = [](GraphImporter &g) {
    return convertArgExtreme(g, false);
  };
}
