//===- AttentionKernel.cpp - the vectorized attention core ----------------===//
//
// Part of moe-mlir.
//
// Attention and the per-head contractions of the mla lowerings as
// register-tiled vector code (scf, vector, tensor, arith), f32 throughout.
//
// Attention. The rows of the problem are the pairs (new token s, query head
// n); the query heads that share their key and value rows form a group.
// A parallel task (scf.forall, run on the model's thread pool) takes a
// block of up to kTaskRows rows: consecutive tokens times up to four heads
// of one group, token-major, so that every row of the task reads the same
// key and value rows. Tasks are ordered head block by head block, the
// token blocks of a head block zigzagged (first, last, second, second to
// last, ...), so that the contiguous ranges of tasks the thread pool hands
// out cost about the same under the causal mask. A task walks its rows
// kRowTile at a time (then one at a time); a tile of rows works on the
// keys its rows can see (the union of their causal, optionally windowed,
// ranges; no key past it):
//   1. scores: register tiles of kRowTile rows x kKeyTile keys (1 x
//      kRowKeys for a single row), the dot products over the head
//      dimension(s) in kLanes-wide fused multiply-adds (the last vector
//      masked), reduced across lanes by one fixed tree, times the softmax
//      scale, into a scratch row per tile row (kRowTile x T per task);
//   2. softmax: per row the maximum over its visible keys, then
//      e = exp(score - max) in vector arithmetic (0 for hidden keys),
//      their sum in kLanes partial sums over chunks aligned to kLanes,
//      reduced by the same tree;
//   3. values: Σ_j e_j · v_j as multiply-adds of the broadcast e_j,
//      kValueVectors vectors of the value rows at a time, in order of j,
//      divided by the row's sum.
// Every sum runs in an order fixed by the shapes alone: a row's result has
// the same bits (up to the sign of a zero) whatever tile or task it is
// computed in, and whatever the thread count.
//
// The per-head contractions of the absorbed form use the same two register
// tiles: a_n · W_n (multiply-adds of broadcast elements of a_n with rows of
// W) and a_n · W_nᵀ (dot products with the rows of W), in tasks of up to
// kTaskRows tokens of one head.
//
//===----------------------------------------------------------------------===//

#include "../Utils/LoweringUtils.h"
#include "AttentionLowering.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

#include <limits>
#include <numeric>

using namespace mlir;

