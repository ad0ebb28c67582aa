//===- AttentionLowering.h - mla.attention to linalg ------------*- C++ -*-===//
//
// Part of moe-mlir.
//
// The lowering of mla.attention (AttentionLowering.cpp) and the pieces it is
// made of (RopeNorm.cpp): RoPE frequencies and tables, the rotation of the
// rope pairs, RMSNorm and the per-head contractions out of head-major
// weights.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_LIB_CONVERSION_MLATOLINALG_ATTENTIONLOWERING_H
#define MOE_MLIR_LIB_CONVERSION_MLATOLINALG_ATTENTIONLOWERING_H

#include "moe-mlir/Dialect/MLA/IR/MLA.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/PatternMatch.h"

#include <utility>

namespace moe_mlir::lowering::mla {

/// Rewrites `op` into upstream tensor/linalg/arith/math ops.
mlir::LogicalResult lowerAttention(moe_mlir::mla::AttentionOp op,
                                   mlir::PatternRewriter &b);

/// The D_r/2 RoPE frequencies f_i of mla.attention, in f64: θ^(-2i/D_r), or
/// YaRN's blend of the extrapolated and interpolated ones (#mla.yarn).
llvm::SmallVector<double> ropeFrequencies(int64_t ropeDim, double theta,
                                          moe_mlir::mla::YarnAttr yarn);

/// The factor on cos and sin: 1 without YaRN, else m(f, mscale) /
/// m(f, mscale_all_dim) when both are non-zero, else m(f, 1).
double ropeCosSinFactor(moe_mlir::mla::YarnAttr yarn);

/// cos and sin [S, D_r/2] f32 of the angles (past + s) · f_i, s < S:
/// the angle, cos, sin and the product with `factor` in f64, rounded once
/// to f32.
std::pair<mlir::Value, mlir::Value>
ropeTables(mlir::OpBuilder &b, mlir::Location loc, mlir::Value past,
           mlir::OpFoldResult tokens, llvm::ArrayRef<double> freqs,
           double factor);

/// Rotates the pairs (a, b) [S, ..., D_r/2] by the angles of the tables
/// (indexed by the first and the last dimension): returns
/// (a cos - b sin, b cos + a sin), computed in f32 and converted to
/// `elementType`.
std::pair<mlir::Value, mlir::Value>
rotatePairs(mlir::OpBuilder &b, mlir::Location loc, mlir::Value first,
            mlir::Value second, mlir::Value cos, mlir::Value sin,
            mlir::Type elementType);

/// w · x / sqrt(mean(x²) + eps) over the rows of x [M, R], in f32.
mlir::Value rmsNorm(mlir::OpBuilder &b, mlir::Location loc, mlir::Value x,
                    mlir::Value weight, float eps);

/// out[m, n, e] = Σ_k f32(a[m, k]) · f32(w[n·headStride + offset +
/// elementStride·e, k]) in f32, for n < heads and e < width: one piece of
/// every head of a head-major nn.Linear weight, read through the indexing
/// map (no reshape, no copy).
mlir::Value headContraction(mlir::OpBuilder &b, mlir::Location loc,
                            mlir::Value a, mlir::Value w, int64_t heads,
                            int64_t headStride, int64_t offset, int64_t width,
                            int64_t elementStride);

} // namespace moe_mlir::lowering::mla

#endif // MOE_MLIR_LIB_CONVERSION_MLATOLINALG_ATTENTIONLOWERING_H
