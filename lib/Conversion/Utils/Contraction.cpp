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
// Grouped form (a grouped GEMM): groups of rows of A, each multiplying its
// own matrix of stacked B operands (the experts of a MoE layer), share one
// parallel loop over (group, column tile) tasks. A task runs the same
// kernel on its group's rows as the single-matrix form would. The rows of a
// group may be gathered from A through a row list (a MoE layer's tokens,
// read where they are instead of copied into expert order). The combined
// form gives each task one column tile of every group and hands the tile's
// rows to a reduction into token order (the MoE combine) while in cache.
//
// Only upstream dialects are used (scf, vector, tensor, arith); LLVM turns
// the vector ops into AVX2 / AVX-512 code for the target CPU.
//
//===----------------------------------------------------------------------===//

#include "LoweringUtils.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Arith/Utils/Utils.h"
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

namespace {
/// The rows of A a task multiplies: row r < count is row base + r of `a`,
/// or row ids[base + r] (an i32 tensor) when gathering.
struct RowsOfA {
  Value a, base, count, ids;

  /// Row r's index into `a`.
  Value row(OpBuilder &b, Location l, Value r) const {
    Value at = arith::AddIOp::create(b, l, base, r);
    if (!ids)
      return at;
    return arith::IndexCastOp::create(b, l, b.getIndexType(),
                                      tensor::ExtractOp::create(b, l, ids, at));
  }
};

/// What every task of one contraction shares: the shape of a B matrix
/// ([m, k]), the tiling, the vector types and the padding constants. `tiles`
/// emits one task's kernel.
struct Kernel {
  Kernel(OpBuilder &b, Location loc, Type aElement, RankedTensorType bType,
         const ContractionOptions &options)
      : m(bType.getDimSize(0)), k(bType.getDimSize(1)) {
    // bf16 weights on a host with AVX512-BF16: A rounded to bf16 once, then
    // dot products of bf16 pairs accumulated in f32 (vdpbf16ps), 2 k per
    // lane.
    pairs = options.bf16DotProducts && bType.getElementType().isBF16() &&
            k % (2 * kLanes) == 0;
    if (pairs)
      aElement = b.getBF16Type();
    this->aElement = aElement;
    kStep = pairs ? 2 * kLanes : kLanes;
    colTile = m % 4 == 0 ? 4 : m % 2 == 0 ? 2 : 1; // Mr
    wide = m % kWideCols == 0 ? kWideCols : colTile;
    f32 = b.getF32Type();
    accType = VectorType::get({kLanes}, f32);
    aVecType = VectorType::get({kStep}, aElement);
    bVecType = VectorType::get({kStep}, bType.getElementType());
    aPad = arith::ConstantOp::create(b, loc, aElement,
                                     b.getZeroAttr(aElement));
    bPad = arith::ConstantOp::create(b, loc, bType.getElementType(),
                                     b.getZeroAttr(bType.getElementType()));
    zeroAcc = arith::ConstantOp::create(b, loc, accType,
                                        DenseElementsAttr::get(accType, 0.0f));
    int64_t rowBytes =
        k * static_cast<int64_t>(aElement.getIntOrFloatBitWidth() / 8);
    chunkRows =
        std::max<int64_t>(1, kChunkBytes / rowBytes / kRowTile) * kRowTile;
  }

  /// A with the element type the kernel reads (bf16 for bf16 pairs).
  Value prepareA(OpBuilder &b, Location loc, Value a) const {
    return pairs ? convertTensor(b, loc, a, aElement) : a;
  }

  /// One task: the [count, wide] f32 tile of columns [j0, j0 + wide) of
  /// rows · btᵀ for every B operand (2-D [m, k] each).
  SmallVector<Value> tiles(OpBuilder &cb, Location cl, const RowsOfA &rows,
                           ArrayRef<Value> bts, Value j0) const;

