//===- RaiseGraph.cpp - graph queries for the MoE raiser ------------------===//
//
// Part of moe-mlir's ONNX frontend.
//
//===----------------------------------------------------------------------===//

#include "RaiseGraph.h"

#include "RaiseMoE.h"
#include "TensorData.h"

#include "llvm/ADT/APFloat.h"
#include "llvm/ADT/APInt.h"
#include "llvm/ADT/STLExtras.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

using namespace moe_mlir::onnx_import;
using namespace moe_mlir::onnx_import::raise;
using llvm::StringRef;

/// Constants larger than this are weights, never evaluated.
static constexpr int64_t kMaxConstElements = 4096;

//===----------------------------------------------------------------------===//
// SymInt, ConstValue
//===----------------------------------------------------------------------===//

SymInt SymInt::operator*(const SymInt &o) const {
  if (!known || !o.known)
    return unknown();
  SymInt r{coef * o.coef, power + o.power, true};
  if (r.coef == 0)
    r.power = 0;
  return r;
}

std::optional<SymInt> SymInt::exactDiv(const SymInt &o) const {
  if (!known || !o.known || o.coef == 0)
    return std::nullopt;
  if (coef == 0)
    return of(0);
  if (power < o.power || coef % o.coef != 0)
    return std::nullopt;
  return SymInt{coef / o.coef, power - o.power, true};
}

std::string SymInt::str() const {
  if (!known)
    return "?";
  if (isInt())
    return std::to_string(coef);
  std::string s = coef == 1 ? "" : std::to_string(coef) + "*";
  s += "T";
  if (power > 1)
    s += "^" + std::to_string(power);
  return s;
}

static SymInt addSym(const SymInt &a, const SymInt &b, bool subtract) {
  if (!a.known || !b.known)
    return SymInt::unknown();
  int64_t bc = subtract ? -b.coef : b.coef;
  if (a.coef == 0)
    return SymInt{bc, bc == 0 ? 0 : b.power, true};
  if (b.coef == 0)
    return a;
  if (a.power != b.power)
    return SymInt::unknown();
  SymInt r{a.coef + bc, a.power, true};
  if (r.coef == 0)
    r.power = 0;
  return r;
}

