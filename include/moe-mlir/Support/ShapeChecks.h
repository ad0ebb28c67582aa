//===- ShapeChecks.h - verifier helpers with named shapes -------*- C++ -*-===//
//
// Part of moe-mlir.
//
// Verifiers of the moe and mla ops check many tensors against shapes built
// from a few symbolic sizes (T, H, E, k, I, ...). These helpers make every
// message name the operand and the expected shape with its symbols, e.g.
//   operand 'fc2' must have shape [E=8, H=64, I=128], got tensor<8x128x64xf32>
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_SUPPORT_SHAPECHECKS_H
#define MOE_MLIR_SUPPORT_SHAPECHECKS_H

#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Operation.h"
#include "mlir/IR/Value.h"

namespace moe_mlir {

/// One expected dimension: its symbol and its size (ShapedType::kDynamic when
/// the size is not known statically, which matches any size).
struct NamedDim {
  llvm::StringRef symbol;
  int64_t size;
};

/// True when two sizes may be equal: they are, or one of them is dynamic.
bool sizesCompatible(int64_t a, int64_t b);

/// Size `index` of `type` if it is a ranked tensor with that dimension,
/// ShapedType::kDynamic otherwise. Used by lenient result-type inference.
int64_t dimOrDynamic(mlir::Type type, unsigned index);

/// Product of two sizes, dynamic if either is.
int64_t mulSizes(int64_t a, int64_t b);

/// Checks that `type` is a ranked tensor whose shape is compatible with
/// `dims`; otherwise emits "<kind> '<name>' must have shape [...], got <type>"
/// on `op` and fails. `kind` is "operand" or "result".
mlir::LogicalResult checkShape(mlir::Operation *op, llvm::StringRef kind,
                               llvm::StringRef name, mlir::Type type,
                               llvm::ArrayRef<NamedDim> dims);

/// Shorthand for an operand.
inline mlir::LogicalResult checkOperandShape(mlir::Operation *op,
                                             llvm::StringRef name,
                                             mlir::Value value,
                                             llvm::ArrayRef<NamedDim> dims) {
  return checkShape(op, "operand", name, value.getType(), dims);
}

/// Checks that `value` is a ranked tensor of rank `rank`; names the
/// dimensions in the message ("[T, H]").
mlir::LogicalResult checkRank(mlir::Operation *op, llvm::StringRef name,
                              mlir::Value value,
                              llvm::ArrayRef<llvm::StringRef> symbols);

/// Checks that `value` has the element type `expected`, which is that of the
/// operand named `expectedFrom`.
mlir::LogicalResult checkElementType(mlir::Operation *op, llvm::StringRef name,
                                     mlir::Value value, mlir::Type expected,
                                     llvm::StringRef expectedFrom);

/// Result types are compatible when they are ranked tensors of the same rank
/// and element type whose sizes are pairwise compatible.
bool tensorTypesCompatible(mlir::TypeRange lhs, mlir::TypeRange rhs);

} // namespace moe_mlir

#endif // MOE_MLIR_SUPPORT_SHAPECHECKS_H