  int64_t m, k;
  bool pairs;
  Type aElement, f32;
  int64_t kStep, colTile, wide, chunkRows;
  VectorType accType, aVecType, bVecType;
  Value aPad, bPad, zeroAcc;
};
} // namespace

SmallVector<Value> Kernel::tiles(OpBuilder &cb, Location cl,
                                 const RowsOfA &rowsOfA, ArrayRef<Value> bts,
                                 Value j0) const {
  Value a = rowsOfA.a;
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
  Value rows = rowsOfA.count;
  // A static row count (a constant) gives static tiles.
  Value tileInit =
      emptyTensor(cb, cl, {getAsOpFoldResult(rows), cb.getIndexAttr(wide)}, f32);

  // Rows [lb, ub) in steps of `rowTile` rows (ub - lb a multiple of it) and
  // the `cols` columns from `col0` of the task's tile: rowTile x cols
  // accumulators over k, then one lane reduction per output.
  auto rowLoop = [&](OpBuilder &ob, Value bMat, Value lb, Value ub,
                     int64_t rowTile, int64_t col0, int64_t cols,
                     Value tile) {
    SmallVector<Value> bRows;
    for (int64_t j = 0; j < cols; ++j)
      bRows.push_back(
          arith::AddIOp::create(ob, cl, j0, indexConst(ob, cl, col0 + j)));
    return scf::ForOp::create(
               ob, cl, lb, ub, indexConst(ob, cl, rowTile), ValueRange{tile},
               [&](OpBuilder &rb, Location rl, Value i0, ValueRange rowIter) {
                 // Output rows, and the rows of A they read.
                 SmallVector<Value> outRows, aRows;
                 for (int64_t i = 0; i < rowTile; ++i) {
                   outRows.push_back(arith::AddIOp::create(
                       rb, rl, i0, indexConst(rb, rl, i)));
                   aRows.push_back(rowsOfA.row(rb, rl, outRows.back()));
                 }
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
                           ValueRange{outRows[i], indexConst(rb, rl, col0)},
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
  // Every B operand's tile of the task, chunk by chunk: the chunk of A stays
  // in L2 while the B operands' sub-tiles pass over it.
  size_t numB = bts.size();
  auto chunks = scf::ForOp::create(
      cb, cl, indexConst(cb, cl, 0), fullRows, indexConst(cb, cl, chunkRows),
      SmallVector<Value>(numB, tileInit),
      [&](OpBuilder &hb, Location hl, Value c0, ValueRange chunkIter) {
        Value c1 = arith::MinUIOp::create(
            hb, hl,
            arith::AddIOp::create(hb, hl, c0, indexConst(hb, hl, chunkRows)),
            fullRows);
        SmallVector<Value> tiles(chunkIter);
        for (int64_t col0 = 0; col0 < wide; col0 += colTile)
          for (size_t o = 0; o < numB; ++o)
            tiles[o] =
                rowLoop(hb, bts[o], c0, c1, kRowTile, col0, colTile, tiles[o]);
        scf::YieldOp::create(hb, hl, tiles);
      });
  SmallVector<Value> result;
  for (size_t o = 0; o < numB; ++o)
    result.push_back(
        rowLoop(cb, bts[o], fullRows, rows, 1, 0, wide, chunks.getResult(o)));
  return result;
}

static void checkOperands(ArrayRef<Value> bts, ContractionEpilogue epilogue) {
  (void)bts;
  (void)epilogue;
  assert(!bts.empty() && "no B operand");
  assert((bts.size() == 1 || epilogue) &&
         "several B operands need an epilogue to combine them");
  assert(llvm::all_of(bts,
                      [&](Value o) {
                        return o.getType() == bts.front().getType();
                      }) &&
         "B operands of one fused contraction share their type");
}

/// An scf.forall over the column tiles of `out` ([rows, kernel.m]), which
/// the pipeline runs on the model's thread pool: `tile(cb, j0)` builds the
/// [rows, wide] block of columns [j0, j0 + wide), stored at (0, j0). No two
/// tasks write one element.
static Value forEachColumnTile(
    OpBuilder &b, Location loc, const Kernel &kernel, Value out,
    OpFoldResult rows, function_ref<Value(OpBuilder &, Value j0)> tile) {
  auto forall = scf::ForallOp::create(
      b, loc, ArrayRef<OpFoldResult>{b.getIndexAttr(kernel.m / kernel.wide)},
      ValueRange{out}, std::nullopt);
  Block *body = forall.getBody();
  OpBuilder cb = OpBuilder::atBlockBegin(body);
  Value j0 = arith::MulIOp::create(cb, loc, body->getArgument(0),
                                   indexConst(cb, loc, kernel.wide));
  Value block = tile(cb, j0);
  OpBuilder ib = OpBuilder::atBlockBegin(forall.getTerminator().getBody());
  tensor::ParallelInsertSliceOp::create(
      ib, loc, block, body->getArgument(1),
      ArrayRef<OpFoldResult>{ib.getIndexAttr(0), j0},
      ArrayRef<OpFoldResult>{rows, ib.getIndexAttr(kernel.wide)},
      ArrayRef<OpFoldResult>{ib.getIndexAttr(1), ib.getIndexAttr(1)});
  return forall.getResult(0);
}

Value contractTransposedBFused(OpBuilder &b, Location loc, Value a,
                               ArrayRef<Value> bts,
                               const ContractionOptions &options,
                               ContractionEpilogue epilogue) {
  checkOperands(bts, epilogue);
  auto bType = cast<RankedTensorType>(bts.front().getType());
  Kernel kernel(b, loc, cast<RankedTensorType>(a.getType()).getElementType(),
                bType, options);
  a = kernel.prepareA(b, loc, a);
  Value out = emptyTensor(
      b, loc, {tensor::getMixedSize(b, loc, a, 0), b.getIndexAttr(kernel.m)},
      kernel.f32);

  // Column tiles are independent; each computes its [rows, wide] block of C.
  OpFoldResult rows = tensor::getMixedSize(b, loc, a, 0);
  return forEachColumnTile(b, loc, kernel, out, rows, [&](OpBuilder &cb,
                                                          Value j0) {
    SmallVector<Value> tiles = kernel.tiles(
        cb, loc,
        RowsOfA{a, indexConst(cb, loc, 0),
                getValueOrCreateConstantIndexOp(cb, loc, rows), Value()},
        bts, j0);
    return epilogue ? epilogue(cb, loc, tiles, j0, Value()) : tiles.front();
  });
}

namespace {
/// The B matrices of a grouped contraction: the stacks' [m, k] type, and
/// group g's tiles of columns [j0, j0 + wide), computed by one kernel for
/// the stacked experts and one for the tail's.
struct GroupedOperands {
  GroupedOperands(const Kernel &kernel, ArrayRef<Value> stackedBts,
                  const RowGroups &groups, Value a)
      : kernel(kernel), stackedBts(stackedBts), groups(groups), a(a) {
    auto stackedType = cast<RankedTensorType>(stackedBts.front().getType());
    bType = RankedTensorType::get(stackedType.getShape().drop_front(),
                                  stackedType.getElementType());
  }

  /// Group g's expert, first row and row count.
  std::tuple<Value, Value, Value> group(OpBuilder &b, Location loc,
                                        Value g) const {
    return {tensor::ExtractOp::create(b, loc, groups.expert, g),
            tensor::ExtractOp::create(b, loc, groups.start, g),
            tensor::ExtractOp::create(b, loc, groups.count, g)};
  }

  SmallVector<Value> tiles(OpBuilder &cb, Location loc, Value expert,
                           Value start, Value count, Value j0) const {
    RowsOfA rows{a, start, count, groups.rowIds};
    auto stackTiles = [&](OpBuilder &ob) {
      SmallVector<Value> bts;
      for (Value stacked : stackedBts)
        bts.push_back(tensor::ExtractSliceOp::create(
            ob, loc, bType, stacked,
            ArrayRef<OpFoldResult>{expert, ob.getIndexAttr(0),
                                   ob.getIndexAttr(0)},
            ArrayRef<OpFoldResult>{ob.getIndexAttr(1),
                                   ob.getIndexAttr(kernel.m),
                                   ob.getIndexAttr(kernel.k)},
            SmallVector<OpFoldResult>(3, ob.getIndexAttr(1))));
      return kernel.tiles(ob, loc, rows, bts, j0);
    };
    if (!groups.tailFrom)
      return stackTiles(cb);
    Value inStack = arith::CmpIOp::create(cb, loc, arith::CmpIPredicate::ult,
                                          expert, groups.tailFrom);
    auto branch = scf::IfOp::create(
        cb, loc, inStack,
        [&](OpBuilder &tb, Location tl) {
          scf::YieldOp::create(tb, tl, stackTiles(tb));
        },
        [&](OpBuilder &eb, Location el) {
          SmallVector<Value> bts = groups.tailMatrices(eb, el, expert);
          scf::YieldOp::create(eb, el, kernel.tiles(eb, el, rows, bts, j0));
        });
    return SmallVector<Value>(branch.getResults());
  }

  const Kernel &kernel;
  ArrayRef<Value> stackedBts;
  const RowGroups &groups;
  Value a;
  RankedTensorType bType;
};
} // namespace

static Kernel groupedKernel(OpBuilder &b, Location loc, Value a,
                            ArrayRef<Value> stackedBts,
                            const ContractionOptions &options) {
  auto stackedType = cast<RankedTensorType>(stackedBts.front().getType());
  return Kernel(b, loc, cast<RankedTensorType>(a.getType()).getElementType(),
                RankedTensorType::get(stackedType.getShape().drop_front(),
                                      stackedType.getElementType()),
                options);
}

Value contractGroupedTransposedB(OpBuilder &b, Location loc, Value a,
                                 ArrayRef<Value> stackedBts,
                                 const RowGroups &groups, Value init,
                                 const ContractionOptions &options,
                                 ContractionEpilogue epilogue) {
  checkOperands(stackedBts, epilogue);
  Kernel kernel = groupedKernel(b, loc, a, stackedBts, options);
  a = kernel.prepareA(b, loc, a);
  GroupedOperands operands(kernel, stackedBts, groups, a);

  // Tasks are (block, group, tile) triples, block-major: each group's column
  // tiles are cut into `blocks` blocks, and the pool's contiguous split of
  // the task range hands every thread whole blocks of every group, so the
  // threads get equal shares of rows however unevenly the groups are
  // loaded, while a run of tasks of one group keeps its rows in cache.
  int64_t tilesPerGroup = kernel.m / kernel.wide;
  int64_t blocks = 1;
  for (int64_t candidate : {8, 4, 2})
    if (tilesPerGroup % candidate == 0) {
      blocks = candidate;
      break;
    }
  int64_t tilesPerBlock = tilesPerGroup / blocks;
  Value numTasks = arith::MulIOp::create(
      b, loc, groups.numGroups, indexConst(b, loc, tilesPerGroup));

  auto forall = scf::ForallOp::create(
      b, loc, ArrayRef<OpFoldResult>{numTasks}, ValueRange{init},
      std::nullopt);
  Block *body = forall.getBody();
  OpBuilder cb = OpBuilder::atBlockBegin(body);
  Value task = body->getArgument(0);
  Value perBlock = arith::MulIOp::create(cb, loc, groups.numGroups,
                                         indexConst(cb, loc, tilesPerBlock));
  Value block = arith::DivUIOp::create(cb, loc, task, perBlock);
  Value inBlock = arith::RemUIOp::create(cb, loc, task, perBlock);
  Value g = arith::DivUIOp::create(cb, loc, inBlock,
                                   indexConst(cb, loc, tilesPerBlock));
  Value tileIndex = arith::AddIOp::create(
      cb, loc,
      arith::MulIOp::create(cb, loc, block, indexConst(cb, loc, tilesPerBlock)),
      arith::RemUIOp::create(cb, loc, inBlock,
                             indexConst(cb, loc, tilesPerBlock)));
  Value j0 = arith::MulIOp::create(cb, loc, tileIndex,
                                   indexConst(cb, loc, kernel.wide));
  auto [expert, start, count] = operands.group(cb, loc, g);
  SmallVector<Value> tiles = operands.tiles(cb, loc, expert, start, count, j0);
  Value tile = epilogue ? epilogue(cb, loc, tiles, j0, expert) : tiles.front();
  // Gathered rows land in the group's rows of the result, in group order.
  OpBuilder ib = OpBuilder::atBlockBegin(forall.getTerminator().getBody());
  tensor::ParallelInsertSliceOp::create(
      ib, loc, tile, body->getArgument(1),
      ArrayRef<OpFoldResult>{start, j0},
      ArrayRef<OpFoldResult>{count, ib.getIndexAttr(kernel.wide)},
      ArrayRef<OpFoldResult>{ib.getIndexAttr(1), ib.getIndexAttr(1)});
  return forall.getResult(0);
}

Value contractGroupedCombined(OpBuilder &b, Location loc, Value a,
                              ArrayRef<Value> stackedBts,
                              const RowGroups &groups, const RowCombine &combine,
                              const ContractionOptions &options,
                              ContractionEpilogue epilogue) {
  checkOperands(stackedBts, epilogue);
  Kernel kernel = groupedKernel(b, loc, a, stackedBts, options);
  a = kernel.prepareA(b, loc, a);
  GroupedOperands operands(kernel, stackedBts, groups, a);
  Value numRows = dimValue(b, loc, a, 0);
  OpFoldResult numTokens = tensor::getMixedSize(b, loc, combine.mapping, 0);
  Value out = emptyTensor(b, loc, {numTokens, b.getIndexAttr(kernel.m)},
                          combine.elementType);

  // One task per column tile, over every group: the tile's rows of all
  // groups are computed into a [rows, wide] buffer (rounded to the element
  // type, as the unfused FFN's result is) and summed into the tokens' rows
  // while they are in cache. No two tasks write one output element, so the
  // sums need no atomics, and each is the combine's sum in slot order.
  return forEachColumnTile(b, loc, kernel, out, numTokens, [&](OpBuilder &cb,
                                                               Value j0) {
    Value buffer = emptyTensor(
        cb, loc, {numRows, cb.getIndexAttr(kernel.wide)}, combine.elementType);
    auto loop = scf::ForOp::create(
        cb, loc, indexConst(cb, loc, 0), groups.numGroups,
        indexConst(cb, loc, 1), ValueRange{buffer},
        [&](OpBuilder &nb, Location l, Value g, ValueRange it) {
          auto [expert, start, count] = operands.group(nb, l, g);
          SmallVector<Value> tiles =
              operands.tiles(nb, l, expert, start, count, j0);
          Value tile =
              epilogue ? epilogue(nb, l, tiles, j0, expert) : tiles.front();
          tile = convertTensor(nb, l, tile, combine.elementType);
          scf::YieldOp::create(
              nb, l,
              ValueRange{tensor::InsertSliceOp::create(
                  nb, l, tile, it[0],
                  ArrayRef<OpFoldResult>{start, nb.getIndexAttr(0)},
                  ArrayRef<OpFoldResult>{count, nb.getIndexAttr(kernel.wide)},
                  ArrayRef<OpFoldResult>{nb.getIndexAttr(1),
                                         nb.getIndexAttr(1)})});
        });
    return combine.sum(cb, loc, loop.getResult(0));
  });
}

} // namespace moe_mlir::lowering
