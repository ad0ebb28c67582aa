//===- RaiseMatcher.cpp - recognise one decomposed MoE block --------------===//
//
// Part of moe-mlir's ONNX frontend.
//
// See RaiseMatcher.h for the method. Every rule below either gives the
// labels (and expression) of a node's outputs or refuses; a refused node
// makes its outputs opaque, and a block whose result depends on an opaque
// value is not raised.
//
//===----------------------------------------------------------------------===//

#include "RaiseMatcher.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringExtras.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

using namespace moe_mlir::onnx_import;
using namespace moe_mlir::onnx_import::raise;
using llvm::StringRef;

namespace {

constexpr double kPi = 3.14159265358979323846;

//===----------------------------------------------------------------------===//
// Labels, abstract values, expressions
//===----------------------------------------------------------------------===//

/// Axis kinds: tokens, top-k slots, (token, slot) flattened t-major,
/// experts, a unit axis, a feature axis of width n, axis `axis` of stacked
/// weight `weight` (width n), an axis of width n the value is constant
/// along (an Expand of a unit axis).
enum class LK : uint8_t { T, K, TK, E, One, F, W, BC };

struct Label {
  LK kind = LK::One;
  int64_t n = 0;
  int weight = -1;
  int axis = 0;

  bool operator==(const Label &o) const {
    return kind == o.kind && n == o.n && weight == o.weight && axis == o.axis;
  }
  bool operator!=(const Label &o) const { return !(*this == o); }
};

Label lbl(LK kind) { return Label{kind, 0, -1, 0}; }
Label feature(int64_t n) { return Label{LK::F, n, -1, 0}; }
Label weightAxis(int w, int axis, int64_t n) {
  return Label{LK::W, n, w, axis};
}
Label broadcastAxis(int64_t n) { return Label{LK::BC, n, -1, 0}; }

using Labels = std::vector<Label>;

/// Kinds of abstract values: a per-token activation (tok), a gathered or
/// stacked expert weight (wsel), the TopK indices, the routing weights
/// (rw), their sum over k (rwsum), routing weights scattered to [T, E]
/// (rwdense), router logits or scores, zeros [T, E].
enum class AK : uint8_t { Tok, WSel, Idx, RW, RWSum, RWDense, Logits, Zeros };

/// What has been applied to the routing weights.
struct RouteState {
  /// The weights are probabilities (softmax/sigmoid scores or a softmax
  /// over k), not raw logits.
  bool probs = false;
  bool softmaxK = false;
  bool renorm = false;
  double eps = 0.0;
  double scale = 1.0;
};

struct AV {
  AK kind = AK::Tok;
  Labels labels;
  /// tok: its expression.
  int expr = -1;
  /// tok: multiplied by the routing weights; summed over k (or e).
  bool weighted = false, reduced = false;
  /// rw, rwsum, rwdense, weighted tok: the routing weights' state.
  RouteState state;
  /// wsel: the stacked weight.
  int weight = -1;
  /// rwsum: the value that was summed.
  std::string src;
};

/// Expression kinds of per-(token, slot) activations.
enum class EK : uint8_t {
  X,
  Lin,
  Slice,
  Add,
  Mul,
  Const,
  Bias,
  Sigmoid,
  Tanh,
  Erf,
  Relu,
  Gelu,
  GeluTanh
};

struct Expr {
  EK kind = EK::X;
  int a = -1, b = -1;
  double c = 0.0;
  int weight = -1;
  bool inOut = false;
  int64_t begin = 0, end = 0, step = 1;

  bool operator==(const Expr &o) const {
    return kind == o.kind && a == o.a && b == o.b && c == o.c &&
           weight == o.weight && inOut == o.inOut && begin == o.begin &&
           end == o.end && step == o.step;
  }
};

using Outs = std::vector<std::optional<AV>>;

/// A linear map found in the expert expression.
struct LinRef {
  int weight = -1;
  bool inOut = false;
  std::optional<std::vector<int64_t>> rows;
  int bias = -1;
};

//===----------------------------------------------------------------------===//
// Matcher
//===----------------------------------------------------------------------===//

class Matcher {
public:
  explicit Matcher(const GraphIndex &index)
      : index_(index),
        eval_(index, [this](StringRef name) { return envShape(name); }) {}

  std::optional<MoEMatch> run(int topk, std::string &why);

private:
  //===--- failure ----------------------------------------------------===//
  std::nullopt_t refuse(const std::string &message) {
    if (ruleWhy_.empty())
      ruleWhy_ = message;
    return std::nullopt;
  }
  bool fail(const std::string &message) {
    if (ruleWhy_.empty())
      ruleWhy_ = message;
    return false;
  }

  //===--- values -----------------------------------------------------===//
  std::optional<std::vector<SymInt>> envShape(StringRef name) const {
    auto it = env_.find(name);
    if (it == env_.end())
      return std::nullopt;
    std::vector<SymInt> shape;
    for (const Label &l : it->second.labels)
      shape.push_back(size(l));
    return shape;
  }
  const AV *av(StringRef name) const {
    auto it = env_.find(name);
    return it == env_.end() ? nullptr : &it->second;
  }
  SymInt size(const Label &l) const {
    switch (l.kind) {
    case LK::T:
      return tokens_;
    case LK::K:
      return SymInt::of(k_);
    case LK::TK:
      return tokens_ * SymInt::of(k_);
    case LK::E:
      return SymInt::of(experts_);
    case LK::One:
      return SymInt::of(1);
    default:
      return SymInt::of(l.n);
    }
  }
  bool isUnit(const Label &l) const { return size(l) == SymInt::of(1); }
  int weightIndex(StringRef name);
  /// A region value, or a weight [E, ...] used directly (dense form).
  std::optional<AV> get(StringRef name);
  std::optional<double> scalar(StringRef name);
  std::optional<std::vector<int64_t>> constInts(const onnx::NodeProto &node,
                                                int input);
  std::optional<std::vector<int64_t>> axesOf(const onnx::NodeProto &node);

  //===--- expressions ------------------------------------------------===//
  int intern(const Expr &e) {
    for (size_t i = 0; i < exprs_.size(); ++i)
      if (exprs_[i] == e)
        return static_cast<int>(i);
    exprs_.push_back(e);
    return static_cast<int>(exprs_.size()) - 1;
  }
  int unaryExpr(EK kind, int a) {
    Expr e;
    e.kind = kind;
    e.a = a;
    return intern(e);
  }
  int binaryExpr(EK kind, int a, int b) {
    Expr e;
    e.kind = kind;
    e.a = a;
    e.b = b;
    return intern(e);
  }
  int constExpr(double c) {
    Expr e;
    e.kind = EK::Const;
    e.c = c;
    return intern(e);
  }
  const Expr &expr(int i) const { return exprs_[i]; }

  //===--- helpers for rules ------------------------------------------===//
  std::optional<Labels> broadcast(Labels a, Labels b);
  std::optional<AV> makeTok(Labels labels, int expr);
  bool hasKind(const Labels &labels, LK kind) const {
    return llvm::any_of(labels, [&](const Label &l) { return l.kind == kind; });
  }
  bool checkFinal(const AV &rw) {
    if (!rw.state.probs)
      return fail("raw logits used as routing weights (no softmax or "
                  "sigmoid)");
    return true;
  }
  /// tok's feature axis `tokAxis` meets weight axis `wAxis` of `ws`: the
  /// weight's other axis (`other`) becomes the output feature.
  bool linearOut(const AV &tok, const AV &ws, const Label &tokAxis,
                 const Label &wAxis, Label &other, bool &inOut);

  //===--- rules ------------------------------------------------------===//
  std::optional<Outs> rule(const onnx::NodeProto &node);
  std::optional<Outs> ruleLayout(const onnx::NodeProto &node);
  std::optional<Outs> ruleReshape(const onnx::NodeProto &node);
  std::optional<Outs> ruleExpand(const onnx::NodeProto &node);
  std::optional<Outs> ruleGather(const onnx::NodeProto &node);
  std::optional<Outs> ruleAdd(const onnx::NodeProto &node);
  std::optional<Outs> ruleMul(const onnx::NodeProto &node);
  std::optional<Outs> ruleDiv(const onnx::NodeProto &node);
  std::optional<Outs> ruleUnary(const onnx::NodeProto &node, EK kind);
  std::optional<Outs> ruleSoftmax(const onnx::NodeProto &node);
  std::optional<Outs> ruleReduceSum(const onnx::NodeProto &node);
  std::optional<Outs> ruleMatMul(const onnx::NodeProto &node);
  std::optional<Outs> ruleEinsum(const onnx::NodeProto &node);
  std::optional<Outs> ruleGatherElements(const onnx::NodeProto &node);
  /// Zeros [T, E]: a ConstantOfShape, or a constant.
  std::optional<AV> zerosOf(StringRef name);
  std::optional<Outs> ruleScatterElements(const onnx::NodeProto &node);
  std::optional<Outs> ruleSlice(const onnx::NodeProto &node);
  std::optional<Outs> ruleSplit(const onnx::NodeProto &node);

  //===--- router, FFN, block -----------------------------------------===//
  bool matchRouter(int topk);
  std::string skipCastsUp(std::string name);
  std::optional<LinRef> matchInputLinear(int e);
  bool matchActivation(int h, std::string &act, int &gate, int &up);
  std::vector<int> mulParts(int e) const;
  std::vector<int> addParts(int e) const;
  bool matchFfn(const AV &result, MoEMatch &m);
  bool checkLinear(const LinRef &lin, int64_t in, const char *what,
                   int64_t &out);
  bool computeRemoval(int result, MoEMatch &m);