namespace moe_mlir::lowering::mla {

namespace {
constexpr int64_t kLanes = 16;       // one AVX-512 register of f32
constexpr int64_t kRowTile = 4;      // rows per register tile
constexpr int64_t kKeyTile = 4;      // keys per tile of kRowTile rows
constexpr int64_t kRowKeys = 16;     // keys per tile of a single row
constexpr int64_t kValueVectors = 4; // value vectors per row at a time
constexpr int64_t kTaskRows = 16;    // rows per parallel task (at most)

using IndexFn = function_ref<SmallVector<Value>(OpBuilder &, Location, Value)>;

VectorType lanesType(OpBuilder &b) {
  return VectorType::get({kLanes}, b.getF32Type());
}

Value zeroLanes(OpBuilder &b, Location loc) {
  VectorType type = lanesType(b);
  return arith::ConstantOp::create(b, loc, type,
                                   DenseElementsAttr::get(type, 0.0f));
}

Value splat(OpBuilder &b, Location loc, Value scalar) {
  return vector::BroadcastOp::create(b, loc, lanesType(b), scalar);
}

Value add(OpBuilder &b, Location loc, Value x, Value y) {
  return arith::AddIOp::create(b, loc, x, y);
}
Value addConst(OpBuilder &b, Location loc, Value x, int64_t c) {
  return c == 0 ? x : add(b, loc, x, indexConst(b, loc, c));
}

SmallVector<Value> withLast(ArrayRef<Value> prefix, Value last) {
  SmallVector<Value> indices(prefix.begin(), prefix.end());
  indices.push_back(last);
  return indices;
}

int64_t lastDim(Value t) {
  return cast<RankedTensorType>(t.getType()).getShape().back();
}

/// Whether the elements of `t` are floats that extend to f32 (f32, bf16,
/// f16, ...).
bool hasLaneElements(Value t) {
  auto type =
      dyn_cast<FloatType>(cast<RankedTensorType>(t.getType()).getElementType());
  return type && type.getWidth() <= 32;
}

/// kLanes elements of `t` along its last dimension from `indices`, as f32.
/// Without `inBounds`, lanes past the end of the last dimension read 0.
Value readLanes(OpBuilder &b, Location loc, Value t, ArrayRef<Value> indices,
                bool inBounds) {
  Type element = cast<RankedTensorType>(t.getType()).getElementType();
  Value pad =
      arith::ConstantOp::create(b, loc, element, b.getZeroAttr(element));
  Value v =
      vector::TransferReadOp::create(b, loc, VectorType::get({kLanes}, element),
                                     t, indices, pad, ArrayRef<bool>{inBounds});
  if (!element.isF32())
    v = arith::ExtFOp::create(b, loc, lanesType(b), v);
  return v;
}

/// `v` written into `t` at `indices` (lanes past the end of the last
/// dimension dropped unless `inBounds`).
Value writeLanes(OpBuilder &b, Location loc, Value v, Value t,
                 ArrayRef<Value> indices, bool inBounds) {
  return vector::TransferWriteOp::create(b, loc, v, t, indices,
                                         ArrayRef<bool>{inBounds})
      .getResult();
}

/// The lane sums of up to kLanes vectors: lane a of the result is the sum
/// of the lanes of accs[a]. Every sum is added by the same tree (lane l plus
/// lane l + 8, then + 4, + 2, + 1), whatever the number of vectors and
/// wherever a vector sits among them, so a dot product has the same bits in
/// every register tile. Pairs of vectors are combined by two shuffles and
/// one add per level; absent vectors (zeros) cost nothing.
Value laneSums(OpBuilder &b, Location loc, ArrayRef<Value> accs) {
  assert(static_cast<int64_t>(accs.size()) <= kLanes && "too many sums");
  Value zero = zeroLanes(b, loc);
  SmallVector<Value> level(accs.begin(), accs.end());
  level.resize(kLanes, Value());
  // A vector of `level` holds kLanes / width groups of `width` lanes, group
  // g of vector v the partial sums of accumulator v · kLanes / width + g.
  for (int64_t width = kLanes; width > 1; width /= 2) {
    int64_t half = width / 2;
    SmallVector<int64_t> low, high;
    for (int64_t lane = 0; lane < 2 * kLanes; ++lane) {
      if (lane % width >= half)
        continue;
      low.push_back(lane);
      high.push_back(lane + half);
    }
    SmallVector<Value> next;
    for (size_t v = 0; v < level.size(); v += 2) {
      if (!level[v] && !level[v + 1]) {
        next.push_back(Value());
        continue;
      }
      Value x = level[v] ? level[v] : zero;
      Value y = level[v + 1] ? level[v + 1] : zero;
      Value lo = vector::ShuffleOp::create(b, loc, x, y, low);
      Value hi = vector::ShuffleOp::create(b, loc, x, y, high);
      next.push_back(arith::AddFOp::create(b, loc, lo, hi));
    }
    level = std::move(next);
  }
  return level.front() ? level.front() : zero;
}

/// Lanes [first, first + count) of v.
Value lanesOf(OpBuilder &b, Location loc, Value v, int64_t first,
              int64_t count) {
  if (first == 0 && count == kLanes)
    return v;
  return vector::ExtractStridedSliceOp::create(
      b, loc, v, ArrayRef<int64_t>{first}, ArrayRef<int64_t>{count},
      ArrayRef<int64_t>{1});
}

/// One term of a tile of dot products: row i of `a` (leading indices
/// aRows[i]) against row m of `b` (leading indices bRows[m]), over the
/// `width` elements of their last dimensions.
struct DotTerm {
  Value a, b;
  int64_t width;
  SmallVector<SmallVector<Value>> aRows, bRows;
};

/// Σ over the terms of a_i · b_m for the |aRows| x |bRows| pairs (the same
/// numbers of rows in every term), accumulated in f32 vectors along the
/// width (the last vector masked) and reduced across lanes: lane
/// i · |bRows| + m of the result.
Value dotTile(OpBuilder &b, Location loc, ArrayRef<DotTerm> terms) {
  int64_t rows = terms.front().aRows.size();
  int64_t cols = terms.front().bRows.size();
  SmallVector<Value> accs(rows * cols, zeroLanes(b, loc));
  for (const DotTerm &t : terms) {
    auto step = [&](OpBuilder &kb, Location kl, Value d0, ValueRange in,
                    bool inBounds) {
      SmallVector<Value> av, bv, out;
      for (ArrayRef<Value> r : t.aRows)
        av.push_back(readLanes(kb, kl, t.a, withLast(r, d0), inBounds));
      for (ArrayRef<Value> r : t.bRows)
        bv.push_back(readLanes(kb, kl, t.b, withLast(r, d0), inBounds));
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t m = 0; m < cols; ++m)
          out.push_back(
              vector::FMAOp::create(kb, kl, av[i], bv[m], in[i * cols + m]));
      return out;
    };
    int64_t full = t.width / kLanes * kLanes;
    if (full == kLanes) {
      accs = step(b, loc, indexConst(b, loc, 0), accs, true);
    } else if (full > 0) {
      auto loop = scf::ForOp::create(
          b, loc, indexConst(b, loc, 0), indexConst(b, loc, full),
          indexConst(b, loc, kLanes), accs,
          [&](OpBuilder &kb, Location kl, Value d0, ValueRange in) {
            scf::YieldOp::create(kb, kl, step(kb, kl, d0, in, true));
          });
      accs = SmallVector<Value>(loop.getResults());
    }
    if (full < t.width)
      accs = step(b, loc, indexConst(b, loc, full), accs, false);
  }
  return laneSums(b, loc, accs);
}

/// The weighted sums Σ_j w(i, j) · v_j over j in [lo, end) for `rows` rows
/// i, on the `count` vectors of the value rows from element d0 (v_j is the
/// row of `values` with leading indices vRow(j)); `limit` elements of the
/// row are left from d0 (vectors past them masked). Returns
/// accs[i · count + c], summed in order of j.
SmallVector<Value>
weightedTile(OpBuilder &b, Location loc, int64_t rows, Value lo, Value end,
             function_ref<Value(OpBuilder &, Location, int64_t, Value)> weight,
             Value values, IndexFn vRow, Value d0, int64_t count,
             int64_t limit) {
  SmallVector<Value> init(rows * count, zeroLanes(b, loc));
  auto loop = scf::ForOp::create(
      b, loc, lo, end, indexConst(b, loc, 1), init,
      [&](OpBuilder &jb, Location jl, Value j, ValueRange accs) {
        SmallVector<Value> prefix = vRow(jb, jl, j);
        SmallVector<Value> vv;
        for (int64_t c = 0; c < count; ++c)
          vv.push_back(
              readLanes(jb, jl, values,
                        withLast(prefix, addConst(jb, jl, d0, c * kLanes)),
                        (c + 1) * kLanes <= limit));
        SmallVector<Value> next;
        for (int64_t i = 0; i < rows; ++i) {
          Value w = splat(jb, jl, weight(jb, jl, i, j));
          for (int64_t c = 0; c < count; ++c)
            next.push_back(
                vector::FMAOp::create(jb, jl, w, vv[c], accs[i * count + c]));
        }
        scf::YieldOp::create(jb, jl, next);
      });
  return SmallVector<Value>(loop.getResults());
}

/// The vectors as one vector of their lanes in order.
Value concatLanes(OpBuilder &b, Location loc, ArrayRef<Value> parts) {
  if (parts.size() == 1)
    return parts.front();
  auto type = VectorType::get({kLanes * static_cast<int64_t>(parts.size())},
                              b.getF32Type());
  Value all = arith::ConstantOp::create(b, loc, type,
                                        DenseElementsAttr::get(type, 0.0f));
  for (auto [c, part] : llvm::enumerate(parts))
    all = vector::InsertStridedSliceOp::create(
        b, loc, part, all, ArrayRef<int64_t>{static_cast<int64_t>(c) * kLanes},
        ArrayRef<int64_t>{1});
  return all;
}

/// Weighted sums of value rows (weightedTile) over all `width` elements of
/// the rows, kValueVectors vectors at a time (an scf.for over the full
/// groups, then the rest), each tile row's vectors `finish`ed and written
/// to `out` as one vector at outRow(i) ++ [d]; returns the updated `out`.
Value weightedRows(
    OpBuilder &b, Location loc, int64_t rows, Value lo, Value end,
    function_ref<Value(OpBuilder &, Location, int64_t, Value)> weight,
    Value values, IndexFn vRow, int64_t width,
    function_ref<Value(OpBuilder &, Location, int64_t, Value)> finish,
    function_ref<SmallVector<Value>(OpBuilder &, Location, int64_t)> outRow,
    Value out) {
  int64_t groupWidth = kValueVectors * kLanes;
  auto group = [&](OpBuilder &gb, Location gl, Value d0, int64_t count,
                   int64_t limit, Value t) {
    SmallVector<Value> accs = weightedTile(gb, gl, rows, lo, end, weight,
                                           values, vRow, d0, count, limit);
    for (int64_t i = 0; i < rows; ++i) {
      SmallVector<Value> parts;
      for (int64_t c = 0; c < count; ++c)
        parts.push_back(finish(gb, gl, i, accs[i * count + c]));
      t = writeLanes(gb, gl, concatLanes(gb, gl, parts), t,
                     withLast(outRow(gb, gl, i), d0), count * kLanes <= limit);
    }
    return t;
  };
  int64_t full = width / groupWidth * groupWidth;
  if (full == groupWidth) {
    out = group(b, loc, indexConst(b, loc, 0), kValueVectors, groupWidth, out);
  } else if (full > 0) {
    out = scf::ForOp::create(
              b, loc, indexConst(b, loc, 0), indexConst(b, loc, full),
              indexConst(b, loc, groupWidth), ValueRange{out},
              [&](OpBuilder &gb, Location gl, Value d0, ValueRange t) {
                scf::YieldOp::create(
                    gb, gl, group(gb, gl, d0, kValueVectors, groupWidth, t[0]));
              })
              .getResult(0);
  }
  if (full < width)
    out = group(b, loc, indexConst(b, loc, full),
                (width - full + kLanes - 1) / kLanes, width - full, out);
  return out;
}

/// exp(x) of every lane for x <= 0 (the softmax's score - max), in f32
/// vector arithmetic rather than one libm call per lane: x = n·ln 2 + r
/// with n = round(x / ln 2) (by the 1.5·2^23 rounding trick) and |r| <=
/// ln 2 / 2 (ln 2 split in two parts, each product exact), e^r by its
/// Taylor polynomial of degree 7 (truncation below 1e-8 relative) in
/// Horner form with fused multiply-adds, times 2^n built in the exponent
/// bits. Within 1 ulp of e^x (0.93 at most over [-87, 0], 0.26 on
/// average); 0 below -87 (e^-87 is about 1.6e-38, next to the smallest
/// normal f32, 2^-126).
Value expLanes(OpBuilder &b, Location loc, Value x) {
  VectorType type = lanesType(b);
  auto lanes = [&](double v) -> Value {
    return arith::ConstantOp::create(
        b, loc, type, DenseElementsAttr::get(type, static_cast<float>(v)));
  };
  // Clamped into [-87, 0] (NaN to -87), so that the lanes the caller masks
  // out (stale scratch) stay finite too.
  Value floor = lanes(-87.0);
  Value clamped = arith::MinNumFOp::create(
      b, loc, arith::MaxNumFOp::create(b, loc, x, floor), lanes(0.0));
  // n = round(x · log2(e)): adding and subtracting 1.5·2^23 leaves the
  // nearest integer (|x · log2(e)| < 2^22).
  Value shifter = lanes(12582912.0);
  Value t = arith::MulFOp::create(b, loc, clamped, lanes(1.4426950408889634));
  Value n = arith::SubFOp::create(
      b, loc, arith::AddFOp::create(b, loc, t, shifter), shifter);
  // r = x - n·ln 2, with ln 2 = 0.693359375 (9 significant bits: n times it
  // is exact) + -2.12194440e-4.
  Value negN = arith::NegFOp::create(b, loc, n);
  Value r = vector::FMAOp::create(b, loc, negN, lanes(0.693359375), clamped);
  r = vector::FMAOp::create(b, loc, negN, lanes(-2.12194440e-4), r);
  // e^r = Σ_{k <= 7} r^k / k!.
  double coefficient = 1.0 / 5040.0;
  Value p = lanes(coefficient);
  for (int k = 6; k >= 0; --k) {
    coefficient *= static_cast<double>(k + 1);
    p = vector::FMAOp::create(b, loc, p, r, lanes(coefficient));
  }
  // 2^n: (n + 127) in the exponent field.
  auto intType = VectorType::get({kLanes}, b.getI32Type());
  Value ni = arith::FPToSIOp::create(b, loc, intType, n);
  auto intLanes = [&](int32_t v) -> Value {
    return arith::ConstantOp::create(b, loc, intType,
                                     DenseElementsAttr::get(intType, v));
  };
  Value bits = arith::ShLIOp::create(
      b, loc, arith::AddIOp::create(b, loc, ni, intLanes(127)), intLanes(23));
  Value scale = arith::BitcastOp::create(b, loc, type, bits);
  Value e = arith::MulFOp::create(b, loc, p, scale);
  Value under =
      arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLT, x, floor);
  return arith::SelectOp::create(b, loc, under, lanes(0.0), e);
}