int64_t ConstValue::size() const {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

std::optional<double> ConstValue::scalar() const {
  if (size() != 1)
    return std::nullopt;
  if (isFloat)
    return floats[0];
  if (!ints[0].isInt())
    return std::nullopt;
  return static_cast<double>(ints[0].coef);
}

std::optional<std::vector<int64_t>> ConstValue::plainInts() const {
  if (isFloat)
    return std::nullopt;
  std::vector<int64_t> out;
  out.reserve(ints.size());
  for (const SymInt &s : ints) {
    if (!s.isInt())
      return std::nullopt;
    out.push_back(s.coef);
  }
  return out;
}

bool moe_mlir::onnx_import::raise::isFloatType(int32_t t) {
  return t == onnx::TensorProto::FLOAT || t == onnx::TensorProto::FLOAT16 ||
         t == onnx::TensorProto::BFLOAT16;
}

static bool isIntegerType(int32_t t) {
  switch (t) {
  case onnx::TensorProto::INT8:
  case onnx::TensorProto::INT16:
  case onnx::TensorProto::INT32:
  case onnx::TensorProto::INT64:
  case onnx::TensorProto::UINT8:
  case onnx::TensorProto::UINT16:
  case onnx::TensorProto::UINT32:
  case onnx::TensorProto::UINT64:
  case onnx::TensorProto::BOOL:
    return true;
  default:
    return false;
  }
}

std::optional<ConstValue>
moe_mlir::onnx_import::raise::readConstTensor(const onnx::TensorProto &t,
                                              int64_t maxElements) {
  if (t.data_location() == onnx::TensorProto::EXTERNAL)
    return std::nullopt;
  ConstValue v;
  v.shape.assign(t.dims().begin(), t.dims().end());
  for (int64_t d : v.shape)
    if (d < 0 || d > maxElements)
      return std::nullopt;
  int64_t count = v.size();
  if (count > maxElements)
    return std::nullopt;
  int32_t type = t.data_type();
  if (!isFloatType(type) && type != onnx::TensorProto::DOUBLE &&
      type != onnx::TensorProto::INT64 && type != onnx::TensorProto::INT32 &&
      type != onnx::TensorProto::BOOL)
    return std::nullopt;
  std::vector<char> bytes;
  std::string error;
  if (!readTensorBytes(t, ".", "constant", bytes, error))
    return std::nullopt;
  auto load = [&](int64_t i, auto *dummy) {
    using T = std::remove_pointer_t<decltype(dummy)>;
    T value;
    std::memcpy(&value, bytes.data() + i * sizeof(T), sizeof(T));
    return value;
  };
  v.isFloat = isFloatType(type) || type == onnx::TensorProto::DOUBLE;
  for (int64_t i = 0; i < count; ++i) {
    switch (type) {
    case onnx::TensorProto::FLOAT:
      v.floats.push_back(load(i, static_cast<float *>(nullptr)));
      break;
    case onnx::TensorProto::DOUBLE:
      v.floats.push_back(load(i, static_cast<double *>(nullptr)));
      break;
    case onnx::TensorProto::FLOAT16:
    case onnx::TensorProto::BFLOAT16: {
      uint16_t bits = load(i, static_cast<uint16_t *>(nullptr));
      llvm::APFloat f(type == onnx::TensorProto::FLOAT16
                          ? llvm::APFloat::IEEEhalf()
                          : llvm::APFloat::BFloat(),
                      llvm::APInt(16, bits));
      bool lost = false;
      f.convert(llvm::APFloat::IEEEdouble(), llvm::APFloat::rmNearestTiesToEven,
                &lost);
      v.floats.push_back(f.convertToDouble());
      break;
    }
    case onnx::TensorProto::INT64:
      v.ints.push_back(SymInt::of(load(i, static_cast<int64_t *>(nullptr))));
      break;
    case onnx::TensorProto::INT32:
      v.ints.push_back(SymInt::of(load(i, static_cast<int32_t *>(nullptr))));
      break;
    default: // BOOL
      v.ints.push_back(SymInt::of(load(i, static_cast<uint8_t *>(nullptr))));
      break;
    }
  }
  return v;
}

//===----------------------------------------------------------------------===//
// Attributes, GraphIndex
//===----------------------------------------------------------------------===//

const onnx::AttributeProto *
moe_mlir::onnx_import::raise::findAttr(const onnx::NodeProto &node,
                                       StringRef name) {
  for (const onnx::AttributeProto &a : node.attribute())
    if (a.name() == name)
      return &a;
  return nullptr;
}

int64_t moe_mlir::onnx_import::raise::attrInt(const onnx::NodeProto &node,
                                              StringRef name,
                                              int64_t fallback) {
  const onnx::AttributeProto *a = findAttr(node, name);
  return a ? a->i() : fallback;
}

std::optional<std::vector<int64_t>>
moe_mlir::onnx_import::raise::attrInts(const onnx::NodeProto &node,
                                       StringRef name) {
  const onnx::AttributeProto *a = findAttr(node, name);
  if (!a)
    return std::nullopt;
  return std::vector<int64_t>(a->ints().begin(), a->ints().end());
}

std::string
moe_mlir::onnx_import::raise::attrString(const onnx::NodeProto &node,
                                         StringRef name, StringRef fallback) {
  const onnx::AttributeProto *a = findAttr(node, name);
  return a ? a->s() : fallback.str();
}

/// Every name the nodes of `graph` (and of their subgraphs) read.
static void collectSubgraphReads(const onnx::GraphProto &graph,
                                 std::vector<std::string> &out) {
  for (const onnx::NodeProto &n : graph.node()) {
    for (const std::string &in : n.input())
      if (!in.empty())
        out.push_back(in);
    for (const onnx::AttributeProto &a : n.attribute()) {
      if (a.has_g())
        collectSubgraphReads(a.g(), out);
      for (const onnx::GraphProto &g : a.graphs())
        collectSubgraphReads(g, out);
    }
  }
}

GraphIndex::GraphIndex(const onnx::GraphProto &graph) : graph_(graph) {
  reads_.resize(graph.node_size());
  for (const onnx::TensorProto &t : graph.initializer())
    initializers_[t.name()] = &t;
  for (const onnx::ValueInfoProto &v : graph.input())
    inputs_[v.name()] = &v;
  for (const onnx::ValueInfoProto &v : graph.output())
    outputs_.insert(v.name());
  for (int i = 0; i < graph.node_size(); ++i) {
    const onnx::NodeProto &n = graph.node(i);
    for (const std::string &out : n.output())
      if (!out.empty())
        producer_[out] = i;
    std::vector<std::string> &reads = reads_[i];
    for (const std::string &in : n.input())
      if (!in.empty())
        reads.push_back(in);
    for (const onnx::AttributeProto &a : n.attribute()) {
      if (a.has_g())
        collectSubgraphReads(a.g(), reads);
      for (const onnx::GraphProto &g : a.graphs())
        collectSubgraphReads(g, reads);
    }
    for (const std::string &in : reads) {
      std::vector<int> &c = consumers_[in];
      if (c.empty() || c.back() != i)
        c.push_back(i);
    }
  }
}

int GraphIndex::producer(StringRef name) const {
  auto it = producer_.find(name);
  return it == producer_.end() ? -1 : it->second;
}

llvm::ArrayRef<int> GraphIndex::consumers(StringRef name) const {
  auto it = consumers_.find(name);
  if (it == consumers_.end())
    return {};
  return it->second;
}

const onnx::TensorProto *GraphIndex::initializer(StringRef name) const {
  auto it = initializers_.find(name);
  return it == initializers_.end() ? nullptr : it->second;
}

const onnx::ValueInfoProto *GraphIndex::graphInput(StringRef name) const {
  auto it = inputs_.find(name);
  return it == inputs_.end() ? nullptr : it->second;
}

//===----------------------------------------------------------------------===//
// ConstEvaluator: tensor helpers
//===----------------------------------------------------------------------===//

namespace {

std::vector<int64_t> stridesOf(const std::vector<int64_t> &shape) {
  std::vector<int64_t> s(shape.size(), 1);
  for (int i = static_cast<int>(shape.size()) - 2; i >= 0; --i)
    s[i] = s[i + 1] * shape[i + 1];
  return s;
}

int64_t product(const std::vector<int64_t> &shape) {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

/// Calls `fn(index)` for every multi-index of `shape` in row-major order.
template <typename Fn>
void forEachIndex(const std::vector<int64_t> &shape, Fn fn) {
  int64_t count = product(shape);
  std::vector<int64_t> idx(shape.size(), 0);
  for (int64_t flat = 0; flat < count; ++flat) {
    fn(idx);
    for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
      if (++idx[d] < shape[d])
        break;
      idx[d] = 0;
    }
  }
}

/// A tensor of `shape` whose element i is `src`'s element `from[i]`.
ConstValue pick(const ConstValue &src, std::vector<int64_t> shape,
                const std::vector<int64_t> &from) {
  ConstValue out;
  out.shape = std::move(shape);
  out.isFloat = src.isFloat;
  for (int64_t f : from) {
    if (src.isFloat)
      out.floats.push_back(src.floats[f]);
    else
      out.ints.push_back(src.ints[f]);
  }
  return out;
}

std::optional<int64_t> normAxis(int64_t axis, int64_t rank) {
  if (axis < -rank || axis >= rank)
    return std::nullopt;
  return axis < 0 ? axis + rank : axis;
}

std::optional<std::vector<int64_t>>
broadcastShapes(const std::vector<std::vector<int64_t>> &shapes) {
  size_t rank = 0;
  for (const auto &s : shapes)
    rank = std::max(rank, s.size());
  std::vector<int64_t> out(rank, 1);
  for (const auto &s : shapes) {
    size_t off = rank - s.size();
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == out[off + i] || s[i] == 1)
        continue;
      if (out[off + i] != 1)
        return std::nullopt;
      out[off + i] = s[i];
    }
  }
  return out;
}

