//===- ExpertParallelLowering.cpp - lower the moe.ep_* ops ----------------===//
//
// Part of moe-mlir.
//
// The expert-parallel ops become calls of the runtime's hooks (see
// moe-mlir/Runtime/ExpertParallel.h), declared here as
//
//   i64 moe_ep_rank()
//   i64 moe_ep_dispatch(x, tokens, rowBytes, slots, k, S, rows, counts, src)
//       moe_ep_combine_back(expertOut, src, tokens, k, rowBytes, home)
//       moe_ep_all_gather(home, tokens, rowBytes, out)
//
// with every argument an i64 (buffer addresses too). The model ABI
// (moe_mlir::addModelAbi) defines them to call the hooks the runtime
// installs. Operand tensors are passed as identity-layout buffers
// (bufferization copies one that is not contiguous); results are fresh
// buffers the hook fills, seen as tensors through a restrict to_tensor.
// Everything else (the replica choice, the home token range) is computed
// here, in the compiled code.
//
// Known limit: the hooks' reads are addresses that one-shot bufferization
// does not see. canonicalize folds to_buffer(to_tensor(%alloc)) to %alloc,
// so an operand that is another hook's result (e.g. an ep_all_gather
// output fed straight into the next ep_dispatch) could in principle be
// updated in place before the call reads it. The importers' models always
// put a fresh tensor (the normalized hidden states) there; lowering the
// ops after bufferization (or a BufferizableOpInterface) would close it.
//
//===----------------------------------------------------------------------===//

#include "../Utils/LoweringUtils.h"
#include "Lowerings.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/SymbolTable.h"

using namespace mlir;
using namespace moe_mlir;
using namespace moe_mlir::lowering;

static constexpr llvm::StringLiteral kRank = "moe_ep_rank";
static constexpr llvm::StringLiteral kDispatch = "moe_ep_dispatch";
static constexpr llvm::StringLiteral kCombineBack = "moe_ep_combine_back";
static constexpr llvm::StringLiteral kAllGather = "moe_ep_all_gather";

void lowering::declareExpertParallelRuntime(ModuleOp module) {
  OpBuilder b = OpBuilder::atBlockBegin(module.getBody());
  Type i64 = b.getI64Type();
  auto declare = [&](StringRef name, unsigned numArgs, bool returnsI64) {
    if (module.lookupSymbol(name))
      return;
    SmallVector<Type> args(numArgs, i64);
    SmallVector<Type> results;
    if (returnsI64)
      results.push_back(i64);
    auto fn = func::FuncOp::create(b, module.getLoc(), name,
                                   b.getFunctionType(args, results));
    fn.setPrivate();
  };
  declare(kRank, 0, true);
  declare(kDispatch, 9, true);
  declare(kCombineBack, 6, false);
  declare(kAllGather, 4, false);
}

static Value toI64(OpBuilder &b, Location loc, Value index) {
  return arith::IndexCastOp::create(b, loc, b.getI64Type(), index);
}

/// The address of a contiguous buffer holding `tensor`, as an i64.
static Value addressOf(OpBuilder &b, Location loc, Value tensor) {
  auto type = cast<RankedTensorType>(tensor.getType());
  auto memrefType = MemRefType::get(type.getShape(), type.getElementType());
  Value buffer = bufferization::ToBufferOp::create(b, loc, memrefType, tensor,
                                                   /*read_only=*/true);
  return toI64(b, loc,
               memref::ExtractAlignedPointerAsIndexOp::create(b, loc, buffer));
}

/// A fresh buffer of `type` with the dynamic sizes `sizes`, for a hook to
/// fill: the buffer and its address.
static std::pair<Value, Value> freshBuffer(OpBuilder &b, Location loc,
                                           RankedTensorType type,
                                           ValueRange dynamicSizes) {
  auto memrefType = MemRefType::get(type.getShape(), type.getElementType());
  Value buffer = memref::AllocOp::create(b, loc, memrefType, dynamicSizes,
                                         b.getI64IntegerAttr(64));
  Value address = toI64(
      b, loc, memref::ExtractAlignedPointerAsIndexOp::create(b, loc, buffer));
  return {buffer, address};
}

