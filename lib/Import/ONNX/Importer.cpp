//===- Importer.cpp - ONNX models as moe-mlir modules ---------------------===//
//
// Part of moe-mlir's ONNX frontend.
//
// Parses the ModelProto, checks the opsets, raises decomposed MoE blocks
// (RaiseMoE.h), then builds @forward: graph inputs and large initializers
// become arguments, small initializers constants, and every node is handed
// to the converter registered for its operator (GraphImporter.h).
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Import/ONNX/Importer.h"

#include "GraphImporter.h"
#include "RaiseMoE.h"
#include "TensorData.h"

#include "moe-mlir/Dialect/MLA/IR/MLA.h"
#include "moe-mlir/Dialect/MoE/IR/MoE.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/Verifier.h"
#include "llvm/ADT/BitVector.h"
#include "llvm/ADT/StringSet.h"

#include <climits>
#include <cstdlib>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl.h>

using namespace mlir;
using namespace moe_mlir;
using namespace moe_mlir::onnx_import;

bool moe_mlir::onnx_import::isOnnxFile(const std::string &path) {
  return StringRef(path).ends_with(".onnx");
}

void moe_mlir::onnx_import::registerImportDialects(MLIRContext &context) {
  context.loadDialect<arith::ArithDialect, func::FuncDialect,
                      linalg::LinalgDialect, math::MathDialect,
                      scf::SCFDialect, tensor::TensorDialect,
                      moe::MoEDialect>();
}

namespace {

/// Opsets of the default domain the importer implements.
constexpr int64_t kMinOpset = 13, kMaxOpset = 21;

bool parseModel(const std::string &path, onnx::ModelProto &model,
                std::string &error) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    error = path + ": no such file";
    return false;
  }
  if (!S_ISREG(st.st_mode)) {
    error = path + ": not a regular file";
    return false;
  }
  int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) {
    error = path + ": cannot be opened";
    return false;
  }
  bool parsed;
  {
    google::protobuf::io::FileInputStream file(fd);
    google::protobuf::io::CodedInputStream coded(&file);
    coded.SetTotalBytesLimit(INT_MAX);
    parsed = model.ParseFromCodedStream(&coded) &&
             coded.ConsumedEntireMessage();
  }
  close(fd);
  if (!parsed) {
    error = path + ": not an ONNX model (the protobuf does not parse: the "
                   "file is truncated, corrupt or of another format)";
    return false;
  }
  if (!model.has_graph() || model.ir_version() <= 0 ||
      model.opset_import_size() == 0) {
    error = path + ": not an ONNX model (no " +
            (!model.has_graph() ? "graph"
             : model.ir_version() <= 0 ? "ir_version"
                                       : "opset_import") +
            ")";
    return false;
  }
  return true;
}

