//===- ElementwiseOps.cpp - ONNX elementwise operators --------------------===//
//
// Part of moe-mlir's ONNX frontend.
//
// Unary and n-ary elementwise operators with numpy broadcasting, Cast and
// Where. Each becomes one linalg.generic. f16/bf16 operands are computed in
// f32 and rounded once, as ONNX Runtime's CPU kernels do for most of them.
// Integer arithmetic on values known at import time (shape computations)
// is also carried out symbolically, so that a shape computed as
// Shape -> Gather -> Mul -> Concat stays usable by Reshape.
//
//===----------------------------------------------------------------------===//

#include "GraphImporter.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"

using namespace mlir;
using namespace moe_mlir::onnx_import;

namespace {

bool isFloat(Type t) { return isa<FloatType>(t); }

/// The type floats are computed in: f32 for narrower floats.
Type computeTypeFor(GraphImporter &g, Type elem) {
  if (auto f = dyn_cast<FloatType>(elem); f && f.getWidth() < 32)
    return g.b().getF32Type();
  return elem;
}

/// Emits `fn` over the node's inputs [first, first+count) with broadcasting;
/// the result has element type `resultElem`. `fn` works in `compute` and its
/// result is cast to `resultElem`.
LogicalResult emit(GraphImporter &g, ArrayRef<size_t> inputIndices,
                   Type compute, Type resultElem, bool resultUnsigned,
                   const ScalarFn &fn) {
  SmallVector<OnnxValue> inputs;
  for (size_t i : inputIndices) {
    const OnnxValue *v = g.input(i);
    if (!v)
      return failure();
    inputs.push_back(*v);
  }
  FailureOr<Value> result = g.elementwise(
      inputs, compute, resultElem,
      [&](OpBuilder &b, Location loc, ValueRange args) {
        Value r = fn(b, loc, args);
        return castScalar(b, loc, r, resultElem, false, resultUnsigned);
      });
  if (failed(result))
    return failure();
  g.setOutput(0, *result, resultUnsigned);
  return success();
}

/// The element type all inputs share, or an error.
FailureOr<Type> commonType(GraphImporter &g, ArrayRef<size_t> inputs) {
  Type type;
  for (size_t i : inputs) {
    const OnnxValue *v = g.input(i);
    if (!v)
      return failure();
    if (type && v->elementType() != type)
      return g.fail("operands have different element types");
    type = v->elementType();
  }
  return type;
}

//===----------------------------------------------------------------------===//
// Unary float operators
//===----------------------------------------------------------------------===//

using UnaryFn = std::function<Value(GraphImporter &, OpBuilder &, Location,
                                    Value)>;

LogicalResult unaryFloat(GraphImporter &g, const UnaryFn &fn) {
  const OnnxValue *x = g.input(0);
  if (!x)
    return failure();
  if (!isFloat(x->elementType()))
    return g.fail("expects a floating-point input");
  Type compute = computeTypeFor(g, x->elementType());
  return emit(g, {0}, compute, x->elementType(), false,
              [&](OpBuilder &b, Location loc, ValueRange a) {
                return fn(g, b, loc, a[0]);
              });
}

Value cst(OpBuilder &b, Location loc, Type t, double v) {
  return arith::ConstantOp::create(b, loc, b.getFloatAttr(t, v));
}

Value sigmoid(OpBuilder &b, Location loc, Value x) {
  Type t = x.getType();
  Value negX = arith::NegFOp::create(b, loc, x);
  Value e = math::ExpOp::create(b, loc, negX);
  Value den = arith::AddFOp::create(b, loc, cst(b, loc, t, 1.0), e);
  return arith::DivFOp::create(b, loc, cst(b, loc, t, 1.0), den);
}

Value geluErf(OpBuilder &b, Location loc, Value x) {
  Type t = x.getType();
  Value scaled = arith::MulFOp::create(b, loc, x, cst(b, loc, t, M_SQRT1_2));
  Value erf = math::ErfOp::create(b, loc, scaled);
  Value onePlus = arith::AddFOp::create(b, loc, cst(b, loc, t, 1.0), erf);
  Value half = arith::MulFOp::create(b, loc, x, cst(b, loc, t, 0.5));
  return arith::MulFOp::create(b, loc, half, onePlus);
}

Value geluTanh(OpBuilder &b, Location loc, Value x) {
  Type t = x.getType();
  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  Value x3 = arith::MulFOp::create(
      b, loc, arith::MulFOp::create(b, loc, x, x), x);
  Value inner = arith::AddFOp::create(
      b, loc, x, arith::MulFOp::create(b, loc, x3, cst(b, loc, t, 0.044715)));
  Value arg = arith::MulFOp::create(b, loc, inner,
                                    cst(b, loc, t, 0.7978845608028654));
  Value th = math::TanhOp::create(b, loc, arg);
  Value onePlus = arith::AddFOp::create(b, loc, cst(b, loc, t, 1.0), th);
  Value half = arith::MulFOp::create(b, loc, x, cst(b, loc, t, 0.5));
  return arith::MulFOp::create(b, loc, half, onePlus);
}

#define UNARY(NAME, EXPR)                                                      \
  LogicalResult convert##NAME(GraphImporter &g) {                             \
    return unaryFloat(g, [](GraphImporter &g, OpBuilder &b, Location loc,     \
                            Value x) -> Value { return EXPR; });              \
  }

