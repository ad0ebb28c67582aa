//===- RaiseGraph.h - graph queries for the MoE raiser ----------*- C++ -*-===//
//
// Part of moe-mlir's ONNX frontend (internal header).
//
// What RaiseMoE's matcher needs to know about a GraphProto before any MLIR
// exists: who produces and who consumes each value, the initializers and
// their shapes, the small integer and float constants the exporters compute
// (reshape targets, slice bounds, axes, the scalars of a decomposed
// activation) and the rank of a value. Sizes may be symbolic in the token
// count T of the block being matched (SymInt): a reshape target computed
// from Shape(x) evaluates to [T, 16], not to a number.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_LIB_IMPORT_ONNX_RAISEGRAPH_H
#define MOE_MLIR_LIB_IMPORT_ONNX_RAISEGRAPH_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/ADT/StringSet.h"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <onnx/onnx_pb.h>

namespace moe_mlir::onnx_import::raise {

/// An integer that may depend on the token count T: `coef · T^power`, or
/// unknown (a dimension the matcher cannot name, e.g. a batch size).
struct SymInt {
  int64_t coef = 0;
  int power = 0;
  bool known = true;

  static SymInt of(int64_t v) { return {v, 0, true}; }
  static SymInt tokens(int64_t coef = 1) { return {coef, 1, true}; }
  static SymInt unknown() { return {0, 0, false}; }
  bool isInt() const { return known && (power == 0 || coef == 0); }
  bool operator==(const SymInt &o) const {
    return known && o.known && coef == o.coef &&
           (coef == 0 || power == o.power);
  }
  bool operator!=(const SymInt &o) const { return !(*this == o); }
  SymInt operator*(const SymInt &o) const;
  /// Exact division, or nullopt.
  std::optional<SymInt> exactDiv(const SymInt &o) const;
  std::string str() const;
};

/// A small constant tensor: integers (possibly symbolic; bools as 0/1) or
/// floats, row-major.
struct ConstValue {
  std::vector<int64_t> shape;
  bool isFloat = false;
  std::vector<SymInt> ints;
  std::vector<double> floats;

  int64_t size() const;
  /// The single element as a double (known integers included).
  std::optional<double> scalar() const;
  /// All elements as plain integers.
  std::optional<std::vector<int64_t>> plainInts() const;
};

/// A tensor that moe ops may take as a weight: an initializer, a Constant
/// node's value, or a Transpose/Reshape/... of one (shape only).
struct WeightInfo {
  std::string name;
  std::vector<int64_t> shape;
  int32_t elemType = 0;
};

/// Producers, consumers and constants of one graph (the top-level graph;
/// names a subgraph reads from it count as read by the node that owns the
/// subgraph).
class GraphIndex {
public:
  explicit GraphIndex(const onnx::GraphProto &graph);

  const onnx::GraphProto &graph() const { return graph_; }
  const onnx::NodeProto &node(int i) const { return graph_.node(i); }
  /// The index of the node producing `name`, or -1.
  int producer(llvm::StringRef name) const;
  /// The nodes reading `name`, each once.
  llvm::ArrayRef<int> consumers(llvm::StringRef name) const;
  const onnx::TensorProto *initializer(llvm::StringRef name) const;
  const onnx::ValueInfoProto *graphInput(llvm::StringRef name) const;
  bool isGraphOutput(llvm::StringRef name) const {
    return outputs_.contains(name);
  }
  /// The names node `i` reads, its subgraphs' outer references included.
  const std::vector<std::string> &reads(int i) const { return reads_[i]; }

private:
  const onnx::GraphProto &graph_;
  llvm::StringMap<int> producer_;
  llvm::StringMap<std::vector<int>> consumers_;
  llvm::StringMap<const onnx::TensorProto *> initializers_;
  llvm::StringMap<const onnx::ValueInfoProto *> inputs_;
  llvm::StringSet<> outputs_;
  std::vector<std::vector<std::string>> reads_;
};

/// Attribute helpers.
const onnx::AttributeProto *findAttr(const onnx::NodeProto &node,
                                     llvm::StringRef name);
int64_t attrInt(const onnx::NodeProto &node, llvm::StringRef name,
                int64_t fallback);
std::optional<std::vector<int64_t>> attrInts(const onnx::NodeProto &node,
                                             llvm::StringRef name);
std::string attrString(const onnx::NodeProto &node, llvm::StringRef name,
                       llvm::StringRef fallback);

/// Evaluates constant-computable values: Constant nodes, small
/// initializers, and Shape/Gather/Concat/arithmetic chains over them. The
/// shapes of other values come from `shapeOf` (the matcher supplies the
/// symbolic shapes of the values it has interpreted).
class ConstEvaluator {
public:
  using ShapeFn =
      std::function<std::optional<std::vector<SymInt>>(llvm::StringRef)>;

  ConstEvaluator(const GraphIndex &index, ShapeFn shapeOf)
      : index_(index), shapeOf_(std::move(shapeOf)) {}

  /// The value of `name`, or nullopt when it is not a (small) constant.
  std::optional<ConstValue> evaluate(llvm::StringRef name);
  /// The shape of `name` if the graph, the initializers or `shapeOf` tell
  /// it (dims of graph inputs without a value are unknown).
  std::optional<std::vector<SymInt>> shapeOf(llvm::StringRef name);
  /// A weight (see WeightInfo), or nullopt.
  std::optional<WeightInfo> weight(llvm::StringRef name);
  /// The rank of `name` where the graph determines it, or nullopt.
  std::optional<int64_t> rankOf(llvm::StringRef name, int depth = 0);

private:
  std::optional<ConstValue> evaluateNode(const onnx::NodeProto &node,
                                         int output);
  std::optional<int64_t> rankOfUncached(llvm::StringRef name, int depth);
  std::optional<WeightInfo> weight(llvm::StringRef name, int depth);

  const GraphIndex &index_;
  ShapeFn shapeOf_;
  llvm::StringMap<ConstValue> cache_;
  /// Values known not to be constants (whatever `shapeOf_` learns later).
  llvm::StringSet<> notConstant_;
  llvm::StringSet<> evaluating_;
  /// Counts evaluations that failed for a reason that may go away (a shape
  /// `shapeOf_` does not know yet, the depth limit).
  int64_t tentative_ = 0;
  llvm::StringMap<std::optional<int64_t>> ranks_;
};

/// Reads a small tensor (at most `maxElements`, inline data only).
std::optional<ConstValue> readConstTensor(const onnx::TensorProto &tensor,
                                          int64_t maxElements);

/// The float ONNX element types a moe op computes with (FLOAT, FLOAT16,
/// BFLOAT16).
bool isFloatType(int32_t onnxType);

} // namespace moe_mlir::onnx_import::raise

#endif // MOE_MLIR_LIB_IMPORT_ONNX_RAISEGRAPH_H