std::string directoryOf(const std::string &path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

std::string absolutePath(const std::string &path) {
  char buffer[PATH_MAX];
  if (realpath(path.c_str(), buffer))
    return buffer;
  return path;
}

/// Builds the module for one (possibly raised) model.
class ModelImporter {
public:
  ModelImporter(MLIRContext &context, const std::string &path,
                const ImportOptions &options)
      : context_(context), path_(path), options_(options),
        builder_(&context) {}

  OwningOpRef<ModuleOp> run(const onnx::ModelProto &model,
                            std::string &error);

private:
  bool fail(std::string message) {
    error_ = std::move(message);
    return false;
  }
  bool declareInputs(const onnx::GraphProto &graph,
                     SmallVectorImpl<Type> &types,
                     SmallVectorImpl<std::string> &names,
                     SmallVectorImpl<bool> &unsignedFlags);

  MLIRContext &context_;
  std::string path_;
  const ImportOptions &options_;
  OpBuilder builder_;
  std::string error_;
};

bool ModelImporter::declareInputs(const onnx::GraphProto &graph,
                                  SmallVectorImpl<Type> &types,
                                  SmallVectorImpl<std::string> &names,
                                  SmallVectorImpl<bool> &unsignedFlags) {
  llvm::StringSet<> initializers;
  for (const onnx::TensorProto &t : graph.initializer())
    initializers.insert(t.name());
  for (const onnx::ValueInfoProto &input : graph.input()) {
    if (initializers.contains(input.name()))
      continue; // a weight with a default value: imported as a weight
    std::string what = path_ + ": graph input '" + input.name() + "'";
    if (!input.type().has_tensor_type())
      return fail(what + " is not a tensor");
    const onnx::TypeProto::Tensor &tensor = input.type().tensor_type();
    bool isUnsigned = false;
    Type elem = elementTypeFor(&context_, tensor.elem_type(), &isUnsigned);
    if (!elem)
      return fail(what + " has element type " +
                  onnxTypeName(tensor.elem_type()) +
                  ", which is not supported");
    if (!tensor.has_shape())
      return fail(what + " has no shape (its rank must be known)");
    SmallVector<int64_t> shape;
    for (const onnx::TensorShapeProto::Dimension &d : tensor.shape().dim()) {
      if (d.has_dim_value() && d.dim_value() < 0)
        return fail(what + " has a negative dimension");
      shape.push_back(d.has_dim_value() ? d.dim_value() : ShapedType::kDynamic);
    }
    types.push_back(RankedTensorType::get(shape, elem));
    names.push_back(input.name());
    unsignedFlags.push_back(isUnsigned);
  }
  return true;
}

OwningOpRef<ModuleOp> ModelImporter::run(const onnx::ModelProto &model,
                                         std::string &error) {
  const onnx::GraphProto &graph = model.graph();
  std::map<std::string, int64_t> opsets;
  for (const onnx::OperatorSetIdProto &o : model.opset_import())
    opsets[o.domain() == "ai.onnx" ? "" : o.domain()] = o.version();
  Location fileLoc = FileLineColLoc::get(&context_, path_, 0, 0);
  OwningOpRef<ModuleOp> module = ModuleOp::create(fileLoc);
  builder_.setInsertionPointToEnd(module->getBody());

  // Arguments: graph inputs, then the large initializers.
  SmallVector<Type> argTypes;
  SmallVector<std::string> argNames;
  SmallVector<bool> argUnsigned;
  if (!declareInputs(graph, argTypes, argNames, argUnsigned)) {
    error = error_;
    return nullptr;
  }
  size_t numGraphInputs = argTypes.size();
  std::string baseDir = directoryOf(path_);
  SmallVector<const onnx::TensorProto *> embedded, weights;
  llvm::StringSet<> seen;
  for (const onnx::TensorProto &t : graph.initializer()) {
    std::string what = path_ + ": initializer '" + t.name() + "'";
    if (!seen.insert(t.name()).second) {
      error = what + " is defined twice";
      return nullptr;
    }
    bool isUnsigned = false;
    Type elem = elementTypeFor(&context_, t.data_type(), &isUnsigned);
    if (!elem) {
      error = what + " has element type " + onnxTypeName(t.data_type()) +
              ", which is not supported";
      return nullptr;
    }
    if (!checkTensorData(t, baseDir, what, error))
      return nullptr;
    int64_t count = 1;
    for (int64_t d : t.dims())
      count *= d;
    // Integer tensors (shapes, axes, indices) are needed at import time;
    // float initializers are weights, bound from the file when the model
    // runs, but for tiny constants (epsilons, scalars of a decomposed
    // activation).
    bool small = count <= options_.maxEmbeddedElements ||
                 (isa<IntegerType>(elem) && count <= 4096 && t.dims_size() <= 1);
    if (small) {
      embedded.push_back(&t);
      continue;
    }
    if (elem.isInteger(16) || elem.isF64() ||
        (isUnsigned && !elem.isInteger(8))) {
      error = what + " has element type " + onnxTypeName(t.data_type()) +
              ", which a model cannot take as a weight";
      return nullptr;
    }
    weights.push_back(&t);
    argTypes.push_back(RankedTensorType::get(tensorShape(t), elem));
    argNames.push_back(t.name());
    argUnsigned.push_back(isUnsigned);
  }

  auto fnType = builder_.getFunctionType(argTypes, {});
  auto fn = func::FuncOp::create(builder_, fileLoc, options_.entryName, fnType);
  Block *entry = fn.addEntryBlock();
  builder_.setInsertionPointToStart(entry);

  GraphImporter importer(context_, builder_, path_, opsets);
  importer.setBaseDir(baseDir);
  for (size_t i = 0; i < argTypes.size(); ++i) {
    OnnxValue v;
    v.value = entry->getArgument(i);
    v.isUnsigned = argUnsigned[i];
    importer.define(argNames[i], v);
    fn.setArgAttr(i, "moe.name", builder_.getStringAttr(argNames[i]));
  }
  for (const onnx::TensorProto &t : graph.initializer())
    importer.addInitializer(&t);
  for (const onnx::ValueInfoProto &input : graph.input())
    importer.noteDimParams(input);
  for (const onnx::TensorProto *t : embedded) {
    bool isUnsigned = false;
    Type elem = elementTypeFor(&context_, t->data_type(), &isUnsigned);
    auto type = RankedTensorType::get(tensorShape(*t), elem);
    DenseElementsAttr attr = tensorAttr(
        *t, type, baseDir, path_ + ": initializer '" + t->name() + "'", error);
    if (!attr)
      return nullptr;
    importer.define(t->name(), importer.constantValue(attr, isUnsigned));
  }

  // Nodes, in order (ONNX graphs are topologically sorted).
  ConverterTable table;
  registerElementwiseConverters(table);
  registerMatMulConverters(table);
  registerEinsumConverters(table);
  registerReductionConverters(table);
  registerShapeConverters(table);
  registerIndexingConverters(table);
  registerMoEConverters(table);
  registerQMoEConverters(table);
  registerRaisedMoEConverters(table);
  for (int i = 0; i < graph.node_size(); ++i) {
    if (failed(importer.convert(graph.node(i), i, table))) {
      error = importer.error();
      return nullptr;
    }
  }

  // Results: the graph outputs.
  SmallVector<Value> results;
  SmallVector<std::string> resultNames;
  llvm::StringSet<> outputNames;
  for (const onnx::ValueInfoProto &out : graph.output()) {
    const OnnxValue *v = importer.lookup(out.name());
    if (!v) {
      error = path_ + ": graph output '" + out.name() +
              "' is not computed by any node";
      return nullptr;
    }
    if (!outputNames.insert(out.name()).second) {
      error = path_ + ": graph output '" + out.name() + "' is listed twice";
      return nullptr;
    }
    if (out.type().has_tensor_type() && out.type().tensor_type().elem_type()) {
      bool isUnsigned = false;
      Type declared = elementTypeFor(
          &context_, out.type().tensor_type().elem_type(), &isUnsigned);
      if (declared && declared != v->elementType()) {
        error = path_ + ": graph output '" + out.name() + "' is declared " +
                onnxTypeName(out.type().tensor_type().elem_type()) +
                " but computed with another element type";
        return nullptr;
      }
    }
    results.push_back(v->value);
    resultNames.push_back(out.name());
  }
  if (results.empty()) {
    error = path_ + ": the graph has no outputs";
    return nullptr;
  }
  func::ReturnOp::create(builder_, fileLoc, results);
  fn.setType(builder_.getFunctionType(argTypes, TypeRange(results)));
  for (size_t i = 0; i < resultNames.size(); ++i)
    fn.setResultAttr(i, "moe.name", builder_.getStringAttr(resultNames[i]));

  // Weights no node reads need not be bound.
  llvm::BitVector unused(fn.getNumArguments());
  bool anyWeight = false;
  for (size_t i = numGraphInputs; i < fn.getNumArguments(); ++i) {
    if (entry->getArgument(i).use_empty())
      unused.set(i);
    else
      anyWeight = true;
  }
  if (failed(fn.eraseArguments(unused))) {
    error = path_ + ": internal error while removing unused weights";
    return nullptr;
  }
  if (anyWeight)
    (*module)->setAttr("moe.checkpoint",
                       builder_.getStringAttr(absolutePath(path_)));
  (*module)->setAttr("moe.source", builder_.getStringAttr("onnx"));
  if (!model.producer_name().empty())
    (*module)->setAttr("moe.onnx_producer",
                       builder_.getStringAttr(model.producer_name()));

  // The converters check what they build; a verifier failure here is a
  // frontend bug, reported with the location of the node at fault.
  std::string diagnostic;
  {
    ScopedDiagnosticHandler handler(&context_, [&](Diagnostic &d) {
      if (diagnostic.empty()) {
        llvm::raw_string_ostream os(diagnostic);
        os << d.getLocation() << ": " << d;
      }
      return success();
    });
    if (failed(verify(*module))) {
      error = path_ + ": internal error: the imported module does not "
                      "verify: " +
              diagnostic;
      return nullptr;
    }
  }
  return module;
}

} // namespace

