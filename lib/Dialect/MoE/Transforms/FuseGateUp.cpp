//===- FuseGateUp.cpp - the moe-fuse-gate-up pass -------------------------===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Dialect/MoE/IR/MoE.h"
#include "moe-mlir/Dialect/MoE/Transforms/Passes.h"
#include "moe-mlir/Support/PassStatistics.h"

#include "mlir/IR/Remarks.h"

namespace moe_mlir::moe {
#define GEN_PASS_DEF_MOEFUSEGATEUP
#include "moe-mlir/Dialect/MoE/Transforms/Passes.h.inc"
} // namespace moe_mlir::moe

using namespace mlir;
using namespace moe_mlir::moe;

namespace {

/// The vector width of the contraction kernel, in f32 lanes: H must be a
/// multiple of it.
constexpr int64_t kLanes = 16;

/// True when fc1 ([.., I or 2I, H], the last two dimensions the matrix of
/// one FFN) has a static I and a static H that is a multiple of kLanes.
bool kernelApplies(Value fc1) {
  auto type = cast<RankedTensorType>(fc1.getType());
  int64_t rank = type.getRank();
  if (rank < 2)
    return false;
  int64_t rows = type.getDimSize(rank - 2), hidden = type.getDimSize(rank - 1);
  return !ShapedType::isDynamic(rows) && !ShapedType::isDynamic(hidden) &&
         hidden % kLanes == 0;
}

struct MoEFuseGateUpPass
    : moe_mlir::moe::impl::MoEFuseGateUpBase<MoEFuseGateUpPass> {
  using MoEFuseGateUpBase::MoEFuseGateUpBase;
  moe_mlir::PassCounter numFused{this, "fused", "FFN ops whose gate and up projections were fused"};
  moe_mlir::PassCounter numUnfusable{this, "not-fusable", "FFN ops left alone (dynamic I, or H not a multiple of 16)"};

  template <typename OpTy>
  void fuse(OpTy op) {
    if (op.getFuseGateUp())
      return;
    // Decisions are reported as optimization remarks (moe-opt
    // --remarks-filter=moe-fuse-gate-up) as well as pass statistics, which
    // release builds of LLVM compile out.
    auto opts = remark::RemarkOpts::name("GateUpFusion")
                    .category(getArgument())
                    .subCategory(op->getName().getStringRef());
    if (!kernelApplies(op.getFc1())) {
      ++numUnfusable;
      remark::missed(op.getLoc(), opts)
          << "not fused: the kernel needs a static I and a static H that is "
             "a multiple of 16";
      return;
    }
    op.setFuseGateUp(true);
    ++numFused;
    remark::passed(op.getLoc(), opts)
        << (op.getGating() == Gating::None
                ? "activation fused into the fc1 contraction"
                : "gate and up projections fused, activation in the epilogue");
  }

  void runOnOperation() override {
    getOperation()->walk([&](Operation *op) {
      if (auto ffn = dyn_cast<ExpertFfnOp>(op))
        fuse(ffn);
      else if (auto shared = dyn_cast<SharedExpertOp>(op))
        fuse(shared);
    });
  }
};

} // namespace