UNARY(Sqrt, math::SqrtOp::create(b, loc, x))
UNARY(Exp, math::ExpOp::create(b, loc, x))
UNARY(Log, math::LogOp::create(b, loc, x))
UNARY(Tanh, math::TanhOp::create(b, loc, x))
UNARY(Erf, math::ErfOp::create(b, loc, x))
UNARY(Sin, math::SinOp::create(b, loc, x))
UNARY(Cos, math::CosOp::create(b, loc, x))
UNARY(Floor, math::FloorOp::create(b, loc, x))
UNARY(Ceil, math::CeilOp::create(b, loc, x))
UNARY(Sigmoid, sigmoid(b, loc, x))
UNARY(Reciprocal,
      arith::DivFOp::create(b, loc, cst(b, loc, x.getType(), 1.0), x))
UNARY(Relu, arith::MaximumFOp::create(b, loc, x, cst(b, loc, x.getType(), 0)))
UNARY(Softplus,
      math::Log1pOp::create(b, loc, math::ExpOp::create(b, loc, x)))
UNARY(Silu, arith::MulFOp::create(b, loc, x, sigmoid(b, loc, x)))
UNARY(FastGelu, geluTanh(b, loc, x))
#undef UNARY

LogicalResult convertGelu(GraphImporter &g) {
  std::string approximate = g.attrString("approximate", "none");
  if (approximate != "none" && approximate != "tanh")
    return g.fail("approximate = '" + approximate +
                  "' is not 'none' or 'tanh'");
  bool tanh = approximate == "tanh";
  return unaryFloat(g, [tanh](GraphImporter &, OpBuilder &b, Location loc,
                              Value x) {
    return tanh ? geluTanh(b, loc, x) : geluErf(b, loc, x);
  });
}

LogicalResult convertQuickGelu(GraphImporter &g) {
  double alpha = g.attrFloat("alpha", 1.702);
  return unaryFloat(g, [alpha](GraphImporter &, OpBuilder &b, Location loc,
                               Value x) -> Value {
    Value ax = arith::MulFOp::create(b, loc, x, cst(b, loc, x.getType(), alpha));
    return arith::MulFOp::create(b, loc, x, sigmoid(b, loc, ax));
  });
}

LogicalResult convertLeakyRelu(GraphImporter &g) {
  double alpha = g.attrFloat("alpha", 0.01);
  return unaryFloat(g, [alpha](GraphImporter &, OpBuilder &b, Location loc,
                               Value x) -> Value {
    Type t = x.getType();
    Value neg = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLT, x,
                                      cst(b, loc, t, 0.0));
    Value scaled = arith::MulFOp::create(b, loc, x, cst(b, loc, t, alpha));
    return arith::SelectOp::create(b, loc, neg, scaled, x);
  });
}