  const GraphIndex &index_;
  ConstEvaluator eval_;
  llvm::StringMap<AV> env_;
  llvm::StringSet<> opaque_;
  std::vector<Expr> exprs_;
  std::vector<WeightInfo> weights_;
  llvm::StringMap<int> weightIds_;
  std::string ruleWhy_;

  // Router.
  int64_t k_ = 0, experts_ = 0, hidden_ = 0;
  /// The token count: symbolic, or x's static first dimension.
  SymInt tokens_ = SymInt::tokens(1);
  std::string x_, scoring_;
  std::set<int> routerNodes_;
  int routerWeight_ = -1, routerBias_ = -1;
  bool routerHE_ = false;
  /// Nodes interpreted successfully.
  std::set<int> walked_;
};

//===----------------------------------------------------------------------===//
// Values
//===----------------------------------------------------------------------===//

int Matcher::weightIndex(StringRef name) {
  auto it = weightIds_.find(name);
  if (it != weightIds_.end())
    return it->second;
  if (av(name))
    return -1;
  std::optional<WeightInfo> w = eval_.weight(name);
  if (!w)
    return -1;
  weights_.push_back(*w);
  int id = static_cast<int>(weights_.size()) - 1;
  weightIds_[name] = id;
  return id;
}

std::optional<AV> Matcher::get(StringRef name) {
  if (const AV *v = av(name))
    return *v;
  int w = weightIndex(name);
  if (w < 0)
    return std::nullopt;
  const std::vector<int64_t> &shape = weights_[w].shape;
  if (shape.size() < 2 || shape[0] != experts_)
    return std::nullopt;
  AV v;
  v.kind = AK::WSel;
  v.weight = w;
  v.labels.push_back(lbl(LK::E));
  for (size_t j = 1; j < shape.size(); ++j)
    v.labels.push_back(weightAxis(w, static_cast<int>(j), shape[j]));
  return v;
}

std::optional<double> Matcher::scalar(StringRef name) {
  if (av(name))
    return std::nullopt;
  std::optional<ConstValue> c = eval_.evaluate(name);
  if (!c)
    return std::nullopt;
  return c->scalar();
}

std::optional<std::vector<int64_t>>
Matcher::constInts(const onnx::NodeProto &node, int input) {
  if (input >= node.input_size() || node.input(input).empty())
    return std::nullopt;
  std::optional<ConstValue> c = eval_.evaluate(node.input(input));
  if (!c)
    return std::nullopt;
  return c->plainInts();
}

std::optional<std::vector<int64_t>>
Matcher::axesOf(const onnx::NodeProto &node) {
  if (node.input_size() > 1 && !node.input(1).empty())
    return constInts(node, 1);
  return attrInts(node, "axes");
}

std::optional<Labels> Matcher::broadcast(Labels a, Labels b) {
  size_t rank = std::max(a.size(), b.size());
  a.insert(a.begin(), rank - a.size(), lbl(LK::One));
  b.insert(b.begin(), rank - b.size(), lbl(LK::One));
  Labels out;
  for (size_t i = 0; i < rank; ++i) {
    const Label &x = a[i], &y = b[i];
    if (x == y)
      out.push_back(x);
    else if (x.kind == LK::One ||
             (x.kind == LK::BC && SymInt::of(x.n) == size(y)))
      out.push_back(y);
    else if (y.kind == LK::One ||
             (y.kind == LK::BC && SymInt::of(y.n) == size(x)))
      out.push_back(x);
    else
      return refuse("axes that do not broadcast");
  }
  return out;
}

std::optional<AV> Matcher::makeTok(Labels labels, int e) {
  if (hasKind(labels, LK::E) &&
      (hasKind(labels, LK::K) || hasKind(labels, LK::TK)))
    return refuse("a value indexed both by expert and by top-k slot");
  AV v;
  v.kind = AK::Tok;
  v.labels = std::move(labels);
  v.expr = e;
  return v;
}

bool Matcher::linearOut(const AV &tok, const AV &ws, const Label &tokAxis,
                        const Label &wAxis, Label &other, bool &inOut) {
  if (tok.weighted)
    return fail("a linear map applied after the routing weights");
  Labels w;
  for (const Label &l : ws.labels)
    if (l.kind == LK::W)
      w.push_back(l);
  if (w.size() != 2)
    return fail("the weight operand is not one matrix per expert");
  if (tokAxis.kind != LK::F || wAxis.kind != LK::W || tokAxis.n != wAxis.n)
    return fail("a product that does not contract the feature axis with "
                "a weight axis");
  other = w[0] == wAxis ? w[1] : w[0];
  // [E, out, in] contracts its last axis, [E, in, out] its middle one.
  inOut = wAxis.axis == 1;
  return true;
}

//===----------------------------------------------------------------------===//
// Rules
//===----------------------------------------------------------------------===//

/// The fewest inputs each op with a rule takes.
int minInputs(StringRef op) {
  if (op == "ScatterElements" || op == "Slice")
    return 3;
  if (op == "Reshape" || op == "Expand" || op == "Gather" || op == "Add" ||
      op == "Mul" || op == "Div" || op == "MatMul" || op == "Einsum" ||
      op == "GatherElements")
    return 2;
  return 1;
}

std::optional<Outs> Matcher::rule(const onnx::NodeProto &node) {
  const std::string &op = node.op_type();
  bool standard = node.domain().empty() || node.domain() == "ai.onnx";
  if (standard && node.input_size() < minInputs(op))
    return refuse(op + " with too few inputs");
  if (standard) {
    if (op == "Shape")
      return Outs(node.output_size());
    if (op == "Identity" || op == "Cast" || op == "Unsqueeze" ||
        op == "Squeeze" || op == "Transpose")
      return ruleLayout(node);
    if (op == "Reshape")
      return ruleReshape(node);
    if (op == "Expand")
      return ruleExpand(node);
    if (op == "Gather")
      return ruleGather(node);
    if (op == "Add")
      return ruleAdd(node);
    if (op == "Mul")
      return ruleMul(node);
    if (op == "Div")
      return ruleDiv(node);
    if (op == "Sigmoid")
      return ruleUnary(node, EK::Sigmoid);
    if (op == "Tanh")
      return ruleUnary(node, EK::Tanh);
    if (op == "Erf")
      return ruleUnary(node, EK::Erf);
    if (op == "Relu")
      return ruleUnary(node, EK::Relu);
    if (op == "Gelu") {
      std::string approx = attrString(node, "approximate", "none");
      if (approx != "none" && approx != "tanh")
        return refuse("Gelu approximate='" + approx + "'");
      return ruleUnary(node, approx == "tanh" ? EK::GeluTanh : EK::Gelu);
    }
    if (op == "Softmax")
      return ruleSoftmax(node);
    if (op == "ReduceSum")
      return ruleReduceSum(node);
    if (op == "MatMul")
      return ruleMatMul(node);
    if (op == "Einsum")
      return ruleEinsum(node);
    if (op == "GatherElements")
      return ruleGatherElements(node);
    if (op == "ScatterElements")
      return ruleScatterElements(node);
    if (op == "Slice")
      return ruleSlice(node);
    if (op == "Split")
      return ruleSplit(node);
  }
  // Shape arithmetic that only reads shapes of region values.
  bool constant = true;
  for (const std::string &out : node.output())
    if (!out.empty() && !eval_.evaluate(out))
      constant = false;
  if (constant)
    return Outs(node.output_size());
  return refuse("no rule for " + (standard ? op : node.domain() + "." + op));
}

std::optional<Outs> Matcher::ruleLayout(const onnx::NodeProto &node) {
  const std::string &op = node.op_type();
  const AV *v = av(node.input(0));
  if (!v)
    return refuse(op + " of a value outside the block");
  AV out = *v;
  if (op == "Identity")
    return Outs{out};
  if (op == "Cast") {
    int32_t to = static_cast<int32_t>(attrInt(node, "to", 0));
    bool ok = isFloatType(to) ||
              (v->kind == AK::Idx && (to == onnx::TensorProto::INT64 ||
                                      to == onnx::TensorProto::INT32));
    if (!ok)
      return refuse("a Cast to element type " + std::to_string(to));
    return Outs{out};
  }
  int64_t rank = static_cast<int64_t>(v->labels.size());
  if (op == "Transpose") {
    std::vector<int64_t> perm(rank);
    for (int64_t i = 0; i < rank; ++i)
      perm[i] = rank - 1 - i;
    if (auto p = attrInts(node, "perm"))
      perm = *p;
    if (static_cast<int64_t>(perm.size()) != rank)
      return refuse("Transpose perm of the wrong length");
    std::vector<bool> seen(rank, false);
    for (int64_t i = 0; i < rank; ++i) {
      if (perm[i] < 0 || perm[i] >= rank || seen[perm[i]])
        return refuse("Transpose perm is not a permutation");
      seen[perm[i]] = true;
      out.labels[i] = v->labels[perm[i]];
    }
    return Outs{out};
  }
  std::optional<std::vector<int64_t>> axes = axesOf(node);
  if (!axes)
    return refuse(op + " without constant axes");
  if (op == "Unsqueeze") {
    int64_t outRank = rank + static_cast<int64_t>(axes->size());
    std::vector<bool> unit(outRank, false);
    for (int64_t a : *axes) {
      int64_t n = a < 0 ? a + outRank : a;
      if (n < 0 || n >= outRank || unit[n])
        return refuse("Unsqueeze axes out of range");
      unit[n] = true;
    }
    out.labels.clear();
    size_t next = 0;
    for (int64_t i = 0; i < outRank; ++i)
      out.labels.push_back(unit[i] ? lbl(LK::One) : v->labels[next++]);
    return Outs{out};
  }
  // Squeeze.
  std::vector<bool> drop(rank, false);
  for (int64_t a : *axes) {
    int64_t n = a < 0 ? a + rank : a;
    if (n < 0 || n >= rank)
      return refuse("Squeeze axes out of range");
    const Label &l = v->labels[n];
    bool unit = l.kind == LK::One ||
                ((l.kind == LK::BC || l.kind == LK::F) && l.n == 1);
    if (!unit)
      return refuse("Squeeze of an axis that is not a unit axis");
    drop[n] = true;
  }
  out.labels.clear();
  for (int64_t i = 0; i < rank; ++i)
    if (!drop[i])
      out.labels.push_back(v->labels[i]);
  return Outs{out};
}

std::optional<Outs> Matcher::ruleReshape(const onnx::NodeProto &node) {
  const AV *v = av(node.input(0));
  if (!v)
    return refuse("Reshape of a value outside the block");
  if (attrInt(node, "allowzero", 0) != 0)
    return refuse("Reshape with allowzero");
  std::optional<ConstValue> target =
      node.input_size() > 1 ? eval_.evaluate(node.input(1)) : std::nullopt;
  if (!target || target->isFloat || target->shape.size() != 1)
    return refuse("a Reshape target that cannot be evaluated");
  std::vector<SymInt> in;
  SymInt total = SymInt::of(1);
  for (const Label &l : v->labels) {
    in.push_back(size(l));
    total = total * in.back();
  }
  std::vector<SymInt> out;
  int inferred = -1;
  SymInt known = SymInt::of(1);
  for (size_t i = 0; i < target->ints.size(); ++i) {
    SymInt d = target->ints[i];
    if (d == SymInt::of(0)) {
      if (i >= in.size())
        return refuse("Reshape copies a dimension that does not exist");
      d = in[i];
    }
    if (d == SymInt::of(-1)) {
      if (inferred >= 0)
        return refuse("Reshape with two -1");
      inferred = static_cast<int>(i);
    } else {
      known = known * d;
    }
    out.push_back(d);
  }
  if (inferred >= 0) {
    std::optional<SymInt> rest = total.exactDiv(known);
    if (!rest)
      return refuse("a Reshape whose -1 cannot be resolved");
    out[inferred] = *rest;
  }
  Labels src;
  for (const Label &l : v->labels)
    if (!isUnit(l))
      src.push_back(l);
  SymInt tokens = tokens_, slots = SymInt::of(k_);
  Labels labels;
  size_t next = 0;
  for (const SymInt &d : out) {
    if (d == SymInt::of(1)) {
      labels.push_back(lbl(LK::One));
      continue;
    }
    if (next >= src.size())
      return refuse("a Reshape that does not keep the axes");
    Label l = src[next];
    if (l.kind == LK::TK && d == tokens) {
      labels.push_back(lbl(LK::T));
      // The slot axis follows (or, with k = 1, is a unit axis).
      if (k_ == 1)
        ++next;
      else
        src[next] = lbl(LK::K);
    } else if (size(l) == d) {
      labels.push_back(l);
      ++next;
    } else if (l.kind == LK::T && next + 1 < src.size() &&
               (src[next + 1].kind == LK::K ||
                (src[next + 1].kind == LK::BC &&
                 SymInt::of(src[next + 1].n) == slots)) &&
               d == tokens * slots) {
      labels.push_back(lbl(LK::TK));
      next += 2;
    } else {
      return refuse("a Reshape that is not a t-major flattening of "
                    "(tokens, slots) or its inverse");
    }
  }
  if (next != src.size())
    return refuse("a Reshape that does not keep the axes");
  AV r = *v;
  r.labels = std::move(labels);
  return Outs{r};
}

std::optional<Outs> Matcher::ruleExpand(const onnx::NodeProto &node) {
  const AV *v = av(node.input(0));
  if (!v)
    return refuse("Expand of a value outside the block");
  std::optional<ConstValue> target =
      node.input_size() > 1 ? eval_.evaluate(node.input(1)) : std::nullopt;
  if (!target || target->isFloat || target->shape.size() != 1)
    return refuse("an Expand target that cannot be evaluated");
  if (target->ints.size() > v->labels.size())
    return refuse("an Expand that adds axes");
  AV r = *v;
  size_t off = r.labels.size() - target->ints.size();
  for (size_t i = 0; i < target->ints.size(); ++i) {
    const SymInt &d = target->ints[i];
    Label &l = r.labels[off + i];
    if (d == SymInt::of(1) || d == size(l))
      continue;
    if (!isUnit(l) || !d.isInt())
      return refuse("an Expand of an axis that is not a unit axis");
    l = broadcastAxis(d.coef);
  }
  return Outs{r};
}

std::optional<Outs> Matcher::ruleGather(const onnx::NodeProto &node) {
  if (node.input_size() < 2)
    return refuse("Gather without indices");
  const AV *idx = av(node.input(1));
  if (!idx || idx->kind != AK::Idx || av(node.input(0)))
    return refuse("a Gather that is not of a weight by the expert indices");
  int w = weightIndex(node.input(0));
  if (w < 0)
    return refuse("a Gather of expert weights that are not constants");
  const std::vector<int64_t> &shape = weights_[w].shape;
  int64_t axis = attrInt(node, "axis", 0);
  if (shape.empty() ||
      (axis != 0 && axis != -static_cast<int64_t>(shape.size())))
    return refuse("a Gather of weights along an axis other than 0");
  if (shape[0] != experts_)
    return refuse("stacked weight '" + node.input(0) + "' has " +
                  std::to_string(shape[0]) + " experts, the router " +
                  std::to_string(experts_));
  AV r;
  r.kind = AK::WSel;
  r.weight = w;
  r.labels = idx->labels;
  for (size_t j = 1; j < shape.size(); ++j)
    r.labels.push_back(weightAxis(w, static_cast<int>(j), shape[j]));
  return Outs{r};
}

std::optional<Outs> Matcher::ruleAdd(const onnx::NodeProto &node) {
  std::optional<AV> va = get(node.input(0)), vb = get(node.input(1));
  std::optional<double> ca = va ? std::nullopt : scalar(node.input(0));
  std::optional<double> cb = vb ? std::nullopt : scalar(node.input(1));
  if (!va && !vb)
    return refuse("Add of constants");
  // The epsilon of the renormalisation.
  for (auto [v, c] : {std::pair{&va, &cb}, std::pair{&vb, &ca}}) {
    if (*v && (*v)->kind == AK::RWSum && *c) {
      if ((*v)->state.eps != 0.0)
        return refuse("a second epsilon in the renormalisation");
      AV r = **v;
      r.state.eps = **c;
      return Outs{r};
    }
  }
  for (const std::optional<AV> *v : {&va, &vb})
    if (*v && (*v)->weighted)
      return refuse("an Add after the routing weights");
  if (va && vb && va->kind == AK::Tok && vb->kind == AK::Tok) {
    std::optional<Labels> labels = broadcast(va->labels, vb->labels);
    if (!labels)
      return std::nullopt;
    std::optional<AV> r =
        makeTok(*labels, binaryExpr(EK::Add, va->expr, vb->expr));
    if (!r)
      return std::nullopt;
    return Outs{r};
  }
  bool first = va && va->kind == AK::Tok;
  const std::optional<AV> &tok = first ? va : vb;
  const std::optional<AV> &other = first ? vb : va;
  std::optional<double> c = first ? cb : ca;
  if (!tok || tok->kind != AK::Tok)
    return refuse("an Add of values that are not activations");
  if (!other) {
    if (!c)
      return refuse("an Add of a constant that is not a scalar");
    std::optional<AV> r =
        makeTok(tok->labels, binaryExpr(EK::Add, tok->expr, constExpr(*c)));
    if (!r)
      return std::nullopt;
    return Outs{r};
  }
  if (other->kind != AK::WSel || weights_[other->weight].shape.size() != 2)
    return refuse("an Add of something other than a per-expert bias [E, N]");
  // The bias' weight axis must meet the feature axis of the same width.
  Labels lt = tok->labels, lb = other->labels;
  size_t rank = std::max(lt.size(), lb.size());
  lt.insert(lt.begin(), rank - lt.size(), lbl(LK::One));
  lb.insert(lb.begin(), rank - lb.size(), lbl(LK::One));
  Labels labels;
  for (size_t i = 0; i < rank; ++i) {
    const Label &a = lt[i], &b = lb[i];
    if (b.kind == LK::W) {
      if (a.kind != LK::F || a.n != b.n)
        return refuse("a bias that does not meet the feature axis");
      labels.push_back(a);
    } else if (a == b || b.kind == LK::One) {
      labels.push_back(a);
    } else if (a.kind == LK::One) {
      labels.push_back(b);
    } else {
      return refuse("a bias whose axes do not broadcast");
    }
  }
  Expr bias;
  bias.kind = EK::Bias;
  bias.weight = other->weight;
  std::optional<AV> r =
      makeTok(labels, binaryExpr(EK::Add, tok->expr, intern(bias)));
  if (!r)
    return std::nullopt;
  return Outs{r};
}

std::optional<Outs> Matcher::ruleMul(const onnx::NodeProto &node) {
  std::optional<AV> va = get(node.input(0)), vb = get(node.input(1));
  std::optional<double> ca = va ? std::nullopt : scalar(node.input(0));
  std::optional<double> cb = vb ? std::nullopt : scalar(node.input(1));
  if (!va && !vb)
    return refuse("Mul of constants");
  if (va && vb) {
    if (va->kind == AK::Tok && vb->kind == AK::Tok) {
      if (va->weighted || vb->weighted)
        return refuse("a Mul after the routing weights");
      std::optional<Labels> labels = broadcast(va->labels, vb->labels);
      if (!labels)
        return std::nullopt;
      std::optional<AV> r =
          makeTok(*labels, binaryExpr(EK::Mul, va->expr, vb->expr));
      if (!r)
        return std::nullopt;
      return Outs{r};
    }
    bool first = va->kind == AK::Tok;
    const AV &tok = first ? *va : *vb, &w = first ? *vb : *va;
    if (tok.kind != AK::Tok || (w.kind != AK::RW && w.kind != AK::RWDense))
      return refuse("a Mul of values that are not activations and routing "
                    "weights");
    if (tok.weighted)
      return refuse("two multiplications by the routing weights");
    if (w.kind == AK::RW && !checkFinal(w))
      return std::nullopt;
    std::optional<Labels> labels = broadcast(tok.labels, w.labels);
    if (!labels)
      return std::nullopt;
    bool aligned = w.kind == AK::RW
                       ? hasKind(*labels, LK::K) || hasKind(*labels, LK::TK)
                       : hasKind(*labels, LK::E);
    if (!aligned)
      return refuse("routing weights not aligned with the top-k slots");
    std::optional<AV> r = makeTok(*labels, tok.expr);
    if (!r)
      return std::nullopt;
    r->weighted = true;
    r->state = w.state;
    return Outs{r};
  }
  const AV &v = va ? *va : *vb;
  std::optional<double> c = va ? cb : ca;
  if (!c)
    return refuse("a Mul by a constant that is not a scalar");
  if (v.kind == AK::Tok) {
    if (v.weighted)
      return refuse("a scale after the routing weights");
    std::optional<AV> r =
        makeTok(v.labels, binaryExpr(EK::Mul, v.expr, constExpr(*c)));
    if (!r)
      return std::nullopt;
    return Outs{r};
  }
  if (v.kind == AK::RW) {
    AV r = v;
    r.state.scale *= *c;
    return Outs{r};
  }
  return refuse("a Mul by a constant of a value that is not an activation");
}

std::optional<Outs> Matcher::ruleDiv(const onnx::NodeProto &node) {
  std::optional<AV> va = get(node.input(0)), vb = get(node.input(1));
  std::optional<double> cb = vb ? std::nullopt : scalar(node.input(1));
  if (va && vb && va->kind == AK::RW && vb->kind == AK::RWSum) {
    if (vb->src != node.input(0))
      return refuse("a renormalisation by the sum of another value");
    if (va->state.renorm || va->state.scale != 1.0)
      return refuse("a second renormalisation, or a scale before it");
    std::optional<Labels> labels = broadcast(va->labels, vb->labels);
    if (!labels || *labels != va->labels)
      return refuse("a renormalisation that does not broadcast over k");
    AV r = *va;
    r.state.renorm = true;
    r.state.eps = vb->state.eps;
    return Outs{r};
  }
  if (va && !vb && cb && *cb != 0.0) {
    if (va->kind == AK::Tok) {
      if (va->weighted)
        return refuse("a Div after the routing weights");
      std::optional<AV> r = makeTok(
          va->labels, binaryExpr(EK::Mul, va->expr, constExpr(1.0 / *cb)));
      if (!r)
        return std::nullopt;
      return Outs{r};
    }
    if (va->kind == AK::RW) {
      AV r = *va;
      r.state.scale /= *cb;
      return Outs{r};
    }
  }
  return refuse("a Div that is neither a renormalisation nor a scale");
}

std::optional<Outs> Matcher::ruleUnary(const onnx::NodeProto &node, EK kind) {
  const AV *v = av(node.input(0));
  if (!v || v->kind != AK::Tok || v->weighted)
    return refuse(node.op_type() + " of a value that is not an expert "
                                   "activation");
  std::optional<AV> r = makeTok(v->labels, unaryExpr(kind, v->expr));
  if (!r)
    return std::nullopt;
  return Outs{r};
}

std::optional<Outs> Matcher::ruleSoftmax(const onnx::NodeProto &node) {
  const AV *v = av(node.input(0));
  if (!v || v->kind != AK::RW)
    return refuse("a Softmax of a value that is not the routing weights");
  int64_t rank = static_cast<int64_t>(v->labels.size());
  int64_t axis = attrInt(node, "axis", -1);
  if (axis < 0)
    axis += rank;
  if (axis < 0 || axis >= rank || v->labels[axis].kind != LK::K)
    return refuse("a Softmax of the routing weights not over k");
  if (v->state.probs)
    return refuse("a Softmax over k of probabilities (softmax applied "
                  "twice)");
  if (v->state.softmaxK || v->state.renorm || v->state.scale != 1.0)
    return refuse("a Softmax after a renormalisation or scale");
  AV r = *v;
  r.state.softmaxK = true;
  r.state.probs = true;
  return Outs{r};
}

std::optional<Outs> Matcher::ruleReduceSum(const onnx::NodeProto &node) {
  const AV *v = av(node.input(0));
  if (!v)
    return refuse("ReduceSum of a value outside the block");
  std::optional<std::vector<int64_t>> axes = axesOf(node);
  if (!axes || axes->size() != 1)
    return refuse("a ReduceSum over other than one constant axis");
  int64_t rank = static_cast<int64_t>(v->labels.size());
  int64_t ax = (*axes)[0] < 0 ? (*axes)[0] + rank : (*axes)[0];
  if (ax < 0 || ax >= rank)
    return refuse("ReduceSum axis out of range");
  bool keep = attrInt(node, "keepdims", 1) != 0;
  const Label &l = v->labels[ax];
  if (v->kind == AK::RW) {
    if (l.kind != LK::K || !keep)
      return refuse("a sum of the routing weights not over k with keepdims");
    AV r = *v;
    r.kind = AK::RWSum;
    r.labels[ax] = lbl(LK::One);
    r.src = node.input(0);
    return Outs{r};
  }
  if (v->kind != AK::Tok)
    return refuse("ReduceSum of a value that is not an activation");
  if (!v->weighted)
    return refuse("ReduceSum of expert outputs not weighted by the router");
  if (v->reduced)
    return refuse("a second sum of the weighted expert outputs");
  if (l.kind != LK::K && l.kind != LK::E)
    return refuse("the weighted expert outputs summed over an axis other "
                  "than k");
  AV r = *v;
  if (keep)
    r.labels[ax] = lbl(LK::One);
  else
    r.labels.erase(r.labels.begin() + ax);
  r.reduced = true;
  return Outs{r};
}

std::optional<Outs> Matcher::ruleMatMul(const onnx::NodeProto &node) {
  std::optional<AV> va = get(node.input(0)), vb = get(node.input(1));
  if (!va || !vb)
    return refuse("a MatMul with an operand outside the block");
  const Labels &la = va->labels, &lb = vb->labels;
  if (la.size() < 2 || lb.size() < 2)
    return refuse("a MatMul with a vector operand");
  std::optional<Labels> batch = broadcast(Labels(la.begin(), la.end() - 2),
                                          Labels(lb.begin(), lb.end() - 2));
  if (!batch)
    return std::nullopt;
  const Label &ca = la.back(), &cb = lb[lb.size() - 2];
  bool aTok = va->kind == AK::Tok, bTok = vb->kind == AK::Tok;
  if ((aTok && vb->kind == AK::WSel) || (bTok && va->kind == AK::WSel)) {
    const AV &tok = aTok ? *va : *vb, &ws = aTok ? *vb : *va;
    Label other;
    bool inOut = false;
    if (!linearOut(tok, ws, aTok ? ca : cb, aTok ? cb : ca, other, inOut))
      return std::nullopt;
    Label rows = la[la.size() - 2], cols = lb.back();
    if (!aTok) {
      if (rows != other)
        return refuse("the weight's free axis is not a matrix axis");
      rows = feature(other.n);
    } else {
      if (cols != other)
        return refuse("the weight's free axis is not a matrix axis");
      cols = feature(other.n);
    }
    Labels labels = *batch;
    labels.push_back(rows);
    labels.push_back(cols);
    if (llvm::count_if(labels,
                       [](const Label &l) { return l.kind == LK::F; }) != 1 ||
        hasKind(labels, LK::W))
      return refuse("a product that leaves two feature axes");
    Expr lin;
    lin.kind = EK::Lin;
    lin.weight = ws.weight;
    lin.inOut = inOut;
    lin.a = tok.expr;
    std::optional<AV> r = makeTok(labels, intern(lin));
    if (!r)
      return std::nullopt;
    return Outs{r};
  }
  if (va->kind == AK::RW && bTok) {
    // Combine: weights [.., 1, k] @ outputs [.., k, F].
    if (!checkFinal(*va))
      return std::nullopt;
    if (vb->weighted)
      return refuse("two multiplications by the routing weights");
    if (ca.kind != LK::K || cb.kind != LK::K ||
        la[la.size() - 2].kind != LK::One || lb.back().kind != LK::F)
      return refuse("a product of routing weights that is not a sum over k");
    Labels labels = *batch;
    labels.push_back(lbl(LK::One));
    labels.push_back(lb.back());
    std::optional<AV> r = makeTok(labels, vb->expr);
    if (!r)
      return std::nullopt;
    r->weighted = r->reduced = true;
    r->state = va->state;
    return Outs{r};
  }
  return refuse("a MatMul that is neither an expert projection nor the "
                "weighted sum");
}

std::optional<Outs> Matcher::ruleEinsum(const onnx::NodeProto &node) {
  std::string eq = attrString(node, "equation", "");
  eq.erase(std::remove(eq.begin(), eq.end(), ' '), eq.end());
  size_t arrow = eq.find("->");
  if (arrow == std::string::npos || eq.find("...") != std::string::npos)
    return refuse("an Einsum with an ellipsis or an implicit output");
  std::string out = eq.substr(arrow + 2);
  llvm::SmallVector<StringRef> ops;
  StringRef(eq).substr(0, arrow).split(ops, ',');
  if (ops.size() != 2 || node.input_size() != 2)
    return refuse("an Einsum of other than two operands");
  std::optional<AV> vs[2] = {get(node.input(0)), get(node.input(1))};
  if (!vs[0] || !vs[1])
    return refuse("an Einsum with an operand outside the block");
  std::map<char, Label> lab[2];
  for (int i = 0; i < 2; ++i) {
    if (ops[i].size() != vs[i]->labels.size())
      return refuse("Einsum subscripts of the wrong rank");
    for (size_t j = 0; j < ops[i].size(); ++j)
      if (!lab[i].emplace(ops[i][j], vs[i]->labels[j]).second)
        return refuse("an Einsum with a repeated subscript");
  }
  std::set<char> outSet(out.begin(), out.end());
  if (outSet.size() != out.size())
    return refuse("an Einsum with a repeated output subscript");
  std::vector<char> contracted;
  std::set<char> all;
  for (int i = 0; i < 2; ++i)
    for (auto &[ch, l] : lab[i])
      all.insert(ch);
  for (char ch : all)
    if (!outSet.count(ch))
      contracted.push_back(ch);
  if (contracted.size() != 1 || !lab[0].count(contracted[0]) ||
      !lab[1].count(contracted[0]))
    return refuse("an Einsum that is not one contraction");
  char c = contracted[0];
  std::map<char, Label> res;
  for (char ch : all) {
    if (ch == c)
      continue;
    bool in0 = lab[0].count(ch), in1 = lab[1].count(ch);
    if (in0 && in1) {
      std::optional<Labels> b = broadcast({lab[0][ch]}, {lab[1][ch]});
      if (!b)
        return std::nullopt;
      res[ch] = (*b)[0];
    } else {
      res[ch] = in0 ? lab[0][ch] : lab[1][ch];
    }
  }
  for (char ch : out)
    if (!res.count(ch))
      return refuse("an Einsum output subscript of no operand");
  int ti = vs[0]->kind == AK::Tok ? 0 : 1;
  const AV &tok = *vs[ti], &other = *vs[1 - ti];
  if (tok.kind != AK::Tok)
    return refuse("an Einsum without an activation operand");
  if (other.kind == AK::WSel) {
    Label free;
    bool inOut = false;
    if (!linearOut(tok, other, lab[ti][c], lab[1 - ti][c], free, inOut))
      return std::nullopt;
    Labels labels;
    for (char ch : out)
      labels.push_back(res[ch] == free ? feature(free.n) : res[ch]);
    if (llvm::count_if(labels,
                       [](const Label &l) { return l.kind == LK::F; }) != 1 ||
        hasKind(labels, LK::W))
      return refuse("an Einsum that leaves two feature axes");
    Expr lin;
    lin.kind = EK::Lin;
    lin.weight = other.weight;
    lin.inOut = inOut;
    lin.a = tok.expr;
    std::optional<AV> r = makeTok(labels, intern(lin));
    if (!r)
      return std::nullopt;
    return Outs{r};
  }
  if (other.kind == AK::RW || other.kind == AK::RWDense) {
    if (other.kind == AK::RW && !checkFinal(other))
      return std::nullopt;
    if (tok.weighted)
      return refuse("two multiplications by the routing weights");
    LK sum = other.kind == AK::RW ? LK::K : LK::E;
    if (lab[ti][c].kind != sum || lab[1 - ti][c].kind != sum)
      return refuse("an Einsum of routing weights that is not a sum over k");
    Labels labels;
    for (char ch : out)
      labels.push_back(res[ch]);
    std::optional<AV> r = makeTok(labels, tok.expr);
    if (!r)
      return std::nullopt;
    r->weighted = r->reduced = true;
    r->state = other.state;
    return Outs{r};
  }
  return refuse("an Einsum that is neither an expert projection nor the "
                "weighted sum");
}

std::optional<Outs> Matcher::ruleGatherElements(const onnx::NodeProto &node) {
  const AV *data = av(node.input(0)), *ind = av(node.input(1));
  if (!data || data->kind != AK::Tok || data->weighted || !ind ||
      ind->kind != AK::Idx)
    return refuse("a GatherElements that does not select expert outputs by "
                  "the expert indices");
  int64_t rank = static_cast<int64_t>(data->labels.size());
  int64_t ax = attrInt(node, "axis", 0);
  if (ax < 0)
    ax += rank;
  if (ax < 0 || ax >= rank || ind->labels.size() != data->labels.size())
    return refuse("GatherElements axes");
  if (data->labels[ax].kind != LK::E || ind->labels[ax].kind != LK::K)
    return refuse("a GatherElements not selecting experts by the top-k "
                  "indices");
  AV r = *data;
  for (int64_t i = 0; i < rank; ++i) {
    const Label &d = data->labels[i], &x = ind->labels[i];
    if (i == ax) {
      r.labels[i] = lbl(LK::K);
      continue;
    }
    bool ok = d == x || (x.kind == LK::BC && SymInt::of(x.n) == size(d)) ||
              (x.kind == LK::One && isUnit(d));
    if (!ok)
      return refuse("GatherElements indices that do not cover the other "
                    "axes");
  }
  std::optional<AV> t = makeTok(r.labels, r.expr);
  if (!t)
    return std::nullopt;
  return Outs{t};
}

std::optional<AV> Matcher::zerosOf(StringRef name) {
  std::vector<SymInt> shape;
  if (std::optional<ConstValue> c = eval_.evaluate(name)) {
    // Folded by the exporter (a static token count).
    if (!c->isFloat || llvm::any_of(c->floats, [](double f) { return f != 0; }))
      return refuse("a scatter into a tensor that is not zeros");
    for (int64_t d : c->shape)
      shape.push_back(SymInt::of(d));
  } else {
    int p = index_.producer(name);
    if (p < 0)
      return refuse("a scatter into a tensor that is not zeros");
    const onnx::NodeProto &node = index_.node(p);
    if (node.op_type() != "ConstantOfShape" || node.input_size() != 1)
      return refuse("a scatter into a tensor that is not zeros");
    if (const onnx::AttributeProto *a = findAttr(node, "value")) {
      std::optional<ConstValue> v = readConstTensor(a->t(), 1);
      if (!v || v->scalar() != 0.0)
        return refuse("a scatter into a tensor that is not zeros");
    }
    std::optional<ConstValue> s = eval_.evaluate(node.input(0));
    if (!s || s->isFloat)
      return refuse("zeros of a shape that cannot be evaluated");
    shape = s->ints;
    walked_.insert(p);
  }
  if (shape.size() != 2 || shape[0] != tokens_ ||
      shape[1] != SymInt::of(experts_))
    return refuse("zeros that are not [T, E]");
  AV r;
  r.kind = AK::Zeros;
  r.labels = {lbl(LK::T), lbl(LK::E)};
  return r;
}

std::optional<Outs> Matcher::ruleScatterElements(const onnx::NodeProto &node) {
  if (node.input_size() != 3)
    return refuse("ScatterElements arity");
  std::optional<AV> zeros;
  if (const AV *z = av(node.input(0)))
    zeros = *z;
  else
    zeros = zerosOf(node.input(0));
  const AV *ind = av(node.input(1)), *upd = av(node.input(2));
  if (!zeros || zeros->kind != AK::Zeros || !ind || ind->kind != AK::Idx ||
      !upd || upd->kind != AK::RW)
    return refuse("a ScatterElements that is not the routing weights into "
                  "zeros [T, E]");
  if (attrString(node, "reduction", "none") != "none")
    return refuse("ScatterElements with a reduction");
  int64_t ax = attrInt(node, "axis", 0);
  Labels tk = {lbl(LK::T), lbl(LK::K)};
  if ((ax != 1 && ax != -1) || ind->labels != tk || upd->labels != tk)
    return refuse("a ScatterElements of the routing weights not over [T, k]");
  if (!checkFinal(*upd))
    return std::nullopt;
  AV r;
  r.kind = AK::RWDense;
  r.labels = {lbl(LK::T), lbl(LK::E)};
  r.state = upd->state;
  return Outs{r};
}

std::optional<Outs> Matcher::ruleSlice(const onnx::NodeProto &node) {
  const AV *v = av(node.input(0));
  if (!v || v->kind != AK::Tok || v->weighted)
    return refuse("a Slice of a value that is not an expert activation");
  std::optional<ConstValue> starts =
      node.input_size() > 1 ? eval_.evaluate(node.input(1)) : std::nullopt;
  std::optional<ConstValue> ends =
      node.input_size() > 2 ? eval_.evaluate(node.input(2)) : std::nullopt;
  std::optional<std::vector<int64_t>> s = starts ? starts->plainInts()
                                                 : std::nullopt,
                                      e = ends ? ends->plainInts()
                                               : std::nullopt;
  if (!s || !e || s->size() != 1 || e->size() != 1)
    return refuse("a Slice whose bounds cannot be evaluated or that slices "
                  "several axes");
  int64_t rank = static_cast<int64_t>(v->labels.size());
  int64_t ax = 0, step = 1;
  if (node.input_size() > 3 && !node.input(3).empty()) {
    std::optional<std::vector<int64_t>> a = constInts(node, 3);
    if (!a || a->size() != 1)
      return refuse("Slice axes that cannot be evaluated");
    ax = (*a)[0];
  }
  if (node.input_size() > 4 && !node.input(4).empty()) {
    std::optional<std::vector<int64_t>> st = constInts(node, 4);
    if (!st || st->size() != 1)
      return refuse("Slice steps that cannot be evaluated");
    step = (*st)[0];
  }
  if (ax < 0)
    ax += rank;
  if (ax < 0 || ax >= rank || v->labels[ax].kind != LK::F || step < 1)
    return refuse("a Slice that is not of the feature axis");
  int64_t width = v->labels[ax].n;
  int64_t b = (*s)[0], en = (*e)[0];
  if (b < 0)
    b += width;
  if (en < 0)
    en += width;
  b = std::clamp<int64_t>(b, 0, width);
  en = std::clamp<int64_t>(en, 0, width);
  int64_t count = en > b ? (en - b + step - 1) / step : 0;
  if (count == 0)
    return refuse("an empty Slice");
  const Expr &inner = expr(v->expr);
  bool linear =
      inner.kind == EK::Lin ||
      (inner.kind == EK::Add &&
       (expr(inner.a).kind == EK::Lin || expr(inner.b).kind == EK::Lin) &&
       (expr(inner.a).kind == EK::Bias || expr(inner.b).kind == EK::Bias));
  if (!linear)
    return refuse("a Slice of a value that is not a projection");
  Expr sl;
  sl.kind = EK::Slice;
  sl.a = v->expr;
  sl.begin = b;
  sl.end = b + (count - 1) * step + 1;
  sl.step = step;
  AV r = *v;
  r.labels[ax] = feature(count);
  r.expr = intern(sl);
  return Outs{r};
}

std::optional<Outs> Matcher::ruleSplit(const onnx::NodeProto &node) {
  const AV *v = av(node.input(0));
  if (!v || v->kind != AK::Tok || v->weighted)
    return refuse("a Split of a value that is not an expert activation");
  int64_t rank = static_cast<int64_t>(v->labels.size());
  int64_t ax = attrInt(node, "axis", 0);
  if (ax < 0)
    ax += rank;
  if (ax < 0 || ax >= rank || v->labels[ax].kind != LK::F)
    return refuse("a Split that is not of the feature axis");
  const Expr &inner = expr(v->expr);
  if (inner.kind != EK::Lin &&
      !(inner.kind == EK::Add &&
        (expr(inner.a).kind == EK::Bias || expr(inner.b).kind == EK::Bias)))
    return refuse("a Split of a value that is not a projection");
  int64_t width = v->labels[ax].n;
  int64_t parts = node.output_size();
  std::vector<int64_t> sizes;
  if (node.input_size() > 1 && !node.input(1).empty()) {
    std::optional<std::vector<int64_t>> sp = constInts(node, 1);
    if (!sp)
      return refuse("Split sizes that cannot be evaluated");
    sizes = *sp;
  } else if (auto sp = attrInts(node, "split")) {
    sizes = *sp;
  } else {
    if (parts <= 0 || width % parts != 0)
      return refuse("an uneven Split");
    sizes.assign(parts, width / parts);
  }
  if (static_cast<int64_t>(sizes.size()) != parts)
    return refuse("Split sizes do not match its outputs");
  Outs outs;
  int64_t begin = 0;
  for (int64_t n : sizes) {
    if (n <= 0 || begin + n > width)
      return refuse("Split sizes out of range");
    Expr sl;
    sl.kind = EK::Slice;
    sl.a = v->expr;
    sl.begin = begin;
    sl.end = begin + n;
    sl.step = 1;
    AV r = *v;
    r.labels[ax] = feature(n);
    r.expr = intern(sl);
    outs.push_back(r);
    begin += n;
  }
  if (begin != width)
    return refuse("Split sizes do not cover the axis");
  return outs;
}

//===----------------------------------------------------------------------===//
// Router
//===----------------------------------------------------------------------===//

std::string Matcher::skipCastsUp(std::string name) {
  // Bounded: a (malformed) cycle of Casts ends the walk.
  for (int steps = 0; steps < 64; ++steps) {
    int p = index_.producer(name);
    if (p < 0)
      return name;
    const onnx::NodeProto &n = index_.node(p);
    if (!n.domain().empty() && n.domain() != "ai.onnx")
      return name;
    if (n.input_size() < 1)
      return name;
    if (n.op_type() == "Identity" ||
        (n.op_type() == "Cast" &&
         isFloatType(static_cast<int32_t>(attrInt(n, "to", 0))))) {
      routerNodes_.insert(p);
      name = n.input(0);
      continue;
    }
    return name;
  }
  return name;
}

bool Matcher::matchRouter(int topk) {
  const onnx::NodeProto &node = index_.node(topk);
  if (node.input_size() != 2 || node.output_size() < 1)
    return fail("TopK arity");
  if (attrInt(node, "largest", 1) != 1)
    return fail("TopK with largest = 0");
  std::optional<ConstValue> kc = eval_.evaluate(node.input(1));
  std::optional<std::vector<int64_t>> kv = kc ? kc->plainInts() : std::nullopt;
  if (!kv || kv->size() != 1 || (*kv)[0] < 1)
    return fail("TopK's k is not a constant");
  k_ = (*kv)[0];
  int64_t axis = attrInt(node, "axis", -1);
  if (axis != -1 && axis != 1)
    return fail("TopK not over the last axis of [T, E]");

  std::string cur = skipCastsUp(node.input(0));
  scoring_ = "topk_softmax";
  int p = index_.producer(cur);
  if (p >= 0 &&
      (index_.node(p).op_type() == "Softmax" ||
       index_.node(p).op_type() == "Sigmoid") &&
      index_.node(p).domain().empty() && index_.node(p).input_size() == 1) {
    const onnx::NodeProto &s = index_.node(p);
    if (s.op_type() == "Softmax") {
      int64_t ax = attrInt(s, "axis", -1);
      if (ax != -1 && ax != 1)
        return fail("router Softmax not over the experts");
      scoring_ = "softmax";
    } else {
      scoring_ = "sigmoid";
    }
    routerNodes_.insert(p);
    cur = skipCastsUp(s.input(0));
    p = index_.producer(cur);
  }
  if (p < 0)
    return fail("the router logits come from no node");
  const onnx::NodeProto *logits = &index_.node(p);
  if (!logits->domain().empty() && logits->domain() != "ai.onnx")
    return fail("router logits computed by " + logits->op_type());
  auto biasOf = [&](StringRef name) -> int {
    int b = weightIndex(name);
    if (b < 0 || weights_[b].shape.size() != 1)
      return -1;
    return b;
  };
  if (logits->input_size() < 2)
    return fail("router logits computed by " + logits->op_type());
  if (logits->op_type() == "Add") {
    routerNodes_.insert(p);
    int which = -1;
    for (int i = 0; i < 2 && which < 0; ++i) {
      int q = index_.producer(logits->input(1 - i));
      if (biasOf(logits->input(i)) >= 0 && q >= 0 &&
          index_.node(q).op_type() == "MatMul") {
        routerBias_ = biasOf(logits->input(i));
        which = 1 - i;
      }
    }
    if (which < 0)
      return fail("router Add is not a bias");
    p = index_.producer(logits->input(which));
    logits = &index_.node(p);
    if (logits->input_size() < 2)
      return fail("router logits computed by " + logits->op_type());
  }
  std::string x;
  if (logits->op_type() == "MatMul") {
    x = logits->input(0);
    routerWeight_ = weightIndex(logits->input(1));
    if (routerWeight_ < 0 || weights_[routerWeight_].shape.size() != 2)
      return fail("the router MatMul's weight is not a constant [H, E]");
    routerHE_ = true;
    hidden_ = weights_[routerWeight_].shape[0];
    experts_ = weights_[routerWeight_].shape[1];
  } else if (logits->op_type() == "Gemm") {
    if (routerBias_ >= 0)
      return fail("a router Gemm followed by a bias Add");
    const onnx::AttributeProto *alpha = findAttr(*logits, "alpha");
    if (attrInt(*logits, "transA", 0) != 0 || (alpha && alpha->f() != 1.0f))
      return fail("a router Gemm with transA or alpha");
    x = logits->input(0);
    routerWeight_ = weightIndex(logits->input(1));
    if (routerWeight_ < 0 || weights_[routerWeight_].shape.size() != 2)
      return fail("the router Gemm's weight is not a constant matrix");
    routerHE_ = attrInt(*logits, "transB", 0) == 0;
    const std::vector<int64_t> &shape = weights_[routerWeight_].shape;
    hidden_ = routerHE_ ? shape[0] : shape[1];
    experts_ = routerHE_ ? shape[1] : shape[0];
    if (logits->input_size() > 2 && !logits->input(2).empty()) {
      if (findAttr(*logits, "beta") && findAttr(*logits, "beta")->f() != 1.0f)
        return fail("a router Gemm with beta");
      routerBias_ = biasOf(logits->input(2));
      if (routerBias_ < 0)
        return fail("the router Gemm's C is not a constant [E] bias");
    }
  } else {
    return fail("router logits computed by " + logits->op_type());
  }
  routerNodes_.insert(p);
  if (routerBias_ >= 0 && weights_[routerBias_].shape[0] != experts_)
    return fail("the router bias is not [E]");
  if (k_ > experts_)
    return fail("k > E");
  std::optional<int64_t> rank = eval_.rankOf(x);
  if (!rank)
    return fail("the rank of the router input is unknown");
  if (*rank != 2)
    return fail("the router input has rank " + std::to_string(*rank) +
                " (expected [T, H])");
  if (std::optional<std::vector<SymInt>> s = eval_.shapeOf(x);
      s && s->size() == 2 && (*s)[1].known && (*s)[1] != SymInt::of(hidden_))
    return fail("the router input is not H wide");
  x_ = x;
  return true;
}

//===----------------------------------------------------------------------===//
// The expert function
//===----------------------------------------------------------------------===//

std::vector<int> Matcher::mulParts(int e) const {
  if (expr(e).kind != EK::Mul)
    return {e};
  std::vector<int> a = mulParts(expr(e).a), b = mulParts(expr(e).b);
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::vector<int> Matcher::addParts(int e) const {
  if (expr(e).kind != EK::Add)
    return {e};
  std::vector<int> a = addParts(expr(e).a), b = addParts(expr(e).b);
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::optional<LinRef> Matcher::matchInputLinear(int e) {
  LinRef r;
  auto peelBias = [&](int &cur) -> bool {
    const Expr &x = expr(cur);
    if (x.kind != EK::Add)
      return true;
    int bias = expr(x.a).kind == EK::Bias   ? x.a
               : expr(x.b).kind == EK::Bias ? x.b
                                            : -1;
    if (bias < 0)
      return false;
    if (r.bias >= 0)
      return false;
    r.bias = expr(bias).weight;
    cur = bias == x.a ? x.b : x.a;
    return true;
  };
  if (!peelBias(e))
    return std::nullopt;
  if (expr(e).kind == EK::Slice) {
    r.rows = std::vector<int64_t>{expr(e).begin, expr(e).end, expr(e).step};
    e = expr(e).a;
    if (!peelBias(e))
      return std::nullopt;
  }
  const Expr &lin = expr(e);
  if (lin.kind != EK::Lin || expr(lin.a).kind != EK::X)
    return std::nullopt;
  r.weight = lin.weight;
  r.inOut = lin.inOut;
  return r;
}

bool Matcher::matchActivation(int h, std::string &act, int &gate, int &up) {
  std::vector<int> factors = mulParts(h), rest;
  double c = 1.0;
  for (int f : factors) {
    if (expr(f).kind == EK::Const)
      c *= expr(f).c;
    else
      rest.push_back(f);
  }
  auto contains = [&](int e) { return llvm::is_contained(rest, e); };
  auto constProduct = [&](int e, std::vector<int> &others) {
    double p = 1.0;
    for (int f : mulParts(e)) {
      if (expr(f).kind == EK::Const)
        p *= expr(f).c;
      else
        others.push_back(f);
    }
    return p;
  };
  struct Candidate {
    const char *act;
    int gate;
    std::vector<int> used;
    double c;
  };
  std::vector<Candidate> candidates;
  for (int x : rest) {
    const Expr &e = expr(x);
    if (e.kind == EK::Relu)
      candidates.push_back({"relu", e.a, {x}, 1.0});
    if (e.kind == EK::Gelu)
      candidates.push_back({"gelu", e.a, {x}, 1.0});
    if (e.kind == EK::GeluTanh)
      candidates.push_back({"gelu_tanh", e.a, {x}, 1.0});
    if (e.kind == EK::Sigmoid && contains(e.a))
      candidates.push_back({"silu", e.a, {x, e.a}, 1.0});
    // 1 + erf(g / √2)  or  1 + tanh(√(2/π) (g + 0.044715 g³)).
    std::vector<int> sum = addParts(x);
    if (sum.size() != 2)
      continue;
    for (int i = 0; i < 2; ++i) {
      const Expr &one = expr(sum[i]);
      const Expr &inner = expr(sum[1 - i]);
      if (one.kind != EK::Const || std::abs(one.c - 1.0) > 1e-6)
        continue;
      if (inner.kind != EK::Erf && inner.kind != EK::Tanh)
        continue;
      std::vector<int> arg;
      double cc = constProduct(inner.a, arg);
      if (arg.size() != 1)
        continue;
      if (inner.kind == EK::Erf) {
        if (std::abs(cc - 1.0 / std::sqrt(2.0)) < 1e-5 && contains(arg[0]))
          candidates.push_back({"gelu", arg[0], {x, arg[0]}, 0.5});
        continue;
      }
      if (std::abs(cc - std::sqrt(2.0 / kPi)) > 1e-5)
        continue;
      std::vector<int> terms = addParts(arg[0]);
      if (terms.size() != 2)
        continue;
      for (int j = 0; j < 2; ++j) {
        int g = terms[j];
        std::vector<int> cube;
        double c3 = constProduct(terms[1 - j], cube);
        if (cube.size() == 3 && cube[0] == g && cube[1] == g && cube[2] == g &&
            std::abs(c3 - 0.044715) < 1e-6 && contains(g))
          candidates.push_back({"gelu_tanh", g, {x, g}, 0.5});
      }
    }
  }
  for (const Candidate &cand : candidates) {
    if (std::abs(c - cand.c) > 1e-6 || !matchInputLinear(cand.gate))
      continue;
    std::vector<int> left = rest;
    bool ok = true;
    for (int u : cand.used) {
      auto it = llvm::find(left, u);
      if (it == left.end()) {
        ok = false;
        break;
      }
      left.erase(it);
    }
    if (!ok)
      continue;
    if (left.empty()) {
      act = cand.act;
      gate = cand.gate;
      up = -1;
      return true;
    }
    if (left.size() == 1 && matchInputLinear(left[0])) {
      act = cand.act;
      gate = cand.gate;
      up = left[0];
      return true;
    }
  }
  // No activation: a linear map, or the bilinear product of two.
  if (std::abs(c - 1.0) < 1e-6 && (rest.size() == 1 || rest.size() == 2) &&
      llvm::all_of(rest, [&](int e) { return matchInputLinear(e); })) {
    act = "identity";
    gate = rest[0];
    up = rest.size() == 2 ? rest[1] : -1;
    return true;
  }
  return fail("the expert activation is not silu, gelu, gelu_tanh, relu or "
              "identity of x's projections");
}

bool Matcher::checkLinear(const LinRef &lin, int64_t in, const char *what,
                          int64_t &out) {
  const WeightInfo &w = weights_[lin.weight];
  if (w.shape.size() != 3 || w.shape[0] != experts_)
    return fail(std::string(what) + " is not [E, out, in]");
  int64_t inDim = lin.inOut ? w.shape[1] : w.shape[2];
  int64_t outDim = lin.inOut ? w.shape[2] : w.shape[1];
  if (inDim != in)
    return fail(std::string(what) + " does not take the expected width");
  out = outDim;
  if (lin.rows) {
    int64_t b = (*lin.rows)[0], e = (*lin.rows)[1], s = (*lin.rows)[2];
    if (b < 0 || e > outDim || b >= e || s < 1)
      return fail(std::string(what) + " rows out of range");
    out = (e - b + s - 1) / s;
  }
  if (lin.bias >= 0) {
    const WeightInfo &bias = weights_[lin.bias];
    if (bias.shape.size() != 2 || bias.shape[0] != experts_ ||
        (bias.shape[1] != out && bias.shape[1] != outDim))
      return fail(std::string(what) + " bias is not [E, out]");
  }
  return true;
}

bool Matcher::matchFfn(const AV &result, MoEMatch &m) {
  // y = fc2 h (+ b2).
  int e = result.expr;
  int fc2Bias = -1;
  if (expr(e).kind == EK::Add) {
    const Expr &add = expr(e);
    if (expr(add.b).kind == EK::Bias) {
      fc2Bias = expr(add.b).weight;
      e = add.a;
    } else if (expr(add.a).kind == EK::Bias) {
      fc2Bias = expr(add.a).weight;
      e = add.b;
    }
  }
  if (expr(e).kind != EK::Lin)
    return fail("the weighted expert output is not a projection");
  LinRef fc2;
  fc2.weight = expr(e).weight;
  fc2.inOut = expr(e).inOut;
  fc2.bias = fc2Bias;
  int h = expr(e).a;
  std::string act;
  int gateExpr = -1, upExpr = -1;
  if (!matchActivation(h, act, gateExpr, upExpr))
    return false;
  std::optional<LinRef> gate = matchInputLinear(gateExpr);
  std::optional<LinRef> up;
  if (upExpr >= 0)
    up = matchInputLinear(upExpr);
  if (!gate || (upExpr >= 0 && !up))
    return fail("the expert projections do not read x");

  // Shapes: fc1/fc3 [E, I, H], fc2 [E, H, I] (in their layouts).
  int64_t inter = 0, upOut = 0, out = 0;
  if (!checkLinear(*gate, hidden_, "fc1", inter) ||
      (up && !checkLinear(*up, hidden_, "fc3", upOut)) ||
      !checkLinear(fc2, inter, "fc2", out))
    return false;
  if (up && upOut != inter)
    return fail("the gate and up projections differ in width");
  if (out != hidden_ || fc2.rows)
    return fail("fc2 does not give H outputs");
  // One element type for the expert weights and biases.
  int32_t type = weights_[gate->weight].elemType;
  for (const LinRef *l : {&*gate, &fc2, up ? &*up : nullptr}) {
    if (!l)
      continue;
    if (weights_[l->weight].elemType != type ||
        (l->bias >= 0 && weights_[l->bias].elemType != type))
      return fail("expert weights of different element types");
  }

  auto toMatch = [&](const LinRef &l) {
    LinearMatch r;
    r.weight = weights_[l.weight].name;
    r.inOut = l.inOut;
    r.rows = l.rows;
    if (l.bias >= 0)
      r.bias = weights_[l.bias].name;
    // A slice of all rows is no slice.
    if (r.rows) {
      const std::vector<int64_t> &shape = weights_[l.weight].shape;
      int64_t full = l.inOut ? shape[2] : shape[1];
      if ((*r.rows)[0] == 0 && (*r.rows)[1] == full && (*r.rows)[2] == 1)
        r.rows.reset();
    }
    return r;
  };
  m.activation = act;
  m.fc1 = toMatch(*gate);
  m.fc2 = toMatch(fc2);
  m.gating = "none";
  if (up) {
    m.fc3 = toMatch(*up);
    m.gating = "separate";
    // Gate and up as halves (or alternate rows) of one fused projection.
    const LinearMatch &g = m.fc1, &u = *m.fc3;
    if (g.weight == u.weight && g.inOut == u.inOut && g.rows && u.rows &&
        g.bias == u.bias) {
      const std::vector<int64_t> &shape = weights_[gate->weight].shape;
      int64_t full = g.inOut ? shape[2] : shape[1];
      bool biasFull = g.bias.empty() || weights_[gate->bias].shape[1] == full;
      const std::vector<int64_t> &gr = *g.rows, &ur = *u.rows;
      std::string fused;
      if (full % 2 == 0 && gr == std::vector<int64_t>{0, full / 2, 1} &&
          ur == std::vector<int64_t>{full / 2, full, 1})
        fused = "concatenated";
      else if (full % 2 == 0 && gr == std::vector<int64_t>{0, full - 1, 2} &&
               ur == std::vector<int64_t>{1, full, 2})
        fused = "interleaved";
      if (!fused.empty() && biasFull) {
        m.gating = fused;
        m.fc1.rows.reset();
        m.fc3.reset();
      }
    }
  }
  return true;
}

//===----------------------------------------------------------------------===//
// The block: its nodes and what may be removed
//===----------------------------------------------------------------------===//

bool Matcher::computeRemoval(int result, MoEMatch &m) {
  const std::string &output = m.output;
  llvm::StringSet<> stop;
  stop.insert(x_);
  for (const LinearMatch *l : {&m.fc1, &m.fc2, m.fc3 ? &*m.fc3 : nullptr}) {
    if (!l)
      continue;
    stop.insert(l->weight);
    if (!l->bias.empty())
      stop.insert(l->bias);
  }
  stop.insert(m.routerWeight);
  if (!m.routerBias.empty())
    stop.insert(m.routerBias);
  auto isStop = [&](StringRef v) {
    return stop.contains(v) || index_.initializer(v) || index_.graphInput(v);
  };

  // The nodes the output depends on, back to x and the weights.
  std::set<int> closure;
  std::vector<std::string> stack = {output};
  while (!stack.empty()) {
    std::string v = stack.back();
    stack.pop_back();
    if (isStop(v))
      continue;
    int p = index_.producer(v);
    if (p < 0 || closure.count(p))
      continue;
    if (p > result)
      return fail("a value of the block is computed after its output");
    closure.insert(p);
    for (const std::string &in : index_.reads(p))
      stack.push_back(in);
  }

  // Every node must be understood: interpreted, the router, or a constant.
  std::map<int, bool> keepable;
  for (int n : closure) {
    const onnx::NodeProto &node = index_.node(n);
    bool region = walked_.count(n) || routerNodes_.count(n);
    bool constant = true;
    for (const std::string &out : node.output())
      if (!out.empty() && !eval_.evaluate(out))
        constant = false;
    if (!region && !constant)
      return fail("node '" + node.name() + "' (" + node.op_type() +
                  ") of the block is not understood");
    // Constants that read nothing of the block may stay for other users.
    bool independent = constant;
    for (const std::string &in : index_.reads(n)) {
      if (isStop(in))
        continue;
      int p = index_.producer(in);
      if (p < 0 || !closure.count(p) || !keepable[p])
        independent = false;
    }
    keepable[n] = independent;
  }

  // Values used outside the block keep their (constant) producers, or the
  // block is not raised.
  std::set<int> keep;
  std::vector<int> work;
  for (int n : closure) {
    for (const std::string &out : index_.node(n).output()) {
      if (out.empty() || out == output)
        continue;
      bool outside = index_.isGraphOutput(out);
      for (int c : index_.consumers(out))
        if (!closure.count(c))
          outside = true;
      if (!outside)
        continue;
      if (!keepable[n])
        return fail("value '" + out +
                    "' of the block is also used outside "
                    "it");
      work.push_back(n);
    }
  }
  while (!work.empty()) {
    int n = work.back();
    work.pop_back();
    if (!keep.insert(n).second)
      continue;
    for (const std::string &in : index_.reads(n)) {
      int p = index_.producer(in);
      if (p >= 0 && closure.count(p))
        work.push_back(p);
    }
  }
  m.result = result;
  for (int n : closure)
    if (!keep.count(n))
      m.remove.push_back(n);
  return true;
}

std::optional<MoEMatch> Matcher::run(int topk, std::string &why) {
  auto failed = [&]() -> std::optional<MoEMatch> {
    why = ruleWhy_.empty() ? "not understood" : ruleWhy_;
    return std::nullopt;
  };
  if (!matchRouter(topk))
    return failed();
  routerNodes_.insert(topk);
  // A static token count (an export without dynamic axes) sizes the reshape
  // targets; one token would make the token axis look like a unit axis.
  if (std::optional<std::vector<SymInt>> s = eval_.shapeOf(x_);
      s && s->size() == 2 && (*s)[0].isInt() && (*s)[0].coef > 1)
    tokens_ = (*s)[0];
  const onnx::NodeProto &top = index_.node(topk);

  // Seeds.
  AV xv;
  xv.kind = AK::Tok;
  xv.labels = {lbl(LK::T), feature(hidden_)};
  Expr xe;
  xe.kind = EK::X;
  xv.expr = intern(xe);
  env_[x_] = xv;
  AV logits;
  logits.kind = AK::Logits;
  logits.labels = {lbl(LK::T), lbl(LK::E)};
  for (int n : routerNodes_)
    if (n != topk)
      for (const std::string &out : index_.node(n).output())
        if (!out.empty())
          env_[out] = logits;
  AV rw;
  rw.kind = AK::RW;
  rw.labels = {lbl(LK::T), lbl(LK::K)};
  rw.state.probs = scoring_ != "topk_softmax";
  env_[top.output(0)] = rw;
  if (top.output_size() > 1 && !top.output(1).empty()) {
    AV idx;
    idx.kind = AK::Idx;
    idx.labels = rw.labels;
    env_[top.output(1)] = idx;
  }

  // Walk the graph in order; the first weighted sum [t, H] ends it.
  int result = -1;
  // Why nodes were not understood: first those that read more of the block
  // than x (x's other users are rarely the reason).
  std::vector<std::string> reasons, xReasons;
  for (int i = 0; i < index_.graph().node_size() && result < 0; ++i) {
    if (routerNodes_.count(i))
      continue;
    const onnx::NodeProto &node = index_.node(i);
    bool reads = false, opaque = false, onlyX = true;
    for (const std::string &in : index_.reads(i)) {
      reads |= env_.count(in) > 0;
      opaque |= opaque_.contains(in);
      onlyX &= in == x_ || !env_.count(in);
    }
    if (!reads && !opaque)
      continue;
    std::optional<Outs> outs;
    ruleWhy_.clear();
    bool subgraph = llvm::any_of(node.attribute(), [](const auto &a) {
      return a.has_g() || a.graphs_size() > 0;
    });
    if (!opaque && !subgraph)
      outs = rule(node);
    if (!outs) {
      for (const std::string &out : node.output())
        if (!out.empty())
          opaque_.insert(out);
      if (!opaque)
        (onlyX ? xReasons : reasons)
            .push_back(node.op_type() + " '" + node.name() + "': " +
                       (subgraph ? "a node with a subgraph" : ruleWhy_));
      continue;
    }
    walked_.insert(i);
    for (int j = 0;
         j < node.output_size() && j < static_cast<int>(outs->size()); ++j)
      if ((*outs)[j] && !node.output(j).empty())
        env_[node.output(j)] = *(*outs)[j];
    if (outs->empty() || node.output(0).empty())
      continue;
    const std::optional<AV> &v = (*outs)[0];
    if (v && v->kind == AK::Tok && v->reduced && v->weighted &&
        v->labels == Labels{lbl(LK::T), feature(hidden_)})
      result = i;
  }
  ruleWhy_.clear();
  if (result < 0) {
    reasons.insert(reasons.end(), xReasons.begin(), xReasons.end());
    ruleWhy_ = "no weighted sum over k reached";
    for (size_t i = 0; i < reasons.size() && i < 3; ++i)
      ruleWhy_ += (i ? "; " : ": ") + reasons[i];
    return failed();
  }

  MoEMatch m;
  m.x = x_;
  m.output = index_.node(result).output(0);
  m.k = k_;
  m.experts = experts_;
  m.hidden = hidden_;
  m.routerWeight = weights_[routerWeight_].name;
  m.routerHE = routerHE_;
  if (routerBias_ >= 0)
    m.routerBias = weights_[routerBias_].name;
  const AV &out = env_[m.output];
  m.scoring = scoring_;
  m.renormalize = out.state.renorm;
  m.epsilon = out.state.eps;
  m.scale = out.state.scale;
  if (m.scoring == "topk_softmax" && m.renormalize) {
    // The k weights already sum to 1.
    if (m.epsilon != 0.0) {
      ruleWhy_ = "a renormalisation with epsilon of a softmax over k";
      return failed();
    }
    m.renormalize = false;
  }
  if (!matchFfn(out, m) || !computeRemoval(result, m))
    return failed();
  return m;
}

} // namespace

std::optional<MoEMatch>
moe_mlir::onnx_import::raise::matchMoEBlock(const GraphIndex &index, int topk,
                                            std::string &why) {
  Matcher matcher(index);
  return matcher.run(topk, why);
}
