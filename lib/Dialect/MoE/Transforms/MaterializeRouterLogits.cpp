//===- MaterializeRouterLogits.cpp - router matmul to linalg --------------===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Dialect/MoE/IR/MoE.h"
#include "moe-mlir/Dialect/MoE/Transforms/Passes.h"

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
    int64_t experts = op.getNumExperts();
    Type f32 = rewriter.getF32Type();

    // logits = zeros([T, E]) in f32; T may be dynamic.
    SmallVector<Value> dynamicSizes;
    if (hiddenType.isDynamicDim(0))
      dynamicSizes.push_back(tensor::DimOp::create(rewriter, loc, hidden, 0));
    auto logitsType = RankedTensorType::get({hiddenType.getDimSize(0), experts},
                                            f32);
    Value empty = tensor::EmptyOp::create(rewriter, loc, logitsType.getShape(),
                                          f32, dynamicSizes);
    Value zero = arith::ConstantOp::create(rewriter, loc, f32,
                                           rewriter.getF32FloatAttr(0.0f));
    Value init =
        linalg::FillOp::create(rewriter, loc, zero, empty).getResult(0);

    // logits = x · Wᵀ, a linalg.matmul reading W in its [E, H] layout
    // (products of the operands extended to f32, summed in f32): the CPU
    // pipeline runs it on the vector kernel (convert-linalg-matmul-to-kernel)
    // like any other x · Wᵀ projection.
    MLIRContext *ctx = rewriter.getContext();
    AffineExpr t, e, h;
    bindDims(ctx, t, e, h);
    SmallVector<Attribute> maps = {
        AffineMapAttr::get(AffineMap::get(3, 0, {t, h}, ctx)),
        AffineMapAttr::get(AffineMap::get(3, 0, {e, h}, ctx)),
        AffineMapAttr::get(AffineMap::get(3, 0, {t, e}, ctx))};
    Value logits =
        linalg::MatmulOp::create(
            rewriter, loc, TypeRange{logitsType}, ValueRange{hidden, weight},
            ValueRange{init},
            {rewriter.getNamedAttr("indexing_maps",
                                   rewriter.getArrayAttr(maps))})
            .getResult(0);

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