/// The rows of a parallel task: tokens s0 .. s0 + count - 1 times the
/// `heads` query heads from h0, token-major (row r: token s0 + r / heads,
/// head h0 + r % heads).
struct TaskRows {
  Value s0, count, h0;
  int64_t heads;
  Value token(OpBuilder &b, Location loc, Value r) const {
    if (heads == 1)
      return r;
    return arith::DivUIOp::create(b, loc, r, indexConst(b, loc, heads));
  }
  Value head(OpBuilder &b, Location loc, Value r) const {
    if (heads == 1)
      return indexConst(b, loc, 0);
    return arith::RemUIOp::create(b, loc, r, indexConst(b, loc, heads));
  }
};

/// An scf.forall over `numTasks` tasks writing slices of a fresh
/// [tokens, heads, width] f32 tensor: task t takes `taskHeads` heads from
/// (t / blocks) · taskHeads and the zigzagged block (t % blocks) of
/// `taskTokens` tokens; `body` fills the task's slice [count, taskHeads,
/// width] (rows as TaskRows) and returns it.
Value forallRows(
    OpBuilder &b, Location loc, OpFoldResult tokens, int64_t heads,
    int64_t width, int64_t taskHeads, int64_t taskTokens,
    function_ref<Value(OpBuilder &, Location, const TaskRows &, Value)> body) {
  Type f32 = b.getF32Type();
  Value s = getValueOrCreateConstantIndexOp(b, loc, tokens);
  // Static token counts (decode) give static task counts and, with a single
  // token block, static row counts.
  std::optional<int64_t> staticTokens = getConstantIntValue(tokens);
  Value blocks, numTasks;
  if (staticTokens) {
    int64_t n = (*staticTokens + taskTokens - 1) / taskTokens;
    blocks = indexConst(b, loc, n);
    numTasks = indexConst(b, loc, n * (heads / taskHeads));
  } else {
    blocks =
        arith::CeilDivUIOp::create(b, loc, s, indexConst(b, loc, taskTokens));
    numTasks = heads == taskHeads
                   ? blocks
                   : arith::MulIOp::create(
                         b, loc, blocks, indexConst(b, loc, heads / taskHeads))
                         .getResult();
  }
  bool oneBlock = staticTokens && *staticTokens <= taskTokens;
  Value out = emptyTensor(
      b, loc, {tokens, b.getIndexAttr(heads), b.getIndexAttr(width)}, f32);
  auto forall = scf::ForallOp::create(
      b, loc, ArrayRef<OpFoldResult>{getAsOpFoldResult(numTasks)},
      ValueRange{out}, std::nullopt);
  Block *block = forall.getBody();
  OpBuilder fb = OpBuilder::atBlockBegin(block);
  Value t = block->getArgument(0);
  TaskRows rows;
  rows.heads = taskHeads;
  Value headBlock = t;
  if (oneBlock) {
    rows.s0 = indexConst(fb, loc, 0);
    rows.count = indexConst(fb, loc, *staticTokens);
  } else {
    headBlock = arith::DivUIOp::create(fb, loc, t, blocks);
    Value index = arith::RemUIOp::create(fb, loc, t, blocks);
    // Zigzag: 0, blocks - 1, 1, blocks - 2, ...
    Value half = arith::DivUIOp::create(fb, loc, index, indexConst(fb, loc, 2));
    Value odd = arith::CmpIOp::create(
        fb, loc, arith::CmpIPredicate::ne,
        arith::RemUIOp::create(fb, loc, index, indexConst(fb, loc, 2)),
        indexConst(fb, loc, 0));
    Value fromEnd = arith::SubIOp::create(
        fb, loc, arith::SubIOp::create(fb, loc, blocks, indexConst(fb, loc, 1)),
        half);
    Value tokenBlock = arith::SelectOp::create(fb, loc, odd, fromEnd, half);
    rows.s0 = arith::MulIOp::create(fb, loc, tokenBlock,
                                    indexConst(fb, loc, taskTokens));
    rows.count =
        arith::MinUIOp::create(fb, loc, indexConst(fb, loc, taskTokens),
                               arith::SubIOp::create(fb, loc, s, rows.s0));
  }
  rows.h0 = taskHeads == 1
                ? headBlock
                : arith::MulIOp::create(fb, loc, headBlock,
                                        indexConst(fb, loc, taskHeads))
                      .getResult();
  SmallVector<OpFoldResult> offsets = {getAsOpFoldResult(rows.s0),
                                       getAsOpFoldResult(rows.h0),
                                       fb.getIndexAttr(0)};
  SmallVector<OpFoldResult> sizes = {getAsOpFoldResult(rows.count),
                                     fb.getIndexAttr(taskHeads),
                                     fb.getIndexAttr(width)};
  SmallVector<OpFoldResult> strides(3, fb.getIndexAttr(1));
  Value slice = tensor::ExtractSliceOp::create(fb, loc, block->getArgument(1),
                                               offsets, sizes, strides);
  Value result = body(fb, loc, rows, slice);
  OpBuilder ib = OpBuilder::atBlockBegin(forall.getTerminator().getBody());
  tensor::ParallelInsertSliceOp::create(ib, loc, result, block->getArgument(1),
                                        offsets, sizes, strides);
  return forall.getResult(0);
}

