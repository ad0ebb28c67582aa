//===- FfnLowering.cpp - moe.expert_ffn/shared_expert to linalg -----------===//
//
// Part of moe-mlir.
//
// One FFN (fc1 [, fc3] -> activation -> fc2) on a [n, H] slice of rows,
// with contractions accumulated in f32 and the activation in f32. The
// grouped expert FFN runs it per expert on that expert's dynamic row slice
// and writes the result into the same rows of a zero-initialized output.
//
//===----------------------------------------------------------------------===//

#include "../Utils/LoweringUtils.h"
#include "Lowerings.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

#include <cmath>

using namespace mlir;
using namespace moe_mlir::lowering;
using moe_mlir::ContractionOptions;
using moe_mlir::moe::Activation;
using moe_mlir::moe::ExpertFfnOp;
using moe_mlir::moe::Gating;
using moe_mlir::moe::SharedExpertOp;

namespace {
using utils::IteratorType;
constexpr IteratorType kPar = IteratorType::parallel;

/// The FFN parameters common to both ops, with the weights of one FFN
/// (2-D matrices, 1-D biases).
struct Ffn {
  Value fc1, fc2, fc3, fc1Bias, fc2Bias, fc3Bias;
  Activation activation;
  Gating gating;
  float alpha, beta;
  std::optional<float> clampLimit;
  bool fuseGateUp;
};

Type elementTypeOf(Value v) {
  return cast<RankedTensorType>(v.getType()).getElementType();
}

Value f32Attr(OpBuilder &b, Location l, double v) {
  return arith::ConstantOp::create(b, l, b.getF32Type(),
                                   b.getF32FloatAttr(static_cast<float>(v)));
}

Value activate(OpBuilder &b, Location l, Activation act, float alpha,
               Value x) {
  switch (act) {
  case Activation::Silu: {
    Value ax = alpha == 1.0f ? x
                             : arith::MulFOp::create(b, l, x,
                                                     f32Attr(b, l, alpha))
                                   .getResult();
    Value one = f32Attr(b, l, 1.0);
    Value e = math::ExpOp::create(b, l, arith::NegFOp::create(b, l, ax));
    return arith::DivFOp::create(b, l, x, arith::AddFOp::create(b, l, one, e));
  }
  case Activation::Gelu: {
    Value half = f32Attr(b, l, 0.5), one = f32Attr(b, l, 1.0);
    Value scaled = arith::MulFOp::create(b, l, x, f32Attr(b, l, M_SQRT1_2));
    Value erf = math::ErfOp::create(b, l, scaled);
    return arith::MulFOp::create(
        b, l, arith::MulFOp::create(b, l, half, x),
        arith::AddFOp::create(b, l, one, erf));
  }
  case Activation::GeluTanh: {
    Value half = f32Attr(b, l, 0.5), one = f32Attr(b, l, 1.0);
    Value x3 = arith::MulFOp::create(b, l, x, arith::MulFOp::create(b, l, x, x));
    Value inner = arith::AddFOp::create(
        b, l, x, arith::MulFOp::create(b, l, f32Attr(b, l, 0.044715), x3));
    Value arg = arith::MulFOp::create(
        b, l, f32Attr(b, l, std::sqrt(2.0 / M_PI)), inner);
    Value th = math::TanhOp::create(b, l, arg);
    return arith::MulFOp::create(b, l, arith::MulFOp::create(b, l, half, x),
                                 arith::AddFOp::create(b, l, one, th));
  }
  case Activation::Relu:
    return arith::MaximumFOp::create(b, l, x, f32Attr(b, l, 0.0));
  case Activation::Identity:
    return x;
  }
  llvm_unreachable("unknown activation");
}

/// A strided row slice [offset :: stride][count] of a [R, H] matrix.
Value rowSlice(OpBuilder &b, Location l, Value m, int64_t offset,
               int64_t count, int64_t stride) {
  auto type = cast<RankedTensorType>(m.getType());
  auto sliceType =
      RankedTensorType::get({count, type.getDimSize(1)}, type.getElementType());
  return tensor::ExtractSliceOp::create(
      b, l, sliceType, m,
      SmallVector<OpFoldResult>{b.getIndexAttr(offset), b.getIndexAttr(0)},
      SmallVector<OpFoldResult>{b.getIndexAttr(count),
                                tensor::getMixedSize(b, l, m, 1)},
      SmallVector<OpFoldResult>{b.getIndexAttr(stride), b.getIndexAttr(1)});
}
Value vecSlice(OpBuilder &b, Location l, Value v, int64_t offset,
               int64_t count, int64_t stride) {
  auto type = cast<RankedTensorType>(v.getType());
  return tensor::ExtractSliceOp::create(
      b, l, RankedTensorType::get({count}, type.getElementType()), v,
      SmallVector<OpFoldResult>{b.getIndexAttr(offset)},
      SmallVector<OpFoldResult>{b.getIndexAttr(count)},
      SmallVector<OpFoldResult>{b.getIndexAttr(stride)});
}

/// y [n, H] f32 = FFN(x [n, H]).
Value buildFfn(OpBuilder &b, Location loc, Value x, const Ffn &ffn,
               const ContractionOptions &options) {
  MLIRContext *ctx = b.getContext();
  Type f32 = b.getF32Type();
  int64_t fc1Rows = cast<RankedTensorType>(ffn.fc1.getType()).getDimSize(0);
  bool fused = ffn.gating == Gating::Concatenated ||
               ffn.gating == Gating::Interleaved;
  int64_t inter = fused ? fc1Rows / 2 : fc1Rows;

  // Gate (or sole) and up projections, with their biases.
  Value gateW = ffn.fc1, upW = ffn.fc3, gateB = ffn.fc1Bias, upB = ffn.fc3Bias;
  if (ffn.gating == Gating::Concatenated) {
    gateW = rowSlice(b, loc, ffn.fc1, 0, inter, 1);
    upW = rowSlice(b, loc, ffn.fc1, inter, inter, 1);
    if (ffn.fc1Bias) {
      gateB = vecSlice(b, loc, ffn.fc1Bias, 0, inter, 1);
      upB = vecSlice(b, loc, ffn.fc1Bias, inter, inter, 1);
    }
  } else if (ffn.gating == Gating::Interleaved) {
    gateW = rowSlice(b, loc, ffn.fc1, 0, inter, 2);
    upW = rowSlice(b, loc, ffn.fc1, 1, inter, 2);
    if (ffn.fc1Bias) {
      gateB = vecSlice(b, loc, ffn.fc1Bias, 0, inter, 2);
      upB = vecSlice(b, loc, ffn.fc1Bias, 1, inter, 2);
    }
  }
  bool gated = ffn.gating != Gating::None;

  // h [n, I] f32 = act(g [+ bias]) (* (u [+ bias])) of the products, by one
  // elementwise generic over `products` (g, and u when gated) and the
  // biases, column `col0` onwards.
  auto activation = [&](OpBuilder &nb, Location nl, ArrayRef<Value> products,
                        Value col0) {
    SmallVector<Value> inputs(products);
    AffineExpr n, i;
    bindDims(ctx, n, i);
    AffineMap id = nb.getMultiDimIdentityMap(2);
    AffineMap col = AffineMap::get(2, 0, {i}, ctx);
    SmallVector<AffineMap> maps(inputs.size(), id);
    int64_t width = cast<RankedTensorType>(products[0].getType()).getDimSize(1);
    auto biasColumns = [&](Value bias) -> Value {
      if (!col0)
        return bias;
      return tensor::ExtractSliceOp::create(
          nb, nl, RankedTensorType::get({width}, elementTypeOf(bias)), bias,
          ArrayRef<OpFoldResult>{col0}, ArrayRef<OpFoldResult>{
                                            nb.getIndexAttr(width)},
          ArrayRef<OpFoldResult>{nb.getIndexAttr(1)});
    };
    int gateBiasArg = -1, upBiasArg = -1;
    if (gateB) {
      gateBiasArg = inputs.size();
      inputs.push_back(biasColumns(gateB));
      maps.push_back(col);
    }
    if (gated && upB) {
      upBiasArg = inputs.size();
      inputs.push_back(biasColumns(upB));
      maps.push_back(col);
    }
    maps.push_back(id);
    return generic(
        nb, nl, inputs,
        emptyTensor(nb, nl, mixedSizes(nb, nl, products[0]), f32), maps,
        {kPar, kPar},
        [&](OpBuilder &bb, Location l, ValueRange a) {
          Value g = a[0];
          if (gateBiasArg >= 0)
            g = arith::AddFOp::create(bb, l, g, toF32(bb, l, a[gateBiasArg]));
          if (!gated) {
            if (ffn.clampLimit) {
              Value lim = f32Attr(bb, l, *ffn.clampLimit);
              g = arith::MinimumFOp::create(
                  bb, l,
                  arith::MaximumFOp::create(
                      bb, l, g, arith::NegFOp::create(bb, l, lim)),
                  lim);
            }
            yieldOp(bb, l, activate(bb, l, ffn.activation, ffn.alpha, g));
            return;
          }
          Value u = a[1];
          if (upBiasArg >= 0)
            u = arith::AddFOp::create(bb, l, u, toF32(bb, l, a[upBiasArg]));
          if (ffn.clampLimit) {
            Value lim = f32Attr(bb, l, *ffn.clampLimit);
            g = arith::MinimumFOp::create(bb, l, g, lim);
            u = arith::MinimumFOp::create(
                bb, l,
                arith::MaximumFOp::create(bb, l, u,
                                          arith::NegFOp::create(bb, l, lim)),
                lim);
          }
          if (ffn.beta != 0.0f)
            u = arith::AddFOp::create(bb, l, u, f32Attr(bb, l, ffn.beta));
          Value act = activate(bb, l, ffn.activation, ffn.alpha, g);
          yieldOp(bb, l, arith::MulFOp::create(bb, l, act, u));
        })[0];
  };

  SmallVector<Value> weights = {gateW};
  if (gated)
    weights.push_back(upW);
  Value hidden;
  if (ffn.fuseGateUp && canVectorizeContraction(x, gateW)) {
    // One kernel: the gate and up tiles of a task, then the activation on
    // them while they are in cache.
    hidden = contractTransposedBFused(b, loc, x, weights, options, activation);
  } else {
    SmallVector<Value> products;
    for (Value w : weights)
      products.push_back(contractTransposedB(b, loc, x, w, options));
    hidden = activation(b, loc, products, Value());
  }

  Value y = contractTransposedB(b, loc, hidden, ffn.fc2, options);
  if (ffn.fc2Bias) {
    AffineExpr n, i;
    bindDims(ctx, n, i);
    AffineMap id = b.getMultiDimIdentityMap(2);
    AffineMap col = AffineMap::get(2, 0, {i}, ctx);
    y = generic(b, loc, ValueRange{y, ffn.fc2Bias},
                emptyTensor(b, loc, mixedSizes(b, loc, y), f32),
                {id, col, id}, {kPar, kPar},
                [](OpBuilder &nb, Location l, ValueRange a) {
                  yieldOp(
                      nb, l,
                      arith::AddFOp::create(nb, l, a[0], toF32(nb, l, a[1])));
                })[0];
  }
  return y;
}

/// Expert e's 2-D matrix (or 1-D bias) out of a stacked [E, ...] weight.
Value expertSlice(OpBuilder &b, Location l, Value stacked, Value e) {
  if (!stacked)
    return stacked;
  auto type = cast<RankedTensorType>(stacked.getType());
  SmallVector<OpFoldResult> offsets = {e}, sizes = {b.getIndexAttr(1)},
                            strides(type.getRank(), b.getIndexAttr(1));
  for (int64_t d = 1; d < type.getRank(); ++d) {
    offsets.push_back(b.getIndexAttr(0));
    sizes.push_back(b.getIndexAttr(type.getDimSize(d)));
  }
  auto sliceType = RankedTensorType::get(type.getShape().drop_front(),
                                         type.getElementType());
  return tensor::ExtractSliceOp::create(b, l, sliceType, stacked, offsets,
                                        sizes, strides);
}

template <typename OpTy>
Ffn ffnOf(OpTy op) {
  std::optional<float> clamp;
  if (auto c = op.getClampLimit())
    clamp = c->convertToFloat();
  return Ffn{op.getFc1(),
             op.getFc2(),
             op.getFc3(),
             op.getFc1Bias(),
             op.getFc2Bias(),
             op.getFc3Bias(),
             op.getActivation(),
             op.getGating(),
             op.getActivationAlpha().convertToFloat(),
             op.getActivationBeta().convertToFloat(),
             clamp,
             op.getFuseGateUp()};
}
} // namespace

