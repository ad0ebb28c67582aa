//===- GraphImporter.cpp - ONNX graph to ops on tensors -------------------===//
//
// Part of moe-mlir's ONNX frontend.
//
//===----------------------------------------------------------------------===//

#include "GraphImporter.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/AffineMap.h"
#include "mlir/IR/Matchers.h"

using namespace mlir;
using namespace moe_mlir::onnx_import;

//===----------------------------------------------------------------------===//
// Types
//===----------------------------------------------------------------------===//

Type moe_mlir::onnx_import::elementTypeFor(MLIRContext *ctx, int32_t t,
                                           bool *isUnsigned) {
  Builder b(ctx);
  bool u = false;
  Type type;
  switch (t) {
  case onnx::TensorProto::FLOAT: type = b.getF32Type(); break;
  case onnx::TensorProto::FLOAT16: type = b.getF16Type(); break;
  case onnx::TensorProto::BFLOAT16: type = b.getBF16Type(); break;
  case onnx::TensorProto::DOUBLE: type = b.getF64Type(); break;
  case onnx::TensorProto::INT8: type = b.getI8Type(); break;
  case onnx::TensorProto::INT16: type = b.getI16Type(); break;
  case onnx::TensorProto::INT32: type = b.getI32Type(); break;
  case onnx::TensorProto::INT64: type = b.getI64Type(); break;
  case onnx::TensorProto::UINT8: type = b.getI8Type(); u = true; break;
  case onnx::TensorProto::UINT16: type = b.getI16Type(); u = true; break;
  case onnx::TensorProto::UINT32: type = b.getI32Type(); u = true; break;
  case onnx::TensorProto::BOOL: type = b.getI1Type(); break;
  default: break;
  }
  if (isUnsigned)
    *isUnsigned = u;
  return type;
}

std::string moe_mlir::onnx_import::onnxTypeName(int32_t t) {
  if (onnx::TensorProto::DataType_IsValid(t))
    return onnx::TensorProto::DataType_Name(
        static_cast<onnx::TensorProto::DataType>(t));
  return "type " + std::to_string(t);
}

std::string moe_mlir::onnx_import::shapeString(ArrayRef<int64_t> shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i)
      s += ", ";
    s += ShapedType::isDynamic(shape[i]) ? "?" : std::to_string(shape[i]);
  }
  return s + "]";
}

//===----------------------------------------------------------------------===//
// Values and nodes
//===----------------------------------------------------------------------===//

GraphImporter::GraphImporter(MLIRContext &context, OpBuilder &builder,
                             std::string fileName,
                             std::map<std::string, int64_t> opsets)
    : context_(context), builder_(builder), fileName_(std::move(fileName)),
      opsets_(std::move(opsets)), loc_(UnknownLoc::get(&context)) {}

const OnnxValue *GraphImporter::lookup(const std::string &name) const {
  auto it = values_.find(name);
  return it == values_.end() ? nullptr : &it->second;
}

void GraphImporter::define(const std::string &name, OnnxValue value) {
  values_[name] = std::move(value);
}

void GraphImporter::addInitializer(const onnx::TensorProto *tensor) {
  initializers_[tensor->name()] = tensor;
}

const onnx::TensorProto *
GraphImporter::initializer(const std::string &name) const {
  return initializers_.lookup(name);
}

int64_t GraphImporter::opset(const std::string &domain) const {
  auto it = opsets_.find(domain == "ai.onnx" ? "" : domain);
  return it == opsets_.end() ? 0 : it->second;
}

std::string GraphImporter::nodeDescription() const {
  std::string name = node_->name().empty()
                         ? "#" + std::to_string(nodeIndex_)
                         : "'" + node_->name() + "'";
  std::string op = node_->domain().empty() || node_->domain() == "ai.onnx"
                       ? node_->op_type()
                       : node_->domain() + "." + node_->op_type();
  return "node " + name + " (" + op + ")";
}

LogicalResult GraphImporter::fail(const Twine &message) {
  setError(fileName_ + ": " + nodeDescription() + ": " + message.str());
  return failure();
}