/// Runs `tile(builder, r0, rows, carried)` over the rows of a task,
/// kRowTile rows at a time and then one at a time; `carried` are the loop
/// values (tensors written in place).
SmallVector<Value>
overRowTiles(OpBuilder &b, Location loc, Value numRows, ValueRange carried,
             function_ref<SmallVector<Value>(OpBuilder &, Location, Value,
                                             int64_t, ValueRange)>
                 tile) {
  std::optional<int64_t> staticRows = getConstantIntValue(numRows);
  Value full = staticRows
                   ? indexConst(b, loc, *staticRows / kRowTile * kRowTile)
                   : arith::MulIOp::create(
                         b, loc,
                         arith::DivUIOp::create(b, loc, numRows,
                                                indexConst(b, loc, kRowTile)),
                         indexConst(b, loc, kRowTile))
                         .getResult();
  auto loopOver = [&](Value lb, Value ub, int64_t step, ValueRange init) {
    auto loop = scf::ForOp::create(
        b, loc, lb, ub, indexConst(b, loc, step), init,
        [&](OpBuilder &rb, Location rl, Value r0, ValueRange in) {
          scf::YieldOp::create(rb, rl, tile(rb, rl, r0, step, in));
        });
    return SmallVector<Value>(loop.getResults());
  };
  // Loops a static row count does not enter are left out.
  SmallVector<Value> state(carried.begin(), carried.end());
  if (!staticRows || *staticRows >= kRowTile)
    state = loopOver(indexConst(b, loc, 0), full, kRowTile, state);
  if (!staticRows || *staticRows % kRowTile != 0)
    state = loopOver(full, numRows, 1, state);
  return state;
}