/// The flat index into a tensor of `shape` broadcast against `outIndex`.
int64_t broadcastFlat(const std::vector<int64_t> &shape,
                      const std::vector<int64_t> &strides,
                      const std::vector<int64_t> &outIndex) {
  size_t off = outIndex.size() - shape.size();
  int64_t flat = 0;
  for (size_t i = 0; i < shape.size(); ++i)
    flat += (shape[i] == 1 ? 0 : outIndex[off + i]) * strides[i];
  return flat;
}

} // namespace

//===----------------------------------------------------------------------===//
// ConstEvaluator
//===----------------------------------------------------------------------===//

std::optional<ConstValue> ConstEvaluator::evaluate(StringRef name) {
  if (name.empty())
    return std::nullopt;
  auto it = cache_.find(name);
  if (it != cache_.end())
    return it->second;
  if (const onnx::TensorProto *t = index_.initializer(name)) {
    std::optional<ConstValue> v = readConstTensor(*t, kMaxConstElements);
    if (v)
      cache_[name] = *v;
    return v;
  }
  int p = index_.producer(name);
  if (p < 0 || notConstant_.contains(name))
    return std::nullopt;
  if (evaluating_.contains(name) || evaluating_.size() > 256) {
    ++tentative_;
    return std::nullopt;
  }
  const onnx::NodeProto &node = index_.node(p);
  int output = 0;
  while (node.output(output) != name)
    ++output;
  int64_t tentative = tentative_;
  evaluating_.insert(name);
  std::optional<ConstValue> v = evaluateNode(node, output);
  evaluating_.erase(name);
  if (v && v->size() <= kMaxConstElements)
    cache_[name] = *v;
  else if (!v && tentative == tentative_)
    notConstant_.insert(name);
  return v;
}

std::optional<std::vector<SymInt>> ConstEvaluator::shapeOf(StringRef name) {
  if (shapeOf_)
    if (auto s = shapeOf_(name))
      return s;
  std::vector<SymInt> out;
  if (const onnx::TensorProto *t = index_.initializer(name)) {
    for (int64_t d : t->dims())
      out.push_back(SymInt::of(d));
    return out;
  }
  if (const onnx::ValueInfoProto *in = index_.graphInput(name)) {
    if (!in->type().has_tensor_type() || !in->type().tensor_type().has_shape())
      return std::nullopt;
    for (const auto &d : in->type().tensor_type().shape().dim())
      out.push_back(d.has_dim_value() ? SymInt::of(d.dim_value())
                                      : SymInt::unknown());
    return out;
  }
  if (std::optional<WeightInfo> w = weight(name)) {
    for (int64_t d : w->shape)
      out.push_back(SymInt::of(d));
    return out;
  }
  if (std::optional<ConstValue> c = evaluate(name)) {
    for (int64_t d : c->shape)
      out.push_back(SymInt::of(d));
    return out;
  }
  return std::nullopt;
}

std::optional<WeightInfo> ConstEvaluator::weight(StringRef name) {
  return weight(name, 0);
}

