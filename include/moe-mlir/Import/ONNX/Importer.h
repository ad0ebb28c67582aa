//===- Importer.h - ONNX models as moe-mlir modules -------------*- C++ -*-===//
//
// Part of moe-mlir's ONNX frontend. Knows the ONNX file format and operator
// semantics; knows nothing of lowering.
//
// importOnnxModel() reads an ONNX ModelProto (opsets 13 to 21 of the default
// domain, com.microsoft version 1) and produces a module whose public
// function @forward takes the graph inputs, then one argument per large
// initializer, and returns the graph outputs. Every argument and result
// carries its ONNX name in `moe.name`; initializer arguments are bound at run
// time from the model file itself (the module's `moe.checkpoint` attribute
// names it; see moe-mlir/Runtime/Weights.h), so weights are never copied
// into the IR. Tiny initializers, integer ones (shapes) and Constant nodes
// become constants.
//
// ONNX Runtime's com.microsoft.MoE and QMoE become moe.route / dispatch /
// expert_ffn / combine. Decomposed MoE blocks (router MatMul, TopK, Softmax,
// gathered expert weights, weighted ReduceSum) are first raised to the same
// ops when `raiseMoE` is set (see RaiseMoE.h); anything else imports as
// linalg/tensor/arith/math/scf ops on tensors.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_IMPORT_ONNX_IMPORTER_H
#define MOE_MLIR_IMPORT_ONNX_IMPORTER_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

#include <cstdint>
#include <string>

namespace moe_mlir::onnx_import {

struct ImportOptions {
  /// Recognise decomposed MoE blocks and import them as moe ops.
  bool raiseMoE = true;
  /// Initializers with at most this many elements (and 1-d integer ones of
  /// up to 4096: shapes, axes, indices) become constants in the IR; the
  /// others become arguments bound from the file at run time, so a compiled
  /// model always runs with the weights the file holds then.
  int64_t maxEmbeddedElements = 16;
  /// Name of the function to create.
  std::string entryName = "forward";
};

/// Imports the ONNX model at `path`. On failure returns null and sets `error`
/// to one line naming the file and the node, input or field at fault.
mlir::OwningOpRef<mlir::ModuleOp>
importOnnxModel(mlir::MLIRContext &context, const std::string &path,
                const ImportOptions &options, std::string &error);

/// True when `path` names an ONNX file (by its ".onnx" extension).
bool isOnnxFile(const std::string &path);

/// Registers the dialects the imported modules use.
void registerImportDialects(mlir::MLIRContext &context);

} // namespace moe_mlir::onnx_import

#endif // MOE_MLIR_IMPORT_ONNX_IMPORTER_H
