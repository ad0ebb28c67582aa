//===- FuseDispatchCombine.cpp - the moe-fuse-dispatch-combine pass -------===//
//
// Part of moe-mlir.
//
//   rows, counts, map = dispatch dropless(h, ids)
//   y = expert_ffn(rows, counts)
//   out = combine dropless(y, map, w)
//
// becomes `out = routed_ffn(h, ids, w)`, whose lowering gathers the experts'
// rows from h and sums the down projection's tiles into token order in the
// grouped GEMM (see moe.routed_ffn).
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Dialect/MoE/IR/MoE.h"
#include "moe-mlir/Dialect/MoE/Transforms/Passes.h"
#include "moe-mlir/Support/PassStatistics.h"

#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Remarks.h"

namespace moe_mlir::moe {
#define GEN_PASS_DEF_MOEFUSEDISPATCHCOMBINE
#include "moe-mlir/Dialect/MoE/Transforms/Passes.h.inc"
} // namespace moe_mlir::moe

using namespace mlir;
using namespace moe_mlir::moe;

namespace {

/// Static weights and biases with I and H multiples of 16: the shapes the
/// fused lowering handles (elsewhere it would lower as the three ops).
bool kernelApplies(ExpertFfnOp ffn) {
  for (Value w : {ffn.getFc1(), ffn.getFc2(), ffn.getFc3(), ffn.getFc1Bias(),
                  ffn.getFc2Bias(), ffn.getFc3Bias()})
    if (w && !cast<RankedTensorType>(w.getType()).hasStaticShape())
      return false;
  auto fc2 = cast<RankedTensorType>(ffn.getFc2().getType());
  return fc2.getDimSize(1) % 16 == 0 && fc2.getDimSize(2) % 16 == 0;
}

struct MoEFuseDispatchCombinePass
    : moe_mlir::moe::impl::MoEFuseDispatchCombineBase<
          MoEFuseDispatchCombinePass> {
  using MoEFuseDispatchCombineBase::MoEFuseDispatchCombineBase;
  moe_mlir::PassCounter numFused{this, "fused", "Dispatch/expert_ffn/combine chains fused"};
  moe_mlir::PassCounter numNotFused{this, "not-fused", "Dropless combines left alone"};

  /// Why the chain ending at `combine` cannot be fused, or its FFN.
  FailureOr<ExpertFfnOp> chainOf(CombineOp combine, std::string &why) {
    auto fail = [&](StringRef reason) {
      why = reason.str();
      return failure();
    };
    if (combine.getPassthrough())
      return fail("the combine has a passthrough for dropped tokens");
    auto ffn = combine.getExpertOut().getDefiningOp<ExpertFfnOp>();
    if (!ffn)
      return fail("the combined rows do not come from a moe.expert_ffn");
    if (!ffn->hasOneUse())
      return fail("the expert output has other uses");
    auto dispatch = ffn.getRows().getDefiningOp<DispatchOp>();
    if (!dispatch || dispatch.getMode() != DispatchMode::Dropless ||
        ffn.getCounts() != dispatch.getCounts() ||
        combine.getMapping() != dispatch.getMapping())
      return fail("the expert rows do not come from the dropless "
                  "moe.dispatch whose mapping the combine reads");
    if (dispatch->getBlock() != combine->getBlock() ||
        ffn->getBlock() != combine->getBlock())
      return fail("the dispatch, FFN and combine are not in one block (fusing "
                  "would move work into a loop or branch)");
    if (!dispatch.getRows().hasOneUse() ||
        !dispatch.getCounts().hasOneUse() ||
        !dispatch.getMapping().hasOneUse())
      return fail("the dispatch results have other uses");
    if (dispatch.getNumExperts() !=
        static_cast<uint64_t>(
            cast<RankedTensorType>(ffn.getFc1().getType()).getDimSize(0)))
      return fail("the dispatch and the FFN differ in their number of "
                  "experts");
    if (!kernelApplies(ffn))
      return fail("the FFN's weights are dynamic, or I or H is not a "
                  "multiple of 16");
    return ffn;
  }

  void fuse(CombineOp combine) {
    auto opts = remark::RemarkOpts::name("DispatchCombineFusion")
                    .category(getArgument())
                    .subCategory(combine->getName().getStringRef());
    std::string why;
    FailureOr<ExpertFfnOp> chain = chainOf(combine, why);
    if (failed(chain)) {
      ++numNotFused;
      remark::missed(combine.getLoc(), opts) << "not fused: " << why;
      return;
    }
    ExpertFfnOp ffn = *chain;
    auto dispatch = ffn.getRows().getDefiningOp<DispatchOp>();
    OpBuilder b(combine);
    auto fused = RoutedFfnOp::create(
        b, ffn.getLoc(), dispatch.getInput(), dispatch.getIndices(),
        combine.getWeights(), ffn.getFc1(), ffn.getFc2(), ffn.getFc3(),
        ffn.getFc1Bias(), ffn.getFc2Bias(), ffn.getFc3Bias(),
        ffn.getActivationAttr(), ffn.getGatingAttr(),
        ffn.getActivationAlphaAttr(), ffn.getActivationBetaAttr(),
        ffn.getClampLimitAttr(), ffn.getFuseGateUpAttr());
    Value result = fused.getResult();
    if (result.getType() != combine.getType())
      result = tensor::CastOp::create(b, combine.getLoc(), combine.getType(),
                                      result);
    combine.replaceAllUsesWith(result);
    combine.erase();
    ffn.erase();
    dispatch.erase();
    ++numFused;
    remark::passed(fused.getLoc(), opts)
        << "dispatch, expert FFN and combine fused: rows read in place, "
           "combine in the down projection";
  }

  void runOnOperation() override {
    SmallVector<CombineOp> combines;
    getOperation()->walk([&](CombineOp op) {
      if (op.getMode() == DispatchMode::Dropless)
        combines.push_back(op);
    });
    for (CombineOp op : combines)
      fuse(op);
  }
};
} // namespace
