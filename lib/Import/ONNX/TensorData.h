//===- TensorData.h - contents of ONNX TensorProtos -------------*- C++ -*-===//
//
// Part of moe-mlir's ONNX frontend (internal header).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_LIB_IMPORT_ONNX_TENSORDATA_H
#define MOE_MLIR_LIB_IMPORT_ONNX_TENSORDATA_H

#include "mlir/IR/BuiltinAttributes.h"

#include <cstdint>
#include <string>
#include <vector>

#include <onnx/onnx_pb.h>

namespace moe_mlir::onnx_import {

/// The tensor's shape (its dims).
std::vector<int64_t> tensorShape(const onnx::TensorProto &tensor);

/// Checks that the tensor's data is present and of the size its dims and
/// type need (inline fields, raw_data or external data, which must exist
/// inside `baseDir` and be long enough). `what` names it in `error`.
bool checkTensorData(const onnx::TensorProto &tensor,
                     const std::string &baseDir, const std::string &what,
                     std::string &error);

/// Reads the tensor's elements as little-endian bytes (one byte per bool).
bool readTensorBytes(const onnx::TensorProto &tensor,
                     const std::string &baseDir, const std::string &what,
                     std::vector<char> &bytes, std::string &error);

/// The tensor as a constant attribute of type `type` (its MLIR type).
mlir::DenseElementsAttr tensorAttr(const onnx::TensorProto &tensor,
                                   mlir::RankedTensorType type,
                                   const std::string &baseDir,
                                   const std::string &what,
                                   std::string &error);

} // namespace moe_mlir::onnx_import

#endif // MOE_MLIR_LIB_IMPORT_ONNX_TENSORDATA_H
