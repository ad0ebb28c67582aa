//===- GraphImporter.h - ONNX graph to ops on tensors -----------*- C++ -*-===//
//
// Part of moe-mlir's ONNX frontend (internal header).
//
// GraphImporter walks a graph's nodes in order and asks the converter
// registered for each (domain, op_type) to emit ops on tensors. Converters
// live in one file per family of operators (ElementwiseOps.cpp, ...) and
// use the helpers here: numpy-style broadcasting, reductions, transposes,
// constants and the symbolic shape values that Shape/Gather/Concat chains
// compute.
//
// Shapes are inferred while importing: every value is a ranked tensor whose
// dimensions are static where the graph determines them and dynamic
// otherwise (a token count, a batch). Broadcasting follows numpy at run
// time: a dynamic dimension may turn out to be 1. Two dynamic sizes are
// known to be equal when they trace back to the same dimension of the same
// value (through the ops the importer builds) or to graph input dimensions
// of one dim_param; broadcasting such sizes costs nothing. Otherwise the
// broadcast size is computed when the model runs and the operands that may
// be 1 there are read at a clamped index (see broadcastSize()).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_LIB_IMPORT_ONNX_GRAPHIMPORTER_H
#define MOE_MLIR_LIB_IMPORT_ONNX_GRAPHIMPORTER_H

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/StringMap.h"

#include <functional>
#include <map>
#include <optional>
#include <string>

#include <onnx/onnx_pb.h>

namespace moe_mlir::onnx_import {

/// A value of the graph during import.
struct OnnxValue {
  /// A ranked tensor (a 0-d tensor for ONNX scalars).
  mlir::Value value;
  /// The ONNX element type is unsigned (MLIR integers are signless).
  bool isUnsigned = false;
  /// For small 0-d/1-d integer tensors known at import time: each element as
  /// an IntegerAttr or an i64 SSA value (a dynamic dimension). This is what
  /// lets Reshape/Expand/Slice use shapes computed from Shape nodes.
  std::optional<llvm::SmallVector<mlir::OpFoldResult>> elements;

  mlir::RankedTensorType type() const {
    return llvm::cast<mlir::RankedTensorType>(value.getType());
  }
  int64_t rank() const { return type().getRank(); }
  mlir::Type elementType() const { return type().getElementType(); }
};

class GraphImporter;
using Converter = llvm::LogicalResult (*)(GraphImporter &);
using ConverterTable = llvm::StringMap<Converter>;

/// Registration, one function per converter file. Keys are "op_type" for
/// the default domain and "domain:op_type" otherwise.
void registerElementwiseConverters(ConverterTable &table);
void registerMatMulConverters(ConverterTable &table);
void registerEinsumConverters(ConverterTable &table);
void registerReductionConverters(ConverterTable &table);
void registerShapeConverters(ConverterTable &table);
void registerIndexingConverters(ConverterTable &table);
void registerMoEConverters(ConverterTable &table);
void registerQMoEConverters(ConverterTable &table);
void registerRaisedMoEConverters(ConverterTable &table);

/// A body builder for elementwise ops: scalar operands (already converted to
/// the computation type) to the scalar result.
using ScalarFn = std::function<mlir::Value(mlir::OpBuilder &, mlir::Location,
                                           mlir::ValueRange)>;

class GraphImporter {
public:
  GraphImporter(mlir::MLIRContext &context, mlir::OpBuilder &builder,
                std::string fileName, std::map<std::string, int64_t> opsets);

  //===--------------------------------------------------------------------===//
  // The graph's values.
  //===--------------------------------------------------------------------===//
  const OnnxValue *lookup(const std::string &name) const;
  void define(const std::string &name, OnnxValue value);
  /// Initializer protos by name (weights that became arguments included),
  /// for converters that need contents or layouts at import time.
  void addInitializer(const onnx::TensorProto *tensor);
  const onnx::TensorProto *initializer(const std::string &name) const;
  /// Records the dim_params of a graph input (defined before): dynamic
  /// dimensions that share a dim_param are known to be equal.
  void noteDimParams(const onnx::ValueInfoProto &input);

  //===--------------------------------------------------------------------===//
  // The node being converted.
  //===--------------------------------------------------------------------===//
  llvm::LogicalResult convert(const onnx::NodeProto &node, size_t index,
                              const ConverterTable &table);
  const onnx::NodeProto &node() const { return *node_; }
  mlir::Location loc() const { return loc_; }
  int64_t opset(const std::string &domain = "") const;
  const std::string &fileName() const { return fileName_; }
  /// The directory external data locations are relative to.
  const std::string &baseDir() const { return baseDir_; }
  void setBaseDir(std::string dir) { baseDir_ = std::move(dir); }

  /// Records a one-line error naming the node and its op type; returns
  /// failure. The first error wins.
  llvm::LogicalResult fail(const llvm::Twine &message);
  const std::string &error() const { return error_; }
  void setError(std::string message) {
    if (error_.empty())
      error_ = std::move(message);
  }
  /// "node 'name' (OpType)".
  std::string nodeDescription() const;

