//===- AttentionLowering.h - mla ops to linalg ------------------*- C++ -*-===//
//
// Part of moe-mlir.
//
// The lowerings of the mla ops, one per file (AttentionLowering.cpp:
// mla.attention, GqaLowering.cpp: mla.gqa_attention), and the pieces they
// share: RoPE frequencies and tables, the rotation of the rope pairs,
// RMSNorm and the per-head contractions with head-major weights
// (RopeNorm.cpp); attention itself: the per-head scores, the causal
// (optionally windowed) softmax and the weighted sum of the values
// (AttentionCore.cpp), as register-tiled vector code where the head
// dimensions are static (AttentionKernel.cpp).
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

/// out[s, n, r] = Σ_d f32(a[s, n, d]) · f32(w[n·headStride + offset + d,
/// r]) in f32 for a [S, N, D] and w [.., R]: per head, a_n times the D rows
/// of w from n·headStride + offset (the absorbed query q_nope · W_kb).
mlir::Value headMatmul(mlir::OpBuilder &b, mlir::Location loc, mlir::Value a,
                       mlir::Value w, int64_t headStride, int64_t offset);

/// out[s, n, e] = Σ_r f32(a[s, n, r]) · f32(w[n·headStride + offset + e,
/// r]) in f32 for e < width, a [S, N, R] and w [.., R]: per head, a_n times
/// the transpose of `width` rows of w (the absorbed output o_lat · W_vbᵀ).
mlir::Value headMatmulTransposed(mlir::OpBuilder &b, mlir::Location loc,
                                 mlir::Value a, mlir::Value w,
                                 int64_t headStride, int64_t offset,
                                 int64_t width);

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

/// One term of the attention scores: the queries q [S, N, D] (f32) against
/// the keys k [T, KV, D] (query head n reads key head n / (N / KV)) or
/// [T, D] (one key row shared by all heads).
struct ScoreTerm {
  mlir::Value q, k;
};

/// The attention output o [S, N, D_v] f32 of the score terms and the
/// values [T, KV_v, D_v] or [T, D_v] (shared by the heads like the keys):
///   o[s, n] = Σ_j e_j · f32(values[j, ...]) / Σ_j e_j,
///   e_j = exp(c · Σ_terms Σ_d f32(q[s, n, d]) · f32(k[j, ..., d]) - m)
/// with c = `scale` (rounded to f32) and m the maximum of the scaled scores,
/// over the keys j visible to the new token s: j <= past + s (causal) and,
/// with a `window` W, past + s - j < W. Every sum is in f32. The vectorized
/// kernel (AttentionKernel.cpp) when canVectorizeAttention, else
/// linalg.generic ops whose reductions run over their index in order.
mlir::Value attention(mlir::OpBuilder &b, mlir::Location loc,
                      llvm::ArrayRef<ScoreTerm> terms, mlir::Value values,
                      mlir::Value past, mlir::OpFoldResult tokens,
                      mlir::OpFoldResult total, double scale,
                      std::optional<int64_t> window);

//===----------------------------------------------------------------------===//
// Vectorized kernels (AttentionKernel.cpp)
//===----------------------------------------------------------------------===//

/// Whether vectorAttention applies: static head dimensions (q's N and D,
/// the keys' and values' D and KV dividing N) and float elements.
bool canVectorizeAttention(llvm::ArrayRef<ScoreTerm> terms, mlir::Value values);
mlir::Value vectorAttention(mlir::OpBuilder &b, mlir::Location loc,
                            llvm::ArrayRef<ScoreTerm> terms, mlir::Value values,
                            mlir::Value past, mlir::OpFoldResult tokens,
                            mlir::OpFoldResult total, double scale,
                            std::optional<int64_t> window);

/// Whether the vectorized headMatmul / headMatmulTransposed apply: a's N
/// and D and w's row width static, float elements.
bool canVectorizeHeadContraction(mlir::Value a, mlir::Value w);
mlir::Value vectorHeadMatmul(mlir::OpBuilder &b, mlir::Location loc,
                             mlir::Value a, mlir::Value w, int64_t headStride,
                             int64_t offset);
mlir::Value vectorHeadMatmulTransposed(mlir::OpBuilder &b, mlir::Location loc,
                                       mlir::Value a, mlir::Value w,
                                       int64_t headStride, int64_t offset,
                                       int64_t width);

} // namespace moe_mlir::lowering::mla

#endif // MOE_MLIR_LIB_CONVERSION_MLATOLINALG_ATTENTIONLOWERING_H