LogicalResult convertHardSigmoid(GraphImporter &g) {
  double alpha = g.attrFloat("alpha", 0.2), beta = g.attrFloat("beta", 0.5);
  return unaryFloat(g, [=](GraphImporter &, OpBuilder &b, Location loc,
                           Value x) -> Value {
    Type t = x.getType();
    Value y = arith::AddFOp::create(
        b, loc, arith::MulFOp::create(b, loc, x, cst(b, loc, t, alpha)),
        cst(b, loc, t, beta));
    y = arith::MaximumFOp::create(b, loc, y, cst(b, loc, t, 0.0));
    return arith::MinimumFOp::create(b, loc, y, cst(b, loc, t, 1.0));
  });
}

//===----------------------------------------------------------------------===//
// Arithmetic on floats and integers
//===----------------------------------------------------------------------===//

enum class Arith { Add, Sub, Mul, Div, Max, Min };

Value arithScalar(OpBuilder &b, Location loc, Arith op, Value x, Value y,
                  bool isUnsigned) {
  bool f = isFloat(x.getType());
  switch (op) {
  case Arith::Add:
    return f ? (Value)arith::AddFOp::create(b, loc, x, y)
             : (Value)arith::AddIOp::create(b, loc, x, y);
  case Arith::Sub:
    return f ? (Value)arith::SubFOp::create(b, loc, x, y)
             : (Value)arith::SubIOp::create(b, loc, x, y);
  case Arith::Mul:
    return f ? (Value)arith::MulFOp::create(b, loc, x, y)
             : (Value)arith::MulIOp::create(b, loc, x, y);
  case Arith::Div:
    if (f)
      return arith::DivFOp::create(b, loc, x, y);
    return isUnsigned ? (Value)arith::DivUIOp::create(b, loc, x, y)
                      : (Value)arith::DivSIOp::create(b, loc, x, y);
  case Arith::Max:
    if (f)
      return arith::MaximumFOp::create(b, loc, x, y);
    return isUnsigned ? (Value)arith::MaxUIOp::create(b, loc, x, y)
                      : (Value)arith::MaxSIOp::create(b, loc, x, y);
  case Arith::Min:
    if (f)
      return arith::MinimumFOp::create(b, loc, x, y);
    return isUnsigned ? (Value)arith::MinUIOp::create(b, loc, x, y)
                      : (Value)arith::MinSIOp::create(b, loc, x, y);
  }
  return x;
}

/// The element count of `values` broadcast together when all have known
/// elements (counts equal or 1), else nullopt.
std::optional<size_t> knownCount(ArrayRef<const OnnxValue *> values) {
  size_t n = 1;
  for (const OnnxValue *v : values) {
    if (!v->elements)
      return std::nullopt;
    if (v->elements->size() != 1)
      n = v->elements->size();
  }
  for (const OnnxValue *v : values)
    if (v->elements->size() != 1 && v->elements->size() != n)
      return std::nullopt;
  return n;
}

/// Element `i` of a known value broadcast to knownCount() elements.
OpFoldResult knownAt(const OnnxValue &v, size_t i) {
  return v.elements->size() == 1 ? (*v.elements)[0] : (*v.elements)[i];
}

/// Symbolic integer arithmetic on known elements (shape computations).
std::optional<SmallVector<OpFoldResult>>
knownArith(GraphImporter &g, Arith op, const OnnxValue &a,
           const OnnxValue &b) {
  if (!a.elements || !b.elements)
    return std::nullopt;
  size_t n = std::max(a.elements->size(), b.elements->size());
  auto at = [](const SmallVector<OpFoldResult> &v, size_t i) {
    return v.size() == 1 ? v[0] : v[i];
  };
  if ((a.elements->size() != n && a.elements->size() != 1) ||
      (b.elements->size() != n && b.elements->size() != 1))
    return std::nullopt;
  SmallVector<OpFoldResult> out;
  for (size_t i = 0; i < n; ++i) {
    OpFoldResult x = at(*a.elements, i), y = at(*b.elements, i);
    std::optional<int64_t> cx = getConstantIntValue(x),
                           cy = getConstantIntValue(y);
    if (cx && cy) {
      int64_t r = 0;
      switch (op) {
      case Arith::Add: r = *cx + *cy; break;
      case Arith::Sub: r = *cx - *cy; break;
      case Arith::Mul: r = *cx * *cy; break;
      case Arith::Div:
        if (*cy == 0)
          return std::nullopt;
        r = *cx / *cy;
        break;
      case Arith::Max: r = std::max(*cx, *cy); break;
      case Arith::Min: r = std::min(*cx, *cy); break;
      }
      out.push_back(g.b().getI64IntegerAttr(r));
      continue;
    }
    Value vx = g.i64Value(x), vy = g.i64Value(y);
    out.push_back(arithScalar(g.b(), g.loc(), op, vx, vy, false));
  }
  return out;
}