  /// Inputs: `i` is present when the node lists a non-empty name there.
  size_t numInputs() const;
  bool hasInput(size_t i) const;
  const std::string &inputName(size_t i) const;
  /// The input, or an error when it is absent and `required`.
  const OnnxValue *input(size_t i);
  /// The input's known integer elements (see OnnxValue::elements) or an
  /// error naming `what`.
  std::optional<llvm::SmallVector<mlir::OpFoldResult>>
  knownElements(size_t i, llvm::StringRef what);
  /// The input's elements as constants (all static) or an error.
  std::optional<llvm::SmallVector<int64_t>> constantInts(size_t i,
                                                         llvm::StringRef what);
  /// The input's single float value when it is a known constant.
  std::optional<double> constantFloat(size_t i);

  size_t numOutputs() const;
  bool hasOutput(size_t i) const;
  void setOutput(size_t i, OnnxValue value);
  void setOutput(size_t i, mlir::Value value, bool isUnsigned = false);

  // Attributes.
  const onnx::AttributeProto *attribute(llvm::StringRef name) const;
  int64_t attrInt(llvm::StringRef name, int64_t fallback) const;
  double attrFloat(llvm::StringRef name, double fallback) const;
  std::string attrString(llvm::StringRef name, llvm::StringRef fallback) const;
  std::optional<llvm::SmallVector<int64_t>> attrInts(llvm::StringRef name) const;

  //===--------------------------------------------------------------------===//
  // Builders.
  //===--------------------------------------------------------------------===//
  mlir::OpBuilder &b() { return builder_; }
  mlir::MLIRContext *ctx() { return &context_; }
  mlir::RankedTensorType tensorType(llvm::ArrayRef<int64_t> shape,
                                    mlir::Type element) const {
    return mlir::RankedTensorType::get(shape, element);
  }
  /// Dimension `d` of `t` as an OpFoldResult (an attribute when static).
  mlir::OpFoldResult dim(mlir::Value t, int64_t d);
  llvm::SmallVector<mlir::OpFoldResult> dims(mlir::Value t);
  mlir::Value indexValue(mlir::OpFoldResult v);
  mlir::Value i64Value(mlir::OpFoldResult v);
  mlir::Value empty(llvm::ArrayRef<mlir::OpFoldResult> shape, mlir::Type elem);
  mlir::Value filled(llvm::ArrayRef<mlir::OpFoldResult> shape,
                     mlir::Type elem, mlir::TypedAttr value);
  mlir::Value scalarConstant(mlir::Type type, double value);
  /// A tensor constant from known elements.
  mlir::Value materialize(llvm::ArrayRef<mlir::OpFoldResult> elements,
                          bool scalar, mlir::Type elem);
  /// A constant; small 0-d/1-d integer constants also get known elements.
  OnnxValue constantValue(mlir::DenseElementsAttr attr, bool isUnsigned);
  /// An OnnxValue for an integer tensor of known elements.
  OnnxValue knownValue(llvm::ArrayRef<mlir::OpFoldResult> elements,
                       bool scalar, mlir::Type elem);

