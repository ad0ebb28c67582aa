//===- Contraction.cpp - the vectorized A · Bᵀ kernel ---------------------===//
//
// Part of moe-mlir.
//
// C[n, m] = Σ_k f32(A[n, k]) · f32(B[m, k]) with B in nn.Linear layout: both
// operands are contiguous along k, so the kernel keeps a register tile of
// Nr x Mr vector accumulators (Nr rows of A, Mr rows of B, VL lanes of k),
// loads Nr + Mr vectors per k step for Nr * Mr fused multiply-adds, and
// reduces every accumulator across its lanes at the end (a fixed tree, so
// the result does not depend on the machine's thread count or the run).
// Loops, outer to inner: tasks of 8 B rows (in parallel), Mr-row sub-tiles
// of B, tiles of Nr A rows, k. B's sub-tile stays in L1 while A streams by,
// and B is read from memory once. Rows of A left over (all of them when
// decoding one token) go through a 1 x 8 kernel: no wasted products, and
// eight weight streams per core keep its memory requests in flight.
//
// Fused form: several B operands of one shape (a gated FFN's gate and up
// projections) share the tasks, the chunks of A and the loops; each task
// hands its tiles, one [rows, 8] f32 tile per operand, to an epilogue (the
// activation) and stores only what that returns. Every output is the same
// sum in the same order as in the unfused kernel, so fusing changes no bit.
//
// Only upstream dialects are used (scf, vector, tensor, arith); LLVM turns
// the vector ops into AVX2 / AVX-512 code for the target CPU.
//
//===----------------------------------------------------------------------===//

#include "LoweringUtils.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Dialect/X86Vector/X86VectorDialect.h"

#include <algorithm>

using namespace mlir;