LogicalResult binaryArith(GraphImporter &g, Arith op) {
  FailureOr<Type> type = commonType(g, {0, 1});
  if (failed(type))
    return failure();
  const OnnxValue &a = *g.input(0), &bv = *g.input(1);
  if (auto known = knownArith(g, op, a, bv)) {
    bool scalar = a.rank() == 0 && bv.rank() == 0;
    g.setOutput(0, g.knownValue(*known, scalar, *type));
    return success();
  }
  bool isUnsigned = a.isUnsigned;
  Type compute = computeTypeFor(g, *type);
  return emit(g, {0, 1}, compute, *type, isUnsigned,
              [&](OpBuilder &b, Location loc, ValueRange s) {
                return arithScalar(b, loc, op, s[0], s[1], isUnsigned);
              });
}

/// Pow: the exponent's type (T1) may differ from the base's (T) since
/// opset 12, e.g. a float base with an int64 exponent; it is converted to
/// the base's computation type. The result has the base's type.
LogicalResult convertPow(GraphImporter &g) {
  const OnnxValue *x = g.input(0), *y = g.input(1);
  if (!x || !y)
    return failure();
  if (!isFloat(x->elementType()))
    return g.fail("integer Pow is not supported");
  if (y->elementType().isInteger(1))
    return g.fail("the exponent must be a number");
  Type compute = computeTypeFor(g, x->elementType());
  return emit(g, {0, 1}, compute, x->elementType(), false,
              [](OpBuilder &b, Location loc, ValueRange s) -> Value {
                return math::PowFOp::create(b, loc, s[0], s[1]);
              });
}

/// Max, Min, Sum, Mean: variadic with broadcasting.
LogicalResult variadic(GraphImporter &g, Arith op, bool mean) {
  SmallVector<size_t> indices;
  for (size_t i = 0; i < g.numInputs(); ++i)
    indices.push_back(i);
  if (indices.empty())
    return g.fail("needs at least one input");
  FailureOr<Type> type = commonType(g, indices);
  if (failed(type))
    return failure();
  if (mean && !isFloat(*type))
    return g.fail("Mean expects floating-point inputs");
  bool isUnsigned = g.input(0)->isUnsigned;
  Type compute = computeTypeFor(g, *type);
  size_t n = indices.size();
  return emit(g, indices, compute, *type, isUnsigned,
              [&](OpBuilder &b, Location loc, ValueRange s) {
                Value r = s[0];
                for (size_t i = 1; i < s.size(); ++i)
                  r = arithScalar(b, loc, op, r, s[i], isUnsigned);
                if (mean)
                  r = arith::DivFOp::create(b, loc, r,
                                            cst(b, loc, r.getType(), n));
                return r;
              });
}

LogicalResult convertNeg(GraphImporter &g) {
  const OnnxValue *x = g.input(0);
  if (!x)
    return failure();
  if (x->elements) {
    SmallVector<OpFoldResult> out;
    for (OpFoldResult e : *x->elements) {
      if (std::optional<int64_t> c = getConstantIntValue(e))
        out.push_back(g.b().getI64IntegerAttr(-*c));
      else
        out.push_back(arith::SubIOp::create(
                          g.b(), g.loc(),
                          arith::ConstantIntOp::create(g.b(), g.loc(), 0, 64),
                          g.i64Value(e))
                          .getResult());
    }
    g.setOutput(0, g.knownValue(out, x->rank() == 0, x->elementType()));
    return success();
  }
  Type compute = computeTypeFor(g, x->elementType());
  return emit(g, {0}, compute, x->elementType(), false,
              [](OpBuilder &b, Location loc, ValueRange s) -> Value {
                if (isFloat(s[0].getType()))
                  return arith::NegFOp::create(b, loc, s[0]);
                Value zero = arith::ConstantOp::create(
                    b, loc, b.getIntegerAttr(s[0].getType(), 0));
                return arith::SubIOp::create(b, loc, zero, s[0]);
              });
}