  /// castScalar() at the current insertion point.
  mlir::Value castScalar(mlir::Value v, mlir::Type to, bool fromUnsigned,
                         bool toUnsigned);
  /// Elementwise op with numpy broadcasting: the inputs are converted to
  /// `computeType` (null: left as they are), `fn` maps their scalars to a
  /// scalar of `resultElem`.
  mlir::FailureOr<mlir::Value> elementwise(llvm::ArrayRef<OnnxValue> inputs,
                                           mlir::Type computeType,
                                           mlir::Type resultElem,
                                           const ScalarFn &fn);
  /// The broadcast shape of `inputs`, or failure (recorded) when two static
  /// sizes other than 1 differ. See broadcastSize().
  mlir::FailureOr<llvm::SmallVector<mlir::OpFoldResult>>
  broadcastShape(llvm::ArrayRef<mlir::Value> inputs);
  /// The numpy broadcast of `sizes`, or std::nullopt when two static sizes
  /// other than 1 differ (the caller reports it). A static size other than 1
  /// wins; dynamic sizes known to be equal (sameSize()) count once; distinct
  /// dynamic sizes are combined when the model runs by
  ///   broadcast(a, b) = a == 1 ? b : b == 1 ? a : max(a, b),
  /// numpy's result whenever the sizes broadcast (0 included). Sizes that do
  /// not (3 and 5) cannot be reported at run time: the result is the
  /// larger, and operands are read at a clamped index (broadcastTo()).
  std::optional<mlir::OpFoldResult>
  broadcastSize(llvm::ArrayRef<mlir::OpFoldResult> sizes);
  /// A size to broadcast without building it first: (tensor, dimension),
  /// (index or i64 scalar, -1) or (null, constant). A dimension becomes a
  /// tensor.dim only when it is the result.
  using SizeRef = std::pair<mlir::Value, int64_t>;
  std::optional<mlir::OpFoldResult> broadcastSize(llvm::ArrayRef<SizeRef> refs);
  /// Whether two sizes are known to be equal at import time: equal
  /// constants, or dynamic sizes that trace back to the same product of
  /// dimensions (followed through tensor.dim, tensor.empty, destination-style
  /// ops, scf.for, tensor.reshape/expand_shape/extract_slice sizes, the
  /// token dimension of moe ops, index casts, products and exact divisions
  /// by constants), graph input dimensions of one dim_param being one.
  bool sameSize(mlir::OpFoldResult a, mlir::OpFoldResult b);
  /// sameSize() for dimension `d` of `t`, without building a tensor.dim.
  bool sameSize(mlir::Value t, int64_t d, mlir::OpFoldResult size);
  /// `v` broadcast to `shape` (numpy rules, trailing alignment). A dynamic
  /// dimension of `v` not known to equal its size in `shape` may be 1 when
  /// the model runs: it is read at index min(i, size - 1).
  mlir::Value broadcastTo(mlir::Value v,
                          llvm::ArrayRef<mlir::OpFoldResult> shape);
  mlir::Value transpose(mlir::Value v, llvm::ArrayRef<int64_t> perm);
  /// Reduces `axes` (sorted, unique, non-negative) of `v` with `combine`,
  /// starting from `init`, in element type `accType`; keeps unit dims when
  /// `keepDims`.
  mlir::Value reduce(mlir::Value v, llvm::ArrayRef<int64_t> axes,
                     bool keepDims, mlir::TypedAttr init, mlir::Type accType,
                     const ScalarFn &combine);
  /// `v` with its elements in reverse order along the axes marked in
  /// `reversed`.
  mlir::Value reverse(mlir::Value v, llvm::ArrayRef<bool> reversed);
  /// Reshape to `shape` (static or dynamic sizes, element count unchanged).
  mlir::Value reshape(mlir::Value v, llvm::ArrayRef<mlir::OpFoldResult> shape);
  /// Normalizes an axis in [-rank, rank) or fails naming `what`.
  std::optional<int64_t> normalizeAxis(int64_t axis, int64_t rank,
                                       llvm::StringRef what);

private:
  /// A size no traced op explains: (tensor, dimension), or (scalar, -1).
  using SizeKey = std::pair<mlir::Value, int64_t>;
  /// What a size traces back to: coeff · Π factors (sorted), so that sizes
  /// flattened and split again by Reshape (T·2, T·2·32 / 32) compare equal.
  struct SizeTerm {
    int64_t coeff = 1;
    llvm::SmallVector<SizeKey, 2> factors;
    bool operator==(const SizeTerm &o) const {
      return coeff == o.coeff && factors == o.factors;
    }
  };
  SizeTerm traceDim(mlir::Value t, int64_t d, int depth = 0);
  SizeTerm traceSize(mlir::Value size, int depth = 0);
  SizeTerm leaf(SizeKey key) const;
  /// A linalg.generic over `shape` whose body maps the scalars of
  /// `operands` (numpy broadcasting, trailing alignment) with `body`.
  mlir::Value broadcastGeneric(llvm::ArrayRef<mlir::Value> operands,
                               llvm::ArrayRef<mlir::OpFoldResult> shape,
                               mlir::Type resultElem, const ScalarFn &body);

  mlir::MLIRContext &context_;
  mlir::OpBuilder &builder_;
  std::string fileName_;
  std::string baseDir_;
  std::map<std::string, int64_t> opsets_;
  llvm::StringMap<OnnxValue> values_;
  llvm::StringMap<const onnx::TensorProto *> initializers_;
  /// Graph input dimensions with a dim_param: the first dimension seen with
  /// that dim_param stands for all of them.
  llvm::StringMap<SizeKey> dimParams_;
  llvm::DenseMap<SizeKey, SizeKey> dimAliases_;
  const onnx::NodeProto *node_ = nullptr;
  size_t nodeIndex_ = 0;
  mlir::Location loc_;
  std::string error_;
};

/// Converts a scalar between element types with ONNX Cast semantics: float
/// to integer truncates toward zero, anything to bool is `!= 0`, bool and
/// unsigned sources are zero-extended.
mlir::Value castScalar(mlir::OpBuilder &b, mlir::Location loc, mlir::Value v,
                       mlir::Type to, bool fromUnsigned = false,
                       bool toUnsigned = false);

/// Maps an ONNX element type code to an MLIR type (unsigned types become
/// signless integers of the same width; `isUnsigned` says so). Returns null
/// for types moe-mlir does not compute with.
mlir::Type elementTypeFor(mlir::MLIRContext *ctx, int32_t onnxType,
                          bool *isUnsigned = nullptr);
/// The ONNX name of an element type code ("FLOAT", "INT64", ...).
std::string onnxTypeName(int32_t onnxType);
/// "[2, ?, 16]"
std::string shapeString(llvm::ArrayRef<int64_t> shape);

} // namespace moe_mlir::onnx_import

#endif // MOE_MLIR_LIB_IMPORT_ONNX_GRAPHIMPORTER_H
