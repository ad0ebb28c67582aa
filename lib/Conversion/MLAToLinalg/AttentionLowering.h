//===- AttentionLowering.h - mla ops to linalg ------------------*- C++ -*-===//
//
// Part of moe-mlir.
//
// The lowerings of the mla ops, one per file (AttentionLowering.cpp:
// mla.attention, GqaLowering.cpp: mla.gqa_attention), and the pieces they
// share: RoPE frequencies and tables, the rotation of the rope pairs,
// RMSNorm and the per-head contractions out of head-major weights
// (RopeNorm.cpp); the per-head scores, the causal (optionally windowed)
// softmax and the weighted sum of the values (AttentionCore.cpp).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_MLIR_LIB_CONVERSION_MLATOLINALG_ATTENTIONLOWERING_H
#define MOE_MLIR_LIB_CONVERSION_MLATOLINALG_ATTENTIONLOWERING_H

#include "moe-mlir/Conversion/ContractionOptions.h"
#include "moe-mlir/Dialect/MLA/IR/MLA.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/PatternMatch.h"

#include <optional>
#include <utility>

namespace moe_mlir::lowering::mla {

/// Rewrite `op` into upstream tensor/linalg/arith/math ops.
mlir::LogicalResult lowerAttention(moe_mlir::mla::AttentionOp op,
                                   mlir::PatternRewriter &b,
                                   const ContractionOptions &options);
mlir::LogicalResult lowerGqaAttention(moe_mlir::mla::GqaAttentionOp op,
                                      mlir::PatternRewriter &b,
                                      const ContractionOptions &options);

//===----------------------------------------------------------------------===//
// RoPE, RMSNorm, per-head contractions (RopeNorm.cpp)
//===----------------------------------------------------------------------===//

/// The D_r/2 RoPE frequencies f_i of mla.attention, in f64: θ^(-2i/D_r), or
/// YaRN's blend of the extrapolated and interpolated ones (#mla.yarn).
llvm::SmallVector<double> ropeFrequencies(int64_t ropeDim, double theta,
                                          moe_mlir::mla::YarnAttr yarn);

/// The factor on cos and sin: 1 without YaRN, else m(f, mscale) /
/// m(f, mscale_all_dim) when both are non-zero, else m(f, 1).
double ropeCosSinFactor(moe_mlir::mla::YarnAttr yarn);

/// HF's default RoPE inverse frequencies for head dimension `dim`, the
/// way transformers evaluates them in f32: 1 / θ^(2i/dim) for i < dim/2,
/// with θ, the exponent, the power (correctly rounded) and the quotient
/// each rounded to f32. Returned as doubles holding f32 values.
llvm::SmallVector<double> hfInverseFrequencies(int64_t dim, double theta);

/// How ropeTables forms the angle (past + s) · f_i.
enum class RopeAngles {
  /// In f64 (mla.attention): the angle, cos, sin and the product with the
  /// factor in f64, rounded once to f32.
  F64,
  /// In f32, as HF's rotary embeddings do (mla.gqa_attention): the
  /// position converted to f32, the frequencies f32, their product
  /// rounded to f32; cos and sin of that f32 angle evaluated in f64 and
  /// rounded to f32 (the correctly rounded f32 cos and sin).
  F32,
};

/// cos and sin [S, D_r/2] f32 of the angles (past + s) · f_i, s < S,
/// times `factor`.
std::pair<mlir::Value, mlir::Value>
ropeTables(mlir::OpBuilder &b, mlir::Location loc, mlir::Value past,
           mlir::OpFoldResult tokens, llvm::ArrayRef<double> freqs,
           double factor, RopeAngles angles = RopeAngles::F64);

/// Rotates the pairs (a, b) [S, ..., D_r/2] by the angles of the tables
/// (indexed by the first and the last dimension): returns
/// (a cos - b sin, b cos + a sin), computed in f32 and converted to
/// `elementType`.
std::pair<mlir::Value, mlir::Value>
rotatePairs(mlir::OpBuilder &b, mlir::Location loc, mlir::Value first,
            mlir::Value second, mlir::Value cos, mlir::Value sin,
            mlir::Type elementType);

/// w · x / sqrt(mean(x²) + eps) over the last dimension of x [..., R]
/// (weight [R]), in f32.
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

//===----------------------------------------------------------------------===//
// Scores, masked softmax, values (AttentionCore.cpp)
//===----------------------------------------------------------------------===//

/// x + y, folded when both are constants.
mlir::OpFoldResult addSizes(mlir::OpBuilder &b, mlir::Location loc,
                            mlir::OpFoldResult x, mlir::OpFoldResult y);

/// `src` written into `dest` at `offsets` (unit strides, src's sizes).
mlir::Value insertAt(mlir::OpBuilder &b, mlir::Location loc, mlir::Value src,
                     mlir::Value dest,
                     llvm::ArrayRef<mlir::OpFoldResult> offsets);

/// Unscaled scores [N, S, T] f32: scores[n, s, j] = Σ_d f32(q[s, n, d]) ·
/// f32(k[j, n / group, d]) for q [S, N, D] and k [T, N / group, D]; query
/// head n reads key head n / group.
mlir::Value headScores(mlir::OpBuilder &b, mlir::Location loc, mlir::Value q,
                       mlir::Value k, int64_t group, mlir::OpFoldResult tokens,
                       mlir::OpFoldResult total);

/// The attention output o [S, N, D_v] f32 of scores [N, S, T] (f32,
/// unscaled) and values [T, N / group, D_v]:
///   o[s, n] = Σ_j e_j · f32(values[j, n / group]) / Σ_j e_j,
///   e_j = exp(c · scores[n, s, j] - m)
/// with c = `scale` (rounded to f32) and m the maximum of c · scores[n, s, j],
/// over the keys j visible to the new token s: j <= past + s (causal) and,
/// with a `window` W, past + s - j < W. Reductions run over j in order, in
/// f32.
mlir::Value attendValues(mlir::OpBuilder &b, mlir::Location loc,
                         mlir::Value scores, mlir::Value values, int64_t group,
                         mlir::Value past, double scale,
                         std::optional<int64_t> window);

} // namespace moe_mlir::lowering::mla

#endif // MOE_MLIR_LIB_CONVERSION_MLATOLINALG_ATTENTIONLOWERING_H
