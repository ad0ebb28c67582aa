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
// Loops, outer to inner: B row tiles, A row tiles, k. B's tile stays in L1
// while all of A streams by, and B is read from memory once: the decode
// case (one token, memory bound) reads every weight exactly once.
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

using namespace mlir;

namespace moe_mlir::lowering {

namespace {
constexpr int64_t kLanes = 16; // one AVX-512 register of f32
constexpr int64_t kRowTile = 4; // Nr: rows of A per tile
} // namespace

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
  auto bType = cast<RankedTensorType>(bt.getType());
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
  Type f32 = b.getF32Type();
  auto accType = VectorType::get({kLanes}, f32);
  auto aVecType = VectorType::get({kStep}, aType.getElementType());
  auto bVecType = VectorType::get({kStep}, bType.getElementType());

  Value rows = dimValue(b, loc, a, 0);
  Value out = emptyTensor(
      b, loc, {tensor::getMixedSize(b, loc, a, 0), b.getIndexAttr(m)}, f32);
  Value zero = indexConst(b, loc, 0), one = indexConst(b, loc, 1);
  Value lastRow = arith::SubIOp::create(b, loc, rows, one);
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
  int64_t numTiles = m / colTile;
  auto forall = scf::ForallOp::create(
      b, loc, ArrayRef<OpFoldResult>{b.getIndexAttr(numTiles)},
      ValueRange{out}, std::nullopt);
  Block *body = forall.getBody();
  OpBuilder cb = OpBuilder::atBlockBegin(body);
  Location cl = loc;
  Value j0 = arith::MulIOp::create(cb, cl, body->getArgument(0),
                                   indexConst(cb, cl, colTile));
  OpFoldResult rowsOfr = tensor::getMixedSize(cb, cl, a, 0);
  Value tileInit =
      emptyTensor(cb, cl, {rowsOfr, cb.getIndexAttr(colTile)}, f32);
  auto rowLoop = scf::ForOp::create(
      cb, cl, zero, rows, indexConst(cb, cl, kRowTile), ValueRange{tileInit},
      [&](OpBuilder &rb, Location rl, Value i0, ValueRange rowIter) {
        // Rows past the end read the last row; their sums are not written.
        SmallVector<Value> aRows, bRows;
        for (int64_t i = 0; i < kRowTile; ++i)
          aRows.push_back(arith::MinSIOp::create(
              rb, rl, arith::AddIOp::create(rb, rl, i0, indexConst(rb, rl, i)),
              lastRow));
        for (int64_t j = 0; j < colTile; ++j)
          bRows.push_back(
              arith::AddIOp::create(rb, rl, j0, indexConst(rb, rl, j)));
        SmallVector<Value> init(kRowTile * colTile, zeroAcc);
        auto kLoop = scf::ForOp::create(
            rb, rl, indexConst(rb, rl, 0), indexConst(rb, rl, k),
            indexConst(rb, rl, kStep), init,
            [&](OpBuilder &kb, Location kl, Value k0, ValueRange accs) {
              SmallVector<Value> av, bv, next;
              for (Value r : aRows)
                av.push_back(readF32(kb, kl, a, r, k0, aVecType, aPad));
              for (Value r : bRows)
                bv.push_back(readF32(kb, kl, bt, r, k0, bVecType, bPad));
              for (int64_t i = 0; i < kRowTile; ++i)
                for (int64_t j = 0; j < colTile; ++j) {
                  Value acc = accs[i * colTile + j];
                  next.push_back(
                      pairs ? x86vector::DotBF16Op::create(kb, kl, accType,
                                                           acc, av[i], bv[j])
                                  .getResult()
                            : vector::FMAOp::create(kb, kl, accType, av[i],
                                                    bv[j], acc)
                                  .getResult());
                }
              scf::YieldOp::create(kb, kl, next);
            });
        Value tile = rowIter[0];
        for (int64_t i = 0; i < kRowTile; ++i) {
          Value row = arith::AddIOp::create(rb, rl, i0, indexConst(rb, rl, i));
          Value valid =
              arith::CmpIOp::create(rb, rl, arith::CmpIPredicate::slt, row, rows);
          auto ifOp = scf::IfOp::create(
              rb, rl, valid,
              [&](OpBuilder &tb, Location tl) {
                Value t = tile;
                for (int64_t j = 0; j < colTile; ++j) {
                  Value sum = vector::ReductionOp::create(
                      tb, tl, vector::CombiningKind::ADD,
                      kLoop.getResult(i * colTile + j),
                      arith::FastMathFlags::reassoc);
                  t = tensor::InsertOp::create(
                      tb, tl, sum, t, ValueRange{row, indexConst(tb, tl, j)});
                }
                scf::YieldOp::create(tb, tl, t);
              },
              [&](OpBuilder &eb, Location el) {
                scf::YieldOp::create(eb, el, tile);
              });
          tile = ifOp.getResult(0);
        }
        scf::YieldOp::create(rb, rl, tile);
      });
  OpBuilder ib = OpBuilder::atBlockBegin(forall.getTerminator().getBody());
  tensor::ParallelInsertSliceOp::create(
      ib, loc, rowLoop.getResult(0), body->getArgument(1),
      ArrayRef<OpFoldResult>{ib.getIndexAttr(0), j0},
      ArrayRef<OpFoldResult>{rowsOfr, ib.getIndexAttr(colTile)},
      ArrayRef<OpFoldResult>{ib.getIndexAttr(1), ib.getIndexAttr(1)});
  return forall.getResult(0);
}

} // namespace moe_mlir::lowering