LogicalResult GraphImporter::convert(const onnx::NodeProto &node, size_t index,
                                     const ConverterTable &table) {
  node_ = &node;
  nodeIndex_ = index;
  Location file = FileLineColLoc::get(&context_, fileName_, index + 1, 0);
  loc_ = node.name().empty()
             ? file
             : Location(NameLoc::get(StringAttr::get(&context_, node.name()),
                                     file));
  std::string domain = node.domain() == "ai.onnx" ? "" : node.domain();
  std::string key =
      domain.empty() ? node.op_type() : domain + ":" + node.op_type();
  auto it = table.find(key);
  if (it == table.end())
    return fail("unsupported operator " +
                (domain.empty() ? node.op_type()
                                : domain + "." + node.op_type()));
  if (failed(it->second(*this)))
    return error_.empty() ? fail("could not be imported") : failure();
  // Every output the graph names must have been produced.
  for (int i = 0; i < node.output_size(); ++i)
    if (!node.output(i).empty() && !lookup(node.output(i)))
      return fail("output " + std::to_string(i) + " ('" + node.output(i) +
                  "') is not supported");
  return success();
}

size_t GraphImporter::numInputs() const { return node_->input_size(); }

bool GraphImporter::hasInput(size_t i) const {
  return i < numInputs() && !node_->input(i).empty();
}

const std::string &GraphImporter::inputName(size_t i) const {
  return node_->input(i);
}

const OnnxValue *GraphImporter::input(size_t i) {
  if (!hasInput(i)) {
    (void)fail("missing input " + std::to_string(i));
    return nullptr;
  }
  const OnnxValue *v = lookup(node_->input(i));
  if (!v)
    (void)fail("input '" + node_->input(i) + "' is not defined before the node");
  return v;
}

std::optional<SmallVector<OpFoldResult>>
GraphImporter::knownElements(size_t i, StringRef what) {
  const OnnxValue *v = input(i);
  if (!v)
    return std::nullopt;
  if (!v->elements) {
    (void)fail(what + " ('" + inputName(i) +
         "') must be computable at import time (a constant or a shape)");
    return std::nullopt;
  }
  return v->elements;
}

std::optional<SmallVector<int64_t>>
GraphImporter::constantInts(size_t i, StringRef what) {
  auto elems = knownElements(i, what);
  if (!elems)
    return std::nullopt;
  SmallVector<int64_t> out;
  for (OpFoldResult e : *elems) {
    std::optional<int64_t> c = getConstantIntValue(e);
    if (!c) {
      (void)fail(what + " ('" + inputName(i) + "') must be a constant");
      return std::nullopt;
    }
    out.push_back(*c);
  }
  return out;
}

std::optional<double> GraphImporter::constantFloat(size_t i) {
  if (!hasInput(i))
    return std::nullopt;
  const OnnxValue *v = lookup(inputName(i));
  if (!v)
    return std::nullopt;
  DenseElementsAttr attr;
  if (!matchPattern(v->value, m_Constant(&attr)) || attr.getNumElements() != 1)
    return std::nullopt;
  if (auto f = dyn_cast<DenseFPElementsAttr>(attr))
    return (*f.getValues<APFloat>().begin()).convertToDouble();
  if (auto n = dyn_cast<DenseIntElementsAttr>(attr))
    return static_cast<double>((*n.getValues<APInt>().begin()).getSExtValue());
  return std::nullopt;
}

size_t GraphImporter::numOutputs() const { return node_->output_size(); }

bool GraphImporter::hasOutput(size_t i) const {
  return i < numOutputs() && !node_->output(i).empty();
}

void GraphImporter::setOutput(size_t i, OnnxValue value) {
  if (hasOutput(i))
    define(node_->output(i), std::move(value));
}

void GraphImporter::setOutput(size_t i, Value value, bool isUnsigned) {
  OnnxValue v;
  v.value = value;
  v.isUnsigned = isUnsigned;
  setOutput(i, std::move(v));
}

const onnx::AttributeProto *GraphImporter::attribute(StringRef name) const {
  for (const onnx::AttributeProto &a : node_->attribute())
    if (a.name() == name)
      return &a;
  return nullptr;
}

int64_t GraphImporter::attrInt(StringRef name, int64_t fallback) const {
  const onnx::AttributeProto *a = attribute(name);
  return a ? a->i() : fallback;
}

double GraphImporter::attrFloat(StringRef name, double fallback) const {
  const onnx::AttributeProto *a = attribute(name);
  return a ? a->f() : fallback;
}

std::string GraphImporter::attrString(StringRef name,
                                      StringRef fallback) const {
  const onnx::AttributeProto *a = attribute(name);
  return a ? a->s() : fallback.str();
}

