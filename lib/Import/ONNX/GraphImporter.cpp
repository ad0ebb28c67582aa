//===- GraphImporter.cpp - ONNX graph to ops on tensors -------------------===//
//
// Part of moe-mlir's ONNX frontend.
//
//===----------------------------------------------------------------------===//

#include "GraphImporter.h"

#include "moe-mlir/Dialect/MoE/IR/MoE.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/AffineMap.h"
#include "mlir/IR/Matchers.h"
#include "mlir/Interfaces/DestinationStyleOpInterface.h"

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

//===----------------------------------------------------------------------===//
// Sizes and broadcasting
//===----------------------------------------------------------------------===//

void GraphImporter::noteDimParams(const onnx::ValueInfoProto &input) {
  const OnnxValue *v = lookup(input.name());
  if (!v || !input.type().has_tensor_type() ||
      !input.type().tensor_type().has_shape())
    return;
  const onnx::TensorShapeProto &shape = input.type().tensor_type().shape();
  for (int i = 0, e = std::min<int64_t>(shape.dim_size(), v->rank()); i < e;
       ++i) {
    const onnx::TensorShapeProto::Dimension &d = shape.dim(i);
    if (!d.has_dim_param() || d.dim_param().empty() ||
        !v->type().isDynamicDim(i))
      continue;
    SizeKey key{v->value, i};
    auto [it, inserted] = dimParams_.try_emplace(d.dim_param(), key);
    if (!inserted)
      dimAliases_[key] = it->second;
  }
}

GraphImporter::SizeTerm GraphImporter::leaf(SizeKey key) const {
  SizeTerm term;
  term.factors.push_back(dimAliases_.lookup_or(key, key));
  return term;
}

GraphImporter::SizeTerm GraphImporter::traceDim(Value t, int64_t d, int depth) {
  // The ops the importer sizes its results with; anything else (a slice, a
  // gather) starts a new size. Each step keeps the size unchanged.
  for (int step = 0; step < 1024; ++step) {
    if (!cast<RankedTensorType>(t.getType()).isDynamicDim(d))
      break;
    Operation *op = t.getDefiningOp();
    if (!op)
      break;
    auto result = cast<OpResult>(t);
    if (auto dps = dyn_cast<DestinationStyleOpInterface>(op)) {
      OpOperand *tied = dps.getTiedOpOperand(result);
      if (!tied || tied->get().getType() != t.getType())
        break;
      t = tied->get();
      continue;
    }
    if (auto forOp = dyn_cast<scf::ForOp>(op)) {
      Value init = forOp.getInitArgs()[result.getResultNumber()];
      if (init.getType() != t.getType())
        break;
      t = init;
      continue;
    }
    if (auto castOp = dyn_cast<tensor::CastOp>(op)) {
      auto source = dyn_cast<RankedTensorType>(castOp.getSource().getType());
      if (!source || source.getRank() != castOp.getType().getRank())
        break;
      t = castOp.getSource();
      continue;
    }
    // moe ops keep the token count: dimension 0 of the routing results,
    // of dispatch's mapping, of combine's result ([T, ...] from the mapping)
    // and of a shared expert's result.
    if (auto route = dyn_cast<moe::RouteOp>(op)) {
      if (d != 0)
        break;
      t = route.getInput();
      continue;
    }
    if (auto dispatch = dyn_cast<moe::DispatchOp>(op)) {
      if (d != 0 || t != dispatch.getMapping())
        break;
      t = dispatch.getInput();
      continue;
    }
    if (auto combine = dyn_cast<moe::CombineOp>(op)) {
      if (d != 0)
        break;
      t = combine.getMapping();
      continue;
    }
    if (auto shared = dyn_cast<moe::SharedExpertOp>(op)) {
      t = shared.getInput();
      continue;
    }
    if (auto emptyOp = dyn_cast<tensor::EmptyOp>(op))
      return traceSize(emptyOp.getDynamicSize(d), depth + 1);
    if (auto reshape = dyn_cast<tensor::ReshapeOp>(op)) {
      if (auto elements =
              reshape.getShape().getDefiningOp<tensor::FromElementsOp>())
        return traceSize(elements.getElements()[d], depth + 1);
      break;
    }
    if (auto slice = dyn_cast<tensor::ExtractSliceOp>(op)) {
      // The result's dimensions are the sizes not dropped.
      llvm::SmallBitVector dropped = slice.getDroppedDims();
      SmallVector<OpFoldResult> sizes = slice.getMixedSizes();
      int64_t kept = -1;
      for (int64_t i = 0, e = sizes.size(); i < e; ++i)
        if (!dropped.test(i) && ++kept == d) {
          if (auto v = dyn_cast<Value>(sizes[i]))
            return traceSize(v, depth + 1);
          break;
        }
      break;
    }
    if (auto expand = dyn_cast<tensor::ExpandShapeOp>(op)) {
      if (auto v = dyn_cast<Value>(expand.getMixedOutputShape()[d]))
        return traceSize(v, depth + 1);
      break;
    }
    break;
  }
  return leaf({t, d});
}

