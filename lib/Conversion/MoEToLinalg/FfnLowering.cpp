//===- FfnLowering.cpp - moe.expert_ffn/shared_expert to linalg -----------===//
//
// Part of moe-mlir.
//
// One FFN (fc1 [, fc3] -> activation -> fc2) on a [n, H] slice of rows,
// with contractions accumulated in f32 and the activation in f32. The
// grouped expert FFN runs every projection of all its experts as one
// grouped contraction (a grouped GEMM over the experts that have rows) where
// the vector kernel applies, and otherwise runs the FFN per expert on that
// expert's dynamic row slice; either way each expert's rows land in the
// same rows of a zero-initialized output, with the same bits.
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
using moe_mlir::moe::CombineOp;
using moe_mlir::moe::DispatchMode;
using moe_mlir::moe::DispatchOp;
using moe_mlir::moe::ExpertFfnOp;
using moe_mlir::moe::RoutedFfnOp;
using moe_mlir::moe::Gating;
using moe_mlir::moe::SharedExpertOp;
using moe_mlir::moe::StackExpertsOp;

namespace {
using utils::IteratorType;
constexpr IteratorType kPar = IteratorType::parallel;

/// The FFN parameters common to both ops, with the weights of one FFN
/// (2-D matrices, 1-D biases) or of a stack of them (the experts of a
/// grouped FFN: [E, ...]).
struct Ffn {
  Value fc1, fc2, fc3, fc1Bias, fc2Bias, fc3Bias;
  Activation activation;
  Gating gating;
  float alpha, beta;
  std::optional<float> clampLimit;
  bool fuseGateUp;
  /// Grouped FFNs whose weights are moe.stack_experts read in place: fc1,
  /// fc2, fc3 are the routed parts, these the stacks (else null).
  StackExpertsOp fc1Stack, fc2Stack, fc3Stack;
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

/// A strided slice [offset :: stride][count] along the dimension `dim` of
/// `t` (the rows of a matrix or of a stack of matrices, the entries of a
/// bias or of a stack of biases).
Value strideSlice(OpBuilder &b, Location l, Value t, int64_t dim,
                  int64_t offset, int64_t count, int64_t stride) {
  auto type = cast<RankedTensorType>(t.getType());
  SmallVector<int64_t> shape(type.getShape());
  shape[dim] = count;
  SmallVector<OpFoldResult> offsets(type.getRank(), b.getIndexAttr(0)),
      sizes = tensor::getMixedSizes(b, l, t),
      strides(type.getRank(), b.getIndexAttr(1));
  offsets[dim] = b.getIndexAttr(offset);
  sizes[dim] = b.getIndexAttr(count);
  strides[dim] = b.getIndexAttr(stride);
  return tensor::ExtractSliceOp::create(
      b, l, RankedTensorType::get(shape, type.getElementType()), t, offsets,
      sizes, strides);
}

/// Chunk j ([R, C]) of a moe.stack_experts' shared matrix: expert E + j.
Value sharedChunk(OpBuilder &b, Location l, StackExpertsOp stack, Value j) {
  auto routed = cast<RankedTensorType>(stack.getRouted().getType());
  auto type = RankedTensorType::get(routed.getShape().drop_front(),
                                    routed.getElementType());
  int64_t dim = stack.getSplitDim();
  SmallVector<OpFoldResult> offsets = {b.getIndexAttr(0), b.getIndexAttr(0)};
  offsets[dim] = arith::MulIOp::create(b, l, j,
                                       indexConst(b, l, type.getDimSize(dim)))
                     .getResult();
  SmallVector<OpFoldResult> sizes = {b.getIndexAttr(type.getDimSize(0)),
                                     b.getIndexAttr(type.getDimSize(1))};
  return tensor::ExtractSliceOp::create(
      b, l, type, stack.getShared(), offsets, sizes,
      SmallVector<OpFoldResult>(2, b.getIndexAttr(1)));
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

/// y [n, H] f32 = FFN(x [n, H]). With `groups`, the weights are stacks and
/// group g of the rows goes through expert groups->expert[g]'s FFN (one
/// grouped contraction per projection); rows outside every group are 0.
/// With groups->rowIds the groups' rows are gathered from x. With `combine`
/// (and groups) the result is combine.sum of the rows instead (the
/// down projection's contractGroupedCombined), in combine.elementType.
Value buildFfn(OpBuilder &b, Location loc, Value x, const Ffn &ffn,
               const ContractionOptions &options,
               const RowGroups *groups = nullptr,
               const RowCombine *combine = nullptr) {
  MLIRContext *ctx = b.getContext();
  Type f32 = b.getF32Type();
  // Matrices and biases have one more (leading) dimension when stacked.
  int64_t stack = groups ? 1 : 0;
  int64_t fc1Rows =
      cast<RankedTensorType>(ffn.fc1.getType()).getDimSize(stack);
  bool fused = ffn.gating == Gating::Concatenated ||
               ffn.gating == Gating::Interleaved;
  int64_t inter = fused ? fc1Rows / 2 : fc1Rows;

  // Gate (or sole) and up projections, with their biases.
  Value gateW = ffn.fc1, upW = ffn.fc3, gateB = ffn.fc1Bias, upB = ffn.fc3Bias;
  if (fused) {
    // Concatenated: [gate; up]; interleaved: gate and up rows alternate.
    int64_t upOffset = ffn.gating == Gating::Concatenated ? inter : 1;
    int64_t stride = ffn.gating == Gating::Concatenated ? 1 : 2;
    gateW = strideSlice(b, loc, ffn.fc1, stack, 0, inter, stride);
    upW = strideSlice(b, loc, ffn.fc1, stack, upOffset, inter, stride);
    if (ffn.fc1Bias) {
      gateB = strideSlice(b, loc, ffn.fc1Bias, stack, 0, inter, stride);
      upB = strideSlice(b, loc, ffn.fc1Bias, stack, upOffset, inter, stride);
    }
  }
  bool gated = ffn.gating != Gating::None;

  // `bias` ([w] or, stacked, [E, w]) for the `width` columns from `col0`
  // (all when col0 is null), of expert `expert` when stacked.
  auto biasColumns = [&](OpBuilder &nb, Location nl, Value bias, Value col0,
                         Value expert, int64_t width) -> Value {
    if (expert)
      bias = expertSlice(nb, nl, bias, expert);
    if (!col0)
      return bias;
    return tensor::ExtractSliceOp::create(
        nb, nl, RankedTensorType::get({width}, elementTypeOf(bias)), bias,
        ArrayRef<OpFoldResult>{col0},
        ArrayRef<OpFoldResult>{nb.getIndexAttr(width)},
        ArrayRef<OpFoldResult>{nb.getIndexAttr(1)});
  };
  AffineExpr n, i;
  bindDims(ctx, n, i);
  AffineMap id = b.getMultiDimIdentityMap(2);
  AffineMap col = AffineMap::get(2, 0, {i}, ctx);

  // tile [rows, w] f32 + the bias's columns from col0.
  auto addBias = [&](OpBuilder &nb, Location nl, Value tile, Value bias,
                     Value col0, Value expert) -> Value {
    int64_t width = cast<RankedTensorType>(tile.getType()).getDimSize(1);
    return generic(nb, nl,
                   ValueRange{tile, biasColumns(nb, nl, bias, col0, expert,
                                                width)},
                   emptyTensor(nb, nl, mixedSizes(nb, nl, tile), f32),
                   {id, col, id}, {kPar, kPar},
                   [](OpBuilder &bb, Location l, ValueRange a) {
                     yieldOp(bb, l,
                             arith::AddFOp::create(bb, l, a[0],
                                                   toF32(bb, l, a[1])));
                   })[0];
  };

  // h [n, I] f32 = act(g [+ bias]) (* (u [+ bias])) of the products, by one
  // elementwise generic over `products` (g, and u when gated) and, with
  // `withBiases`, the biases' columns from `col0`.
  auto activation = [&](OpBuilder &nb, Location nl, ArrayRef<Value> products,
                        Value col0, Value expert, bool withBiases) {
    SmallVector<Value> inputs(products);
    SmallVector<AffineMap> maps(inputs.size(), id);
    int64_t width = cast<RankedTensorType>(products[0].getType()).getDimSize(1);
    int gateBiasArg = -1, upBiasArg = -1;
    if (withBiases && gateB) {
      gateBiasArg = inputs.size();
      inputs.push_back(biasColumns(nb, nl, gateB, col0, expert, width));
      maps.push_back(col);
    }
    if (withBiases && gated && upB) {
      upBiasArg = inputs.size();
      inputs.push_back(biasColumns(nb, nl, upB, col0, expert, width));
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

  // [rows of a, m] f32 = epilogue(a · wᵀ for each w): one FFN's kernel, or
  // the grouped kernel over the stacks (group rows into `init`, or summed
  // into token order with `combined`). Only the first projection reads the
  // groups' rows through groups->rowIds.
  auto contract = [&](Value a, ArrayRef<Value> ws, ContractionEpilogue epilogue,
                      bool zeroRest, bool gathered,
                      bool combined = false) -> Value {
    if (!groups) {
      if (!epilogue)
        return contractTransposedB(b, loc, a, ws.front(), options);
      return contractTransposedBFused(b, loc, a, ws, options, epilogue);
    }
    RowGroups withTail = *groups;
    if (!gathered)
      withTail.rowIds = Value();
    // Stacked weights: the shared expert's chunks after the routed experts.
    auto tail = [&](OpBuilder &nb, Location nl, Value expert) {
      SmallVector<Value> matrices;
      for (Value w : ws) {
        StackExpertsOp stack = w == ffn.fc1   ? ffn.fc1Stack
                               : w == ffn.fc3 ? ffn.fc3Stack
                                              : ffn.fc2Stack;
        Value j = arith::SubIOp::create(nb, nl, expert, withTail.tailFrom);
        matrices.push_back(sharedChunk(nb, nl, stack, j));
      }
      return matrices;
    };
    if (ffn.fc1Stack) {
      auto routed = cast<RankedTensorType>(ffn.fc1.getType());
      withTail.tailFrom = indexConst(b, loc, routed.getDimSize(0));
      withTail.tailMatrices = tail;
    }
    if (combined)
      return contractGroupedCombined(b, loc, a, ws, withTail, *combine,
                                     options, epilogue);
    auto wType = cast<RankedTensorType>(ws.front().getType());
    SmallVector<OpFoldResult> sizes = {
        tensor::getMixedSize(b, loc, withTail.rowIds ? withTail.rowIds : a, 0),
        b.getIndexAttr(wType.getDimSize(1))};
    // The rows of no group are only read (and returned) when zeroRest.
    Value init = zeroRest ? filledTensor(b, loc, sizes, f32,
                                         f32Attr(b, loc, 0.0))
                          : emptyTensor(b, loc, sizes, f32);
    return contractGroupedTransposedB(b, loc, a, ws, withTail, init, options,
                                      epilogue);
  };

  SmallVector<Value> weights = {gateW};
  SmallVector<Value> weightBiases = {gateB};
  if (gated) {
    weights.push_back(upW);
    weightBiases.push_back(upB);
  }
  Value hidden;
  if (ffn.fuseGateUp && (groups || canVectorizeContraction(x, gateW))) {
    // One kernel: the gate and up tiles of a task, then the activation on
    // them while they are in cache.
    auto epilogue = [&](OpBuilder &nb, Location nl, ArrayRef<Value> tiles,
                        Value col0, Value expert) {
      return activation(nb, nl, tiles, col0, expert, /*withBiases=*/true);
    };
    hidden = contract(x, weights, epilogue, /*zeroRest=*/false,
                      /*gathered=*/true);
  } else {
    // One contraction per projection; a stacked bias is added per group in
    // the contraction's epilogue, a plain one by the activation.
    SmallVector<Value> products;
    for (auto [w, bias] : llvm::zip(weights, weightBiases)) {
      Value biasOfGroup = groups ? bias : Value();
      auto epilogue = [&](OpBuilder &nb, Location nl, ArrayRef<Value> tiles,
                          Value col0, Value expert) {
        return addBias(nb, nl, tiles.front(), biasOfGroup, col0, expert);
      };
      products.push_back(contract(
          x, w, biasOfGroup ? ContractionEpilogue(epilogue) : nullptr,
          /*zeroRest=*/false, /*gathered=*/true));
    }
    hidden = activation(b, loc, products, Value(), Value(),
                        /*withBiases=*/!groups);
  }

  if (groups) {
    auto epilogue = [&](OpBuilder &nb, Location nl, ArrayRef<Value> tiles,
                        Value col0, Value expert) {
      return addBias(nb, nl, tiles.front(), ffn.fc2Bias, col0, expert);
    };
    return contract(hidden, ffn.fc2,
                    ffn.fc2Bias ? ContractionEpilogue(epilogue) : nullptr,
                    /*zeroRest=*/true, /*gathered=*/false,
                    /*combined=*/combine != nullptr);
  }
  Value y = contractTransposedB(b, loc, hidden, ffn.fc2, options);
  if (ffn.fc2Bias)
    y = addBias(b, loc, y, ffn.fc2Bias, Value(), Value());
  return y;
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
             op.getFuseGateUp(),
             {},
             {},
             {}};
}
} // namespace

/// Whether every projection of a stacked FFN fits the grouped vector
/// kernel: static weights and biases, I and H multiples of 16.
template <typename OpTy>
static bool groupedKernelApplies(OpTy op, int64_t hidden) {
  auto multipleOf16 = [](int64_t v) {
    return !ShapedType::isDynamic(v) && v % 16 == 0;
  };
  for (Value w : {op.getFc1(), op.getFc2(), op.getFc3(), op.getFc1Bias(),
                  op.getFc2Bias(), op.getFc3Bias()})
    if (w && !cast<RankedTensorType>(w.getType()).hasStaticShape())
      return false;
  auto fc2Type = cast<RankedTensorType>(op.getFc2().getType());
  return multipleOf16(fc2Type.getDimSize(1)) &&
         multipleOf16(fc2Type.getDimSize(2)) && multipleOf16(hidden);
}

/// The row groups of a grouped FFN: every expert with rows, in expert
/// order, its count clamped to the rows there are (as the per-expert form
/// does). Rows are a list of `available` rows, expert e's after those of
/// the experts before it, or (with `capacity`) slabs, expert e's from
/// e · capacity.
static RowGroups rowGroupsOf(OpBuilder &b, Location loc, Value counts,
                             int64_t experts, Value available,
                             Value capacity) {
  bool slabs = static_cast<bool>(capacity);
  Type index = b.getIndexType();
  auto list = [&]() {
    return emptyTensor(b, loc, {b.getIndexAttr(experts)}, index);
  };
  Value zero = indexConst(b, loc, 0), one = indexConst(b, loc, 1);
  auto loop = scf::ForOp::create(
      b, loc, zero, indexConst(b, loc, experts), one,
      ValueRange{list(), list(), list(), zero, zero},
      [&](OpBuilder &nb, Location l, Value e, ValueRange it) {
        Value start = slabs ? arith::MulIOp::create(nb, l, e, capacity)
                                  .getResult()
                            : it[4];
        Value room = slabs ? capacity
                           : arith::SubIOp::create(nb, l, available, start)
                                 .getResult();
        Value count = arith::IndexCastOp::create(
            nb, l, nb.getIndexType(),
            arith::MaxSIOp::create(
                nb, l, tensor::ExtractOp::create(nb, l, counts, e),
                arith::ConstantIntOp::create(nb, l, nb.getI32Type(), 0)));
        count = arith::MinSIOp::create(nb, l, count, room);
        Value hasRows = arith::CmpIOp::create(
            nb, l, arith::CmpIPredicate::sgt, count, indexConst(nb, l, 0));
        auto add = scf::IfOp::create(
            nb, l, hasRows,
            [&](OpBuilder &tb, Location tl) {
              Value g = it[3];
              scf::YieldOp::create(
                  tb, tl,
                  ValueRange{
                      tensor::InsertOp::create(tb, tl, e, it[0], g),
                      tensor::InsertOp::create(tb, tl, start, it[1], g),
                      tensor::InsertOp::create(tb, tl, count, it[2], g),
                      arith::AddIOp::create(tb, tl, g, indexConst(tb, tl, 1))});
            },
            [&](OpBuilder &eb, Location el) {
              scf::YieldOp::create(eb, el,
                                   ValueRange{it[0], it[1], it[2], it[3]});
            });
        Value next = arith::AddIOp::create(nb, l, start, count);
        SmallVector<Value> yields(add.getResults());
        yields.push_back(next);
        scf::YieldOp::create(nb, l, yields);
      });
  RowGroups groups;
  groups.expert = loop.getResult(0);
  groups.start = loop.getResult(1);
  groups.count = loop.getResult(2);
  groups.numGroups = loop.getResult(3);
  return groups;
}

/// Weights stacked by moe-fuse-shared-expert are read where they are when
/// all of them are stacks of one shape (no fc1 split into gate and up).
static void readStacksInPlace(Ffn &ffn) {
  auto stackOf = [](Value w) {
    return w ? w.getDefiningOp<StackExpertsOp>() : StackExpertsOp();
  };
  if (!stackOf(ffn.fc1) || !stackOf(ffn.fc2) ||
      (ffn.fc3 && !stackOf(ffn.fc3)) ||
      (ffn.gating != Gating::Separate && ffn.gating != Gating::None) ||
      ffn.fc1Bias || ffn.fc2Bias || ffn.fc3Bias)
    return;
  ffn.fc1Stack = stackOf(ffn.fc1);
  ffn.fc2Stack = stackOf(ffn.fc2);
  ffn.fc1 = ffn.fc1Stack.getRouted();
  ffn.fc2 = ffn.fc2Stack.getRouted();
  if (ffn.fc3) {
    ffn.fc3Stack = stackOf(ffn.fc3);
    ffn.fc3 = ffn.fc3Stack.getRouted();
  }
}

/// The grouped GEMM form: the experts that have rows form the row groups,
/// in expert order, and each projection of all of them is one grouped
/// contraction (one parallel loop for the layer instead of two per expert).
/// Fails, building nothing, where the kernel does not apply.
static LogicalResult lowerGrouped(ExpertFfnOp op, PatternRewriter &b,
                                  const ContractionOptions &options) {
  Value rows = op.getRows(), counts = op.getCounts();
  auto rowsType = cast<RankedTensorType>(rows.getType());
  if (!groupedKernelApplies(op, rowsType.getShape().back()))
    return failure();
  Location loc = op.getLoc();
  bool slabs = rowsType.getRank() == 3;
  int64_t experts =
      cast<RankedTensorType>(op.getFc1().getType()).getDimSize(0);
  Type elementType = rowsType.getElementType();

  // Capacity layouts: the slabs seen as one row list, expert e's from e · C.
  Value flat = rows;
  Value capacity;
  if (slabs) {
    capacity = dimValue(b, loc, rows, 1);
    flat = tensor::CollapseShapeOp::create(
        b, loc, rows, ArrayRef<ReassociationIndices>{{0, 1}, {2}});
  }
  Value available = slabs ? capacity : dimValue(b, loc, rows, 0);
  RowGroups groups =
      rowGroupsOf(b, loc, counts, experts, available, capacity);
  Ffn ffn = ffnOf(op);
  readStacksInPlace(ffn);

  Value y = convertTensor(b, loc, buildFfn(b, loc, flat, ffn, options,
                                           &groups),
                          elementType);
  if (slabs)
    y = tensor::ExpandShapeOp::create(
        b, loc, rowsType, y,
        ArrayRef<ReassociationIndices>{{0, 1}, {2}});
  b.replaceOp(op, castToResult(b, loc, y, op.getResult()));
  return success();
}

LogicalResult
moe_mlir::lowering::lowerExpertFfn(ExpertFfnOp op, PatternRewriter &b,
                                   const ContractionOptions &options) {
  if (succeeded(lowerGrouped(op, b, options)))
    return success();
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
moe_mlir::lowering::lowerRoutedFfn(RoutedFfnOp op, PatternRewriter &b,
                                   const ContractionOptions &options) {
  Location loc = op.getLoc();
  Value input = op.getInput(), indices = op.getIndices(),
        weights = op.getWeights();
  auto inputType = cast<RankedTensorType>(input.getType());
  Type elementType = inputType.getElementType();
  int64_t experts = op.getNumExperts(); // static: the verifier checks
  if (!groupedKernelApplies(op, inputType.getDimSize(1))) {
    // The three ops it stands for, each lowered at once.
    auto dispatch =
        DispatchOp::create(b, loc, input, indices, DispatchMode::Dropless,
                           experts, IntegerAttr(), FloatAttr());
    auto ffn = ExpertFfnOp::create(
        b, loc, dispatch.getRows(), dispatch.getCounts(), op.getFc1(),
        op.getFc2(), op.getFc3(), op.getFc1Bias(), op.getFc2Bias(),
        op.getFc3Bias(), op.getActivationAttr(), op.getGatingAttr(),
        op.getActivationAlphaAttr(), op.getActivationBetaAttr(),
        op.getClampLimitAttr(), op.getFuseGateUpAttr());
    auto combine =
        CombineOp::create(b, loc, ffn.getResult(), dispatch.getMapping(),
                          weights, Value(), DispatchMode::Dropless);
    Value result = castToResult(b, loc, combine.getResult(), op.getResult());
    b.replaceOp(op, result);
    // These lowerings apply to every valid op of their kind.
    LogicalResult lowered = success(succeeded(lowerDispatch(dispatch, b)) &&
                                    succeeded(lowerExpertFfn(ffn, b, options)) &&
                                    succeeded(lowerCombine(combine, b)));
    assert(succeeded(lowered) && "dispatch, expert_ffn and combine lower");
    (void)lowered;
    return success();
  }

  // The dispatch's bookkeeping without its copy: the groups read the
  // tokens' rows through the plan's row -> token list.
  DroplessPlan plan = planDropless(b, loc, indices, experts);
  RowGroups groups =
      rowGroupsOf(b, loc, plan.counts, experts,
                  dimValue(b, loc, plan.rowToken, 0), Value());
  groups.rowIds = plan.rowToken;
  Ffn ffn = ffnOf(op);
  readStacksInPlace(ffn);
  auto sum = [&](OpBuilder &nb, Location l, Value rows) {
    Value tokens = combineRows(nb, l, rows, plan.mapping, weights, Value(),
                               /*expertChoice=*/false);
    return convertTensor(nb, l, tokens, elementType);
  };
  RowCombine combine{plan.mapping, elementType, sum};
  Value y = buildFfn(b, loc, input, ffn, options, &groups, &combine);
  b.replaceOp(op, castToResult(b, loc, y, op.getResult()));
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

LogicalResult
moe_mlir::lowering::lowerStackExperts(StackExpertsOp op, PatternRewriter &b) {
  // A grouped FFN reads the matrices where they are (expertSlice); the op
  // goes away with its last such user.
  if (op->use_empty()) {
    b.eraseOp(op);
    return success();
  }
  if (llvm::all_of(op->getUsers(), [](Operation *user) {
        return isa<ExpertFfnOp, RoutedFfnOp>(user);
      }))
    return b.notifyMatchFailure(op, "read in place by its grouped FFNs");
  // Any other use gets the stack as one tensor: the routed experts, then the
  // chunks of the shared matrix.
  Location loc = op.getLoc();
  auto type = cast<RankedTensorType>(op.getResult().getType());
  auto routed = cast<RankedTensorType>(op.getRouted().getType());
  int64_t experts = routed.getDimSize(0);
  SmallVector<OpFoldResult> ones(3, b.getIndexAttr(1));
  auto at = [&](int64_t e) {
    return SmallVector<OpFoldResult>{b.getIndexAttr(e), b.getIndexAttr(0),
                                     b.getIndexAttr(0)};
  };
  Value stack = tensor::EmptyOp::create(b, loc, type.getShape(),
                                        type.getElementType());
  stack = tensor::InsertSliceOp::create(b, loc, op.getRouted(), stack, at(0),
                                        getAsIndexOpFoldResult(
                                            b.getContext(), routed.getShape()),
                                        ones);
  for (int64_t j = 0; j < op.getNumSharedExperts(); ++j) {
    Value matrix = sharedChunk(b, loc, op, indexConst(b, loc, j));
    stack = tensor::InsertSliceOp::create(
        b, loc, matrix, stack, at(experts + j),
        SmallVector<OpFoldResult>{b.getIndexAttr(1),
                                  b.getIndexAttr(type.getDimSize(1)),
                                  b.getIndexAttr(type.getDimSize(2))},
        ones);
  }
  b.replaceOp(op, stack);
  return success();
}