OwningOpRef<ModuleOp>
moe_mlir::onnx_import::importOnnxModel(MLIRContext &context,
                                       const std::string &path,
                                       const ImportOptions &options,
                                       std::string &error) {
  registerImportDialects(context);
  onnx::ModelProto model;
  if (!parseModel(path, model, error))
    return nullptr;
  // Opsets.
  bool haveDefault = false;
  for (const onnx::OperatorSetIdProto &o : model.opset_import()) {
    std::string domain = o.domain() == "ai.onnx" ? "" : o.domain();
    if (domain.empty()) {
      haveDefault = true;
      if (o.version() < kMinOpset || o.version() > kMaxOpset) {
        error = path + ": opset " + std::to_string(o.version()) +
                " of the default domain is not supported (" +
                std::to_string(kMinOpset) + " to " +
                std::to_string(kMaxOpset) + ")";
        return nullptr;
      }
    } else if (domain == "com.microsoft" && o.version() != 1) {
      error = path + ": com.microsoft opset " + std::to_string(o.version()) +
              " is not supported (1)";
      return nullptr;
    }
  }
  if (!haveDefault) {
    error = path + ": no opset of the default ONNX domain";
    return nullptr;
  }
  if (model.graph().sparse_initializer_size() > 0) {
    error = path + ": sparse initializer '" +
            model.graph().sparse_initializer(0).values().name() +
            "' is not supported";
    return nullptr;
  }
  if (options.raiseMoE)
    raiseDecomposedMoE(*model.mutable_graph());
  ModelImporter importer(context, path, options);
  return importer.run(model, error);
}