/// The number of query heads of the fused attention and how many of them
/// share a key or value operand's rows.
struct AttentionShape {
  int64_t heads;
  /// The number of query heads sharing a row of a rank-3 operand (all of
  /// them for a rank-2 operand).
  int64_t groupOf(Value t) const {
    auto type = cast<RankedTensorType>(t.getType());
    return type.getRank() == 2 ? heads : heads / type.getDimSize(1);
  }
};

/// The key/value head of `t` that the task's heads from h0 read: none for
/// a rank-2 operand (its rows are shared by all heads), else h0 / group.
Value sharedHead(OpBuilder &b, Location loc, Value t,
                 const AttentionShape &shape, Value h0) {
  if (cast<RankedTensorType>(t.getType()).getRank() == 2)
    return Value();
  int64_t group = shape.groupOf(t);
  if (group == 1)
    return h0;
  return arith::DivUIOp::create(b, loc, h0, indexConst(b, loc, group));
}

/// The leading indices of row j of a key/value operand: (j) or (j, head).
SmallVector<Value> sharedRow(Value head, Value j) {
  if (!head)
    return {j};
  return {j, head};
}
} // namespace

bool canVectorizeAttention(ArrayRef<ScoreTerm> terms, Value values) {
  auto qType = cast<RankedTensorType>(terms.front().q.getType());
  int64_t heads = qType.getDimSize(1);
  if (ShapedType::isDynamic(heads) || heads <= 0)
    return false;
  // A key or value operand [T, D] or [T, KV, D] with static D and KV
  // dividing the heads.
  auto shared = [&](Value t) {
    auto type = cast<RankedTensorType>(t.getType());
    if (!hasLaneElements(t) || type.getRank() < 2 || type.getRank() > 3 ||
        ShapedType::isDynamic(type.getShape().back()))
      return false;
    if (type.getRank() == 3) {
      int64_t kv = type.getDimSize(1);
      if (ShapedType::isDynamic(kv) || kv <= 0 || heads % kv != 0)
        return false;
    }
    return true;
  };
  for (const ScoreTerm &term : terms) {
    auto q = cast<RankedTensorType>(term.q.getType());
    if (!hasLaneElements(term.q) || q.getRank() != 3 ||
        q.getDimSize(1) != heads || ShapedType::isDynamic(q.getDimSize(2)) ||
        !shared(term.k) || lastDim(term.k) != q.getDimSize(2))
      return false;
  }
  return shared(values);
}