LogicalResult
moe_mlir::lowering::lowerExpertFfn(ExpertFfnOp op, PatternRewriter &b,
                                   const ContractionOptions &options) {
  Location loc = op.getLoc();
  Value rows = op.getRows(), counts = op.getCounts();
  auto rowsType = cast<RankedTensorType>(rows.getType());
  bool slabs = rowsType.getRank() == 3;
  int64_t experts = cast<RankedTensorType>(op.getFc1().getType()).getDimSize(0);
  Type elementType = rowsType.getElementType();
  int64_t hidden = rowsType.getShape().back();

  Value out = filledTensor(b, loc, mixedSizes(b, loc, rows), elementType,
                           arith::ConstantOp::create(
                               b, loc, elementType,
                               b.getZeroAttr(elementType)));
  // Rows available to each expert: all rows past the offset (row list) or
  // the slab (capacity layout); counts beyond that are clamped, never read
  // out of bounds.
  Value available = slabs ? dimValue(b, loc, rows, 1) : dimValue(b, loc, rows, 0);
  Ffn stacked = ffnOf(op);

  auto loop = scf::ForOp::create(
      b, loc, indexConst(b, loc, 0), indexConst(b, loc, experts),
      indexConst(b, loc, 1), ValueRange{out, indexConst(b, loc, 0)},
      [&](OpBuilder &nb, Location l, Value e, ValueRange it) {
        Value start = slabs ? indexConst(nb, l, 0) : it[1];
        Value count = arith::IndexCastOp::create(
            nb, l, nb.getIndexType(),
            arith::MaxSIOp::create(
                nb, l, tensor::ExtractOp::create(nb, l, counts, e),
                arith::ConstantIntOp::create(nb, l, nb.getI32Type(), 0)));
        Value room = arith::SubIOp::create(nb, l, available, start);
        count = arith::MinSIOp::create(nb, l, count, room);

        // x = the expert's rows as [count, H].
        auto sliceType = RankedTensorType::get({ShapedType::kDynamic, hidden},
                                               elementType);
        SmallVector<OpFoldResult> offsets, sizes, strides;
        if (slabs) {
          offsets = {e, start, nb.getIndexAttr(0)};
          sizes = {nb.getIndexAttr(1), count, nb.getIndexAttr(hidden)};
          strides.assign(3, nb.getIndexAttr(1));
        } else {
          offsets = {start, nb.getIndexAttr(0)};
          sizes = {count, nb.getIndexAttr(hidden)};
          strides.assign(2, nb.getIndexAttr(1));
        }
        // An expert without rows (most of them when decoding) costs nothing:
        // no kernels, no dispatch to the thread pool.
        Value hasRows = arith::CmpIOp::create(nb, l, arith::CmpIPredicate::sgt,
                                              count, indexConst(nb, l, 0));
        auto ifOp = scf::IfOp::create(
            nb, l, hasRows,
            [&](OpBuilder &tb, Location tl) {
              Value x = tensor::ExtractSliceOp::create(
                  tb, tl, sliceType, rows, offsets, sizes, strides);
              Ffn one = stacked;
              one.fc1 = expertSlice(tb, tl, stacked.fc1, e);
              one.fc2 = expertSlice(tb, tl, stacked.fc2, e);
              one.fc3 = expertSlice(tb, tl, stacked.fc3, e);
              one.fc1Bias = expertSlice(tb, tl, stacked.fc1Bias, e);
              one.fc2Bias = expertSlice(tb, tl, stacked.fc2Bias, e);
              one.fc3Bias = expertSlice(tb, tl, stacked.fc3Bias, e);
              Value y = convertTensor(
                  tb, tl, buildFfn(tb, tl, x, one, options), elementType);
              scf::YieldOp::create(
                  tb, tl,
                  ValueRange{tensor::InsertSliceOp::create(
                      tb, tl, y, it[0], offsets, sizes, strides)});
            },
            [&](OpBuilder &eb, Location el) {
              scf::YieldOp::create(eb, el, ValueRange{it[0]});
            });
        Value next = arith::AddIOp::create(nb, l, start, count);
        scf::YieldOp::create(nb, l, ValueRange{ifOp.getResult(0), next});
      });
  b.replaceOp(op, castToResult(b, loc, loop.getResult(0), op.getResult()));
  return success();
}