std::optional<SmallVector<int64_t>>
GraphImporter::attrInts(StringRef name) const {
  const onnx::AttributeProto *a = attribute(name);
  if (!a)
    return std::nullopt;
  return SmallVector<int64_t>(a->ints().begin(), a->ints().end());
}

std::optional<int64_t> GraphImporter::normalizeAxis(int64_t axis, int64_t rank,
                                                    StringRef what) {
  if (axis < -rank || axis >= std::max<int64_t>(rank, 1)) {
    (void)fail(what + " " + std::to_string(axis) + " is out of range for rank " +
         std::to_string(rank));
    return std::nullopt;
  }
  return axis < 0 ? axis + rank : axis;
}

//===----------------------------------------------------------------------===//
// Small builders
//===----------------------------------------------------------------------===//

OpFoldResult GraphImporter::dim(Value t, int64_t d) {
  auto type = cast<RankedTensorType>(t.getType());
  if (!type.isDynamicDim(d))
    return builder_.getIndexAttr(type.getDimSize(d));
  return tensor::DimOp::create(builder_, loc_, t, d).getResult();
}

SmallVector<OpFoldResult> GraphImporter::dims(Value t) {
  SmallVector<OpFoldResult> out;
  for (int64_t d = 0, e = cast<RankedTensorType>(t.getType()).getRank(); d < e;
       ++d)
    out.push_back(dim(t, d));
  return out;
}

Value GraphImporter::indexValue(OpFoldResult v) {
  if (auto attr = dyn_cast<Attribute>(v))
    return arith::ConstantIndexOp::create(
        builder_, loc_, cast<IntegerAttr>(attr).getInt());
  Value value = cast<Value>(v);
  if (value.getType().isIndex())
    return value;
  return arith::IndexCastOp::create(builder_, loc_, builder_.getIndexType(),
                                    value);
}

Value GraphImporter::i64Value(OpFoldResult v) {
  if (auto attr = dyn_cast<Attribute>(v))
    return arith::ConstantIntOp::create(builder_, loc_,
                                        cast<IntegerAttr>(attr).getInt(), 64);
  Value value = cast<Value>(v);
  if (value.getType().isInteger(64))
    return value;
  return arith::IndexCastOp::create(builder_, loc_, builder_.getI64Type(),
                                    value);
}

Value GraphImporter::empty(ArrayRef<OpFoldResult> shape, Type elem) {
  SmallVector<OpFoldResult> sizes;
  for (OpFoldResult s : shape) {
    if (auto v = dyn_cast<Value>(s); v && !v.getType().isIndex())
      sizes.push_back(indexValue(s));
    else
      sizes.push_back(s);
  }
  return tensor::EmptyOp::create(builder_, loc_, sizes, elem);
}

Value GraphImporter::filled(ArrayRef<OpFoldResult> shape, Type elem,
                            TypedAttr value) {
  Value init = empty(shape, elem);
  Value v = arith::ConstantOp::create(builder_, loc_, value);
  return linalg::FillOp::create(builder_, loc_, v, init).result();
}

Value GraphImporter::scalarConstant(Type type, double value) {
  if (isa<FloatType>(type))
    return arith::ConstantOp::create(builder_, loc_,
                                     builder_.getFloatAttr(type, value));
  return arith::ConstantOp::create(
      builder_, loc_,
      builder_.getIntegerAttr(type, static_cast<int64_t>(value)));
}

Value GraphImporter::materialize(ArrayRef<OpFoldResult> elements, bool scalar,
                                 Type elem) {
  SmallVector<int64_t> shape;
  if (!scalar)
    shape.push_back(static_cast<int64_t>(elements.size()));
  auto type = RankedTensorType::get(shape, elem);
  SmallVector<int64_t> consts;
  for (OpFoldResult e : elements)
    if (std::optional<int64_t> c = getConstantIntValue(e))
      consts.push_back(*c);
  if (consts.size() == elements.size()) {
    SmallVector<APInt> values;
    // Truncating: a known i1 element is 0 or 1, and Cast to a narrower
    // integer type wraps.
    for (int64_t c : consts)
      values.push_back(APInt(elem.getIntOrFloatBitWidth(), c, true,
                             /*implicitTrunc=*/true));
    return arith::ConstantOp::create(builder_, loc_,
                                     DenseElementsAttr::get(type, values));
  }
  SmallVector<Value> values;
  for (OpFoldResult e : elements)
    values.push_back(castScalar(i64Value(e), elem, false, false));
  return tensor::FromElementsOp::create(builder_, loc_, type, values);
}