std::optional<WeightInfo> ConstEvaluator::weight(StringRef name, int depth) {
  if (depth > 64)
    return std::nullopt;
  if (const onnx::TensorProto *t = index_.initializer(name)) {
    if (!isFloatType(t->data_type()))
      return std::nullopt;
    return WeightInfo{name.str(),
                      std::vector<int64_t>(t->dims().begin(), t->dims().end()),
                      t->data_type()};
  }
  int p = index_.producer(name);
  if (p < 0)
    return std::nullopt;
  const onnx::NodeProto &node = index_.node(p);
  const std::string &op = node.op_type();
  if (!node.domain().empty() && node.domain() != "ai.onnx")
    return std::nullopt;
  if (op == "Constant") {
    const onnx::AttributeProto *a = findAttr(node, "value");
    if (!a || !a->has_t() || !isFloatType(a->t().data_type()))
      return std::nullopt;
    return WeightInfo{
        name.str(),
        std::vector<int64_t>(a->t().dims().begin(), a->t().dims().end()),
        a->t().data_type()};
  }
  if (op != "Transpose" && op != "Identity" && op != "Cast" &&
      op != "Unsqueeze" && op != "Squeeze" && op != "Reshape")
    return std::nullopt;
  if (node.input_size() < 1)
    return std::nullopt;
  std::optional<WeightInfo> in = weight(node.input(0), depth + 1);
  if (!in)
    return std::nullopt;
  WeightInfo w{name.str(), in->shape, in->elemType};
  int64_t rank = static_cast<int64_t>(w.shape.size());
  auto axesOf = [&]() -> std::optional<std::vector<int64_t>> {
    if (node.input_size() > 1 && !node.input(1).empty()) {
      std::optional<ConstValue> c = evaluate(node.input(1));
      if (!c)
        return std::nullopt;
      return c->plainInts();
    }
    return attrInts(node, "axes");
  };
  if (op == "Transpose") {
    std::vector<int64_t> perm(rank);
    std::iota(perm.rbegin(), perm.rend(), 0);
    if (auto p = attrInts(node, "perm"))
      perm = *p;
    if (static_cast<int64_t>(perm.size()) != rank)
      return std::nullopt;
    std::vector<bool> seen(rank, false);
    for (size_t i = 0; i < perm.size(); ++i) {
      if (perm[i] < 0 || perm[i] >= rank || seen[perm[i]])
        return std::nullopt;
      seen[perm[i]] = true;
      w.shape[i] = in->shape[perm[i]];
    }
  } else if (op == "Cast") {
    int64_t to = attrInt(node, "to", 0);
    if (!isFloatType(static_cast<int32_t>(to)))
      return std::nullopt;
    w.elemType = static_cast<int32_t>(to);
  } else if (op == "Unsqueeze") {
    std::optional<std::vector<int64_t>> axes = axesOf();
    if (!axes)
      return std::nullopt;
    int64_t outRank = rank + static_cast<int64_t>(axes->size());
    std::vector<bool> unit(outRank, false);
    for (int64_t a : *axes) {
      std::optional<int64_t> n = normAxis(a, outRank);
      if (!n || unit[*n])
        return std::nullopt;
      unit[*n] = true;
    }
    w.shape.clear();
    size_t next = 0;
    for (int64_t i = 0; i < outRank; ++i)
      w.shape.push_back(unit[i] ? 1 : in->shape[next++]);
  } else if (op == "Squeeze") {
    std::optional<std::vector<int64_t>> axes = axesOf();
    std::vector<bool> drop(rank, false);
    if (axes) {
      for (int64_t a : *axes) {
        std::optional<int64_t> n = normAxis(a, rank);
        if (!n || in->shape[*n] != 1)
          return std::nullopt;
        drop[*n] = true;
      }
    } else {
      for (int64_t i = 0; i < rank; ++i)
        drop[i] = in->shape[i] == 1;
    }
    w.shape.clear();
    for (int64_t i = 0; i < rank; ++i)
      if (!drop[i])
        w.shape.push_back(in->shape[i]);
  } else if (op == "Reshape") {
    if (node.input_size() < 2 || attrInt(node, "allowzero", 0) != 0)
      return std::nullopt;
    std::optional<ConstValue> c = evaluate(node.input(1));
    std::optional<std::vector<int64_t>> target =
        c ? c->plainInts() : std::nullopt;
    if (!target)
      return std::nullopt;
    int64_t total = product(in->shape), known = 1;
    int inferred = -1;
    w.shape = *target;
    for (size_t i = 0; i < w.shape.size(); ++i) {
      if (w.shape[i] == 0) {
        if (i >= in->shape.size())
          return std::nullopt;
        w.shape[i] = in->shape[i];
      }
      if (w.shape[i] == -1) {
        if (inferred >= 0)
          return std::nullopt;
        inferred = static_cast<int>(i);
        continue;
      }
      if (w.shape[i] < 0)
        return std::nullopt;
      known *= w.shape[i];
    }
    if (inferred >= 0) {
      if (known == 0 || total % known != 0)
        return std::nullopt;
      w.shape[inferred] = total / known;
    } else if (known != total) {
      return std::nullopt;
    }
  }
  return w;
}

std::optional<int64_t> ConstEvaluator::rankOf(StringRef name, int depth) {
  if (depth > 512)
    return std::nullopt;
  auto memo = ranks_.find(name);
  if (memo != ranks_.end())
    return memo->second;
  std::optional<int64_t> r = rankOfUncached(name, depth);
  ranks_[name] = r;
  return r;
}