LogicalResult convertAbs(GraphImporter &g) {
  const OnnxValue *x = g.input(0);
  if (!x)
    return failure();
  Type compute = computeTypeFor(g, x->elementType());
  return emit(g, {0}, compute, x->elementType(), x->isUnsigned,
              [&](OpBuilder &b, Location loc, ValueRange s) -> Value {
                if (isFloat(s[0].getType()))
                  return math::AbsFOp::create(b, loc, s[0]);
                if (x->isUnsigned)
                  return s[0];
                // x < 0 ? 0 - x : x (math.absi has no lowering on the CPU
                // path).
                Value zero = arith::ConstantOp::create(
                    b, loc, b.getIntegerAttr(s[0].getType(), 0));
                Value neg = arith::CmpIOp::create(
                    b, loc, arith::CmpIPredicate::slt, s[0], zero);
                Value negated = arith::SubIOp::create(b, loc, zero, s[0]);
                return arith::SelectOp::create(b, loc, neg, negated, s[0]);
              });
}

/// Clip: max(x, min) then min(·, max), each bound optional. Since opset 11
/// the bounds are inputs (scalars, any value computed in the graph); before,
/// float attributes. Integer types clip too (opset 12).
LogicalResult convertClip(GraphImporter &g) {
  const OnnxValue *x = g.input(0);
  if (!x)
    return failure();
  Type elem = x->elementType();
  if (elem.isInteger(1))
    return g.fail("expects a numeric input");
  bool isUnsigned = x->isUnsigned;
  Type compute = computeTypeFor(g, elem);
  std::optional<double> loAttr, hiAttr;
  SmallVector<OnnxValue> operands = {*x};
  bool hasLo = false, hasHi = false;
  if (g.opset() < 11) {
    if (!isFloat(elem))
      return g.fail("integer Clip needs opset 12");
    if (g.attribute("min"))
      loAttr = g.attrFloat("min", 0);
    if (g.attribute("max"))
      hiAttr = g.attrFloat("max", 0);
  } else {
    for (size_t i : {1, 2}) {
      if (!g.hasInput(i))
        continue;
      const OnnxValue *bound = g.input(i);
      if (!bound)
        return failure();
      if (bound->elementType() != elem)
        return g.fail("min and max must have the input's element type");
      OnnxValue v = *bound;
      // A scalar bound given as a one-element tensor must not change the
      // result's rank by broadcasting.
      if (v.rank() > 0) {
        if (!v.type().hasStaticShape() || v.type().getNumElements() != 1)
          return g.fail((i == 1 ? "min" : "max") +
                        std::string(" must be a scalar"));
        v.value = g.reshape(v.value, {});
      }
      operands.push_back(v);
      (i == 1 ? hasLo : hasHi) = true;
    }
  }
  FailureOr<Value> result = g.elementwise(
      operands, compute, elem, [&](OpBuilder &b, Location loc, ValueRange s) {
        Value r = s[0];
        size_t next = 1;
        auto bound = [&](std::optional<double> attr, bool present) -> Value {
          if (attr)
            return cst(b, loc, compute, *attr);
          return present ? s[next++] : Value();
        };
        bool f = isFloat(compute);
        if (Value lo = bound(loAttr, hasLo))
          r = f            ? (Value)arith::MaximumFOp::create(b, loc, r, lo)
              : isUnsigned ? (Value)arith::MaxUIOp::create(b, loc, r, lo)
                           : (Value)arith::MaxSIOp::create(b, loc, r, lo);
        if (Value hi = bound(hiAttr, hasHi))
          r = f            ? (Value)arith::MinimumFOp::create(b, loc, r, hi)
              : isUnsigned ? (Value)arith::MinUIOp::create(b, loc, r, hi)
                           : (Value)arith::MinSIOp::create(b, loc, r, hi);
        return castScalar(b, loc, r, elem, false, isUnsigned);
      });
  if (failed(result))
    return failure();
  g.setOutput(0, *result, isUnsigned);
  return success();
}

//===----------------------------------------------------------------------===//
// Comparisons and logic
//===----------------------------------------------------------------------===//

