//===- ShapeOps.cpp - ONNX constants and shape manipulation ---------------===//
//
// Part of moe-mlir's ONNX frontend.
//
// Constant, ConstantOfShape, Range, Shape, Size, Reshape, Flatten, Squeeze,
// Unsqueeze, Transpose, Expand, Concat, Split and Slice. Shape-valued
// integer tensors are followed symbolically (OnnxValue::elements): a Reshape
// whose target was computed from Shape nodes gets its dimensions exactly,
// dynamic ones included.
//
//===----------------------------------------------------------------------===//

#include "GraphImporter.h"
#include "TensorData.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"

#include <cmath>
#include <limits>

using namespace mlir;
using namespace moe_mlir::onnx_import;

namespace {

//===----------------------------------------------------------------------===//
// Index arithmetic that folds constants.
//===----------------------------------------------------------------------===//

struct IndexMath {
  GraphImporter &g;
  Value v(OpFoldResult x) { return g.indexValue(x); }
  OpFoldResult fold(Value x) { return getAsOpFoldResult(x); }
  OpFoldResult add(OpFoldResult a, OpFoldResult b) {
    return fold(g.b().createOrFold<arith::AddIOp>(g.loc(), v(a), v(b)));
  }
  OpFoldResult sub(OpFoldResult a, OpFoldResult b) {
    return fold(g.b().createOrFold<arith::SubIOp>(g.loc(), v(a), v(b)));
  }
  OpFoldResult mul(OpFoldResult a, OpFoldResult b) {
    return fold(g.b().createOrFold<arith::MulIOp>(g.loc(), v(a), v(b)));
  }
  OpFoldResult divFloor(OpFoldResult a, OpFoldResult b) {
    return fold(g.b().createOrFold<arith::FloorDivSIOp>(g.loc(), v(a), v(b)));
  }
  OpFoldResult ceilDiv(OpFoldResult a, OpFoldResult b) {
    return fold(g.b().createOrFold<arith::CeilDivSIOp>(g.loc(), v(a), v(b)));
  }
  OpFoldResult max(OpFoldResult a, OpFoldResult b) {
    return fold(g.b().createOrFold<arith::MaxSIOp>(g.loc(), v(a), v(b)));
  }
  OpFoldResult min(OpFoldResult a, OpFoldResult b) {
    return fold(g.b().createOrFold<arith::MinSIOp>(g.loc(), v(a), v(b)));
  }
  OpFoldResult c(int64_t x) { return g.b().getIndexAttr(x); }
  /// An index (possibly an i64 SSA value) as an index OpFoldResult.
  OpFoldResult idx(OpFoldResult x) {
    if (isa<Attribute>(x))
      return c(*getConstantIntValue(x));
    return fold(v(x));
  }
};

OpFoldResult product(IndexMath &m, ArrayRef<OpFoldResult> dims) {
  OpFoldResult p = m.c(1);
  for (OpFoldResult d : dims)
    p = m.mul(p, d);
  return p;
}

//===----------------------------------------------------------------------===//
// Constants
//===----------------------------------------------------------------------===//

LogicalResult convertConstant(GraphImporter &g) {
  OpBuilder &b = g.b();
  if (const onnx::AttributeProto *a = g.attribute("value")) {
    const onnx::TensorProto &t = a->t();
    bool isUnsigned = false;
    Type elem = elementTypeFor(g.ctx(), t.data_type(), &isUnsigned);
    if (!elem)
      return g.fail("constant of type " + onnxTypeName(t.data_type()) +
                    " is not supported");
    auto type = RankedTensorType::get(tensorShape(t), elem);
    std::string error;
    DenseElementsAttr attr =
        tensorAttr(t, type, g.baseDir(), g.fileName() + ": " +
                                             g.nodeDescription() + ": value",
                   error);
    if (!attr) {
      g.setError(error);
      return failure();
    }
    g.setOutput(0, g.constantValue(attr, isUnsigned));
    return success();
  }
  auto scalarOr1d = [&](Type elem, bool scalar, ArrayRef<Attribute> values) {
    SmallVector<int64_t> shape;
    if (!scalar)
      shape.push_back(values.size());
    auto type = RankedTensorType::get(shape, elem);
    g.setOutput(0, g.constantValue(DenseElementsAttr::get(type, values),
                                   false));
    return success();
  };
  if (const onnx::AttributeProto *a = g.attribute("value_float"))
    return scalarOr1d(b.getF32Type(), true, {b.getF32FloatAttr(a->f())});
  if (const onnx::AttributeProto *a = g.attribute("value_int"))
    return scalarOr1d(b.getI64Type(), true, {b.getI64IntegerAttr(a->i())});
  if (const onnx::AttributeProto *a = g.attribute("value_floats")) {
    SmallVector<Attribute> v;
    for (float f : a->floats())
      v.push_back(b.getF32FloatAttr(f));
    return scalarOr1d(b.getF32Type(), false, v);
  }
  if (const onnx::AttributeProto *a = g.attribute("value_ints")) {
    SmallVector<Attribute> v;
    for (int64_t i : a->ints())
      v.push_back(b.getI64IntegerAttr(i));
    return scalarOr1d(b.getI64Type(), false, v);
  }
  return g.fail("only value, value_float(s) and value_int(s) constants are "
                "supported");
}

LogicalResult convertConstantOfShape(GraphImporter &g) {
  auto shape = g.knownElements(0, "shape");
  if (!shape)
    return failure();
  Type elem = g.b().getF32Type();
  TypedAttr value = g.b().getF32FloatAttr(0.0f);
  bool isUnsigned = false;
  if (const onnx::AttributeProto *a = g.attribute("value")) {
    const onnx::TensorProto &t = a->t();
    elem = elementTypeFor(g.ctx(), t.data_type(), &isUnsigned);
    if (!elem)
      return g.fail("value of type " + onnxTypeName(t.data_type()) +
                    " is not supported");
    std::string error;
    DenseElementsAttr attr = tensorAttr(
        t, RankedTensorType::get({1}, elem), g.baseDir(),
        g.fileName() + ": " + g.nodeDescription() + ": value", error);
    if (!attr) {
      g.setError(error);
      return failure();
    }
    value = cast<TypedAttr>(*attr.value_begin<Attribute>());
  }
  // A small constant 0-d/1-d integer result gets known elements (torch.onnx
  // builds shapes with ConstantOfShape).
  if (auto i = dyn_cast<IntegerAttr>(value); i && shape->size() <= 1) {
    std::optional<int64_t> n =
        shape->empty() ? 1 : getConstantIntValue((*shape)[0]);
    if (n && *n >= 0 && *n <= 64) {
      int64_t v = isUnsigned || elem.isInteger(1)
                      ? static_cast<int64_t>(i.getValue().getZExtValue())
                      : i.getValue().getSExtValue();
      SmallVector<OpFoldResult> elems(*n, g.b().getI64IntegerAttr(v));
      OnnxValue out = g.knownValue(elems, shape->empty(), elem);
      out.isUnsigned = isUnsigned;
      g.setOutput(0, out);
      return success();
    }
  }
  IndexMath m{g};
  SmallVector<OpFoldResult> dims;
  for (OpFoldResult d : *shape)
    dims.push_back(m.idx(d));
  g.setOutput(0, g.filled(dims, elem, value), isUnsigned);
  return success();
}

LogicalResult convertRange(GraphImporter &g) {
  const OnnxValue *start = g.input(0), *limit = g.input(1),
                  *delta = g.input(2);
  if (!start || !limit || !delta)
    return failure();
  Type elem = start->elementType();
  if (start->elements && limit->elements && delta->elements) {
    auto s = getConstantIntValue((*start->elements)[0]);
    auto l = getConstantIntValue((*limit->elements)[0]);
    auto d = getConstantIntValue((*delta->elements)[0]);
    if (s && l && d && *d != 0) {
      SmallVector<OpFoldResult> out;
      int64_t n = std::max<int64_t>(0, (*l - *s + *d + (*d > 0 ? -1 : 1)) / *d);
      for (int64_t i = 0; i < n; ++i)
        out.push_back(g.b().getI64IntegerAttr(*s + i * *d));
      g.setOutput(0, g.knownValue(out, false, elem));
      return success();
    }
  }
  if (!isa<FloatType>(elem)) {
    // Integer range with a dynamic bound.
    if (!start->elements || !limit->elements || !delta->elements)
      return g.fail("start, limit and delta must be known at import time");
    IndexMath m{g};
    OpFoldResult s = m.idx((*start->elements)[0]);
    OpFoldResult l = m.idx((*limit->elements)[0]);
    auto d = getConstantIntValue((*delta->elements)[0]);
    if (!d || *d <= 0)
      return g.fail("delta must be a positive constant");
    OpFoldResult n = m.max(m.c(0), m.ceilDiv(m.sub(l, s), m.c(*d)));
    Value init = g.empty({n}, elem);
    Value sv = g.i64Value(s);
    auto generic = linalg::GenericOp::create(
        g.b(), g.loc(), TypeRange{init.getType()}, ValueRange{},
        ValueRange{init},
        SmallVector<AffineMap>{AffineMap::getMultiDimIdentityMap(1, g.ctx())},
        SmallVector<utils::IteratorType>{utils::IteratorType::parallel},
        [&](OpBuilder &b, Location loc, ValueRange) {
          Value i = linalg::IndexOp::create(b, loc, 0);
          Value i64 = arith::IndexCastOp::create(b, loc, b.getI64Type(), i);
          Value r = arith::AddIOp::create(
              b, loc, sv,
              arith::MulIOp::create(
                  b, loc, i64, arith::ConstantIntOp::create(b, loc, *d, 64)));
          linalg::YieldOp::create(b, loc, castScalar(b, loc, r, elem));
        });
    g.setOutput(0, generic.getResult(0));
    return success();
  }
  // Floats: constant inputs only. ONNX defines the elements as
  // start + i * delta, i < max(ceil((limit - start) / delta), 0).
  std::optional<double> s = g.constantFloat(0), l = g.constantFloat(1),
                        d = g.constantFloat(2);
  if (!s || !l || !d)
    return g.fail("floating-point Range needs constant inputs");
  if (*d == 0)
    return g.fail("delta is 0");
  double count = std::ceil((*l - *s) / *d);
  if (!(count < (1 << 24)))
    return g.fail("the range has too many elements");
  int64_t n = std::max<int64_t>(0, static_cast<int64_t>(count));
  SmallVector<Attribute> values;
  for (int64_t i = 0; i < n; ++i)
    values.push_back(g.b().getFloatAttr(elem, *s + i * *d));
  auto type = RankedTensorType::get({n}, elem);
  g.setOutput(0, g.constantValue(DenseElementsAttr::get(type, values), false));
  return success();
}

//===----------------------------------------------------------------------===//
// Shape and Size
//===----------------------------------------------------------------------===//

LogicalResult convertShape(GraphImporter &g) {
  const OnnxValue *x = g.input(0);
  if (!x)
    return failure();
  int64_t rank = x->rank();
  int64_t start = g.attrInt("start", 0), end = g.attrInt("end", rank);
  auto clampAxis = [rank](int64_t a) {
    if (a < 0)
      a += rank;
    return std::clamp<int64_t>(a, 0, rank);
  };
  start = clampAxis(start);
  end = clampAxis(end);
  SmallVector<OpFoldResult> elems;
  for (int64_t d = start; d < end; ++d) {
    OpFoldResult s = g.dim(x->value, d);
    if (auto c = getConstantIntValue(s))
      elems.push_back(g.b().getI64IntegerAttr(*c));
    else
      elems.push_back(g.i64Value(s));
  }
  g.setOutput(0, g.knownValue(elems, false, g.b().getI64Type()));
  return success();
}

LogicalResult convertSize(GraphImporter &g) {
  const OnnxValue *x = g.input(0);
  if (!x)
    return failure();
  IndexMath m{g};
  OpFoldResult n = product(m, g.dims(x->value));
  OpFoldResult e = isa<Attribute>(n)
                       ? OpFoldResult(g.b().getI64IntegerAttr(
                             *getConstantIntValue(n)))
                       : OpFoldResult(g.i64Value(n));
  g.setOutput(0, g.knownValue({e}, true, g.b().getI64Type()));
  return success();
}

//===----------------------------------------------------------------------===//
// Reshapes
//===----------------------------------------------------------------------===//

/// Sets output 0 to `x` reshaped to `dims`, carrying known elements along.
void setReshaped(GraphImporter &g, const OnnxValue &x,
                 ArrayRef<OpFoldResult> dims) {
  OnnxValue out;
  out.value = g.reshape(x.value, dims);
  out.isUnsigned = x.isUnsigned;
  if (x.elements && dims.size() <= 1)
    out.elements = x.elements;
  g.setOutput(0, out);
}

LogicalResult convertReshape(GraphImporter &g) {
  const OnnxValue *x = g.input(0);
  if (!x)
    return failure();
  auto target = g.knownElements(1, "shape");
  if (!target)
    return failure();
  bool allowZero = g.attrInt("allowzero", 0) != 0;
  IndexMath m{g};
  SmallVector<OpFoldResult> inDims = g.dims(x->value);
  SmallVector<OpFoldResult> dims;
  int64_t inferred = -1;
  for (size_t i = 0; i < target->size(); ++i) {
    OpFoldResult t = (*target)[i];
    std::optional<int64_t> c = getConstantIntValue(t);
    if (c && *c == -1) {
      if (inferred >= 0)
        return g.fail("shape has more than one -1");
      inferred = i;
      dims.push_back(m.c(1));
      continue;
    }
    if (c && *c == 0 && !allowZero) {
      if (i >= inDims.size())
        return g.fail("shape copies dimension " + std::to_string(i) +
                      " that the input does not have");
      dims.push_back(inDims[i]);
      continue;
    }
    if (c && *c < 0)
      return g.fail("shape has a negative dimension " + std::to_string(*c));
    dims.push_back(m.idx(t));
  }
  OpFoldResult total = product(m, inDims);
  if (inferred >= 0) {
    OpFoldResult known = product(m, dims);
    dims[inferred] = m.divFloor(total, known);
  } else {
    auto t = getConstantIntValue(total);
    auto n = getConstantIntValue(product(m, dims));
    if (t && n && *t != *n)
      return g.fail("cannot reshape " +
                    shapeString(x->type().getShape()) + " (" +
                    std::to_string(*t) + " elements) to " +
                    std::to_string(*n) + " elements");
  }
  if (inferred >= 0) {
    auto t = getConstantIntValue(total);
    auto known = getConstantIntValue(product(m, [&] {
      SmallVector<OpFoldResult> others = dims;
      others[inferred] = m.c(1);
      return others;
    }()));
    if (t && known && (*known == 0 || *t % *known != 0))
      return g.fail("cannot reshape " + shapeString(x->type().getShape()) +
                    ": the other dimensions do not divide " +
                    std::to_string(*t) + " elements");
  }
  setReshaped(g, *x, dims);
  return success();
}

LogicalResult convertFlatten(GraphImporter &g) {
  const OnnxValue *x = g.input(0);
  if (!x)
    return failure();
  int64_t rank = x->rank();
  int64_t axis = g.attrInt("axis", 1);
  if (axis < -rank || axis > rank)
    return g.fail("axis " + std::to_string(axis) + " is out of range");
  if (axis < 0)
    axis += rank;
  IndexMath m{g};
  SmallVector<OpFoldResult> d = g.dims(x->value);
  OpFoldResult outer = product(m, ArrayRef(d).take_front(axis));
  OpFoldResult inner = product(m, ArrayRef(d).drop_front(axis));
  setReshaped(g, *x, {outer, inner});
  return success();
}

std::optional<SmallVector<int64_t>> axesOperand(GraphImporter &g,
                                                int64_t inputSince) {
  // The other form would be ignored: an invalid model, not a wrong result.
  if (g.opset() >= inputSince && g.attribute("axes")) {
    (void)g.fail("axes is an input since opset " + std::to_string(inputSince) +
                 ", not an attribute");
    return std::nullopt;
  }
  if (g.opset() >= inputSince) {
    if (!g.hasInput(1))
      return SmallVector<int64_t>{};
    return g.constantInts(1, "axes");
  }
  return g.attrInts("axes").value_or(SmallVector<int64_t>{});
}

LogicalResult convertSqueeze(GraphImporter &g) {
  const OnnxValue *x = g.input(0);
  if (!x)
    return failure();
  auto axes = axesOperand(g, 13);
  if (!axes)
    return failure();
  int64_t rank = x->rank();
  SmallVector<bool> drop(rank, false);
  if (axes->empty()) {
    // The result's rank depends on which dynamic dimensions are 1 when the
    // model runs.
    if (!x->type().hasStaticShape())
      return g.fail("Squeeze without axes on a dynamic dimension (input " +
                    shapeString(x->type().getShape()) + "): give axes");
    for (int64_t d = 0; d < rank; ++d)
      drop[d] = x->type().getDimSize(d) == 1;
  }
  for (int64_t a : *axes) {
    auto n = g.normalizeAxis(a, rank, "axis");
    if (!n)
      return failure();
    int64_t size = x->type().getDimSize(*n);
    if (!ShapedType::isDynamic(size) && size != 1)
      return g.fail("cannot squeeze axis " + std::to_string(*n) + " of size " +
                    std::to_string(size));
    drop[*n] = true;
  }
  SmallVector<OpFoldResult> dims;
  for (int64_t d = 0; d < rank; ++d)
    if (!drop[d])
      dims.push_back(g.dim(x->value, d));
  setReshaped(g, *x, dims);
  return success();
}

LogicalResult convertUnsqueeze(GraphImporter &g) {
  const OnnxValue *x = g.input(0);
  if (!x)
    return failure();
  auto axes = axesOperand(g, 13);
  if (!axes)
    return failure();
  if (axes->empty())
    return g.fail("needs axes");
  int64_t outRank = x->rank() + axes->size();
  SmallVector<bool> inserted(outRank, false);
  for (int64_t a : *axes) {
    auto n = g.normalizeAxis(a, outRank, "axis");
    if (!n)
      return failure();
    if (inserted[*n])
      return g.fail("repeated axis " + std::to_string(*n));
    inserted[*n] = true;
  }
  SmallVector<OpFoldResult> dims;
  int64_t next = 0;
  for (int64_t d = 0; d < outRank; ++d)
    dims.push_back(inserted[d] ? OpFoldResult(g.b().getIndexAttr(1))
                               : g.dim(x->value, next++));
  setReshaped(g, *x, dims);
  return success();
}

LogicalResult convertTranspose(GraphImporter &g) {
  const OnnxValue *x = g.input(0);
  if (!x)
    return failure();
  int64_t rank = x->rank();
  SmallVector<int64_t> perm;
  if (auto p = g.attrInts("perm")) {
    perm = *p;
  } else {
    for (int64_t d = rank - 1; d >= 0; --d)
      perm.push_back(d);
  }
  if (static_cast<int64_t>(perm.size()) != rank)
    return g.fail("perm has " + std::to_string(perm.size()) +
                  " entries for rank " + std::to_string(rank));
  SmallVector<bool> seen(rank, false);
  for (int64_t &p : perm) {
    auto n = g.normalizeAxis(p, rank, "perm entry");
    if (!n)
      return failure();
    if (seen[*n])
      return g.fail("perm is not a permutation");
    seen[*n] = true;
    p = *n;
  }
  g.setOutput(0, g.transpose(x->value, perm), x->isUnsigned);
  return success();
}

LogicalResult convertExpand(GraphImporter &g) {
  const OnnxValue *x = g.input(0);
  if (!x)
    return failure();
  auto target = g.knownElements(1, "shape");
  if (!target)
    return failure();
  IndexMath m{g};
  int64_t rank = std::max<int64_t>(x->rank(), target->size());
  SmallVector<OpFoldResult> dims;
  for (int64_t d = 0; d < rank; ++d) {
    int64_t xd = d - (rank - x->rank());
    int64_t td = d - (rank - static_cast<int64_t>(target->size()));
    OpFoldResult xs = xd >= 0 ? g.dim(x->value, xd) : m.c(1);
    OpFoldResult ts = td >= 0 ? m.idx((*target)[td]) : m.c(1);
    auto xc = getConstantIntValue(xs), tc = getConstantIntValue(ts);
    if (tc && *tc == 1)
      dims.push_back(xs);
    else if (xc && *xc == 1)
      dims.push_back(ts);
    else if (xc && tc && *xc != *tc)
      return g.fail("cannot expand " + shapeString(x->type().getShape()) +
                    ": dimension " + std::to_string(d) + " is " +
                    std::to_string(*xc) + ", the shape asks " +
                    std::to_string(*tc));
    else if (xc || tc)
      dims.push_back(xc ? xs : ts);
    else // both dynamic: either may be 1 when the model runs
      dims.push_back(*g.broadcastSize(ArrayRef<OpFoldResult>{xs, ts}));
  }
  g.setOutput(0, g.broadcastTo(x->value, dims), x->isUnsigned);
  return success();
}

//===----------------------------------------------------------------------===//
// Concat, Split, Slice
//===----------------------------------------------------------------------===//

LogicalResult convertConcat(GraphImporter &g) {
  SmallVector<OnnxValue> inputs;
  for (size_t i = 0; i < g.numInputs(); ++i) {
    const OnnxValue *v = g.input(i);
    if (!v)
      return failure();
    inputs.push_back(*v);
  }
  if (inputs.empty())
    return g.fail("needs at least one input");
  int64_t rank = inputs[0].rank();
  Type elem = inputs[0].elementType();
  for (const OnnxValue &v : inputs)
    if (v.rank() != rank || v.elementType() != elem)
      return g.fail("inputs differ in rank or element type");
  auto axis = g.normalizeAxis(g.attrInt("axis", 0), rank, "axis");
  if (!axis)
    return failure();
  // Known 1-d integer tensors (shapes) concatenate symbolically.
  if (rank == 1 && llvm::all_of(inputs, [](const OnnxValue &v) {
        return v.elements.has_value();
      })) {
    SmallVector<OpFoldResult> elems;
    for (const OnnxValue &v : inputs)
      elems.append(v.elements->begin(), v.elements->end());
    g.setOutput(0, g.knownValue(elems, false, elem));
    return success();
  }
  IndexMath m{g};
  SmallVector<OpFoldResult> dims;
  for (int64_t d = 0; d < rank; ++d) {
    if (d == *axis) {
      OpFoldResult sum = m.c(0);
      for (const OnnxValue &v : inputs)
        sum = m.add(sum, g.dim(v.value, d));
      dims.push_back(sum);
      continue;
    }
    OpFoldResult chosen = g.dim(inputs[0].value, d);
    for (const OnnxValue &v : inputs) {
      int64_t s = v.type().getDimSize(d);
      if (ShapedType::isDynamic(s))
        continue;
      auto c = getConstantIntValue(chosen);
      if (c && *c != s)
        return g.fail("inputs differ in dimension " + std::to_string(d));
      chosen = m.c(s);
    }
    dims.push_back(chosen);
  }
  Value result = g.empty(dims, elem);
  OpFoldResult offset = m.c(0);
  for (const OnnxValue &v : inputs) {
    SmallVector<OpFoldResult> offsets(rank, m.c(0)), sizes = g.dims(v.value),
        strides(rank, m.c(1));
    offsets[*axis] = offset;
    result = tensor::InsertSliceOp::create(g.b(), g.loc(), v.value, result,
                                           offsets, sizes, strides);
    offset = m.add(offset, sizes[*axis]);
  }
  g.setOutput(0, result, inputs[0].isUnsigned);
  return success();
}

LogicalResult convertSplit(GraphImporter &g) {
  const OnnxValue *x = g.input(0);
  if (!x)
    return failure();
  int64_t rank = x->rank();
  auto axis = g.normalizeAxis(g.attrInt("axis", 0), rank, "axis");
  if (!axis)
    return failure();
  IndexMath m{g};
  OpFoldResult length = g.dim(x->value, *axis);
  size_t outputs = g.numOutputs();
  SmallVector<OpFoldResult> sizes;
  std::optional<SmallVector<int64_t>> given;
  if (g.opset() >= 13 && g.attribute("split"))
    return g.fail("split is an input since opset 13, not an attribute");
  if (g.opset() >= 13) {
    if (g.hasInput(1)) {
      given = g.constantInts(1, "split");
      if (!given)
        return failure();
    }
  } else if (auto a = g.attrInts("split")) {
    given = *a;
  }
  if (given) {
    if (given->size() != outputs)
      return g.fail("split has " + std::to_string(given->size()) +
                    " sizes for " + std::to_string(outputs) + " outputs");
    int64_t sum = 0;
    for (int64_t s : *given) {
      if (s < 0)
        return g.fail("negative split size");
      sizes.push_back(m.c(s));
      sum += s;
    }
    if (auto c = getConstantIntValue(length); c && *c != sum)
      return g.fail("split sizes sum to " + std::to_string(sum) +
                    ", the axis has " + std::to_string(*c));
  } else {
    int64_t n = g.opset() >= 18 ? g.attrInt("num_outputs", outputs) : outputs;
    if (n <= 0 || static_cast<size_t>(n) != outputs)
      return g.fail("num_outputs does not match the outputs");
    // Chunks of ceil(length / n), the last one smaller (opset 18); before
    // opset 18 the split must be even. Either way every part is non-empty.
    if (auto c = getConstantIntValue(length)) {
      int64_t chunkSize = (*c + n - 1) / n;
      if (g.opset() < 18 && *c % n != 0)
        return g.fail("an axis of size " + std::to_string(*c) +
                      " does not split evenly into " + std::to_string(n) +
                      " parts");
      if (chunkSize * (n - 1) >= *c)
        return g.fail("an axis of size " + std::to_string(*c) +
                      " cannot be split into " + std::to_string(n) +
                      " parts of ceil(size / " + std::to_string(n) + ")");
    }
    OpFoldResult chunk = m.ceilDiv(length, m.c(n));
    OpFoldResult used = m.c(0);
    for (int64_t i = 0; i < n; ++i) {
      OpFoldResult s = i + 1 < n ? chunk : m.sub(length, used);
      if (i + 1 < n)
        used = m.add(used, chunk);
      sizes.push_back(s);
    }
  }
  OpFoldResult offset = m.c(0);
  for (size_t i = 0; i < outputs; ++i) {
    SmallVector<OpFoldResult> offsets(rank, m.c(0)), shape = g.dims(x->value),
        strides(rank, m.c(1));
    offsets[*axis] = offset;
    shape[*axis] = sizes[i];
    Value part = tensor::ExtractSliceOp::create(g.b(), g.loc(), x->value,
                                                offsets, shape, strides);
    g.setOutput(i, part, x->isUnsigned);
    offset = m.add(offset, sizes[i]);
  }
  return success();
}

LogicalResult convertSlice(GraphImporter &g) {
  const OnnxValue *x = g.input(0);
  if (!x)
    return failure();
  int64_t rank = x->rank();
  SmallVector<OpFoldResult> starts, ends;
  SmallVector<int64_t> axes, steps;
  OpBuilder &b = g.b();
  if (g.opset() < 10) {
    for (int64_t s : g.attrInts("starts").value_or(SmallVector<int64_t>{}))
      starts.push_back(b.getI64IntegerAttr(s));
    for (int64_t e : g.attrInts("ends").value_or(SmallVector<int64_t>{}))
      ends.push_back(b.getI64IntegerAttr(e));
    if (auto a = g.attrInts("axes"))
      axes = *a;
  } else {
    auto s = g.knownElements(1, "starts");
    auto e = g.knownElements(2, "ends");
    if (!s || !e)
      return failure();
    starts = *s;
    ends = *e;
    if (g.hasInput(3)) {
      auto a = g.constantInts(3, "axes");
      if (!a)
        return failure();
      axes = *a;
    }
    if (g.hasInput(4)) {
      auto st = g.constantInts(4, "steps");
      if (!st)
        return failure();
      steps = *st;
    }
  }
  if (starts.size() != ends.size())
    return g.fail("starts and ends differ in length");
  if (axes.empty())
    for (size_t i = 0; i < starts.size(); ++i)
      axes.push_back(i);
  if (steps.empty())
    steps.assign(starts.size(), 1);
  if (axes.size() != starts.size() || steps.size() != starts.size())
    return g.fail("starts, ends, axes and steps differ in length");
  IndexMath m{g};
  SmallVector<OpFoldResult> offsets(rank, m.c(0)), sizes = g.dims(x->value),
      strides(rank, m.c(1));
  SmallVector<bool> reversed(rank, false);
  // Symbolic slicing of a known 1-d tensor (a shape).
  bool known = x->elements && rank == 1;
  for (size_t i = 0; i < axes.size(); ++i) {
    auto axis = g.normalizeAxis(axes[i], rank, "axis");
    if (!axis)
      return failure();
    if (steps[i] == 0)
      return g.fail("steps must not be 0");
    int64_t step = steps[i];
    OpFoldResult dimSize = g.dim(x->value, *axis);
    // Negative indices count from the end; then starts and ends are clamped
    // to [0, size] for positive steps, and to [0, size - 1] (starts) and
    // [-1, size - 1] (ends) for negative ones.
    auto normalize = [&](OpFoldResult v, bool isEnd) -> OpFoldResult {
      int64_t lo = step < 0 && isEnd ? -1 : 0, hiOffset = step < 0 ? -1 : 0;
      std::optional<int64_t> c = getConstantIntValue(v);
      if (c) {
        int64_t value = *c;
        auto size = getConstantIntValue(dimSize);
        if (size) {
          if (value < 0)
            value += *size;
          return m.c(std::clamp<int64_t>(value, lo, *size + hiOffset));
        }
        if (value >= 0) {
          // Clamp large values (INT64_MAX) to the size.
          return m.min(m.c(std::min<int64_t>(value, INT32_MAX)),
                       m.add(dimSize, m.c(hiOffset)));
        }
        return m.max(m.c(lo),
                     m.add(dimSize, m.c(std::max<int64_t>(value, INT32_MIN))));
      }
      // A dynamic index (computed from shapes): the same at run time.
      Value raw = g.indexValue(m.idx(v));
      Value zero = arith::ConstantIndexOp::create(g.b(), g.loc(), 0);
      Value negative = arith::CmpIOp::create(
          g.b(), g.loc(), arith::CmpIPredicate::slt, raw, zero);
      Value wrapped =
          arith::AddIOp::create(g.b(), g.loc(), raw, g.indexValue(dimSize));
      Value value =
          arith::SelectOp::create(g.b(), g.loc(), negative, wrapped, raw);
      return m.min(m.max(value, m.c(lo)), m.add(dimSize, m.c(hiOffset)));
    };
    OpFoldResult start = normalize(starts[i], false);
    OpFoldResult end = normalize(ends[i], true);
    if (step > 0) {
      offsets[*axis] = start;
      sizes[*axis] = m.max(m.c(0), m.ceilDiv(m.sub(end, start), m.c(step)));
      strides[*axis] = m.c(step);
      continue;
    }
    // Negative step: start, start + step, ... while > end. Extract them in
    // increasing order (from the last one, stride -step), then reverse.
    OpFoldResult count =
        m.max(m.c(0), m.ceilDiv(m.sub(start, end), m.c(-step)));
    OpFoldResult lastPick = m.sub(m.max(count, m.c(1)), m.c(1));
    offsets[*axis] = m.sub(start, m.mul(lastPick, m.c(-step)));
    sizes[*axis] = count;
    strides[*axis] = m.c(-step);
    reversed[*axis] = true;
  }
  if (known) {
    auto o = getConstantIntValue(offsets[0]);
    auto s = getConstantIntValue(sizes[0]);
    auto st = getConstantIntValue(strides[0]);
    if (o && s && st) {
      SmallVector<OpFoldResult> elems;
      for (int64_t i = 0; i < *s; ++i)
        elems.push_back((*x->elements)[*o + i * *st]);
      if (reversed[0])
        std::reverse(elems.begin(), elems.end());
      g.setOutput(0, g.knownValue(elems, false, x->elementType()));
      return success();
    }
  }
  Value part = tensor::ExtractSliceOp::create(g.b(), g.loc(), x->value,
                                              offsets, sizes, strides);
  if (llvm::is_contained(reversed, true))
    part = g.reverse(part, reversed);
  g.setOutput(0, part, x->isUnsigned);
  return success();
}

} // namespace

void moe_mlir::onnx_import::registerShapeConverters(ConverterTable &table) {
  table["Constant"] = convertConstant;
  table["ConstantOfShape"] = convertConstantOfShape;
  table["Range"] = convertRange;
  table["Shape"] = convertShape;
  table["Size"] = convertSize;
  table["Reshape"] = convertReshape;
  table["Flatten"] = convertFlatten;
  table["Squeeze"] = convertSqueeze;
  table["Unsqueeze"] = convertUnsqueeze;
  table["Transpose"] = convertTranspose;
  table["Expand"] = convertExpand;
  table["Concat"] = convertConcat;
  table["Split"] = convertSplit;
  table["Slice"] = convertSlice;
}