GraphImporter::SizeTerm GraphImporter::traceSize(Value size, int depth) {
  // Products and exact divisions by constants (Flatten, Reshape with -1)
  // are followed; any other arithmetic is a size of its own.
  for (int step = 0; step < 1024 && depth < 64; ++step) {
    if (auto c = size.getDefiningOp<arith::IndexCastOp>()) {
      size = c.getIn();
      continue;
    }
    if (auto c = size.getDefiningOp<arith::IndexCastUIOp>()) {
      size = c.getIn();
      continue;
    }
    if (std::optional<int64_t> c = getConstantIntValue(size)) {
      SizeTerm term;
      term.coeff = *c;
      return term;
    }
    if (auto d = size.getDefiningOp<tensor::DimOp>()) {
      std::optional<int64_t> index = d.getConstantIndex();
      auto type = dyn_cast<RankedTensorType>(d.getSource().getType());
      if (index && type && type.isDynamicDim(*index))
        return traceDim(d.getSource(), *index, depth + 1);
      break;
    }
    if (auto mul = size.getDefiningOp<arith::MulIOp>()) {
      SizeTerm a = traceSize(mul.getLhs(), depth + 1);
      SizeTerm b = traceSize(mul.getRhs(), depth + 1);
      int64_t coeff;
      if (llvm::MulOverflow(a.coeff, b.coeff, coeff))
        break;
      a.coeff = coeff;
      a.factors.append(b.factors.begin(), b.factors.end());
      llvm::sort(a.factors, [](const SizeKey &x, const SizeKey &y) {
        return std::make_pair(x.first.getAsOpaquePointer(), x.second) <
               std::make_pair(y.first.getAsOpaquePointer(), y.second);
      });
      return a;
    }
    Operation *op = size.getDefiningOp();
    if (op && isa<arith::FloorDivSIOp, arith::CeilDivSIOp, arith::DivSIOp,
                  arith::DivUIOp, arith::CeilDivUIOp>(op)) {
      std::optional<int64_t> divisor = getConstantIntValue(op->getOperand(1));
      if (!divisor || *divisor <= 0)
        break;
      SizeTerm a = traceSize(op->getOperand(0), depth + 1);
      if (a.coeff % *divisor != 0)
        break;
      a.coeff /= *divisor;
      return a;
    }
    break;
  }
  return leaf({size, -1});
}

bool GraphImporter::sameSize(OpFoldResult a, OpFoldResult b) {
  std::optional<int64_t> ca = getConstantIntValue(a),
                         cb = getConstantIntValue(b);
  if (ca || cb)
    return ca && cb && *ca == *cb;
  return traceSize(cast<Value>(a)) == traceSize(cast<Value>(b));
}

bool GraphImporter::sameSize(Value t, int64_t d, OpFoldResult size) {
  auto type = cast<RankedTensorType>(t.getType());
  std::optional<int64_t> c = getConstantIntValue(size);
  if (!type.isDynamicDim(d) || c)
    return c && *c == type.getDimSize(d);
  return traceDim(t, d) == traceSize(cast<Value>(size));
}