static Value asTensor(OpBuilder &b, Location loc, RankedTensorType type,
                      Value buffer) {
  return bufferization::ToTensorOp::create(b, loc, type, buffer,
                                           /*restrict=*/true,
                                           /*writable=*/true);
}

/// The dynamic sizes of `type` given the sizes of its dimensions.
static SmallVector<Value> dynamicSizes(RankedTensorType type,
                                       ArrayRef<Value> sizes) {
  SmallVector<Value> out;
  for (auto [d, size] : llvm::enumerate(sizes))
    if (type.isDynamicDim(d))
      out.push_back(size);
  return out;
}

/// Bytes of one row of `tensor` ([rows, H]): H times the element size.
static Value rowBytes(OpBuilder &b, Location loc, Value tensor) {
  auto type = cast<RankedTensorType>(tensor.getType());
  int64_t elementBytes = type.getElementTypeBitWidth() / 8;
  Value hidden = dimValue(b, loc, tensor, 1);
  return toI64(b, loc,
               arith::MulIOp::create(b, loc, hidden,
                                     indexConst(b, loc, elementBytes)));
}

static Value callRank(OpBuilder &b, Location loc) {
  Value rank =
      func::CallOp::create(b, loc, kRank, TypeRange{b.getI64Type()}, {})
          .getResult(0);
  return arith::IndexCastOp::create(b, loc, b.getIndexType(), rank);
}

/// ceil(rank * tokens / ranks), all operands non-negative indices.
static Value homeBegin(OpBuilder &b, Location loc, Value rank, Value tokens,
                       int64_t ranks) {
  Value scaled = arith::MulIOp::create(b, loc, rank, tokens);
  Value rounded =
      arith::AddIOp::create(b, loc, scaled, indexConst(b, loc, ranks - 1));
  return arith::DivUIOp::create(b, loc, rounded, indexConst(b, loc, ranks));
}

/// [first home token, number of home tokens] of this rank.
static std::pair<Value, Value> homeRange(OpBuilder &b, Location loc,
                                         Value tokens, int64_t ranks) {
  Value rank = callRank(b, loc);
  Value begin = homeBegin(b, loc, rank, tokens, ranks);
  Value next = arith::AddIOp::create(b, loc, rank, indexConst(b, loc, 1));
  Value end = homeBegin(b, loc, next, tokens, ranks);
  return {begin, arith::SubIOp::create(b, loc, end, begin)};
}

static Value i32Table(OpBuilder &b, Location loc, ArrayRef<int32_t> values) {
  auto type = RankedTensorType::get({static_cast<int64_t>(values.size())},
                                    b.getI32Type());
  return arith::ConstantOp::create(b, loc,
                                   DenseIntElementsAttr::get(type, values));
}

