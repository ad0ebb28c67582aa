//===- MatMulOps.cpp - ONNX MatMul and Gemm -------------------------------===//
//
// Part of moe-mlir's ONNX frontend.
//
// MatMul follows numpy.matmul: 1-d operands are promoted and the promoted
// dimension dropped, batch dimensions broadcast. Two 2-d operands become
// linalg.matmul, batched products a linalg.generic. Products of f16/bf16
// accumulate in f32 and are rounded once.
//
//===----------------------------------------------------------------------===//

#include "GraphImporter.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"

using namespace mlir;
using namespace moe_mlir::onnx_import;

namespace {

Type accumulatorType(GraphImporter &g, Type elem) {
  if (auto f = dyn_cast<FloatType>(elem); f && f.getWidth() < 32)
    return g.b().getF32Type();
  return elem;
}

/// Rounds `v` (element type `acc`) to `elem` when they differ.
Value roundTo(GraphImporter &g, Value v, Type elem) {
  auto type = cast<RankedTensorType>(v.getType());
  if (type.getElementType() == elem)
    return v;
  OnnxValue in;
  in.value = v;
  return *g.elementwise({in}, Type(), elem,
                        [&](OpBuilder &b, Location loc, ValueRange s) {
                          return castScalar(b, loc, s[0], elem);
                        });
}

/// a [.., M, K] · b [.., K, N] (ranks >= 2) with broadcast batch dims, in
/// the accumulator type.
FailureOr<Value> batchedMatmul(GraphImporter &g, Value a, Value b,
                               Type acc) {
  auto at = cast<RankedTensorType>(a.getType());
  auto bt = cast<RankedTensorType>(b.getType());
  int64_t ka = at.getDimSize(at.getRank() - 1);
  int64_t kb = bt.getDimSize(bt.getRank() - 2);
  if (!ShapedType::isDynamic(ka) && !ShapedType::isDynamic(kb) && ka != kb)
    return g.fail("inner dimensions differ: " + shapeString(at.getShape()) +
                  " x " + shapeString(bt.getShape()));
  OpBuilder &builder = g.b();
  MLIRContext *ctx = g.ctx();
  if (at.getRank() == 2 && bt.getRank() == 2) {
    Value init = g.filled({g.dim(a, 0), g.dim(b, 1)}, acc,
                          cast<TypedAttr>(builder.getZeroAttr(acc)));
    return linalg::MatmulOp::create(builder, g.loc(), ValueRange{a, b},
                                    ValueRange{init})
        .getResult(0);
  }
  // Batch dims: broadcast of the leading dims (see broadcastSize()).
  int64_t batchA = at.getRank() - 2, batchB = bt.getRank() - 2;
  int64_t batch = std::max(batchA, batchB);
  SmallVector<OpFoldResult> batchShape;
  for (int64_t d = 0; d < batch; ++d) {
    int64_t da = d - (batch - batchA), db = d - (batch - batchB);
    SmallVector<GraphImporter::SizeRef> refs;
    if (da >= 0)
      refs.push_back({a, da});
    if (db >= 0)
      refs.push_back({b, db});
    std::optional<OpFoldResult> size = g.broadcastSize(refs);
    if (!size)
      return g.fail(
          "batch dimensions do not broadcast: " + shapeString(at.getShape()) +
          " x " + shapeString(bt.getShape()));
    batchShape.push_back(*size);
  }
  // An operand whose dynamic batch dimension may be 1 when the model runs
  // (not known to equal the broadcast size) is broadcast first.
  auto broadcastBatch = [&](Value v, int64_t lead) {
    auto type = cast<RankedTensorType>(v.getType());
    ArrayRef<OpFoldResult> own = ArrayRef(batchShape).take_back(lead);
    bool ambiguous = false;
    for (int64_t i = 0; i < lead; ++i)
      ambiguous |= type.isDynamicDim(i) && !g.sameSize(v, i, own[i]);
    if (!ambiguous)
      return v;
    SmallVector<OpFoldResult> shape(own);
    shape.push_back(g.dim(v, lead));
    shape.push_back(g.dim(v, lead + 1));
    return g.broadcastTo(v, shape);
  };
  a = broadcastBatch(a, batchA);
  b = broadcastBatch(b, batchB);
  at = cast<RankedTensorType>(a.getType());
  bt = cast<RankedTensorType>(b.getType());
  // Loops: batch..., m, n, k.
  int64_t loops = batch + 3;
  auto dimE = [&](int64_t i) { return getAffineDimExpr(i, ctx); };
  auto operandMap = [&](RankedTensorType t, int64_t lead, AffineExpr r,
                        AffineExpr c) {
    SmallVector<AffineExpr> exprs;
    for (int64_t i = 0; i < lead; ++i) {
      int64_t d = i + (batch - lead);
      std::optional<int64_t> out = getConstantIntValue(batchShape[d]);
      if (t.getDimSize(i) == 1 && (!out || *out != 1))
        exprs.push_back(getAffineConstantExpr(0, ctx));
      else
        exprs.push_back(dimE(d));
    }
    exprs.push_back(r);
    exprs.push_back(c);
    return AffineMap::get(loops, 0, exprs, ctx);
  };
  AffineExpr m = dimE(batch), n = dimE(batch + 1), k = dimE(batch + 2);
  SmallVector<AffineExpr> outExprs;
  for (int64_t d = 0; d < batch + 2; ++d)
    outExprs.push_back(dimE(d));
  SmallVector<AffineMap> maps = {operandMap(at, batchA, m, k),
                                 operandMap(bt, batchB, k, n),
                                 AffineMap::get(loops, 0, outExprs, ctx)};
  SmallVector<OpFoldResult> outShape = batchShape;
  outShape.push_back(g.dim(a, at.getRank() - 2));
  outShape.push_back(g.dim(b, bt.getRank() - 1));
  Value init =
      g.filled(outShape, acc, cast<TypedAttr>(builder.getZeroAttr(acc)));
  SmallVector<utils::IteratorType> iterators(loops,
                                             utils::IteratorType::parallel);
  iterators.back() = utils::IteratorType::reduction;
  bool isFloat = isa<FloatType>(acc);
  return linalg::GenericOp::create(
             builder, g.loc(), TypeRange{init.getType()}, ValueRange{a, b},
             ValueRange{init}, maps, iterators,
             [&](OpBuilder &bb, Location loc, ValueRange args) {
               Value x = castScalar(bb, loc, args[0], acc);
               Value y = castScalar(bb, loc, args[1], acc);
               Value r;
               if (isFloat)
                 r = arith::AddFOp::create(
                     bb, loc, args[2], arith::MulFOp::create(bb, loc, x, y));
               else
                 r = arith::AddIOp::create(
                     bb, loc, args[2], arith::MulIOp::create(bb, loc, x, y));
               linalg::YieldOp::create(bb, loc, r);
             })
      .getResult(0);
}

LogicalResult convertMatMul(GraphImporter &g) {
  const OnnxValue *a = g.input(0), *b = g.input(1);
  if (!a || !b)
    return failure();
  Type elem = a->elementType();
  if (b->elementType() != elem)
    return g.fail("operands have different element types");
  if (a->rank() == 0 || b->rank() == 0)
    return g.fail("operands must have rank >= 1");
  Value av = a->value, bv = b->value;
  bool dropM = false, dropN = false;
  if (a->rank() == 1) {
    av = g.reshape(av, {g.b().getIndexAttr(1), g.dim(av, 0)});
    dropM = true;
  }
  if (b->rank() == 1) {
    bv = g.reshape(bv, {g.dim(bv, 0), g.b().getIndexAttr(1)});
    dropN = true;
  }
  Type acc = accumulatorType(g, elem);
  FailureOr<Value> product = batchedMatmul(g, av, bv, acc);
  if (failed(product))
    return failure();
  Value result = *product;
  if (dropM || dropN) {
    SmallVector<OpFoldResult> shape = g.dims(result);
    int64_t r = shape.size();
    if (dropN)
      shape.erase(shape.begin() + r - 1);
    if (dropM)
      shape.erase(shape.begin() + r - 2);
    result = g.reshape(result, shape);
  }
  g.setOutput(0, roundTo(g, result, elem));
  return success();
}

LogicalResult convertGemm(GraphImporter &g) {
  const OnnxValue *a = g.input(0), *b = g.input(1);
  if (!a || !b)
    return failure();
  if (a->rank() != 2 || b->rank() != 2)
    return g.fail("A and B must be 2-d");
  Type elem = a->elementType();
  if (!isa<FloatType>(elem) || b->elementType() != elem)
    return g.fail("expects floating-point operands of one type");
  Value av = g.attrInt("transA", 0) ? g.transpose(a->value, {1, 0}) : a->value;
  Value bv = g.attrInt("transB", 0) ? g.transpose(b->value, {1, 0}) : b->value;
  Type acc = accumulatorType(g, elem);
  FailureOr<Value> product = batchedMatmul(g, av, bv, acc);
  if (failed(product))
    return failure();
  double alpha = g.attrFloat("alpha", 1.0), beta = g.attrFloat("beta", 1.0);
  SmallVector<OnnxValue> operands;
  OnnxValue p;
  p.value = *product;
  operands.push_back(p);
  bool hasC = g.hasInput(2) && beta != 0.0;
  if (hasC) {
    const OnnxValue *c = g.input(2);
    if (!c)
      return failure();
    operands.push_back(*c);
  }
  FailureOr<Value> result = g.elementwise(
      operands, acc, elem, [&](OpBuilder &bb, Location loc, ValueRange s) {
        Value r = s[0];
        if (alpha != 1.0)
          r = arith::MulFOp::create(
              bb, loc, r,
              arith::ConstantOp::create(bb, loc, bb.getFloatAttr(acc, alpha)));
        if (hasC) {
          Value c = s[1];
          if (beta != 1.0)
            c = arith::MulFOp::create(
                bb, loc, c,
                arith::ConstantOp::create(bb, loc,
                                          bb.getFloatAttr(acc, beta)));
          r = arith::AddFOp::create(bb, loc, r, c);
        }
        return castScalar(bb, loc, r, elem);
      });
  if (failed(result))
    return failure();
  g.setOutput(0, *result);
  return success();
}

} // namespace

void moe_mlir::onnx_import::registerMatMulConverters(ConverterTable &table) {
  table["MatMul"] = convertMatMul;
  table["Gemm"] = convertGemm;
}