OnnxValue GraphImporter::constantValue(DenseElementsAttr attr,
                                       bool isUnsigned) {
  OnnxValue v;
  v.value = arith::ConstantOp::create(builder_, loc_, attr);
  v.isUnsigned = isUnsigned;
  auto type = cast<RankedTensorType>(attr.getType());
  Type elem = type.getElementType();
  if (isa<IntegerType>(elem) && !elem.isInteger(1) && type.getRank() <= 1 &&
      type.getNumElements() <= 64) {
    SmallVector<OpFoldResult> elems;
    for (APInt value : attr.getValues<APInt>())
      elems.push_back(builder_.getI64IntegerAttr(
          isUnsigned ? static_cast<int64_t>(value.getZExtValue())
                     : value.getSExtValue()));
    v.elements = std::move(elems);
  }
  return v;
}

OnnxValue GraphImporter::knownValue(ArrayRef<OpFoldResult> elements,
                                    bool scalar, Type elem) {
  OnnxValue v;
  v.value = materialize(elements, scalar, elem);
  v.elements = SmallVector<OpFoldResult>(elements.begin(), elements.end());
  return v;
}

Value GraphImporter::castScalar(Value v, Type to, bool fromUnsigned,
                                bool toUnsigned) {
  return onnx_import::castScalar(builder_, loc_, v, to, fromUnsigned,
                                 toUnsigned);
}

static Value zeroOf(OpBuilder &b, Location loc, Type type) {
  return arith::ConstantOp::create(b, loc, cast<TypedAttr>(b.getZeroAttr(type)));
}

Value moe_mlir::onnx_import::castScalar(OpBuilder &b, Location loc, Value v,
                                        Type to, bool fromUnsigned,
                                        bool toUnsigned) {
  Type from = v.getType();
  if (from == to)
    return v;
  auto fromF = dyn_cast<FloatType>(from);
  auto toF = dyn_cast<FloatType>(to);
  if (to.isInteger(1)) {
    if (fromF)
      return arith::CmpFOp::create(b, loc, arith::CmpFPredicate::UNE, v,
                                   zeroOf(b, loc, from));
    return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, v,
                                 zeroOf(b, loc, from));
  }
  if (fromF && toF) {
    if (fromF.getWidth() < toF.getWidth())
      return arith::ExtFOp::create(b, loc, to, v);
    if (fromF.getWidth() > toF.getWidth())
      return arith::TruncFOp::create(b, loc, to, v);
    // f16 <-> bf16: through f32.
    Value f32 = arith::ExtFOp::create(b, loc, b.getF32Type(), v);
    return arith::TruncFOp::create(b, loc, to, f32);
  }
  if (fromF) {
    if (toUnsigned)
      return arith::FPToUIOp::create(b, loc, to, v);
    return arith::FPToSIOp::create(b, loc, to, v);
  }
  bool srcUnsigned = fromUnsigned || from.isInteger(1);
  if (toF) {
    if (srcUnsigned)
      return arith::UIToFPOp::create(b, loc, to, v);
    return arith::SIToFPOp::create(b, loc, to, v);
  }
  unsigned fw = from.getIntOrFloatBitWidth(), tw = to.getIntOrFloatBitWidth();
  if (fw < tw) {
    if (srcUnsigned)
      return arith::ExtUIOp::create(b, loc, to, v);
    return arith::ExtSIOp::create(b, loc, to, v);
  }
  return arith::TruncIOp::create(b, loc, to, v);
}

FailureOr<SmallVector<OpFoldResult>>
GraphImporter::broadcastShape(ArrayRef<Value> inputs) {
  int64_t rank = 0;
  for (Value v : inputs)
    rank = std::max(rank, cast<RankedTensorType>(v.getType()).getRank());
  SmallVector<OpFoldResult> shape;
  for (int64_t d = 0; d < rank; ++d) {
    int64_t staticSize = 1;
    Value dynamicFrom;
    int64_t dynamicDim = 0;
    for (Value v : inputs) {
      auto type = cast<RankedTensorType>(v.getType());
      int64_t vd = d - (rank - type.getRank());
      if (vd < 0)
        continue;
      int64_t size = type.getDimSize(vd);
      if (ShapedType::isDynamic(size)) {
        if (!dynamicFrom) {
          dynamicFrom = v;
          dynamicDim = vd;
        }
        continue;
      }
      if (size == 1)
        continue;
      if (staticSize != 1 && staticSize != size) {
        (void)fail("operand shapes " + shapeString(cast<RankedTensorType>(
                                                 inputs[0].getType())
                                                 .getShape()) +
             " and " +
             shapeString(cast<RankedTensorType>(v.getType()).getShape()) +
             " do not broadcast");
        return failure();
      }
      staticSize = size;
    }
    if (staticSize != 1 || !dynamicFrom)
      shape.push_back(builder_.getIndexAttr(staticSize));
    else
      shape.push_back(dim(dynamicFrom, dynamicDim));
  }
  return shape;
}

