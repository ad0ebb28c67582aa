//===- ConvertMoEToLinalg.cpp - the convert-moe-to-linalg pass ------------===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#include "../Utils/LoweringUtils.h"
#include "Lowerings.h"

#include "moe-mlir/Conversion/Passes.h"
#include "moe-mlir/Dialect/MoE/IR/MoE.h"
#include "moe-mlir/Dialect/MoE/Transforms/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Dialect/X86Vector/X86VectorDialect.h"
#include "mlir/Transforms/WalkPatternRewriteDriver.h"

namespace moe_mlir {
#define GEN_PASS_DEF_CONVERTMOETOLINALG
#include "moe-mlir/Conversion/Passes.h.inc"
} // namespace moe_mlir

using namespace mlir;
using namespace moe_mlir;

namespace {
template <typename OpTy>
struct LowerOp : OpRewritePattern<OpTy> {
  using LowerFn = std::function<LogicalResult(OpTy, PatternRewriter &)>;
  LowerOp(MLIRContext *ctx, LowerFn fn)
      : OpRewritePattern<OpTy>(ctx), fn(std::move(fn)) {}
  LogicalResult matchAndRewrite(OpTy op,
                                PatternRewriter &rewriter) const override {
    return fn(op, rewriter);
  }
  LowerFn fn;
};

struct ConvertMoEToLinalgPass
    : moe_mlir::impl::ConvertMoEToLinalgBase<ConvertMoEToLinalgPass> {
  using ConvertMoEToLinalgBase::ConvertMoEToLinalgBase;
  void runOnOperation() override {
    // The expert-parallel ops call the runtime; declare its hooks once.
    bool parallel = false;
    getOperation()->walk([&](Operation *op) {
      if (isa<moe::EpDispatchOp, moe::EpReturnOp, moe::EpHomeOp,
              moe::EpAllGatherOp, moe::EpSlotsOp>(op))
        parallel = true;
    });
    if (parallel) {
      auto module = dyn_cast<ModuleOp>(getOperation());
      if (!module) {
        getOperation()->emitError(
            "expert-parallel moe ops must be lowered from a builtin.module");
        return signalPassFailure();
      }
      lowering::declareExpertParallelRuntime(module);
    }
    RewritePatternSet patterns(&getContext());
    moe::populateMaterializeRouterLogitsPatterns(patterns);
    ContractionOptions options;
    options.bf16DotProducts = bf16DotProducts;
    populateMoEToLinalgPatterns(patterns, options);
    // Every moe op is rewritten once; the walk driver does not revisit the
    // ops the lowerings create.
    walkAndApplyPatterns(getOperation(), std::move(patterns));
    // A router with its own weight is rewritten twice (materialize, then
    // lower), and a moe.stack_experts waits for its grouped FFNs; run once
    // more for those.
    RewritePatternSet again(&getContext());
    populateMoEToLinalgPatterns(again, options);
    walkAndApplyPatterns(getOperation(), std::move(again));
    if (failed(lowering::reportUnlowered(getOperation(),
                                         moe::MoEDialect::getDialectNamespace())))
      signalPassFailure();
  }
};
} // namespace

void moe_mlir::populateMoEToLinalgPatterns(RewritePatternSet &patterns,
                                           const ContractionOptions &options) {
  MLIRContext *ctx = patterns.getContext();
  patterns.add<LowerOp<moe::RouteOp>>(ctx, lowering::lowerRoute);
  patterns.add<LowerOp<moe::DispatchOp>>(ctx, lowering::lowerDispatch);
  patterns.add<LowerOp<moe::CombineOp>>(ctx, lowering::lowerCombine);
  patterns.add<LowerOp<moe::ExpertFfnOp>>(
      ctx, [options](moe::ExpertFfnOp op, PatternRewriter &b) {
        return lowering::lowerExpertFfn(op, b, options);
      });
  patterns.add<LowerOp<moe::RoutedFfnOp>>(
      ctx, [options](moe::RoutedFfnOp op, PatternRewriter &b) {
        return lowering::lowerRoutedFfn(op, b, options);
      });
  patterns.add<LowerOp<moe::EpDispatchOp>>(ctx, lowering::lowerEpDispatch);
  patterns.add<LowerOp<moe::EpReturnOp>>(ctx, lowering::lowerEpReturn);
  patterns.add<LowerOp<moe::EpHomeOp>>(ctx, lowering::lowerEpHome);
  patterns.add<LowerOp<moe::EpAllGatherOp>>(ctx, lowering::lowerEpAllGather);
  patterns.add<LowerOp<moe::EpSlotsOp>>(ctx, lowering::lowerEpSlots);
  patterns.add<LowerOp<moe::SharedExpertOp>>(
      ctx, [options](moe::SharedExpertOp op, PatternRewriter &b) {
        return lowering::lowerSharedExpert(op, b, options);
      });
  patterns.add<LowerOp<moe::StackExpertsOp>>(ctx, lowering::lowerStackExperts);
}