std::optional<OpFoldResult>
GraphImporter::broadcastSize(ArrayRef<SizeRef> refs) {
  int64_t fixed = 1;
  SmallVector<SizeRef> dynamic;
  SmallVector<SizeTerm> terms;
  for (auto [v, d] : refs) {
    int64_t size = d;
    if (v && d >= 0)
      size = cast<RankedTensorType>(v.getType()).getDimSize(d);
    else if (v)
      size =
          getConstantIntValue(OpFoldResult(v)).value_or(ShapedType::kDynamic);
    if (ShapedType::isDynamic(size)) {
      SizeTerm term = d >= 0 ? traceDim(v, d) : traceSize(v);
      if (!llvm::is_contained(terms, term)) {
        terms.push_back(std::move(term));
        dynamic.push_back({v, d});
      }
      continue;
    }
    if (size == 1)
      continue;
    if (fixed != 1 && fixed != size)
      return std::nullopt;
    fixed = size;
  }
  // A static size other than 1 is the result (dynamic sizes must be 1 or
  // that size); the operands read where they may be 1 (broadcastTo).
  if (fixed != 1 || dynamic.empty())
    return OpFoldResult(builder_.getIndexAttr(fixed));
  auto build = [&](SizeRef ref) -> Value {
    return ref.second >= 0 ? indexValue(dim(ref.first, ref.second))
                           : indexValue(ref.first);
  };
  if (dynamic.size() == 1)
    return dynamic[0].second >= 0 ? dim(dynamic[0].first, dynamic[0].second)
                                  : OpFoldResult(build(dynamic[0]));
  // Sizes only known when the model runs: a == 1 ? b : b == 1 ? a :
  // max(a, b). Where they broadcast that is numpy's size (1 and 0 give 0);
  // where they do not (3 and 5) there is no way to report it, the larger
  // wins and the smaller operand is read at a clamped index.
  Value one = arith::ConstantIndexOp::create(builder_, loc_, 1);
  Value acc = build(dynamic[0]);
  for (SizeRef ref : ArrayRef(dynamic).drop_front()) {
    Value s = build(ref);
    Value accIsOne = arith::CmpIOp::create(builder_, loc_,
                                           arith::CmpIPredicate::eq, acc, one);
    Value sIsOne =
        arith::CmpIOp::create(builder_, loc_, arith::CmpIPredicate::eq, s, one);
    Value larger = arith::MaxUIOp::create(builder_, loc_, acc, s);
    Value otherwise =
        arith::SelectOp::create(builder_, loc_, sIsOne, acc, larger);
    acc = arith::SelectOp::create(builder_, loc_, accIsOne, s, otherwise);
  }
  return OpFoldResult(acc);
}

std::optional<OpFoldResult>
GraphImporter::broadcastSize(ArrayRef<OpFoldResult> sizes) {
  SmallVector<SizeRef> refs;
  for (OpFoldResult s : sizes) {
    if (std::optional<int64_t> c = getConstantIntValue(s))
      refs.push_back({Value(), *c});
    else
      refs.push_back({cast<Value>(s), -1});
  }
  return broadcastSize(ArrayRef<SizeRef>(refs));
}

FailureOr<SmallVector<OpFoldResult>>
GraphImporter::broadcastShape(ArrayRef<Value> inputs) {
  int64_t rank = 0;
  for (Value v : inputs)
    rank = std::max(rank, cast<RankedTensorType>(v.getType()).getRank());
  SmallVector<OpFoldResult> shape;
  for (int64_t d = 0; d < rank; ++d) {
    SmallVector<SizeRef> refs;
    for (Value v : inputs) {
      int64_t vd = d - (rank - cast<RankedTensorType>(v.getType()).getRank());
      if (vd >= 0)
        refs.push_back({v, vd});
    }
    std::optional<OpFoldResult> size = broadcastSize(ArrayRef<SizeRef>(refs));
    if (!size) {
      std::string shapes;
      for (size_t i = 0; i < inputs.size(); ++i) {
        if (i)
          shapes += i + 1 == inputs.size() ? " and " : ", ";
        shapes +=
            shapeString(cast<RankedTensorType>(inputs[i].getType()).getShape());
      }
      (void)fail("operand shapes " + shapes + " do not broadcast");
      return failure();
    }
    shape.push_back(*size);
  }
  return shape;
}

static SmallVector<int64_t> staticShape(ArrayRef<OpFoldResult> shape) {
  SmallVector<int64_t> out;
  for (OpFoldResult s : shape)
    out.push_back(getConstantIntValue(s).value_or(ShapedType::kDynamic));
  return out;
}

namespace {
/// How a dimension of an operand is read in a broadcasting loop nest: at the
/// loop's index, at 0 (a static size 1 broadcast) or at min(i, size - 1)
/// (a dynamic size that may be 1 when the model runs).
enum class Read { Loop, Zero, Clamped };
} // namespace

static SmallVector<Read> broadcastReads(GraphImporter &g, Value v,
                                        ArrayRef<OpFoldResult> shape) {
  auto type = cast<RankedTensorType>(v.getType());
  int64_t rank = shape.size();
  SmallVector<Read> reads;
  for (int64_t i = 0; i < type.getRank(); ++i) {
    int64_t d = i + rank - type.getRank();
    std::optional<int64_t> result = getConstantIntValue(shape[d]);
    int64_t size = type.getDimSize(i);
    if (size == 1)
      reads.push_back(result && *result == 1 ? Read::Loop : Read::Zero);
    else if (!ShapedType::isDynamic(size) || g.sameSize(v, i, shape[d]))
      reads.push_back(Read::Loop);
    else
      reads.push_back(Read::Clamped);
  }
  return reads;
}