LogicalResult
moe_mlir::lowering::lowerSharedExpert(SharedExpertOp op, PatternRewriter &b,
                                      const ContractionOptions &options) {
  Location loc = op.getLoc();
  Value x = op.getInput();
  Type elementType = cast<RankedTensorType>(x.getType()).getElementType();
  Value y = buildFfn(b, loc, x, ffnOf(op), options);
  if (Value gate = op.getGate()) {
    // g[t] = sigmoid(x[t] · gate[0]) in f32, then y *= g.
    Value logit = contractTransposedB(b, loc, x, gate, {}); // [T, 1], exact
    MLIRContext *ctx = b.getContext();
    AffineExpr t, h;
    bindDims(ctx, t, h);
    AffineMap id = b.getMultiDimIdentityMap(2);
    AffineMap perToken =
        AffineMap::get(2, 0, {t, getAffineConstantExpr(0, ctx)}, ctx);
    y = generic(b, loc, ValueRange{y, logit},
                emptyTensor(b, loc, mixedSizes(b, loc, y), b.getF32Type()),
                {id, perToken, id}, {kPar, kPar},
                [](OpBuilder &nb, Location l, ValueRange a) {
                  Value one = f32Attr(nb, l, 1.0);
                  Value e = math::ExpOp::create(
                      nb, l, arith::NegFOp::create(nb, l, a[1]));
                  Value g = arith::DivFOp::create(
                      nb, l, one, arith::AddFOp::create(nb, l, one, e));
                  yieldOp(nb, l,
                                          arith::MulFOp::create(nb, l, g, a[0]));
                })[0];
  }
  Value result = convertTensor(b, loc, y, elementType);
  b.replaceOp(op, castToResult(b, loc, result, op.getResult()));
  return success();
}
