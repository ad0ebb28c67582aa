//===- InlineLayers.cpp - inline the functions that hold MoE layers -------===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Dialect/MoE/IR/MoE.h"
#include "moe-mlir/Dialect/MoE/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Transforms/InliningUtils.h"
#include "llvm/ADT/SetVector.h"

using namespace mlir;
using namespace moe_mlir::moe;

/// Whether `fn` holds a router or an MoE layer.
static bool holdsLayer(func::FuncOp fn) {
  return fn
      .walk([](Operation *op) {
        return isa<RouteOp, CombineOp>(op) ? WalkResult::interrupt()
                                           : WalkResult::advance();
      })
      .wasInterrupted();
}

LogicalResult moe_mlir::moe::inlineMoELayerCalls(ModuleOp module) {
  InlinerInterface interface(module.getContext());
  auto clone = [](OpBuilder &, Region *src, Block *inlineBlock,
                  Block *postInsertBlock, IRMapping &mapper,
                  bool shouldCloneInlinedRegion) {
    Region *into = inlineBlock->getParent();
    if (shouldCloneInlinedRegion)
      src->cloneInto(into, postInsertBlock->getIterator(), mapper);
    else
      into->getBlocks().splice(postInsertBlock->getIterator(),
                               src->getBlocks(), src->begin(), src->end());
  };
  SymbolTable symbols(module);
  llvm::SetVector<func::FuncOp> inlined;
  // Calls nested in inlined bodies surface in the next round; the bound
  // stops recursive layer functions.
  for (int round = 0; round < 16; ++round) {
    SmallVector<std::pair<func::CallOp, func::FuncOp>> calls;
    module.walk([&](func::CallOp call) {
      auto callee = symbols.lookup<func::FuncOp>(call.getCallee());
      if (callee && !callee.isExternal() && holdsLayer(callee))
        calls.push_back({call, callee});
    });
    if (calls.empty())
      break;
    for (auto [call, callee] : calls) {
      if (call->getParentOfType<func::FuncOp>() == callee)
        return call.emitError()
               << "cannot inline the recursive call of @"
               << callee.getSymName() << ", which holds an MoE layer";
      if (failed(inlineCall(interface, clone, call, callee,
                            &callee.getBody())))
        return call.emitError()
               << "cannot inline the call of @"
               << callee.getSymName() << ", which holds an MoE layer";
      call.erase();
      inlined.insert(callee);
    }
  }
  for (func::FuncOp fn : inlined)
    if (fn.isPrivate() && SymbolTable::symbolKnownUseEmpty(fn, module))
      fn.erase();
  return success();
}

