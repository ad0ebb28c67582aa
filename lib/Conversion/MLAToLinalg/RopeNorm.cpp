//===- RopeNorm.cpp - RoPE, RMSNorm and per-head contractions -------------===//
//
// Part of moe-mlir.
//
// The pieces of the mla lowerings that do not depend on the op: the RoPE
// frequencies (evaluated here from the attributes: in f64 for mla.attention,
// in f32 as Hugging Face does for mla.gqa_attention), the cos/sin tables at
// the dynamic positions, the rotation of the rope pairs, RMSNorm and the
// per-head products with pieces of a head-major weight (the vectorized
// kernels of AttentionKernel.cpp where the sizes allow, else one
// linalg.generic).
//
//===----------------------------------------------------------------------===//

#include "../Utils/LoweringUtils.h"
#include "AttentionLowering.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/AffineMap.h"
#include "mlir/IR/BuiltinAttributes.h"

#include <algorithm>
#include <cmath>

using namespace mlir;
using moe_mlir::mla::YarnAttr;

namespace moe_mlir::lowering::mla {

namespace {
using utils::IteratorType;
constexpr IteratorType kPar = IteratorType::parallel;
constexpr IteratorType kRed = IteratorType::reduction;
} // namespace

SmallVector<double> ropeFrequencies(int64_t ropeDim, double theta,
                                    YarnAttr yarn) {
  auto d = static_cast<double>(ropeDim);
  SmallVector<double> freqs;
  for (int64_t i = 0; i < ropeDim / 2; ++i)
    freqs.push_back(std::pow(theta, -2.0 * static_cast<double>(i) / d));
  if (!yarn)
    return freqs;

  // YaRN (#mla.yarn): blend the interpolated frequencies f / factor (low
  // frequencies) with the extrapolated ones f (high frequencies) along a
  // linear ramp between the correction dimensions of beta_fast and
  // beta_slow.
  double factor = yarn.getFactor().convertToDouble();
  auto original = static_cast<double>(yarn.getOriginalMaxPositionEmbeddings());
  auto correction = [&](double beta) {
    return d * std::log(original / (2.0 * M_PI * beta)) /
           (2.0 * std::log(theta));
  };
  double low = std::max(
      std::floor(correction(yarn.getBetaFast().convertToDouble())), 0.0);
  double high = std::min(
      std::ceil(correction(yarn.getBetaSlow().convertToDouble())), d - 1.0);
  if (high == low)
    high += 0.001;
  for (auto [i, f] : llvm::enumerate(freqs)) {
    double ramp =
        std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
    f = (f / factor) * ramp + f * (1.0 - ramp);
  }
  return freqs;
}

SmallVector<double> hfInverseFrequencies(int64_t dim, double theta) {
  // transformers: 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim)),
  // every step a float32 tensor operation.
  auto base = static_cast<float>(theta);
  SmallVector<double> freqs;
  for (int64_t i = 0; i < dim / 2; ++i) {
    float exponent = static_cast<float>(2 * i) / static_cast<float>(dim);
    // The f64 power rounded to f32: the correctly rounded f32 power.
    auto power = static_cast<float>(
        std::pow(static_cast<double>(base), static_cast<double>(exponent)));
    freqs.push_back(static_cast<double>(1.0f / power));
  }
  return freqs;
}

double ropeCosSinFactor(YarnAttr yarn) {
  if (!yarn)
    return 1.0;
  double factor = yarn.getFactor().convertToDouble();
  double mscale = yarn.getMscale().convertToDouble();
  double mscaleAllDim = yarn.getMscaleAllDim().convertToDouble();
  if (mscale != 0.0 && mscaleAllDim != 0.0)
    return moe_mlir::mla::yarnMscale(factor, mscale) /
           moe_mlir::mla::yarnMscale(factor, mscaleAllDim);
  return moe_mlir::mla::yarnMscale(factor, 1.0);
}

std::pair<Value, Value> ropeTables(OpBuilder &b, Location loc, Value past,
                                   OpFoldResult tokens, ArrayRef<double> freqs,
                                   double factor, RopeAngles angles) {
  MLIRContext *ctx = b.getContext();
  Type f32 = b.getF32Type(), f64 = b.getF64Type();
  bool f32Angles = angles == RopeAngles::F32;
  Type angleType = f32Angles ? f32 : f64;
  auto half = static_cast<int64_t>(freqs.size());
  auto freqType = RankedTensorType::get({half}, angleType);
  DenseElementsAttr freqAttr;
  if (f32Angles) {
    SmallVector<float> narrow;
    for (double f : freqs)
      narrow.push_back(static_cast<float>(f));
    freqAttr = DenseElementsAttr::get(freqType, ArrayRef<float>(narrow));
  } else {
    freqAttr = DenseElementsAttr::get(freqType, freqs);
  }
  Value freqConst =
      arith::ConstantOp::create(b, loc, cast<TypedAttr>(freqAttr));

  SmallVector<OpFoldResult> sizes = {tokens, b.getIndexAttr(half)};
  Value cosInit = emptyTensor(b, loc, sizes, f32);
  Value sinInit = emptyTensor(b, loc, sizes, f32);
  AffineExpr s, i;
  bindDims(ctx, s, i);
  AffineMap id = b.getMultiDimIdentityMap(2);
  AffineMap column = AffineMap::get(2, 0, {i}, ctx);
  ValueRange tables = generic(
      b, loc, freqConst, ValueRange{cosInit, sinInit}, {column, id, id},
      {kPar, kPar}, [&](OpBuilder &nb, Location l, ValueRange args) {
        // The position P + s, exact in f64 for any realistic index (in f32
        // below 2^24, as in HF).
        Value row = linalg::IndexOp::create(nb, l, 0);
        Value position = arith::AddIOp::create(nb, l, past, row);
        Value asInt =
            arith::IndexCastOp::create(nb, l, nb.getI64Type(), position);
        Value asFloat = arith::SIToFPOp::create(nb, l, angleType, asInt);
        Value angle = arith::MulFOp::create(nb, l, asFloat, args[0]);
        if (f32Angles)
          angle = arith::ExtFOp::create(nb, l, f64, angle);
        Value c = math::CosOp::create(nb, l, angle);
        Value sn = math::SinOp::create(nb, l, angle);
        if (factor != 1.0) {
          Value m =
              arith::ConstantOp::create(nb, l, f64, nb.getF64FloatAttr(factor));
          c = arith::MulFOp::create(nb, l, c, m);
          sn = arith::MulFOp::create(nb, l, sn, m);
        }
        yieldOp(nb, l,
                ValueRange{arith::TruncFOp::create(nb, l, f32, c),
                           arith::TruncFOp::create(nb, l, f32, sn)});
      });
  return {tables[0], tables[1]};
}

std::pair<Value, Value> rotatePairs(OpBuilder &b, Location loc, Value first,
                                    Value second, Value cos, Value sin,
                                    Type elementType) {
  MLIRContext *ctx = b.getContext();
  auto rank = cast<RankedTensorType>(first.getType()).getRank();
  SmallVector<OpFoldResult> sizes = mixedSizes(b, loc, first);
  Value firstInit = emptyTensor(b, loc, sizes, elementType);
  Value secondInit = emptyTensor(b, loc, sizes, elementType);
  AffineMap id = b.getMultiDimIdentityMap(rank);
  AffineMap table = AffineMap::get(
      rank, 0, {getAffineDimExpr(0, ctx), getAffineDimExpr(rank - 1, ctx)},
      ctx);
  SmallVector<IteratorType> iterators(rank, kPar);
  ValueRange rotated =
      generic(b, loc, ValueRange{first, second, cos, sin},
              ValueRange{firstInit, secondInit}, {id, id, table, table, id, id},
              iterators, [&](OpBuilder &nb, Location l, ValueRange args) {
                Value x = toF32(nb, l, args[0]), y = toF32(nb, l, args[1]);
                Value c = args[2], s = args[3];
                Value xc = arith::MulFOp::create(nb, l, x, c);
                Value ys = arith::MulFOp::create(nb, l, y, s);
                Value yc = arith::MulFOp::create(nb, l, y, c);
                Value xs = arith::MulFOp::create(nb, l, x, s);
                Value r0 = arith::SubFOp::create(nb, l, xc, ys);
                Value r1 = arith::AddFOp::create(nb, l, yc, xs);
                yieldOp(nb, l,
                        ValueRange{fromF32(nb, l, r0, elementType),
                                   fromF32(nb, l, r1, elementType)});
              });
  return {rotated[0], rotated[1]};
}

Value rmsNorm(OpBuilder &b, Location loc, Value x, Value weight, float eps) {
  Type f32 = b.getF32Type();
  auto rank = static_cast<unsigned>(
      cast<RankedTensorType>(x.getType()).getRank());
  AffineMap id = b.getMultiDimIdentityMap(rank);
  // All dimensions but the last (the rows), and the last one.
  AffineMap row = id.getMajorSubMap(rank - 1);
  AffineMap column = id.getMinorSubMap(1);
  SmallVector<IteratorType> reduceLast(rank, kPar);
  reduceLast.back() = kRed;

  // Σ_r x² per row, in f32.
  SmallVector<OpFoldResult> rowSizes = mixedSizes(b, loc, x);
  rowSizes.pop_back();
  Value sumInit = filledTensor(b, loc, rowSizes, f32, f32Const(b, loc, 0.0));
  Value sumSquares =
      generic(b, loc, x, sumInit, {id, row}, reduceLast,
              [](OpBuilder &nb, Location l, ValueRange args) {
                Value v = toF32(nb, l, args[0]);
                Value sq = arith::MulFOp::create(nb, l, v, v);
                yieldOp(nb, l, arith::AddFOp::create(nb, l, args[1], sq));
              })[0];

  // The width R as an f32 (dynamic when the norm weight is).
  Value width = arith::SIToFPOp::create(
      b, loc, f32,
      arith::IndexCastOp::create(b, loc, b.getI64Type(),
                                 dimValue(b, loc, x, rank - 1)));
  Value epsilon = f32Const(b, loc, eps);
  Value init = emptyTensor(b, loc, mixedSizes(b, loc, x), f32);
  return generic(b, loc, ValueRange{x, sumSquares, weight}, init,
                 {id, row, column, id}, SmallVector<IteratorType>(rank, kPar),
                 [&](OpBuilder &nb, Location l, ValueRange args) {
                   Value mean = arith::DivFOp::create(nb, l, args[1], width);
                   Value root = math::SqrtOp::create(
                       nb, l, arith::AddFOp::create(nb, l, mean, epsilon));
                   Value scaled = arith::MulFOp::create(
                       nb, l, toF32(nb, l, args[2]), toF32(nb, l, args[0]));
                   yieldOp(nb, l, arith::DivFOp::create(nb, l, scaled, root));
                 })[0];
}

/// out[s, n, x] = Σ_y f32(a[s, n, y]) · f32(w[row(n, x, y), col(n, x, y)])
/// over y < a's last size, as one linalg.generic (the reduction over y in
/// order); x < width.
static Value
headGeneric(OpBuilder &b, Location loc, Value a, Value w, OpFoldResult width,
            function_ref<AffineMap(AffineExpr n, AffineExpr x, AffineExpr y)>
                weightMap) {
  MLIRContext *ctx = b.getContext();
  Type f32 = b.getF32Type();
  SmallVector<OpFoldResult> sizes = {tensor::getMixedSize(b, loc, a, 0),
                                     tensor::getMixedSize(b, loc, a, 1), width};
  Value init = filledTensor(b, loc, sizes, f32, f32Const(b, loc, 0.0));
  AffineExpr s, n, x, y;
  bindDims(ctx, s, n, x, y);
  SmallVector<AffineMap> maps = {AffineMap::get(4, 0, {s, n, y}, ctx),
                                 weightMap(n, x, y),
                                 AffineMap::get(4, 0, {s, n, x}, ctx)};
  return generic(b, loc, ValueRange{a, w}, init, maps, {kPar, kPar, kPar, kRed},
                 [](OpBuilder &nb, Location l, ValueRange args) {
                   Value p = arith::MulFOp::create(nb, l, toF32(nb, l, args[0]),
                                                   toF32(nb, l, args[1]));
                   yieldOp(nb, l, arith::AddFOp::create(nb, l, args[2], p));
                 })[0];
}

Value headMatmul(OpBuilder &b, Location loc, Value a, Value w,
                 int64_t headStride, int64_t offset) {
  if (canVectorizeHeadContraction(a, w))
    return vectorHeadMatmul(b, loc, a, w, headStride, offset);
  MLIRContext *ctx = b.getContext();
  return headGeneric(
      b, loc, a, w, tensor::getMixedSize(b, loc, w, 1),
      [&](AffineExpr n, AffineExpr x, AffineExpr y) {
        return AffineMap::get(4, 0, {n * headStride + offset + y, x}, ctx);
      });
}

Value headMatmulTransposed(OpBuilder &b, Location loc, Value a, Value w,
                           int64_t headStride, int64_t offset, int64_t width) {
  if (canVectorizeHeadContraction(a, w))
    return vectorHeadMatmulTransposed(b, loc, a, w, headStride, offset, width);
  MLIRContext *ctx = b.getContext();
  return headGeneric(
      b, loc, a, w, b.getIndexAttr(width),
      [&](AffineExpr n, AffineExpr x, AffineExpr y) {
        return AffineMap::get(4, 0, {n * headStride + offset + x, y}, ctx);
      });
}

} // namespace moe_mlir::lowering::mla
