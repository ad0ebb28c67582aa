//===- MaterializeRouterLogits.cpp - router matmul to linalg --------------===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Dialect/MoE/IR/MoE.h"
#include "moe-mlir/Dialect/MoE/Transforms/Passes.h"
#include "moe-mlir/Support/PassStatistics.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/AffineMap.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace moe_mlir::moe {
#define GEN_PASS_DEF_MOEMATERIALIZEROUTERLOGITS
#include "moe-mlir/Dialect/MoE/Transforms/Passes.h.inc"
} // namespace moe_mlir::moe

using namespace mlir;
using namespace moe_mlir::moe;

/// Extends a scalar float to f32 (a no-op for f32).
static Value extendToF32(OpBuilder &b, Location loc, Value v) {
  Type f32 = b.getF32Type();
  if (v.getType() == f32)
    return v;
  return arith::ExtFOp::create(b, loc, f32, v);
}

namespace {
struct MaterializeRouterLogits : OpRewritePattern<RouteOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(RouteOp op,
                                PatternRewriter &rewriter) const override {
    if (!op.hasRouterWeight())
      return rewriter.notifyMatchFailure(op, "route already takes logits");

    Location loc = op.getLoc();
    Value hidden = op.getInput();
    Value weight = op.getRouterWeight();
    auto hiddenType = cast<RankedTensorType>(hidden.getType());
    Type f32 = rewriter.getF32Type();

    // logits = x · Wᵀ in f32, on the vector kernel like any other x · Wᵀ
    // projection; T may be dynamic.
    Value logits = buildMatmulTransposedB(rewriter, loc, hidden, weight);
    auto logitsType = cast<RankedTensorType>(logits.getType());
    SmallVector<Value> dynamicSizes;
    if (hiddenType.isDynamicDim(0))
      dynamicSizes.push_back(tensor::DimOp::create(rewriter, loc, hidden, 0));
    MLIRContext *ctx = rewriter.getContext();

    // Optional bias, and rounding to the hidden element type.
    Value bias = op.getRouterBias();
    Type roundTo = op.getRoundLogits() ? hiddenType.getElementType() : f32;
    if (bias || roundTo != f32) {
      auto outType = RankedTensorType::get(logitsType.getShape(), roundTo);
      Value outEmpty = tensor::EmptyOp::create(
          rewriter, loc, outType.getShape(), roundTo, dynamicSizes);
      SmallVector<Value> inputs = {logits};
      SmallVector<AffineMap> epilogueMaps = {
          AffineMap::getMultiDimIdentityMap(2, ctx)};
      if (bias) {
        inputs.push_back(bias);
        epilogueMaps.push_back(AffineMap::get(2, 0, {getAffineDimExpr(1, ctx)},
                                              ctx));
      }
      epilogueMaps.push_back(AffineMap::getMultiDimIdentityMap(2, ctx));
      logits =
          linalg::GenericOp::create(
              rewriter, loc, TypeRange{outType}, inputs, ValueRange{outEmpty},
              epilogueMaps,
              {utils::IteratorType::parallel, utils::IteratorType::parallel},
              [&](OpBuilder &b, Location l, ValueRange args) {
                Value v = args[0];
                if (bias)
                  v = arith::AddFOp::create(b, l, v,
                                            extendToF32(b, l, args[1]));
                if (roundTo != f32)
                  v = arith::TruncFOp::create(b, l, roundTo, v);
                linalg::YieldOp::create(b, l, v);
              })
              .getResult(0);
    }

    // The same router on the logits: every other operand and attribute is
    // kept; the matmul-only ones go.
    rewriter.modifyOpInPlace(op, [&] {
      op.getInputMutable().assign(logits);
      op.getRouterWeightMutable().clear();
      op.getRouterBiasMutable().clear();
      op.setRoundLogits(false);
    });
    return success();
  }
};

struct MoEMaterializeRouterLogitsPass
    : moe_mlir::moe::impl::MoEMaterializeRouterLogitsBase<MoEMaterializeRouterLogitsPass> {
  moe_mlir::PassCounter numMaterialized{this, "routers-materialized", "Number of moe.route ops whose logits were materialized"};
  void runOnOperation() override {
    SmallVector<RouteOp> routes;
    getOperation()->walk([&](RouteOp op) {
      if (op.hasRouterWeight())
        routes.push_back(op);
    });
    RewritePatternSet patterns(&getContext());
    populateMaterializeRouterLogitsPatterns(patterns);
    if (failed(applyOpPatternsGreedily(
            llvm::to_vector_of<Operation *>(routes), std::move(patterns))))
      return signalPassFailure();
    numMaterialized += routes.size();
  }
};
} // namespace

void moe_mlir::moe::populateMaterializeRouterLogitsPatterns(
    RewritePatternSet &patterns) {
  patterns.add<MaterializeRouterLogits>(patterns.getContext());
}

Value moe_mlir::moe::buildMatmulTransposedB(OpBuilder &b, Location loc,
                                            Value x, Value w) {
  MLIRContext *ctx = b.getContext();
  Type f32 = b.getF32Type();
  OpFoldResult rows = tensor::getMixedSize(b, loc, x, 0);
  int64_t cols = cast<RankedTensorType>(w.getType()).getDimSize(0);
  Value empty = tensor::EmptyOp::create(
      b, loc, ArrayRef<OpFoldResult>{rows, b.getIndexAttr(cols)}, f32);
  Value zero = arith::ConstantOp::create(b, loc, f32, b.getF32FloatAttr(0.0f));
  Value init = linalg::FillOp::create(b, loc, zero, empty).getResult(0);
  AffineExpr t, n, k;
  bindDims(ctx, t, n, k);
  SmallVector<Attribute> maps = {
      AffineMapAttr::get(AffineMap::get(3, 0, {t, k}, ctx)),
      AffineMapAttr::get(AffineMap::get(3, 0, {n, k}, ctx)),
      AffineMapAttr::get(AffineMap::get(3, 0, {t, n}, ctx))};
  return linalg::MatmulOp::create(
             b, loc, TypeRange{init.getType()}, ValueRange{x, w},
             ValueRange{init},
             {b.getNamedAttr("indexing_maps", b.getArrayAttr(maps))})
      .getResult(0);
}
