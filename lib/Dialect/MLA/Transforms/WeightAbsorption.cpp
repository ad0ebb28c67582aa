//===- WeightAbsorption.cpp - the mla-weight-absorption pass --------------===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Dialect/MLA/IR/MLA.h"
#include "moe-mlir/Dialect/MLA/Transforms/Passes.h"
#include "moe-mlir/Support/PassStatistics.h"

#include "mlir/IR/Remarks.h"

namespace moe_mlir::mla {
#define GEN_PASS_DEF_MLAWEIGHTABSORPTION
#include "moe-mlir/Dialect/MLA/Transforms/Passes.h.inc"
} // namespace moe_mlir::mla

using namespace mlir;
using namespace moe_mlir::mla;

namespace {

/// The cost rule of mla.attention for static token counts: true when the
/// absorbed form multiplies less, std::nullopt when a count is dynamic.
std::optional<bool> absorbedIsCheaper(AttentionOp op) {
  auto hidden = cast<RankedTensorType>(op.getHidden().getType());
  auto cache = cast<RankedTensorType>(op.getCKvCache().getType());
  if (hidden.isDynamicDim(0) || cache.isDynamicDim(0) ||
      cache.isDynamicDim(1))
    return std::nullopt;
  int64_t s = hidden.getDimSize(0), t = cache.getDimSize(0) + s;
  int64_t r = cache.getDimSize(1);
  int64_t expand = r * static_cast<int64_t>(op.getQkNopeHeadDim() +
                                            op.getVHeadDim());
  int64_t perPair = 2 * r - static_cast<int64_t>(op.getQkNopeHeadDim() +
                                                 op.getVHeadDim());
  return s * t * perPair + s * expand < t * expand;
}

struct MLAWeightAbsorptionPass
    : moe_mlir::mla::impl::MLAWeightAbsorptionBase<MLAWeightAbsorptionPass> {
  using MLAWeightAbsorptionBase::MLAWeightAbsorptionBase;
  moe_mlir::PassCounter numAbsorbed{this, "absorbed", "Ops set to the absorbed form"};
  moe_mlir::PassCounter numCost{this, "by-cost", "Ops left to the per-call cost rule"};
  moe_mlir::PassCounter numNaive{this, "naive", "Ops kept in the naive form"};

  void runOnOperation() override {
    std::optional<Absorption> wanted = symbolizeAbsorption(mode);
    if (!wanted) {
      getOperation()->emitError()
          << "mla-weight-absorption: unknown mode '" << mode.getValue()
          << "' (expected cost, absorbed or naive)";
      return signalPassFailure();
    }
    getOperation()->walk([&](AttentionOp op) {
      if (op.getWeightAbsorption())
        return; // chosen already, by the producer or an earlier run

      Absorption chosen = *wanted;
      if (chosen == Absorption::Cost)
        if (std::optional<bool> cheaper = absorbedIsCheaper(op))
          chosen = *cheaper ? Absorption::Absorbed : Absorption::Naive;
      op.setWeightAbsorption(chosen);
      // The choice as an optimization remark (moe-opt
      // --remarks-filter=mla-weight-absorption): pass statistics are
      // compiled out of release builds of LLVM.
      remark::passed(op.getLoc(), remark::RemarkOpts::name("WeightAbsorption")
                                      .category(getArgument()))
          << (chosen == Absorption::Absorbed ? "absorbed form"
              : chosen == Absorption::Naive  ? "naive form"
                                             : "form chosen per call by cost");
      if (chosen == Absorption::Absorbed)
        ++numAbsorbed;
      else if (chosen == Absorption::Cost)
        ++numCost;
      else
        ++numNaive;
    });
  }
};

} // namespace