enum class Cmp { Eq, Lt, Gt, Le, Ge };

/// A comparison of known integer elements: known 0/1 elements (constants
/// where both sides are, else i64 values), so that shape computations like
/// torch.onnx's Where(Equal(shape, -1), 1, shape) stay known.
std::optional<SmallVector<OpFoldResult>> knownCompare(GraphImporter &g, Cmp cmp,
                                                      const OnnxValue &a,
                                                      const OnnxValue &b) {
  std::optional<size_t> n = knownCount({&a, &b});
  if (!n || a.isUnsigned)
    return std::nullopt;
  arith::CmpIPredicate p = arith::CmpIPredicate::eq;
  switch (cmp) {
  case Cmp::Eq: p = arith::CmpIPredicate::eq; break;
  case Cmp::Lt: p = arith::CmpIPredicate::slt; break;
  case Cmp::Gt: p = arith::CmpIPredicate::sgt; break;
  case Cmp::Le: p = arith::CmpIPredicate::sle; break;
  case Cmp::Ge: p = arith::CmpIPredicate::sge; break;
  }
  SmallVector<OpFoldResult> out;
  for (size_t i = 0; i < *n; ++i) {
    OpFoldResult x = knownAt(a, i), y = knownAt(b, i);
    std::optional<int64_t> cx = getConstantIntValue(x),
                           cy = getConstantIntValue(y);
    if (cx && cy) {
      out.push_back(g.b().getI64IntegerAttr(arith::applyCmpPredicate(
          p, APInt(64, *cx, true), APInt(64, *cy, true))));
      continue;
    }
    Value c =
        arith::CmpIOp::create(g.b(), g.loc(), p, g.i64Value(x), g.i64Value(y));
    out.push_back(arith::ExtUIOp::create(g.b(), g.loc(), g.b().getI64Type(), c)
                      .getResult());
  }
  return out;
}

LogicalResult compare(GraphImporter &g, Cmp cmp) {
  FailureOr<Type> type = commonType(g, {0, 1});
  if (failed(type))
    return failure();
  if (auto known = knownCompare(g, cmp, *g.input(0), *g.input(1))) {
    bool scalar = g.input(0)->rank() == 0 && g.input(1)->rank() == 0;
    g.setOutput(0, g.knownValue(*known, scalar, g.b().getI1Type()));
    return success();
  }
  bool isUnsigned = g.input(0)->isUnsigned;
  Type compute = computeTypeFor(g, *type);
  return emit(g, {0, 1}, compute, g.b().getI1Type(), false,
              [&](OpBuilder &b, Location loc, ValueRange s) -> Value {
                if (isFloat(s[0].getType())) {
                  arith::CmpFPredicate p = arith::CmpFPredicate::OEQ;
                  switch (cmp) {
                  case Cmp::Eq: p = arith::CmpFPredicate::OEQ; break;
                  case Cmp::Lt: p = arith::CmpFPredicate::OLT; break;
                  case Cmp::Gt: p = arith::CmpFPredicate::OGT; break;
                  case Cmp::Le: p = arith::CmpFPredicate::OLE; break;
                  case Cmp::Ge: p = arith::CmpFPredicate::OGE; break;
                  }
                  return arith::CmpFOp::create(b, loc, p, s[0], s[1]);
                }
                arith::CmpIPredicate p = arith::CmpIPredicate::eq;
                switch (cmp) {
                case Cmp::Eq: p = arith::CmpIPredicate::eq; break;
                case Cmp::Lt:
                  p = isUnsigned ? arith::CmpIPredicate::ult
                                 : arith::CmpIPredicate::slt;
                  break;
                case Cmp::Gt:
                  p = isUnsigned ? arith::CmpIPredicate::ugt
                                 : arith::CmpIPredicate::sgt;
                  break;
                case Cmp::Le:
                  p = isUnsigned ? arith::CmpIPredicate::ule
                                 : arith::CmpIPredicate::sle;
                  break;
                case Cmp::Ge:
                  p = isUnsigned ? arith::CmpIPredicate::uge
                                 : arith::CmpIPredicate::sge;
                  break;
                }
                return arith::CmpIOp::create(b, loc, p, s[0], s[1]);
              });
}

enum class Logic { And, Or, Xor };

