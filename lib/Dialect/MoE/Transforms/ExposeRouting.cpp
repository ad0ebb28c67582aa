//===- ExposeRouting.cpp - the moe-expose-routing pass --------------------===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Dialect/MoE/IR/MoE.h"
#include "moe-mlir/Dialect/MoE/Transforms/Passes.h"
#include "moe-mlir/Support/PassStatistics.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"

namespace moe_mlir::moe {
#define GEN_PASS_DEF_MOEEXPOSEROUTING
#include "moe-mlir/Dialect/MoE/Transforms/Passes.h.inc"
} // namespace moe_mlir::moe

using namespace mlir;
using namespace moe_mlir::moe;

namespace {
struct MoEExposeRoutingPass
    : moe_mlir::moe::impl::MoEExposeRoutingBase<MoEExposeRoutingPass> {
  moe_mlir::PassCounter numExposed{this, "routers-exposed", "Number of moe.route results returned"};
  void runOnOperation() override {
    if (failed(inlineMoELayerCalls(getOperation())))
      return signalPassFailure();
    for (auto fn : getOperation().getOps<func::FuncOp>()) {
      if (fn.isExternal() || !fn.isPublic())
        continue;
      SmallVector<Value> indices;
      SmallVector<int64_t> experts;
      fn.walk([&](RouteOp route) {
        if (route.getMode() != RoutingMode::TokenChoice)
          return;
        indices.push_back(route.getIndices());
        experts.push_back(route.getNumExperts());
      });
      if (indices.empty())
        continue;
      if (!fn.getBody().hasOneBlock()) {
        fn.emitError("moe-expose-routing: @")
            << fn.getSymName() << " has several blocks; cannot add results";
        return signalPassFailure();
      }
      auto ret = cast<func::ReturnOp>(fn.getBody().front().getTerminator());
      unsigned first = fn.getNumResults();
      SmallVector<Value> operands(ret.getOperands());
      operands.append(indices.begin(), indices.end());
      OpBuilder b(ret);
      func::ReturnOp::create(b, ret.getLoc(), operands);
      ret.erase();
      SmallVector<Type> results(fn.getResultTypes());
      for (Value v : indices)
        results.push_back(v.getType());
      fn.setType(FunctionType::get(fn.getContext(), fn.getArgumentTypes(),
                                   results));
      for (auto [i, v] : llvm::enumerate(indices))
        fn.setResultAttr(first + i, "moe.name",
                         StringAttr::get(fn.getContext(),
                                         "routing." + std::to_string(i) +
                                             ".e" +
                                             std::to_string(experts[i])));
      numExposed += indices.size();
    }
  }
};
} // namespace