Value GraphImporter::broadcastGeneric(ArrayRef<Value> operands,
                                      ArrayRef<OpFoldResult> shape,
                                      Type resultElem, const ScalarFn &body) {
  int64_t rank = shape.size();
  Value init = empty(shape, resultElem);
  // Operands read through affine maps are the generic's inputs; the others
  // are read with tensor.extract in the body (`input` -1).
  struct Operand {
    Value value;
    SmallVector<Read> reads;
    SmallVector<Value> last;
    int64_t input = -1;
  };
  SmallVector<Operand> ops;
  SmallVector<Value> inputs;
  SmallVector<AffineMap> maps;
  for (Value v : operands) {
    Operand op{v, broadcastReads(*this, v, shape), {}, -1};
    int64_t vrank = op.reads.size();
    if (llvm::is_contained(op.reads, Read::Clamped)) {
      op.last.resize(vrank);
      Value one = arith::ConstantIndexOp::create(builder_, loc_, 1);
      for (int64_t i = 0; i < vrank; ++i)
        if (op.reads[i] == Read::Clamped)
          op.last[i] =
              arith::SubIOp::create(builder_, loc_, indexValue(dim(v, i)), one);
    } else {
      SmallVector<AffineExpr> exprs;
      for (int64_t i = 0; i < vrank; ++i)
        exprs.push_back(op.reads[i] == Read::Zero
                            ? getAffineConstantExpr(0, ctx())
                            : getAffineDimExpr(i + rank - vrank, ctx()));
      maps.push_back(AffineMap::get(rank, 0, exprs, ctx()));
      op.input = inputs.size();
      inputs.push_back(v);
    }
    ops.push_back(std::move(op));
  }
  maps.push_back(AffineMap::getMultiDimIdentityMap(rank, ctx()));
  SmallVector<utils::IteratorType> iterators(rank,
                                             utils::IteratorType::parallel);
  return linalg::GenericOp::create(
             builder_, loc_, TypeRange{init.getType()}, inputs,
             ValueRange{init}, maps, iterators,
             [&](OpBuilder &b, Location loc, ValueRange args) {
               SmallVector<Value> scalars;
               for (const Operand &op : ops) {
                 if (op.input >= 0) {
                   scalars.push_back(args[op.input]);
                   continue;
                 }
                 int64_t vrank = op.reads.size();
                 SmallVector<Value> coords;
                 for (int64_t i = 0; i < vrank; ++i) {
                   if (op.reads[i] == Read::Zero) {
                     coords.push_back(
                         arith::ConstantIndexOp::create(b, loc, 0));
                     continue;
                   }
                   Value index =
                       linalg::IndexOp::create(b, loc, i + rank - vrank);
                   if (op.reads[i] == Read::Clamped)
                     index = arith::MinUIOp::create(b, loc, index, op.last[i]);
                   coords.push_back(index);
                 }
                 scalars.push_back(
                     tensor::ExtractOp::create(b, loc, op.value, coords));
               }
               linalg::YieldOp::create(b, loc, body(b, loc, scalars));
             })
      .getResult(0);
}

FailureOr<Value> GraphImporter::elementwise(ArrayRef<OnnxValue> inputs,
                                            Type computeType, Type resultElem,
                                            const ScalarFn &fn) {
  SmallVector<Value> values;
  SmallVector<bool> unsignedFlags;
  for (const OnnxValue &v : inputs) {
    values.push_back(v.value);
    unsignedFlags.push_back(v.isUnsigned);
  }
  FailureOr<SmallVector<OpFoldResult>> shape = broadcastShape(values);
  if (failed(shape))
    return failure();
  return broadcastGeneric(
      values, *shape, resultElem,
      [&](OpBuilder &b, Location loc, ValueRange args) {
        SmallVector<Value> scalars;
        for (size_t i = 0; i < args.size(); ++i)
          scalars.push_back(computeType ? onnx_import::castScalar(
                                              b, loc, args[i], computeType,
                                              unsignedFlags[i], false)
                                        : args[i]);
        return fn(b, loc, scalars);
      });
}

Value GraphImporter::broadcastTo(Value v, ArrayRef<OpFoldResult> shape) {
  return broadcastGeneric(
      v, shape, cast<RankedTensorType>(v.getType()).getElementType(),
      [](OpBuilder &, Location, ValueRange args) { return args[0]; });
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