LogicalResult logic(GraphImporter &g, Logic op) {
  for (size_t i : {0, 1})
    if (const OnnxValue *v = g.input(i); !v || !v->elementType().isInteger(1))
      return v ? g.fail("expects bool inputs") : failure();
  return emit(g, {0, 1}, Type(), g.b().getI1Type(), false,
              [&](OpBuilder &b, Location loc, ValueRange s) -> Value {
                switch (op) {
                case Logic::And: return arith::AndIOp::create(b, loc, s[0], s[1]);
                case Logic::Or: return arith::OrIOp::create(b, loc, s[0], s[1]);
                case Logic::Xor: return arith::XOrIOp::create(b, loc, s[0], s[1]);
                }
                return s[0];
              });
}

LogicalResult convertNot(GraphImporter &g) {
  const OnnxValue *x = g.input(0);
  if (!x)
    return failure();
  if (!x->elementType().isInteger(1))
    return g.fail("expects a bool input");
  return emit(g, {0}, Type(), g.b().getI1Type(), false,
              [](OpBuilder &b, Location loc, ValueRange s) -> Value {
                Value t = arith::ConstantIntOp::create(b, loc, 1, 1);
                return arith::XOrIOp::create(b, loc, s[0], t);
              });
}

LogicalResult convertIsNaN(GraphImporter &g) {
  const OnnxValue *x = g.input(0);
  if (!x)
    return failure();
  if (!isFloat(x->elementType()))
    return g.fail("expects a floating-point input");
  return emit(g, {0}, Type(), g.b().getI1Type(), false,
              [](OpBuilder &b, Location loc, ValueRange s) -> Value {
                return arith::CmpFOp::create(b, loc, arith::CmpFPredicate::UNO,
                                             s[0], s[0]);
              });
}

LogicalResult convertWhere(GraphImporter &g) {
  const OnnxValue *c = g.input(0);
  if (!c)
    return failure();
  if (!c->elementType().isInteger(1))
    return g.fail("condition must be bool");
  FailureOr<Type> type = commonType(g, {1, 2});
  if (failed(type))
    return failure();
  const OnnxValue &x = *g.input(1), &y = *g.input(2);
  // Known elements (shape computations) select symbolically.
  if (std::optional<size_t> n = knownCount({c, &x, &y})) {
    SmallVector<OpFoldResult> out;
    for (size_t i = 0; i < *n; ++i) {
      OpFoldResult ci = knownAt(*c, i), xi = knownAt(x, i), yi = knownAt(y, i);
      if (std::optional<int64_t> cc = getConstantIntValue(ci)) {
        out.push_back(*cc ? xi : yi);
        continue;
      }
      Value zero = arith::ConstantIntOp::create(g.b(), g.loc(), 0, 64);
      Value cond = arith::CmpIOp::create(
          g.b(), g.loc(), arith::CmpIPredicate::ne, g.i64Value(ci), zero);
      out.push_back(arith::SelectOp::create(g.b(), g.loc(), cond,
                                            g.i64Value(xi), g.i64Value(yi))
                        .getResult());
    }
    bool scalar = c->rank() == 0 && x.rank() == 0 && y.rank() == 0;
    OnnxValue v = g.knownValue(out, scalar, *type);
    v.isUnsigned = x.isUnsigned;
    g.setOutput(0, v);
    return success();
  }
  return emit(g, {0, 1, 2}, Type(), *type, x.isUnsigned,
              [](OpBuilder &b, Location loc, ValueRange s) -> Value {
                return arith::SelectOp::create(b, loc, s[0], s[1], s[2]);
              });
}

//===----------------------------------------------------------------------===//
// Cast, Identity
//===----------------------------------------------------------------------===//

LogicalResult castTo(GraphImporter &g, Type to, bool toUnsigned) {
  const OnnxValue *x = g.input(0);
  if (!x)
    return failure();
  if (x->elements && isa<IntegerType>(to) && !to.isInteger(1)) {
    OnnxValue v = g.knownValue(*x->elements, x->rank() == 0, to);
    v.isUnsigned = toUnsigned;
    g.setOutput(0, v);
    return success();
  }
  if (x->elementType() == to && x->isUnsigned == toUnsigned) {
    g.setOutput(0, *x);
    return success();
  }
  bool fromUnsigned = x->isUnsigned;
  return emit(g, {0}, Type(), to, toUnsigned,
              [&](OpBuilder &b, Location loc, ValueRange s) {
                return castScalar(b, loc, s[0], to, fromUnsigned, toUnsigned);
              });
}

