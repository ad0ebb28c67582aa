//===- OutlineParallelLoops.cpp - scf.parallel onto the thread pool -------===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Conversion/Passes.h"

#include "mlir/Conversion/LLVMCommon/TypeConverter.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/Transforms/RegionUtils.h"

namespace moe_mlir {
#define GEN_PASS_DEF_OUTLINEPARALLELLOOPS
#include "moe-mlir/Conversion/Passes.h.inc"
} // namespace moe_mlir

using namespace mlir;

static constexpr llvm::StringLiteral kDispatch = "moe_parallel_dispatch";

namespace {
struct OutlineParallelLoopsPass
    : moe_mlir::impl::OutlineParallelLoopsBase<OutlineParallelLoopsPass> {
  void runOnOperation() override;

private:
  LogicalResult outline(scf::ParallelOp loop, unsigned id,
                        const LLVMTypeConverter &converter);
  func::FuncOp dispatchDecl();
};
} // namespace

/// The task signature (closure, begin, end) -> ().
static FunctionType taskType(MLIRContext *ctx) {
  Type i64 = IntegerType::get(ctx, 64);
  return FunctionType::get(ctx, {LLVM::LLVMPointerType::get(ctx), i64, i64},
                           {});
}

func::FuncOp OutlineParallelLoopsPass::dispatchDecl() {
  ModuleOp module = getOperation();
  if (auto fn = module.lookupSymbol<func::FuncOp>(kDispatch))
    return fn;
  MLIRContext *ctx = module.getContext();
  OpBuilder b(module.getBodyRegion());
  Type i64 = b.getI64Type();
  auto type = FunctionType::get(
      ctx, {taskType(ctx), LLVM::LLVMPointerType::get(ctx), i64}, {});
  auto fn = func::FuncOp::create(b, module.getLoc(), kDispatch, type);
  fn.setPrivate();
  return fn;
}

/// Value of `v` as the LLVM type `type` (for the closure), and back.
static Value toLLVM(OpBuilder &b, Location loc, Value v, Type type) {
  if (v.getType().isIndex())
    return arith::IndexCastOp::create(b, loc, type, v);
  if (v.getType() == type)
    return v;
  return UnrealizedConversionCastOp::create(b, loc, type, v).getResult(0);
}
static Value fromLLVM(OpBuilder &b, Location loc, Value v, Type original) {
  if (original.isIndex())
    return arith::IndexCastOp::create(b, loc, original, v);
  if (v.getType() == original)
    return v;
  return UnrealizedConversionCastOp::create(b, loc, original, v).getResult(0);
}

LogicalResult
OutlineParallelLoopsPass::outline(scf::ParallelOp loop, unsigned id,
                                  const LLVMTypeConverter &converter) {
  if (loop.getNumLoops() != 1 || loop.getNumResults() != 0)
    return failure();
  MLIRContext *ctx = loop.getContext();
  Location loc = loop.getLoc();

  // Closure: the loop's lower bound and step, then everything the body
  // uses from above.
  SetVector<Value> used;
  getUsedValuesDefinedAbove(loop.getRegion(), used);
  SmallVector<Value> captures = {loop.getLowerBound()[0], loop.getStep()[0]};
  captures.append(used.begin(), used.end());
  SmallVector<Type> fieldTypes;
  for (Value v : captures) {
    Type t = converter.convertType(v.getType());
    if (!t || !LLVM::isCompatibleType(t))
      return failure();
    fieldTypes.push_back(t);
  }
  auto closureType = LLVM::LLVMStructType::getLiteral(ctx, fieldTypes);
  auto ptrTy = LLVM::LLVMPointerType::get(ctx);
  Type i64 = IntegerType::get(ctx, 64);

  // The task function.
  ModuleOp module = getOperation();
  OpBuilder mb(module.getBodyRegion());
  mb.setInsertionPointToEnd(module.getBody());
  std::string name = "moe_parallel_task_" + std::to_string(id);
  auto task = func::FuncOp::create(mb, loc, name, taskType(ctx));
  task.setPrivate();
  Block *entry = task.addEntryBlock();
  OpBuilder tb = OpBuilder::atBlockBegin(entry);
  IRMapping mapping;
  SmallVector<Value> restored;
  for (auto [i, v] : llvm::enumerate(captures)) {
    Value field = LLVM::GEPOp::create(
        tb, loc, ptrTy, closureType, entry->getArgument(0),
        ArrayRef<LLVM::GEPArg>{0, static_cast<int32_t>(i)});
    Value loaded = LLVM::LoadOp::create(tb, loc, fieldTypes[i], field);
    restored.push_back(fromLLVM(tb, loc, loaded, v.getType()));
  }
  for (auto [v, r] : llvm::zip(used, ArrayRef<Value>(restored).drop_front(2)))
    mapping.map(v, r);
  Value lb = restored[0], step = restored[1];
  Value begin = arith::IndexCastOp::create(tb, loc, tb.getIndexType(),
                                           entry->getArgument(1));
  Value end = arith::IndexCastOp::create(tb, loc, tb.getIndexType(),
                                         entry->getArgument(2));
  Value one = arith::ConstantIndexOp::create(tb, loc, 1);
  auto serial = scf::ForOp::create(tb, loc, begin, end, one);
  {
    OpBuilder bb = OpBuilder::atBlockBegin(serial.getBody());
    Value iv = arith::AddIOp::create(
        bb, loc, lb,
        arith::MulIOp::create(bb, loc, serial.getInductionVar(), step));
    mapping.map(loop.getInductionVars()[0], iv);
    for (Operation &op : loop.getBody()->without_terminator())
      bb.clone(op, mapping);
  }
  func::ReturnOp::create(tb, loc);

  // The call site: closure on the stack, then the dispatch.
  OpBuilder b(loop);
  Value count = arith::CeilDivSIOp::create(
      b, loc,
      arith::SubIOp::create(b, loc, loop.getUpperBound()[0],
                            loop.getLowerBound()[0]),
      loop.getStep()[0]);
  Value count64 = arith::IndexCastOp::create(b, loc, i64, count);
  Value oneI64 = LLVM::ConstantOp::create(b, loc, i64, b.getI64IntegerAttr(1));
  Value closure = LLVM::AllocaOp::create(b, loc, ptrTy, closureType, oneI64);
  for (auto [i, v] : llvm::enumerate(captures)) {
    Value field = LLVM::GEPOp::create(
        b, loc, ptrTy, closureType, closure,
        ArrayRef<LLVM::GEPArg>{0, static_cast<int32_t>(i)});
    LLVM::StoreOp::create(b, loc, toLLVM(b, loc, v, fieldTypes[i]), field);
  }
  Value fn = func::ConstantOp::create(b, loc, taskType(ctx), name);
  func::CallOp::create(b, loc, dispatchDecl(), ValueRange{fn, closure, count64});
  loop.erase();
  return success();
}

void OutlineParallelLoopsPass::runOnOperation() {
  ModuleOp module = getOperation();
  LLVMTypeConverter converter(&getContext());
  SmallVector<scf::ParallelOp> loops;
  module.walk([&](scf::ParallelOp op) {
    if (!op->getParentOfType<scf::ParallelOp>())
      loops.push_back(op);
  });
  unsigned id = 0;
  for (scf::ParallelOp loop : loops)
    if (succeeded(outline(loop, id, converter)))
      ++id;
}