std::optional<int64_t> ConstEvaluator::rankOfUncached(StringRef name,
                                                      int depth) {
  if (shapeOf_)
    if (auto s = shapeOf_(name))
      return static_cast<int64_t>(s->size());
  if (const onnx::TensorProto *t = index_.initializer(name))
    return t->dims_size();
  if (const onnx::ValueInfoProto *in = index_.graphInput(name)) {
    if (!in->type().has_tensor_type() || !in->type().tensor_type().has_shape())
      return std::nullopt;
    return in->type().tensor_type().shape().dim_size();
  }
  int p = index_.producer(name);
  if (p < 0)
    return std::nullopt;
  const onnx::NodeProto &node = index_.node(p);
  const std::string &op = node.op_type();
  // MoE blocks (raised ones included) keep the shape of their input.
  if ((node.domain() == "com.microsoft" || node.domain() == kRaisedDomain) &&
      op == "MoE" && node.output(0) == name && node.input_size() > 0)
    return rankOf(node.input(0), depth + 1);
  if (!node.domain().empty() && node.domain() != "ai.onnx")
    return std::nullopt;
  auto rankIn = [&](int i) -> std::optional<int64_t> {
    if (i >= node.input_size() || node.input(i).empty())
      return std::nullopt;
    return rankOf(node.input(i), depth + 1);
  };
  // clang-format off
  static const char *const sameRank[] = {
      "Identity", "Cast", "CastLike", "Relu", "Sigmoid", "Tanh", "Erf",
      "Exp", "Log", "Sqrt", "Reciprocal", "Neg", "Abs", "Softmax",
      "LogSoftmax", "Gelu", "LayerNormalization",
      "SimplifiedLayerNormalization", "Clip", "LeakyRelu", "HardSigmoid",
      "Softplus", "Dropout", "Transpose", "Concat", "Floor", "Ceil"};
  // clang-format on
  for (const char *s : sameRank)
    if (op == s)
      return node.output(0) == name ? rankIn(0) : std::nullopt;
  // clang-format off
  static const char *const broadcasting[] = {"Add", "Sub", "Mul", "Div",
                                             "Pow", "Max", "Min", "Where",
                                             "Equal", "Less", "Greater"};
  // clang-format on
  for (const char *s : broadcasting) {
    if (op != s)
      continue;
    int64_t r = 0;
    for (int i = 0; i < node.input_size(); ++i) {
      std::optional<int64_t> ri = rankIn(i);
      if (!ri)
        return std::nullopt;
      r = std::max(r, *ri);
    }
    return r;
  }
  if (op == "MatMul") {
    std::optional<int64_t> a = rankIn(0), b = rankIn(1);
    if (!a || !b)
      return std::nullopt;
    if (*a >= 2 && *b >= 2)
      return std::max(*a, *b);
    if (*a == 1 && *b >= 2)
      return *b - 1;
    if (*b == 1 && *a >= 1)
      return *a - 1;
    return std::nullopt;
  }
  if (op == "Gemm" || op == "Flatten")
    return 2;
  if (op == "Reshape") {
    std::optional<std::vector<SymInt>> s =
        node.input_size() > 1 ? shapeOf(node.input(1)) : std::nullopt;
    if (!s || s->size() != 1 || !(*s)[0].isInt())
      return std::nullopt;
    return (*s)[0].coef;
  }
  if (op == "Gather") {
    std::optional<int64_t> a = rankIn(0), b = rankIn(1);
    if (!a || !b || *a < 1)
      return std::nullopt;
    return *a - 1 + *b;
  }
  if (op == "Unsqueeze" || op == "Squeeze") {
    std::optional<int64_t> r = rankIn(0);
    std::optional<std::vector<int64_t>> axes;
    if (node.input_size() > 1 && !node.input(1).empty()) {
      if (std::optional<ConstValue> c = evaluate(node.input(1)))
        axes = c->plainInts();
    } else {
      axes = attrInts(node, "axes");
    }
    if (!r || !axes)
      return std::nullopt;
    int64_t n = static_cast<int64_t>(axes->size());
    return op == "Unsqueeze" ? *r + n : *r - n;
  }
  if (std::optional<std::vector<SymInt>> s = shapeOf(name))
    return static_cast<int64_t>(s->size());
  return std::nullopt;
}

