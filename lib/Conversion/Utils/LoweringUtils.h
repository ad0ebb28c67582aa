//===- LoweringUtils.h - builders shared by the lowerings -------*- C++ -*-===//
//
// Part of moe-mlir.
//
// Small builders that keep the lowering patterns readable: tensors of a
// given size, elementwise and reduction linalg.generic ops, f32 conversions
// and the f32-accumulating contraction `A · Bᵀ` (nn.Linear layout).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_LIB_CONVERSION_UTILS_LOWERINGUTILS_H
#define MOE_MLIR_LIB_CONVERSION_UTILS_LOWERINGUTILS_H

#include "moe-mlir/Conversion/ContractionOptions.h"

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Utils/StructuredOpsUtils.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/PatternMatch.h"
#include "llvm/ADT/STLFunctionalExtras.h"

#include <functional>

namespace moe_mlir::lowering {

using BodyBuilder =
    std::function<void(mlir::OpBuilder &, mlir::Location, mlir::ValueRange)>;

/// linalg.yield of one value or of several.
void yieldOp(mlir::OpBuilder &b, mlir::Location loc, mlir::Value value);
void yieldOp(mlir::OpBuilder &b, mlir::Location loc, mlir::ValueRange values);

/// Scalar constants.
mlir::Value indexConst(mlir::OpBuilder &b, mlir::Location loc, int64_t v);
mlir::Value i32Const(mlir::OpBuilder &b, mlir::Location loc, int64_t v);
mlir::Value f32Const(mlir::OpBuilder &b, mlir::Location loc, double v);

/// Size `dim` of a tensor as an index value.
mlir::Value dimValue(mlir::OpBuilder &b, mlir::Location loc, mlir::Value t,
                     int64_t dim);

/// A tensor of the given (possibly dynamic) sizes, uninitialized or filled.
mlir::Value emptyTensor(mlir::OpBuilder &b, mlir::Location loc,
                        llvm::ArrayRef<mlir::OpFoldResult> sizes,
                        mlir::Type elementType);
mlir::Value filledTensor(mlir::OpBuilder &b, mlir::Location loc,
                         llvm::ArrayRef<mlir::OpFoldResult> sizes,
                         mlir::Type elementType, mlir::Value fill);

/// Extends/truncates a float scalar to f32 or from f32 to `type`.
mlir::Value toF32(mlir::OpBuilder &b, mlir::Location loc, mlir::Value v);
mlir::Value fromF32(mlir::OpBuilder &b, mlir::Location loc, mlir::Value v,
                    mlir::Type type);

/// An all-parallel linalg.generic over the shape of `init` with identity
/// maps for every input of the same rank; `inputMaps` may override them.
mlir::ValueRange generic(mlir::OpBuilder &b, mlir::Location loc,
                         mlir::ValueRange inputs, mlir::ValueRange inits,
                         llvm::ArrayRef<mlir::AffineMap> maps,
                         llvm::ArrayRef<mlir::utils::IteratorType> iterators,
                         const BodyBuilder &body);

/// Elementwise map over tensors of rank `rank` (identity maps).
mlir::Value elementwise(mlir::OpBuilder &b, mlir::Location loc,
                        mlir::ValueRange inputs, mlir::Value init,
                        const BodyBuilder &body);

/// Converts every element of `t` to `elementType` (float types only).
mlir::Value convertTensor(mlir::OpBuilder &b, mlir::Location loc,
                          mlir::Value t, mlir::Type elementType);

/// The register-tiled vector kernel for contractTransposedB (Contraction.cpp),
/// usable when B's sizes are static and k is a multiple of the vector width.
bool canVectorizeContraction(mlir::Value a, mlir::Value bt);
mlir::Value
contractTransposedBVectorized(mlir::OpBuilder &b, mlir::Location loc,
                              mlir::Value a, mlir::Value bt,
                              const ContractionOptions &options);

/// The epilogue of a fused contraction: given one [rows, w] f32 tile of
/// A · Bᵀ per B operand, for the w output columns from `col0`, builds the
/// [rows, w] f32 tile to store. `expert` is the index of the B matrices in
/// their stack in the grouped form, null otherwise.
using ContractionEpilogue = llvm::function_ref<mlir::Value(
    mlir::OpBuilder &, mlir::Location, llvm::ArrayRef<mlir::Value> tiles,
    mlir::Value col0, mlir::Value expert)>;

/// E[n, m] = epilogue(C_1[n, m], ..., C_b[n, m]) with C_o = A · B_oᵀ, the
/// B operands all of one static type (canVectorizeContraction holds for
/// each): one vector kernel computes every C_o tile and applies the epilogue
/// while the tiles are in cache. Each C_o element has the bits
/// contractTransposedB gives it. The epilogue may be null for a single B.
mlir::Value contractTransposedBFused(mlir::OpBuilder &b, mlir::Location loc,
                                     mlir::Value a,
                                     llvm::ArrayRef<mlir::Value> bts,
                                     const ContractionOptions &options,
                                     ContractionEpilogue epilogue);

/// The row groups of a grouped contraction: group g < numGroups is the rows
/// [start[g], start[g] + count[g]) of A and multiplies matrix expert[g] of
/// each stacked B. `expert`, `start` and `count` are 1-D index tensors with
/// at least numGroups entries.
struct RowGroups {
  mlir::Value numGroups;
  mlir::Value expert, start, count;
  /// When set (a 1-D i32 tensor), row r of the groups reads row rowIds[r] of
  /// A instead of row r (a gather: A's rows are not copied into group
  /// order); the result still has its rows in group order, one per entry.
  mlir::Value rowIds;
  /// When set, experts from `tailFrom` on take their B matrices (one per B
  /// operand, in order, each [m, k]) from `tailMatrices`, and the stacks
  /// hold only the experts before it (a shared expert's matrices appended
  /// to the routed experts' stacks, read where they are). The kernel is
  /// then emitted once for each kind of expert, each with the strides of
  /// its matrices known.
  mlir::Value tailFrom;
  llvm::function_ref<llvm::SmallVector<mlir::Value>(
      mlir::OpBuilder &, mlir::Location, mlir::Value expert)>
      tailMatrices = nullptr;
};

/// The grouped form of contractTransposedBFused (a grouped GEMM): the B
/// operands are stacks [E, m, k] of one static type with k a multiple of 16
/// (the caller checks; A is [N, k], or [rows, k] gathered through
/// groups.rowIds of N entries), and every group's rows
/// of the result, epilogue(A[rows] · B_o[expert]ᵀ, ...), are written into
/// `init` ([N, m] f32), whose other rows are returned unchanged. One
/// parallel loop covers the (group, column tile) pairs of all groups, so a
/// layer's experts share one trip to the thread pool. Every element has the
/// bits the per-group contractTransposedBFused gives it.
mlir::Value contractGroupedTransposedB(mlir::OpBuilder &b, mlir::Location loc,
                                       mlir::Value a,
                                       llvm::ArrayRef<mlir::Value> stackedBts,
                                       const RowGroups &groups,
                                       mlir::Value init,
                                       const ContractionOptions &options,
                                       ContractionEpilogue epilogue);

/// How contractGroupedCombined brings the rows of a grouped contraction back
/// into token order: `sum` turns a [N, w] tile of all rows (elementType)
/// into the [T, w] tile of the T tokens (elementType), T the size of
/// `mapping`'s first dimension.
struct RowCombine {
  mlir::Value mapping;
  mlir::Type elementType;
  llvm::function_ref<mlir::Value(mlir::OpBuilder &, mlir::Location,
                                 mlir::Value rows)>
      sum;
};

/// combine.sum(epilogue(A · B[expert]ᵀ) of every group, rounded to
/// combine.elementType): the grouped contraction followed by a reduction of
/// its rows into token order, fused. Tasks are column tiles, each over all
/// groups, so the reduction needs no atomics and sums in its own order;
/// every row has the bits contractGroupedTransposedB gives it. Result:
/// [T, m] of combine.elementType.
mlir::Value contractGroupedCombined(mlir::OpBuilder &b, mlir::Location loc,
                                    mlir::Value a,
                                    llvm::ArrayRef<mlir::Value> stackedBts,
                                    const RowGroups &groups,
                                    const RowCombine &combine,
                                    const ContractionOptions &options,
                                    ContractionEpilogue epilogue);

/// C[n, m] = Σ_k f32(A[n, k]) · f32(B[m, k]) in f32 (B in nn.Linear layout).
/// With options.bf16DotProducts and a bf16 B, A is rounded to bf16 first
/// (see ContractionOptions).
mlir::Value contractTransposedB(mlir::OpBuilder &b, mlir::Location loc,
                                mlir::Value a, mlir::Value bt,
                                const ContractionOptions &options);

/// The mixed sizes of a tensor.
llvm::SmallVector<mlir::OpFoldResult> mixedSizes(mlir::OpBuilder &b,
                                                 mlir::Location loc,
                                                 mlir::Value t);

/// ceil(factor · numTokens · k / numExperts) as an index, or the constant
/// capacity when one is given (the capacity rule of moe.route/dispatch).
mlir::Value capacityValue(mlir::OpBuilder &b, mlir::Location loc,
                          std::optional<uint64_t> expertCapacity,
                          std::optional<float> capacityFactor,
                          mlir::Value numTokens, int64_t k,
                          int64_t numExperts);

/// `v` cast (tensor.cast) to the type of `result` when the two differ only
/// in static vs dynamic sizes.
mlir::Value castToResult(mlir::OpBuilder &b, mlir::Location loc, mlir::Value v,
                         mlir::Value result);

/// Emits "could not be lowered to linalg" on the first op of the dialect
/// `dialectNamespace` left under `root`; fails if there is one.
mlir::LogicalResult reportUnlowered(mlir::Operation *root,
                                    llvm::StringRef dialectNamespace);

} // namespace moe_mlir::lowering

#endif // MOE_MLIR_LIB_CONVERSION_UTILS_LOWERINGUTILS_H