namespace moe_mlir::lowering {

namespace {
constexpr int64_t kLanes = 16; // one AVX-512 register of f32
constexpr int64_t kRowTile = 5; // Nr: rows of A per tile
// Columns per parallel task and per single-row kernel: decode reads eight
// weight rows at once, enough streams to keep each core's memory busy.
constexpr int64_t kWideCols = 8;
// A is walked in chunks of rows that fit in half of a core's L2 cache, so
// that every Mr-column sub-tile of a task reads them from L2, not from L3.
constexpr int64_t kChunkBytes = 512 * 1024;
} // namespace

/// Lane sums of `accs` (vectors of kLanes f32), kLanes at a time: lane i of
/// result g is the sum of the lanes of accs[kLanes * g + i]. Each sum is
/// added in the same halving order (lane l + lane l+8, then +4, +2, +1)
/// whatever the number of accumulators, so an output has the same bits in
/// every kernel; two shuffles and one add per pair of vectors per level, a
/// quarter of the work of one reduction per accumulator.
static SmallVector<Value> laneSums(OpBuilder &b, Location loc,
                                   ArrayRef<Value> accs, Value zero) {
  SmallVector<Value> level(accs.begin(), accs.end());
  while (level.size() % kLanes)
    level.push_back(zero);
  for (int64_t width = kLanes; width > 1; width /= 2) {
    // Each vector holds kLanes / width accumulators of `width` lanes.
    int64_t half = width / 2;
    SmallVector<int64_t> lo, hi;
    for (int64_t src = 0; src < 2; ++src)
      for (int64_t g = 0; g < kLanes / width; ++g)
        for (int64_t l = 0; l < half; ++l) {
          lo.push_back(src * kLanes + g * width + l);
          hi.push_back(src * kLanes + g * width + half + l);
        }
    SmallVector<Value> next;
    for (size_t v = 0; v < level.size(); v += 2) {
      Value x = vector::ShuffleOp::create(b, loc, level[v], level[v + 1], lo);
      Value y = vector::ShuffleOp::create(b, loc, level[v], level[v + 1], hi);
      next.push_back(arith::AddFOp::create(b, loc, x, y));
    }
    level = std::move(next);
  }
  return level;
}

bool canVectorizeContraction(Value a, Value bt) {
  auto at = cast<RankedTensorType>(a.getType());
  auto btt = cast<RankedTensorType>(bt.getType());
  int64_t k = btt.getDimSize(1);
  return at.getRank() == 2 && btt.getRank() == 2 && !btt.isDynamicDim(0) &&
         !ShapedType::isDynamic(k) && k % kLanes == 0 &&
         at.getDimSize(1) == k;
}

Value contractTransposedBVectorized(OpBuilder &b, Location loc, Value a,
                                    Value bt,
                                    const ContractionOptions &options) {
  return contractTransposedBFused(b, loc, a, bt, options, {});
}

Value contractTransposedBFused(OpBuilder &b, Location loc, Value a,
                               ArrayRef<Value> bts,
                               const ContractionOptions &options,
                               ContractionEpilogue epilogue) {
  assert(!bts.empty() && "no B operand");
  assert((bts.size() == 1 || epilogue) &&
         "several B operands need an epilogue to combine them");
  Value bt = bts.front();
  auto bType = cast<RankedTensorType>(bt.getType());
  assert(llvm::all_of(bts,
                      [&](Value o) { return o.getType() == bt.getType(); }) &&
         "B operands of one fused contraction share their type");
  int64_t m = bType.getDimSize(0), k = bType.getDimSize(1);
  // bf16 weights on a host with AVX512-BF16: A rounded to bf16 once, then
  // dot products of bf16 pairs accumulated in f32 (vdpbf16ps), 2 k per lane.
  bool pairs = options.bf16DotProducts && bType.getElementType().isBF16() &&
               k % (2 * kLanes) == 0;
  if (pairs)
    a = convertTensor(b, loc, a, b.getBF16Type());
  auto aType = cast<RankedTensorType>(a.getType());
  int64_t kStep = pairs ? 2 * kLanes : kLanes;
  int64_t colTile = m % 4 == 0 ? 4 : m % 2 == 0 ? 2 : 1; // Mr
  int64_t wide = m % kWideCols == 0 ? kWideCols : colTile;
  Type f32 = b.getF32Type();
  auto accType = VectorType::get({kLanes}, f32);
  auto aVecType = VectorType::get({kStep}, aType.getElementType());
  auto bVecType = VectorType::get({kStep}, bType.getElementType());

  Value rows = dimValue(b, loc, a, 0);
  Value out = emptyTensor(
      b, loc, {tensor::getMixedSize(b, loc, a, 0), b.getIndexAttr(m)}, f32);
  Value zero = indexConst(b, loc, 0);
  Value aPad = arith::ConstantOp::create(b, loc, aType.getElementType(),
                                         b.getZeroAttr(aType.getElementType()));
  Value bPad = arith::ConstantOp::create(b, loc, bType.getElementType(),
                                         b.getZeroAttr(bType.getElementType()));
  Value zeroAcc = arith::ConstantOp::create(
      b, loc, accType, DenseElementsAttr::get(accType, 0.0f));
  SmallVector<bool> inBounds = {true};

  auto readF32 = [&](OpBuilder &nb, Location l, Value source, Value row,
                     Value col, VectorType type, Value pad) -> Value {
    Value v = vector::TransferReadOp::create(nb, l, type, source,
                                             ValueRange{row, col}, pad,
                                             ArrayRef<bool>(inBounds));
    if (!pairs && type.getElementType() != nb.getF32Type())
      v = arith::ExtFOp::create(nb, l, accType, v);
    return v;
  };

  // Column tiles are independent: an scf.forall, which the pipeline runs on
  // the model's thread pool. Each tile computes its [rows, Mr] block of C.
  int64_t numTiles = m / wide;
  auto forall = scf::ForallOp::create(
      b, loc, ArrayRef<OpFoldResult>{b.getIndexAttr(numTiles)},
      ValueRange{out}, std::nullopt);
  Block *body = forall.getBody();
  OpBuilder cb = OpBuilder::atBlockBegin(body);
  Location cl = loc;
  Value j0 = arith::MulIOp::create(cb, cl, body->getArgument(0),
                                   indexConst(cb, cl, wide));
  OpFoldResult rowsOfr = tensor::getMixedSize(cb, cl, a, 0);
  Value tileInit =
      emptyTensor(cb, cl, {rowsOfr, cb.getIndexAttr(wide)}, f32);

  // Rows [lb, ub) in steps of `rowTile` rows (ub - lb a multiple of it) and
  // the `cols` columns from `col0` of the task's tile: rowTile x cols
  // accumulators over k, then one lane reduction per output.
  auto rowLoop = [&](Value bMat, Value lb, Value ub, int64_t rowTile,
                     int64_t col0, int64_t cols, Value tile) {
    SmallVector<Value> bRows;
    for (int64_t j = 0; j < cols; ++j)
      bRows.push_back(
          arith::AddIOp::create(cb, cl, j0, indexConst(cb, cl, col0 + j)));
    return scf::ForOp::create(
               cb, cl, lb, ub, indexConst(cb, cl, rowTile), ValueRange{tile},
               [&](OpBuilder &rb, Location rl, Value i0, ValueRange rowIter) {
                 SmallVector<Value> aRows;
                 for (int64_t i = 0; i < rowTile; ++i)
                   aRows.push_back(arith::AddIOp::create(
                       rb, rl, i0, indexConst(rb, rl, i)));
                 SmallVector<Value> init(rowTile * cols, zeroAcc);
                 auto kLoop = scf::ForOp::create(
                     rb, rl, indexConst(rb, rl, 0), indexConst(rb, rl, k),
                     indexConst(rb, rl, kStep), init,
                     [&](OpBuilder &kb, Location kl, Value k0,
                         ValueRange accs) {
                       SmallVector<Value> av, bv, next;
                       for (Value r : aRows)
                         av.push_back(
                             readF32(kb, kl, a, r, k0, aVecType, aPad));
                       for (Value r : bRows)
                         bv.push_back(
                             readF32(kb, kl, bMat, r, k0, bVecType, bPad));
                       for (int64_t i = 0; i < rowTile; ++i)
                         for (int64_t j = 0; j < cols; ++j) {
                           Value acc = accs[i * cols + j];
                           next.push_back(
                               pairs ? x86vector::DotBF16Op::create(
                                           kb, kl, accType, acc, av[i], bv[j])
                                           .getResult()
                                     : vector::FMAOp::create(kb, kl, accType,
                                                             av[i], bv[j], acc)
                                           .getResult());
                         }
                       scf::YieldOp::create(kb, kl, next);
                     });
                 // Output (i, j) is lane i * cols + j of the sums; a row's
                 // `cols` outputs are consecutive lanes (cols divides kLanes).
                 SmallVector<Value> sums = laneSums(
                     rb, rl, SmallVector<Value>(kLoop.getResults()), zeroAcc);
                 Value t = rowIter[0];
                 for (int64_t i = 0; i < rowTile; ++i) {
                   int64_t lane = i * cols;
                   Value part = vector::ExtractStridedSliceOp::create(
                       rb, rl, sums[lane / kLanes],
                       ArrayRef<int64_t>{lane % kLanes},
                       ArrayRef<int64_t>{cols}, ArrayRef<int64_t>{1});
                   t = vector::TransferWriteOp::create(
                           rb, rl, part, t,
                           ValueRange{aRows[i], indexConst(rb, rl, col0)},
                           ArrayRef<bool>{true})
                           .getResult();
                 }
                 scf::YieldOp::create(rb, rl, t);
               })
        .getResult(0);
  };
  // Full tiles of Nr rows, Mr columns at a time (B's Mr rows stay in L1
  // while A streams by), then the remaining rows one at a time over all the
  // task's columns (decode: one row, no wasted products, many streams).
  Value fullRows = arith::MulIOp::create(
      cb, cl,
      arith::DivUIOp::create(cb, cl, rows, indexConst(cb, cl, kRowTile)),
      indexConst(cb, cl, kRowTile));
  int64_t rowBytes =
      k * static_cast<int64_t>(aType.getElementTypeBitWidth() / 8);
  int64_t chunkRows =
      std::max<int64_t>(1, kChunkBytes / rowBytes / kRowTile) * kRowTile;
  // Every B operand's tile of the task, chunk by chunk: the chunk of A stays
  // in L2 while the B operands' sub-tiles pass over it.
  size_t numB = bts.size();
  auto chunks = scf::ForOp::create(
      cb, cl, zero, fullRows, indexConst(cb, cl, chunkRows),
      SmallVector<Value>(numB, tileInit),
      [&](OpBuilder &hb, Location hl, Value c0, ValueRange chunkIter) {
        Value c1 = arith::MinUIOp::create(
            hb, hl,
            arith::AddIOp::create(hb, hl, c0, indexConst(hb, hl, chunkRows)),
            fullRows);
        SmallVector<Value> tiles(chunkIter);
        OpBuilder::InsertionGuard guard(cb);
        cb.setInsertionPoint(hb.getInsertionBlock(), hb.getInsertionPoint());
        for (int64_t col0 = 0; col0 < wide; col0 += colTile)
          for (size_t o = 0; o < numB; ++o)
            tiles[o] =
                rowLoop(bts[o], c0, c1, kRowTile, col0, colTile, tiles[o]);
        scf::YieldOp::create(cb, hl, tiles);
      });
  SmallVector<Value> tiles;
  for (size_t o = 0; o < numB; ++o)
    tiles.push_back(
        rowLoop(bts[o], fullRows, rows, 1, 0, wide, chunks.getResult(o)));
  Value tile = epilogue ? epilogue(cb, cl, tiles, j0) : tiles.front();
  OpBuilder ib = OpBuilder::atBlockBegin(forall.getTerminator().getBody());
  tensor::ParallelInsertSliceOp::create(
      ib, loc, tile, body->getArgument(1),
      ArrayRef<OpFoldResult>{ib.getIndexAttr(0), j0},
      ArrayRef<OpFoldResult>{rowsOfr, ib.getIndexAttr(wide)},
      ArrayRef<OpFoldResult>{ib.getIndexAttr(1), ib.getIndexAttr(1)});
  return forall.getResult(0);
}

} // namespace moe_mlir::lowering