Value vectorAttention(OpBuilder &b, Location loc, ArrayRef<ScoreTerm> terms,
                      Value values, Value past, OpFoldResult tokens,
                      OpFoldResult total, double scale,
                      std::optional<int64_t> window) {
  AttentionShape shape;
  shape.heads = cast<RankedTensorType>(terms.front().q.getType()).getDimSize(1);
  int64_t vdim = lastDim(values);
  // A task's heads share the key and value rows of every operand.
  int64_t common = shape.groupOf(values);
  for (const ScoreTerm &term : terms)
    common = std::gcd(common, shape.groupOf(term.k));
  int64_t taskHeads = common % 4 == 0 ? 4 : common % 2 == 0 ? 2 : 1;
  int64_t taskTokens = kTaskRows / taskHeads;
  Value scaleLanes = arith::ConstantOp::create(
      b, loc, lanesType(b),
      DenseElementsAttr::get(lanesType(b), static_cast<float>(scale)));
  OpFoldResult totalSize = total;

  auto task = [&](OpBuilder &tb, Location tl, const TaskRows &rows,
                  Value slice) -> Value {
    SmallVector<Value> keyHeads;
    for (const ScoreTerm &term : terms)
      keyHeads.push_back(sharedHead(tb, tl, term.k, shape, rows.h0));
    Value valueHead = sharedHead(tb, tl, values, shape, rows.h0);
    Value scratch = emptyTensor(tb, tl, {tb.getIndexAttr(kRowTile), totalSize},
                                tb.getF32Type());
    Value numRows = rows.heads == 1
                        ? rows.count
                        : arith::MulIOp::create(tb, tl, rows.count,
                                                indexConst(tb, tl, rows.heads))
                              .getResult();
    if (std::optional<int64_t> count = getConstantIntValue(rows.count))
      numRows = indexConst(tb, tl, *count * rows.heads);
    auto rowTile = [&](OpBuilder &rb, Location rl, Value r0, int64_t nr,
                       ValueRange in) -> SmallVector<Value> {
      Value out = in[0], p = in[1];
      // Row i: token s_i, head n_i; it sees keys [first_i, last_i].
      SmallVector<Value> sLocal, nLocal, token, head, first, last;
      for (int64_t i = 0; i < nr; ++i) {
        Value r = addConst(rb, rl, r0, i);
        sLocal.push_back(rows.token(rb, rl, r));
        nLocal.push_back(rows.head(rb, rl, r));
        token.push_back(add(rb, rl, rows.s0, sLocal.back()));
        head.push_back(add(rb, rl, rows.h0, nLocal.back()));
        last.push_back(add(rb, rl, past, token.back()));
        if (window)
          first.push_back(arith::MaxSIOp::create(
              rb, rl, indexConst(rb, rl, 0),
              arith::SubIOp::create(rb, rl, last.back(),
                                    indexConst(rb, rl, *window - 1))));
        else
          first.push_back(indexConst(rb, rl, 0));
      }
      // The tile's keys: [lo, end), the union of its rows' ranges.
      Value lo = first.front();
      Value end = addConst(rb, rl, last.back(), 1);

      // 1. Scaled scores into the scratch rows, `mr` keys at a time.
      auto scoreKeys = [&](Value from, Value to, int64_t mr, Value scores) {
        auto loop = scf::ForOp::create(
            rb, rl, from, to, indexConst(rb, rl, mr), ValueRange{scores},
            [&](OpBuilder &kb, Location kl, Value j0, ValueRange sc) {
              SmallVector<DotTerm> dots;
              for (auto [term, keyHead] : llvm::zip(terms, keyHeads)) {
                DotTerm d{term.q, term.k, lastDim(term.q), {}, {}};
                for (int64_t i = 0; i < nr; ++i)
                  d.aRows.push_back({token[i], head[i]});
                for (int64_t m = 0; m < mr; ++m)
                  d.bRows.push_back(
                      sharedRow(keyHead, addConst(kb, kl, j0, m)));
                dots.push_back(std::move(d));
              }
              Value sums = arith::MulFOp::create(kb, kl, dotTile(kb, kl, dots),
                                                 scaleLanes);
              Value t = sc[0];
              for (int64_t i = 0; i < nr; ++i) {
                Value part = lanesOf(kb, kl, sums, i * mr, mr);
                t = writeLanes(kb, kl, part, t, {indexConst(kb, kl, i), j0},
                               true);
              }
              scf::YieldOp::create(kb, kl, t);
            });
        return loop.getResult(0);
      };
      int64_t mr = nr == 1 ? kRowKeys : kKeyTile;
      Value span = arith::SubIOp::create(rb, rl, end, lo);
      Value fullEnd =
          add(rb, rl, lo,
              arith::MulIOp::create(
                  rb, rl,
                  arith::DivUIOp::create(rb, rl, span, indexConst(rb, rl, mr)),
                  indexConst(rb, rl, mr)));
      p = scoreKeys(lo, fullEnd, mr, p);
      p = scoreKeys(fullEnd, end, 1, p);

      // 2. Softmax numerators in place, kLanes keys at a time: the maximum
      // over the row's visible keys, then exp(score - max), 0 where hidden.
      Type i64 = rb.getI64Type();
      SmallVector<int64_t> laneIds(kLanes);
      std::iota(laneIds.begin(), laneIds.end(), 0);
      auto idsType = VectorType::get({kLanes}, i64);
      Value iota = arith::ConstantOp::create(
          rb, rl, idsType,
          DenseElementsAttr::get(idsType, ArrayRef<int64_t>(laneIds)));
      auto asLanes = [&](OpBuilder &nb, Location nl, Value index) -> Value {
        return vector::BroadcastOp::create(
            nb, nl, idsType, arith::IndexCastOp::create(nb, nl, i64, index));
      };
      SmallVector<Value> firstLanes, lastLanes;
      for (int64_t i = 0; i < nr; ++i) {
        firstLanes.push_back(asLanes(rb, rl, first[i]));
        lastLanes.push_back(asLanes(rb, rl, last[i]));
      }
      auto visible = [&](OpBuilder &nb, Location nl, Value j0, int64_t i) {
        Value ids = arith::AddIOp::create(nb, nl, asLanes(nb, nl, j0), iota);
        Value after = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::sge,
                                            ids, firstLanes[i]);
        Value before = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::sle,
                                             ids, lastLanes[i]);
        return arith::AndIOp::create(nb, nl, after, before).getResult();
      };
      VectorType lanes = lanesType(rb);
      Value minusInf = arith::ConstantOp::create(
          rb, rl, lanes,
          DenseElementsAttr::get(lanes,
                                 -std::numeric_limits<float>::infinity()));
      // The chunks start at a multiple of kLanes, so that lane l of a row's
      // partial sums always adds the keys j = l mod kLanes in order,
      // whatever tile the row is in (hidden keys add exact zeros).
      Value step = indexConst(rb, rl, kLanes);
      Value alignedLo = arith::MulIOp::create(
          rb, rl, arith::DivUIOp::create(rb, rl, lo, step), step);
      auto maxLoop = scf::ForOp::create(
          rb, rl, alignedLo, end, step, SmallVector<Value>(nr, minusInf),
          [&](OpBuilder &nb, Location nl, Value j0, ValueRange maxes) {
            SmallVector<Value> next;
            for (int64_t i = 0; i < nr; ++i) {
              Value v =
                  readLanes(nb, nl, p, {indexConst(nb, nl, i), j0}, false);
              Value shown = arith::SelectOp::create(
                  nb, nl, visible(nb, nl, j0, i), v, minusInf);
              next.push_back(
                  arith::MaximumFOp::create(nb, nl, maxes[i], shown));
            }
            scf::YieldOp::create(nb, nl, next);
          });
      SmallVector<Value> rowMax;
      for (int64_t i = 0; i < nr; ++i)
        rowMax.push_back(splat(
            rb, rl,
            vector::ReductionOp::create(rb, rl, vector::CombiningKind::MAXIMUMF,
                                        maxLoop.getResult(i))));
      SmallVector<Value> expInit = {p};
      expInit.append(nr, zeroLanes(rb, rl));
      auto expLoop = scf::ForOp::create(
          rb, rl, alignedLo, end, step, expInit,
          [&](OpBuilder &nb, Location nl, Value j0, ValueRange in) {
            Value t = in[0];
            SmallVector<Value> next = {Value()};
            Value zero = zeroLanes(nb, nl);
            for (int64_t i = 0; i < nr; ++i) {
              Value row = indexConst(nb, nl, i);
              Value v = readLanes(nb, nl, t, {row, j0}, false);
              Value e =
                  expLanes(nb, nl, arith::SubFOp::create(nb, nl, v, rowMax[i]));
              e = arith::SelectOp::create(nb, nl, visible(nb, nl, j0, i), e,
                                          zero);
              t = writeLanes(nb, nl, e, t, {row, j0}, false);
              next.push_back(arith::AddFOp::create(nb, nl, in[1 + i], e));
            }
            next.front() = t;
            scf::YieldOp::create(nb, nl, next);
          });
      p = expLoop.getResult(0);
      Value sums = laneSums(
          rb, rl, SmallVector<Value>(expLoop.getResults().drop_front()));
      SmallVector<Value> rowSum;
      for (int64_t i = 0; i < nr; ++i)
        rowSum.push_back(
            splat(rb, rl, vector::ExtractOp::create(rb, rl, sums, i)));

      // 3. The weighted values over the tile's keys, divided by the sums.
      auto weight = [&](OpBuilder &nb, Location nl, int64_t i, Value j) {
        return tensor::ExtractOp::create(nb, nl, p,
                                         ValueRange{indexConst(nb, nl, i), j})
            .getResult();
      };
      auto vRow = [&](OpBuilder &nb, Location nl, Value j) {
        return sharedRow(valueHead, j);
      };
      auto divide = [&](OpBuilder &nb, Location nl, int64_t i, Value acc) {
        return arith::DivFOp::create(nb, nl, acc, rowSum[i]).getResult();
      };
      auto outRow = [&](OpBuilder &, Location, int64_t i) {
        return SmallVector<Value>{sLocal[i], nLocal[i]};
      };
      out = weightedRows(rb, rl, nr, lo, end, weight, values, vRow, vdim,
                         divide, outRow, out);
      return {out, p};
    };
    return overRowTiles(tb, tl, numRows, ValueRange{slice, scratch},
                        rowTile)[0];
  };
  return forallRows(b, loc, tokens, shape.heads, vdim, taskHeads, taskTokens,
                    task);
}