/// The indexing map reading `type` inside a loop nest over `resultShape`
/// with numpy broadcasting (size-1 dims read index 0).
static AffineMap broadcastMap(RankedTensorType type,
                              ArrayRef<OpFoldResult> resultShape,
                              MLIRContext *ctx) {
  int64_t rank = resultShape.size();
  SmallVector<AffineExpr> exprs;
  for (int64_t i = 0; i < type.getRank(); ++i) {
    int64_t d = i + rank - type.getRank();
    std::optional<int64_t> result = getConstantIntValue(resultShape[d]);
    if (type.getDimSize(i) == 1 && (!result || *result != 1))
      exprs.push_back(getAffineConstantExpr(0, ctx));
    else
      exprs.push_back(getAffineDimExpr(d, ctx));
  }
  return AffineMap::get(rank, 0, exprs, ctx);
}

static SmallVector<int64_t> staticShape(ArrayRef<OpFoldResult> shape) {
  SmallVector<int64_t> out;
  for (OpFoldResult s : shape)
    out.push_back(getConstantIntValue(s).value_or(ShapedType::kDynamic));
  return out;
}

FailureOr<Value> GraphImporter::elementwise(ArrayRef<OnnxValue> inputs,
                                            Type computeType, Type resultElem,
                                            const ScalarFn &fn) {
  SmallVector<Value> values;
  for (const OnnxValue &v : inputs)
    values.push_back(v.value);
  FailureOr<SmallVector<OpFoldResult>> shape = broadcastShape(values);
  if (failed(shape))
    return failure();
  Value init = empty(*shape, resultElem);
  SmallVector<AffineMap> maps;
  for (Value v : values)
    maps.push_back(
        broadcastMap(cast<RankedTensorType>(v.getType()), *shape, ctx()));
  maps.push_back(AffineMap::getMultiDimIdentityMap(shape->size(), ctx()));
  SmallVector<utils::IteratorType> iterators(shape->size(),
                                             utils::IteratorType::parallel);
  SmallVector<bool> unsignedFlags;
  for (const OnnxValue &v : inputs)
    unsignedFlags.push_back(v.isUnsigned);
  auto generic = linalg::GenericOp::create(
      builder_, loc_, TypeRange{init.getType()}, values, ValueRange{init},
      maps, iterators, [&](OpBuilder &b, Location loc, ValueRange args) {
        SmallVector<Value> scalars;
        for (size_t i = 0; i < values.size(); ++i)
          scalars.push_back(computeType ? onnx_import::castScalar(b, loc, args[i], computeType,
                                                     unsignedFlags[i], false)
                                        : args[i]);
        linalg::YieldOp::create(b, loc, fn(b, loc, scalars));
      });
  return generic.getResult(0);
}

Value GraphImporter::broadcastTo(Value v, ArrayRef<OpFoldResult> shape) {
  auto type = cast<RankedTensorType>(v.getType());
  Value init = empty(shape, type.getElementType());
  SmallVector<AffineMap> maps = {
      broadcastMap(type, shape, ctx()),
      AffineMap::getMultiDimIdentityMap(shape.size(), ctx())};
  SmallVector<utils::IteratorType> iterators(shape.size(),
                                             utils::IteratorType::parallel);
  return linalg::GenericOp::create(
             builder_, loc_, TypeRange{init.getType()}, ValueRange{v},
             ValueRange{init}, maps, iterators,
             [](OpBuilder &b, Location loc, ValueRange args) {
               linalg::YieldOp::create(b, loc, args[0]);
             })
      .getResult(0);
}