std::optional<ConstValue>
ConstEvaluator::evaluateNode(const onnx::NodeProto &node, int output) {
  if (!node.domain().empty() && node.domain() != "ai.onnx")
    return std::nullopt;
  const std::string &op = node.op_type();
  if (op == "Constant") {
    if (output != 0)
      return std::nullopt;
    for (const onnx::AttributeProto &a : node.attribute()) {
      ConstValue v;
      if (a.name() == "value" && a.has_t())
        return readConstTensor(a.t(), kMaxConstElements);
      if (a.name() == "value_float") {
        v.isFloat = true;
        v.floats.push_back(a.f());
        return v;
      }
      if (a.name() == "value_int") {
        v.ints.push_back(SymInt::of(a.i()));
        return v;
      }
      if (a.name() == "value_floats") {
        v.isFloat = true;
        v.shape = {a.floats_size()};
        v.floats.assign(a.floats().begin(), a.floats().end());
        return v;
      }
      if (a.name() == "value_ints") {
        v.shape = {a.ints_size()};
        for (int64_t i : a.ints())
          v.ints.push_back(SymInt::of(i));
        return v;
      }
    }
    return std::nullopt;
  }
  if (node.input_size() == 0)
    return std::nullopt;
  if (op == "Shape") {
    std::optional<std::vector<SymInt>> s = shapeOf(node.input(0));
    if (!s) {
      ++tentative_;
      return std::nullopt;
    }
    int64_t rank = static_cast<int64_t>(s->size());
    int64_t start = attrInt(node, "start", 0), end = attrInt(node, "end", rank);
    if (start < 0)
      start += rank;
    if (end < 0)
      end += rank;
    start = std::clamp<int64_t>(start, 0, rank);
    end = std::clamp<int64_t>(end, start, rank);
    ConstValue v;
    v.shape = {end - start};
    v.ints.assign(s->begin() + start, s->begin() + end);
    return v;
  }

  // The remaining ops need their inputs as constants.
  // clang-format off
  static const char *const supported[] = {
      "Identity", "Cast",  "Unsqueeze", "Squeeze",         "Reshape",
      "Transpose", "Gather", "Concat",  "ConstantOfShape", "Slice",
      "Add",       "Sub",    "Mul",     "Div",             "Equal",
      "Where"};
  // clang-format on
  if (llvm::none_of(supported, [&](const char *s) { return op == s; }))
    return std::nullopt;
  std::vector<std::optional<ConstValue>> in;
  for (const std::string &name : node.input()) {
    if (name.empty()) {
      in.push_back(std::nullopt);
      continue;
    }
    std::optional<ConstValue> v = evaluate(name);
    if (!v)
      return std::nullopt;
    in.push_back(std::move(v));
  }
  auto has = [&](size_t i) { return i < in.size() && in[i].has_value(); };
  if (!has(0))
    return std::nullopt;
  const ConstValue &a = *in[0];
  int64_t rank = static_cast<int64_t>(a.shape.size());

  if (op == "Identity")
    return a;
  if (op == "Cast") {
    int32_t to = static_cast<int32_t>(attrInt(node, "to", 0));
    ConstValue v;
    v.shape = a.shape;
    if (isFloatType(to) || to == onnx::TensorProto::DOUBLE) {
      v.isFloat = true;
      if (a.isFloat) {
        v.floats = a.floats;
        return v;
      }
      std::optional<std::vector<int64_t>> ints = a.plainInts();
      if (!ints)
        return std::nullopt;
      for (int64_t i : *ints)
        v.floats.push_back(static_cast<double>(i));
      return v;
    }
    if (!isIntegerType(to))
      return std::nullopt;
    bool toBool = to == onnx::TensorProto::BOOL;
    if (a.isFloat) {
      for (double f : a.floats)
        v.ints.push_back(SymInt::of(
            toBool ? f != 0.0 : static_cast<int64_t>(std::trunc(f))));
      return v;
    }
    if (toBool) {
      std::optional<std::vector<int64_t>> ints = a.plainInts();
      if (!ints)
        return std::nullopt;
      for (int64_t i : *ints)
        v.ints.push_back(SymInt::of(i != 0));
      return v;
    }
    v.ints = a.ints;
    return v;
  }
  auto axesInput = [&]() -> std::optional<std::vector<int64_t>> {
    if (has(1))
      return in[1]->plainInts();
    if (node.input_size() > 1 && !node.input(1).empty())
      return std::nullopt;
    return attrInts(node, "axes");
  };
  if (op == "Unsqueeze") {
    std::optional<std::vector<int64_t>> axes = axesInput();
    if (!axes)
      return std::nullopt;
    int64_t outRank = rank + static_cast<int64_t>(axes->size());
    std::vector<bool> unit(outRank, false);
    for (int64_t ax : *axes) {
      std::optional<int64_t> n = normAxis(ax, outRank);
      if (!n || unit[*n])
        return std::nullopt;
      unit[*n] = true;
    }
    ConstValue v = a;
    v.shape.clear();
    size_t next = 0;
    for (int64_t i = 0; i < outRank; ++i)
      v.shape.push_back(unit[i] ? 1 : a.shape[next++]);
    return v;
  }
  if (op == "Squeeze") {
    std::optional<std::vector<int64_t>> axes = axesInput();
    std::vector<bool> drop(rank, false);
    if (axes) {
      for (int64_t ax : *axes) {
        std::optional<int64_t> n = normAxis(ax, rank);
        if (!n || a.shape[*n] != 1)
          return std::nullopt;
        drop[*n] = true;
      }
    } else {
      for (int64_t i = 0; i < rank; ++i)
        drop[i] = a.shape[i] == 1;
    }
    ConstValue v = a;
    v.shape.clear();
    for (int64_t i = 0; i < rank; ++i)
      if (!drop[i])
        v.shape.push_back(a.shape[i]);
    return v;
  }
  if (op == "Reshape") {
    if (!has(1) || attrInt(node, "allowzero", 0) != 0)
      return std::nullopt;
    std::optional<std::vector<int64_t>> target = in[1]->plainInts();
    if (!target)
      return std::nullopt;
    std::vector<int64_t> shape = *target;
    int64_t known = 1;
    int inferred = -1;
    for (size_t i = 0; i < shape.size(); ++i) {
      if (shape[i] == 0) {
        if (i >= a.shape.size())
          return std::nullopt;
        shape[i] = a.shape[i];
      }
      if (shape[i] == -1) {
        if (inferred >= 0)
          return std::nullopt;
        inferred = static_cast<int>(i);
        continue;
      }
      if (shape[i] < 0)
        return std::nullopt;
      known *= shape[i];
    }
    if (inferred >= 0) {
      if (known == 0 || a.size() % known != 0)
        return std::nullopt;
      shape[inferred] = a.size() / known;
    } else if (known != a.size()) {
      return std::nullopt;
    }
    ConstValue v = a;
    v.shape = shape;
    return v;
  }
  if (op == "Transpose") {
    std::vector<int64_t> perm(rank);
    std::iota(perm.rbegin(), perm.rend(), 0);
    if (auto p = attrInts(node, "perm"))
      perm = *p;
    if (static_cast<int64_t>(perm.size()) != rank)
      return std::nullopt;
    std::vector<int64_t> shape(rank);
    for (int64_t i = 0; i < rank; ++i) {
      if (perm[i] < 0 || perm[i] >= rank)
        return std::nullopt;
      shape[i] = a.shape[perm[i]];
    }
    std::vector<int64_t> strides = stridesOf(a.shape), from;
    forEachIndex(shape, [&](const std::vector<int64_t> &idx) {
      int64_t f = 0;
      for (int64_t i = 0; i < rank; ++i)
        f += idx[i] * strides[perm[i]];
      from.push_back(f);
    });
    return pick(a, shape, from);
  }
  if (op == "Gather") {
    if (!has(1))
      return std::nullopt;
    std::optional<int64_t> axis = normAxis(attrInt(node, "axis", 0), rank);
    std::optional<std::vector<int64_t>> indices = in[1]->plainInts();
    if (!axis || !indices)
      return std::nullopt;
    const std::vector<int64_t> &ishape = in[1]->shape;
    std::vector<int64_t> shape(a.shape.begin(), a.shape.begin() + *axis);
    shape.insert(shape.end(), ishape.begin(), ishape.end());
    shape.insert(shape.end(), a.shape.begin() + *axis + 1, a.shape.end());
    std::vector<int64_t> strides = stridesOf(a.shape), from;
    int64_t irank = static_cast<int64_t>(ishape.size());
    std::vector<int64_t> istrides = stridesOf(ishape);
    bool ok = true;
    forEachIndex(shape, [&](const std::vector<int64_t> &idx) {
      int64_t f = 0;
      for (int64_t i = 0; i < *axis; ++i)
        f += idx[i] * strides[i];
      int64_t iflat = 0;
      for (int64_t i = 0; i < irank; ++i)
        iflat += idx[*axis + i] * istrides[i];
      int64_t sel = (*indices)[iflat];
      if (sel < 0)
        sel += a.shape[*axis];
      if (sel < 0 || sel >= a.shape[*axis]) {
        ok = false;
        sel = 0;
      }
      f += sel * strides[*axis];
      for (int64_t i = *axis + 1; i < rank; ++i)
        f += idx[i - 1 + irank] * strides[i];
      from.push_back(f);
    });
    if (!ok)
      return std::nullopt;
    return pick(a, shape, from);
  }
  if (op == "Concat") {
    std::optional<int64_t> axis = normAxis(attrInt(node, "axis", 0), rank);
    if (!axis)
      return std::nullopt;
    ConstValue v;
    v.isFloat = a.isFloat;
    v.shape = a.shape;
    v.shape[*axis] = 0;
    for (const auto &x : in) {
      if (!x || x->isFloat != a.isFloat || x->shape.size() != a.shape.size())
        return std::nullopt;
      for (int64_t i = 0; i < rank; ++i)
        if (i != *axis && x->shape[i] != a.shape[i])
          return std::nullopt;
      v.shape[*axis] += x->shape[*axis];
    }
    std::vector<int64_t> idx2;
    forEachIndex(v.shape, [&](const std::vector<int64_t> &idx) {
      int64_t pos = idx[*axis];
      for (const auto &x : in) {
        if (pos < x->shape[*axis]) {
          std::vector<int64_t> strides = stridesOf(x->shape);
          int64_t f = 0;
          for (int64_t i = 0; i < rank; ++i)
            f += (i == *axis ? pos : idx[i]) * strides[i];
          if (x->isFloat)
            v.floats.push_back(x->floats[f]);
          else
            v.ints.push_back(x->ints[f]);
          break;
        }
        pos -= x->shape[*axis];
      }
    });
    return v;
  }
  if (op == "ConstantOfShape") {
    std::optional<std::vector<int64_t>> shape = a.plainInts();
    if (!shape)
      return std::nullopt;
    int64_t count = 1;
    for (int64_t d : *shape) {
      if (d < 0 || d > kMaxConstElements)
        return std::nullopt;
      count *= d;
      if (count > kMaxConstElements)
        return std::nullopt;
    }
    ConstValue v;
    v.shape = *shape;
    v.isFloat = true;
    double fill = 0.0;
    if (const onnx::AttributeProto *attr = findAttr(node, "value")) {
      std::optional<ConstValue> c = readConstTensor(attr->t(), 1);
      if (!c || c->size() != 1)
        return std::nullopt;
      v.isFloat = c->isFloat;
      if (c->isFloat) {
        fill = c->floats[0];
      } else {
        v.ints.assign(count, c->ints[0]);
        return v;
      }
    }
    v.floats.assign(count, fill);
    return v;
  }
  if (op == "Slice") {
    if (!has(1) || !has(2))
      return std::nullopt;
    std::optional<std::vector<int64_t>> starts = in[1]->plainInts(),
                                        ends = in[2]->plainInts();
    if (!starts || !ends || starts->size() != ends->size())
      return std::nullopt;
    std::vector<int64_t> axes(starts->size()), steps(starts->size(), 1);
    std::iota(axes.begin(), axes.end(), 0);
    if (has(3)) {
      std::optional<std::vector<int64_t>> x = in[3]->plainInts();
      if (!x || x->size() != axes.size())
        return std::nullopt;
      axes = *x;
    }
    if (has(4)) {
      std::optional<std::vector<int64_t>> x = in[4]->plainInts();
      if (!x || x->size() != steps.size())
        return std::nullopt;
      steps = *x;
    }
    std::vector<int64_t> begin(rank, 0), step(rank, 1), shape = a.shape;
    for (size_t i = 0; i < axes.size(); ++i) {
      std::optional<int64_t> ax = normAxis(axes[i], rank);
      if (!ax || steps[i] <= 0)
        return std::nullopt;
      int64_t dim = a.shape[*ax];
      int64_t s = (*starts)[i], e = (*ends)[i];
      if (s < 0)
        s += dim;
      if (e < 0)
        e += dim;
      s = std::clamp<int64_t>(s, 0, dim);
      e = std::clamp<int64_t>(e, 0, dim);
      begin[*ax] = s;
      step[*ax] = steps[i];
      shape[*ax] = e > s ? (e - s + steps[i] - 1) / steps[i] : 0;
    }
    std::vector<int64_t> strides = stridesOf(a.shape), from;
    forEachIndex(shape, [&](const std::vector<int64_t> &idx) {
      int64_t f = 0;
      for (int64_t i = 0; i < rank; ++i)
        f += (begin[i] + idx[i] * step[i]) * strides[i];
      from.push_back(f);
    });
    return pick(a, shape, from);
  }
  bool arith = op == "Add" || op == "Sub" || op == "Mul" || op == "Div";
  if (arith || op == "Equal") {
    if (!has(1))
      return std::nullopt;
    const ConstValue &b = *in[1];
    if (a.isFloat != b.isFloat)
      return std::nullopt;
    std::optional<std::vector<int64_t>> shape =
        broadcastShapes({a.shape, b.shape});
    if (!shape || product(*shape) > kMaxConstElements)
      return std::nullopt;
    std::vector<int64_t> sa = stridesOf(a.shape), sb = stridesOf(b.shape);
    ConstValue v;
    v.shape = *shape;
    v.isFloat = a.isFloat && op != "Equal";
    bool ok = true;
    forEachIndex(*shape, [&](const std::vector<int64_t> &idx) {
      int64_t fa = broadcastFlat(a.shape, sa, idx);
      int64_t fb = broadcastFlat(b.shape, sb, idx);
      if (a.isFloat) {
        double x = a.floats[fa], y = b.floats[fb];
        if (op == "Equal")
          v.ints.push_back(SymInt::of(x == y));
        else
          v.floats.push_back(op == "Add"   ? x + y
                             : op == "Sub" ? x - y
                             : op == "Mul" ? x * y
                                           : x / y);
        return;
      }
      const SymInt &x = a.ints[fa], &y = b.ints[fb];
      SymInt r = SymInt::unknown();
      if (op == "Equal") {
        if (!x.known || !y.known)
          ok = false;
        r = SymInt::of(x == y);
      } else if (op == "Add" || op == "Sub") {
        r = addSym(x, y, op == "Sub");
      } else if (op == "Mul") {
        r = x * y;
      } else if (x.isInt() && y.isInt()) {
        // Integer Div truncates toward zero.
        if (y.coef == 0)
          ok = false;
        else
          r = SymInt::of(x.coef / y.coef);
      } else if (std::optional<SymInt> q = x.exactDiv(y)) {
        r = *q;
      }
      v.ints.push_back(r);
    });
    if (!ok)
      return std::nullopt;
    return v;
  }
  if (op == "Where") {
    if (!has(1) || !has(2) || a.isFloat)
      return std::nullopt;
    const ConstValue &x = *in[1], &y = *in[2];
    if (x.isFloat != y.isFloat)
      return std::nullopt;
    std::optional<std::vector<int64_t>> cond = a.plainInts();
    std::optional<std::vector<int64_t>> shape =
        broadcastShapes({a.shape, x.shape, y.shape});
    if (!cond || !shape || product(*shape) > kMaxConstElements)
      return std::nullopt;
    std::vector<int64_t> sc = stridesOf(a.shape), sx = stridesOf(x.shape),
                         sy = stridesOf(y.shape);
    ConstValue v;
    v.shape = *shape;
    v.isFloat = x.isFloat;
    forEachIndex(*shape, [&](const std::vector<int64_t> &idx) {
      bool c = (*cond)[broadcastFlat(a.shape, sc, idx)] != 0;
      const ConstValue &src = c ? x : y;
      int64_t f =
          c ? broadcastFlat(x.shape, sx, idx) : broadcastFlat(y.shape, sy, idx);
      if (src.isFloat)
        v.floats.push_back(src.floats[f]);
      else
        v.ints.push_back(src.ints[f]);
    });
    return v;
  }
  return std::nullopt;
}