bool canVectorizeHeadContraction(Value a, Value w) {
  auto aType = cast<RankedTensorType>(a.getType());
  auto wType = cast<RankedTensorType>(w.getType());
  return aType.getRank() == 3 && wType.getRank() == 2 &&
         !aType.isDynamicDim(1) && !aType.isDynamicDim(2) &&
         !wType.isDynamicDim(1) && aType.getDimSize(1) > 0 &&
         hasLaneElements(a) && hasLaneElements(w);
}

Value vectorHeadMatmul(OpBuilder &b, Location loc, Value a, Value w,
                       int64_t headStride, int64_t offset) {
  auto aType = cast<RankedTensorType>(a.getType());
  int64_t heads = aType.getDimSize(1), depth = aType.getDimSize(2);
  int64_t width = lastDim(w);
  OpFoldResult tokens = tensor::getMixedSize(b, loc, a, 0);
  auto task = [&](OpBuilder &tb, Location tl, const TaskRows &rows,
                  Value slice) -> Value {
    Value wRow0 =
        arith::MulIOp::create(tb, tl, rows.h0, indexConst(tb, tl, headStride));
    auto rowTile = [&](OpBuilder &rb, Location rl, Value r0, int64_t nr,
                       ValueRange in) -> SmallVector<Value> {
      Value out = in[0];
      auto weight = [&](OpBuilder &nb, Location nl, int64_t i, Value d) {
        Value s = add(nb, nl, rows.s0, addConst(nb, nl, r0, i));
        return toF32(
            nb, nl,
            tensor::ExtractOp::create(nb, nl, a, ValueRange{s, rows.h0, d}));
      };
      auto wRow = [&](OpBuilder &nb, Location nl, Value d) {
        return SmallVector<Value>{
            add(nb, nl, addConst(nb, nl, wRow0, offset), d)};
      };
      auto keep = [](OpBuilder &, Location, int64_t, Value acc) { return acc; };
      auto outRow = [&](OpBuilder &nb, Location nl, int64_t i) {
        return SmallVector<Value>{addConst(nb, nl, r0, i),
                                  indexConst(nb, nl, 0)};
      };
      out = weightedRows(rb, rl, nr, indexConst(rb, rl, 0),
                         indexConst(rb, rl, depth), weight, w, wRow, width,
                         keep, outRow, out);
      return {out};
    };
    return overRowTiles(tb, tl, rows.count, ValueRange{slice}, rowTile)[0];
  };
  return forallRows(b, loc, tokens, heads, width, /*taskHeads=*/1, kTaskRows,
                    task);
}