/// slots[t, j]: the global slot of the replica that serves assignment
/// (t, j), replicas(e)[t mod |replicas(e)|], or -1 outside [0, E).
static Value chooseSlots(OpBuilder &b, Location loc, moe::EpDispatchOp op) {
  int64_t experts = static_cast<int64_t>(op.getNumExperts());
  ArrayRef<int32_t> slotExperts = op.getSlotExperts();
  SmallVector<int32_t> count(experts, 0), offset(experts, 0), list;
  for (int32_t e : slotExperts)
    if (e >= 0)
      ++count[e];
  for (int64_t e = 1; e < experts; ++e)
    offset[e] = offset[e - 1] + count[e - 1];
  list.assign(offset.back() + count.back(), 0);
  SmallVector<int32_t> filled(experts, 0);
  for (auto [slot, e] : llvm::enumerate(slotExperts))
    if (e >= 0)
      list[offset[e] + filled[e]++] = static_cast<int32_t>(slot);

  Value counts = i32Table(b, loc, count);
  Value offsets = i32Table(b, loc, offset);
  Value slotList = i32Table(b, loc, list);
  Value ids = op.getIndices();
  Value init =
      emptyTensor(b, loc, mixedSizes(b, loc, ids), b.getI32Type());
  return elementwise(
      b, loc, ids, init, [&](OpBuilder &nb, Location nl, ValueRange args) {
        Value e = args[0];
        Value zero = i32Const(nb, nl, 0);
        Value valid = arith::AndIOp::create(
            nb, nl,
            arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::sge, e, zero),
            arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::slt, e,
                                  i32Const(nb, nl, experts)));
        Value safe = arith::SelectOp::create(nb, nl, valid, e, zero);
        Value idx = arith::IndexCastOp::create(nb, nl, nb.getIndexType(), safe);
        auto lookup = [&](Value table, Value at) {
          Value v = tensor::ExtractOp::create(nb, nl, table, at);
          return arith::IndexCastOp::create(nb, nl, nb.getIndexType(), v)
              .getResult();
        };
        Value n = lookup(counts, idx);
        Value first = lookup(offsets, idx);
        Value token = linalg::IndexOp::create(nb, nl, 0);
        Value replica = arith::RemUIOp::create(nb, nl, token, n);
        Value at = arith::AddIOp::create(nb, nl, first, replica);
        Value slot = tensor::ExtractOp::create(nb, nl, slotList, at);
        yieldOp(nb, nl,
                arith::SelectOp::create(nb, nl, valid, slot,
                                        i32Const(nb, nl, -1))
                    .getResult());
      });
}

LogicalResult lowering::lowerEpDispatch(moe::EpDispatchOp op,
                                        PatternRewriter &b) {
  Location loc = op.getLoc();
  Value input = op.getInput(), ids = op.getIndices();
  Value slots = chooseSlots(b, loc, op);
  Value tokens = dimValue(b, loc, input, 0);
  Value k = dimValue(b, loc, ids, 1);
  Value hidden = dimValue(b, loc, input, 1);
  Value capacity = arith::MulIOp::create(b, loc, tokens, k);
  int64_t slotsPerRank = op.getSlotsPerRank();

  auto rowsType = cast<RankedTensorType>(op.getRows().getType());
  auto countsType = cast<RankedTensorType>(op.getCounts().getType());
  auto sourceType = cast<RankedTensorType>(op.getSource().getType());
  auto [rows, rowsAddr] = freshBuffer(
      b, loc, rowsType, dynamicSizes(rowsType, {capacity, hidden}));
  auto [counts, countsAddr] = freshBuffer(b, loc, countsType, {});
  auto [source, sourceAddr] =
      freshBuffer(b, loc, sourceType, dynamicSizes(sourceType, {capacity}));
  Value args[] = {addressOf(b, loc, input),
                  toI64(b, loc, tokens),
                  rowBytes(b, loc, input),
                  addressOf(b, loc, slots),
                  toI64(b, loc, k),
                  toI64(b, loc, indexConst(b, loc, slotsPerRank)),
                  rowsAddr,
                  countsAddr,
                  sourceAddr};
  func::CallOp::create(b, loc, kDispatch, TypeRange{b.getI64Type()}, args);
  b.replaceOp(op, {asTensor(b, loc, rowsType, rows),
                   asTensor(b, loc, countsType, counts),
                   asTensor(b, loc, sourceType, source)});
  return success();
}

LogicalResult lowering::lowerEpReturn(moe::EpReturnOp op, PatternRewriter &b) {
  Location loc = op.getLoc();
  Value expertOut = op.getExpertOut(), ids = op.getIndices();
  Value tokens = dimValue(b, loc, ids, 0);
  Value k = dimValue(b, loc, ids, 1);
  Value hidden = dimValue(b, loc, expertOut, 1);
  auto [begin, count] = homeRange(b, loc, tokens, op.getRanks());
  (void)begin;
  Value homeRows = arith::MulIOp::create(b, loc, count, k);
  auto type = cast<RankedTensorType>(op.getResult().getType());
  auto [home, homeAddr] =
      freshBuffer(b, loc, type, dynamicSizes(type, {homeRows, hidden}));
  Value args[] = {addressOf(b, loc, expertOut),
                  addressOf(b, loc, op.getSource()),
                  toI64(b, loc, tokens),
                  toI64(b, loc, k),
                  rowBytes(b, loc, expertOut),
                  homeAddr};
  func::CallOp::create(b, loc, kCombineBack, TypeRange{}, args);
  b.replaceOp(op, asTensor(b, loc, type, home));
  return success();
}