Value GraphImporter::transpose(Value v, ArrayRef<int64_t> perm) {
  bool identity = true;
  for (size_t i = 0; i < perm.size(); ++i)
    identity &= perm[i] == static_cast<int64_t>(i);
  if (identity)
    return v;
  auto type = cast<RankedTensorType>(v.getType());
  SmallVector<OpFoldResult> shape;
  for (int64_t p : perm)
    shape.push_back(dim(v, p));
  Value init = empty(shape, type.getElementType());
  return linalg::TransposeOp::create(builder_, loc_, v, init, perm)
      .getResult()[0];
}

Value GraphImporter::reduce(Value v, ArrayRef<int64_t> axes, bool keepDims,
                            TypedAttr init, Type accType,
                            const ScalarFn &combine) {
  auto type = cast<RankedTensorType>(v.getType());
  int64_t rank = type.getRank();
  SmallVector<bool> reduced(rank, false);
  for (int64_t a : axes)
    reduced[a] = true;
  SmallVector<OpFoldResult> outShape;
  SmallVector<AffineExpr> outExprs;
  SmallVector<utils::IteratorType> iterators;
  for (int64_t d = 0; d < rank; ++d) {
    iterators.push_back(reduced[d] ? utils::IteratorType::reduction
                                   : utils::IteratorType::parallel);
    if (reduced[d])
      continue;
    outShape.push_back(dim(v, d));
    outExprs.push_back(getAffineDimExpr(d, ctx()));
  }
  Value acc = filled(outShape, accType, init);
  SmallVector<AffineMap> maps = {
      AffineMap::getMultiDimIdentityMap(rank, ctx()),
      AffineMap::get(rank, 0, outExprs, ctx())};
  Type elem = type.getElementType();
  Value result =
      linalg::GenericOp::create(
          builder_, loc_, TypeRange{acc.getType()}, ValueRange{v},
          ValueRange{acc}, maps, iterators,
          [&](OpBuilder &b, Location loc, ValueRange args) {
            Value x = elem == accType ? args[0]
                                      : onnx_import::castScalar(b, loc, args[0], accType, false,
                                                   false);
            linalg::YieldOp::create(b, loc, combine(b, loc, {args[1], x}));
          })
          .getResult(0);
  if (!keepDims)
    return result;
  SmallVector<OpFoldResult> kept;
  for (int64_t d = 0; d < rank; ++d)
    kept.push_back(reduced[d] ? OpFoldResult(builder_.getIndexAttr(1))
                              : dim(v, d));
  return reshape(result, kept);
}

Value GraphImporter::reshape(Value v, ArrayRef<OpFoldResult> shape) {
  auto type = cast<RankedTensorType>(v.getType());
  auto resultType =
      RankedTensorType::get(staticShape(shape), type.getElementType());
  if (resultType == type)
    return v;
  SmallVector<OpFoldResult> asI64;
  for (OpFoldResult s : shape)
    asI64.push_back(isa<Attribute>(s) ? s : OpFoldResult(i64Value(s)));
  Value shapeTensor = materialize(asI64, false, builder_.getI64Type());
  return tensor::ReshapeOp::create(builder_, loc_, resultType, v, shapeTensor);
}

Value GraphImporter::reverse(Value v, ArrayRef<bool> reversed) {
  auto type = cast<RankedTensorType>(v.getType());
  int64_t rank = type.getRank();
  SmallVector<OpFoldResult> shape = dims(v);
  SmallVector<Value> last(rank);
  for (int64_t d = 0; d < rank; ++d)
    if (reversed[d])
      last[d] = arith::SubIOp::create(
          builder_, loc_, indexValue(shape[d]),
          arith::ConstantIndexOp::create(builder_, loc_, 1));
  Value init = empty(shape, type.getElementType());
  return linalg::GenericOp::create(
             builder_, loc_, TypeRange{init.getType()}, ValueRange{},
             ValueRange{init},
             SmallVector<AffineMap>{
                 AffineMap::getMultiDimIdentityMap(rank, ctx())},
             SmallVector<utils::IteratorType>(rank,
                                              utils::IteratorType::parallel),
             [&](OpBuilder &b, Location loc, ValueRange) {
               SmallVector<Value> coords;
               for (int64_t d = 0; d < rank; ++d) {
                 Value i = linalg::IndexOp::create(b, loc, d);
                 coords.push_back(reversed[d] ? (Value)arith::SubIOp::create(
                                                    b, loc, last[d], i)
                                              : i);
               }
               linalg::YieldOp::create(
                   b, loc,
                   tensor::ExtractOp::create(b, loc, v, coords).getResult());
             })
      .getResult(0);
}