Value vectorHeadMatmulTransposed(OpBuilder &b, Location loc, Value a, Value w,
                                 int64_t headStride, int64_t offset,
                                 int64_t width) {
  auto aType = cast<RankedTensorType>(a.getType());
  int64_t heads = aType.getDimSize(1), depth = aType.getDimSize(2);
  OpFoldResult tokens = tensor::getMixedSize(b, loc, a, 0);
  auto task = [&](OpBuilder &tb, Location tl, const TaskRows &rows,
                  Value slice) -> Value {
    Value wRow0 = addConst(
        tb, tl,
        arith::MulIOp::create(tb, tl, rows.h0, indexConst(tb, tl, headStride)),
        offset);
    auto rowTile = [&](OpBuilder &rb, Location rl, Value r0, int64_t nr,
                       ValueRange in) -> SmallVector<Value> {
      // Outputs e0 .. e0 + cols - 1 of the tile's rows.
      auto columns = [&](OpBuilder &eb, Location el, Value e0, int64_t cols,
                         Value out) {
        DotTerm d{a, w, depth, {}, {}};
        for (int64_t i = 0; i < nr; ++i)
          d.aRows.push_back(
              {add(eb, el, rows.s0, addConst(eb, el, r0, i)), rows.h0});
        for (int64_t m = 0; m < cols; ++m)
          d.bRows.push_back({add(eb, el, wRow0, addConst(eb, el, e0, m))});
        Value sums = dotTile(eb, el, {d});
        for (int64_t i = 0; i < nr; ++i) {
          Value part = lanesOf(eb, el, sums, i * cols, cols);
          out = writeLanes(eb, el, part, out,
                           {addConst(eb, el, r0, i), indexConst(eb, el, 0), e0},
                           true);
        }
        return out;
      };
      int64_t mr = nr == 1 ? kRowKeys : kKeyTile;
      int64_t full = width / mr * mr;
      Value out = in[0];
      if (full > 0)
        out = scf::ForOp::create(
                  rb, rl, indexConst(rb, rl, 0), indexConst(rb, rl, full),
                  indexConst(rb, rl, mr), ValueRange{out},
                  [&](OpBuilder &eb, Location el, Value e0, ValueRange o) {
                    scf::YieldOp::create(eb, el, columns(eb, el, e0, mr, o[0]));
                  })
                  .getResult(0);
      for (int64_t e = full; e < width; ++e)
        out = columns(rb, rl, indexConst(rb, rl, e), 1, out);
      return {out};
    };
    return overRowTiles(tb, tl, rows.count, ValueRange{slice}, rowTile)[0];
  };
  return forallRows(b, loc, tokens, heads, width, /*taskHeads=*/1, kTaskRows,
                    task);
}

} // namespace moe_mlir::lowering::mla