LogicalResult lowering::lowerEpHome(moe::EpHomeOp op, PatternRewriter &b) {
  Location loc = op.getLoc();
  Value input = op.getInput();
  auto inType = cast<RankedTensorType>(input.getType());
  Value tokens = dimValue(b, loc, input, 0);
  auto [begin, count] = homeRange(b, loc, tokens, op.getRanks());
  SmallVector<OpFoldResult> offsets(inType.getRank(), b.getIndexAttr(0));
  SmallVector<OpFoldResult> sizes = mixedSizes(b, loc, input);
  SmallVector<OpFoldResult> strides(inType.getRank(), b.getIndexAttr(1));
  offsets[0] = begin;
  sizes[0] = count;
  Value slice =
      tensor::ExtractSliceOp::create(b, loc, input, offsets, sizes, strides);
  b.replaceOp(op, castToResult(b, loc, slice, op.getResult()));
  return success();
}

LogicalResult lowering::lowerEpAllGather(moe::EpAllGatherOp op,
                                         PatternRewriter &b) {
  Location loc = op.getLoc();
  Value input = op.getInput();
  Value tokens = op.getTokens();
  Value hidden = dimValue(b, loc, input, 1);
  auto type = cast<RankedTensorType>(op.getResult().getType());
  auto [out, outAddr] =
      freshBuffer(b, loc, type, dynamicSizes(type, {tokens, hidden}));
  Value args[] = {addressOf(b, loc, input), toI64(b, loc, tokens),
                  rowBytes(b, loc, input), outAddr};
  func::CallOp::create(b, loc, kAllGather, TypeRange{}, args);
  b.replaceOp(op, asTensor(b, loc, type, out));
  return success();
}

LogicalResult lowering::lowerEpSlots(moe::EpSlotsOp op, PatternRewriter &b) {
  Location loc = op.getLoc();
  Value input = op.getInput();
  auto inType = cast<RankedTensorType>(input.getType());
  auto outType = cast<RankedTensorType>(op.getResult().getType());
  int64_t rank = inType.getRank();
  ArrayRef<int32_t> slotExperts = op.getSlotExperts();
  int64_t perRank = outType.getDimSize(0);
  // Unused slots read expert 0: nothing is routed to them.
  SmallVector<int32_t> table;
  for (int32_t e : slotExperts)
    table.push_back(e < 0 ? 0 : e);
  Value experts = i32Table(b, loc, table);
  Value first = arith::MulIOp::create(b, loc, callRank(b, loc),
                                      indexConst(b, loc, perRank));
  SmallVector<OpFoldResult> sizes = mixedSizes(b, loc, input);
  sizes[0] = b.getIndexAttr(perRank);
  Value result = emptyTensor(b, loc, sizes, inType.getElementType());
  SmallVector<OpFoldResult> one(sizes), strides(rank, b.getIndexAttr(1));
  one[0] = b.getIndexAttr(1);
  for (int64_t s = 0; s < perRank; ++s) {
    Value at = arith::AddIOp::create(b, loc, first, indexConst(b, loc, s));
    Value expert = arith::IndexCastOp::create(
        b, loc, b.getIndexType(), tensor::ExtractOp::create(b, loc, experts, at));
    SmallVector<OpFoldResult> from(rank, b.getIndexAttr(0)), to(from);
    from[0] = expert;
    to[0] = b.getIndexAttr(s);
    Value slice =
        tensor::ExtractSliceOp::create(b, loc, input, from, one, strides);
    result = tensor::InsertSliceOp::create(b, loc, slice, result, to, one,
                                           strides);
  }
  b.replaceOp(op, castToResult(b, loc, result, op.getResult()));
  return success();
}