LogicalResult convertCast(GraphImporter &g) {
  if (!g.attribute("to"))
    return g.fail("missing attribute 'to'");
  int64_t code = g.attrInt("to", 0);
  bool isUnsigned = false;
  Type to = elementTypeFor(g.ctx(), code, &isUnsigned);
  if (!to)
    return g.fail("cast to " + onnxTypeName(code) + " is not supported");
  return castTo(g, to, isUnsigned);
}

LogicalResult convertCastLike(GraphImporter &g) {
  const OnnxValue *like = g.input(1);
  if (!like)
    return failure();
  return castTo(g, like->elementType(), like->isUnsigned);
}

LogicalResult convertIdentity(GraphImporter &g) {
  const OnnxValue *x = g.input(0);
  if (!x)
    return failure();
  g.setOutput(0, *x);
  return success();
}

} // namespace

void moe_mlir::onnx_import::registerElementwiseConverters(
    ConverterTable &table) {
  table["Sqrt"] = convertSqrt;
  table["Exp"] = convertExp;
  table["Log"] = convertLog;
  table["Tanh"] = convertTanh;
  table["Erf"] = convertErf;
  table["Sin"] = convertSin;
  table["Cos"] = convertCos;
  table["Floor"] = convertFloor;
  table["Ceil"] = convertCeil;
  table["Sigmoid"] = convertSigmoid;
  table["Reciprocal"] = convertReciprocal;
  table["Relu"] = convertRelu;
  table["Softplus"] = convertSoftplus;
  table["Gelu"] = convertGelu;
  table["LeakyRelu"] = convertLeakyRelu;
  table["HardSigmoid"] = convertHardSigmoid;
  table["com.microsoft:Gelu"] = convertGelu;
  table["com.microsoft:FastGelu"] = convertFastGelu;
  table["com.microsoft:QuickGelu"] = convertQuickGelu;
  table["com.microsoft:Silu"] = convertSilu;
  table["Neg"] = convertNeg;
  table["Abs"] = convertAbs;
  table["Clip"] = convertClip;
  table["Add"] = [](GraphImporter &g) { return binaryArith(g, Arith::Add); };
  table["Sub"] = [](GraphImporter &g) { return binaryArith(g, Arith::Sub); };
  table["Mul"] = [](GraphImporter &g) { return binaryArith(g, Arith::Mul); };
  table["Div"] = [](GraphImporter &g) { return binaryArith(g, Arith::Div); };
  table["Pow"] = convertPow;
  table["Max"] = [](GraphImporter &g) { return variadic(g, Arith::Max, false); };
  table["Min"] = [](GraphImporter &g) { return variadic(g, Arith::Min, false); };
  table["Sum"] = [](GraphImporter &g) { return variadic(g, Arith::Add, false); };
  table["Mean"] = [](GraphImporter &g) { return variadic(g, Arith::Add, true); };
  table["Equal"] = [](GraphImporter &g) { return compare(g, Cmp::Eq); };
  table["Less"] = [](GraphImporter &g) { return compare(g, Cmp::Lt); };
  table["Greater"] = [](GraphImporter &g) { return compare(g, Cmp::Gt); };
  table["LessOrEqual"] = [](GraphImporter &g) { return compare(g, Cmp::Le); };
  table["GreaterOrEqual"] = [](GraphImporter &g) {
    return compare(g, Cmp::Ge);
  };
  table["And"] = [](GraphImporter &g) { return logic(g, Logic::And); };
  table["Or"] = [](GraphImporter &g) { return logic(g, Logic::Or); };
  table["Xor"] = [](GraphImporter &g) { return logic(g, Logic::Xor); };
  table["Not"] = convertNot;
  table["IsNaN"] = convertIsNaN;
  table["Where"] = convertWhere;
  table["Cast"] = convertCast;
  table["CastLike"] = convertCastLike;
  table["Identity"] = convertIdentity;
}
