//===- LoweringUtils.cpp - builders shared by the lowerings ---------------===//
//
// Part of moe-mlir.
//
//===----------------------------------------------------------------------===//

#include "LoweringUtils.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/AffineMap.h"

using namespace mlir;

namespace moe_mlir::lowering {

void yieldOp(OpBuilder &b, Location loc, Value value) {
  linalg::YieldOp::create(b, loc, ValueRange{value});
}

void yieldOp(OpBuilder &b, Location loc, ValueRange values) {
  linalg::YieldOp::create(b, loc, values);
}

Value indexConst(OpBuilder &b, Location loc, int64_t v) {
  return arith::ConstantIndexOp::create(b, loc, v);
}

Value i32Const(OpBuilder &b, Location loc, int64_t v) {
  return arith::ConstantIntOp::create(b, loc, b.getI32Type(), v);
}

Value f32Const(OpBuilder &b, Location loc, double v) {
  return arith::ConstantOp::create(b, loc, b.getF32Type(),
                                   b.getF32FloatAttr(static_cast<float>(v)));
}

Value dimValue(OpBuilder &b, Location loc, Value t, int64_t dim) {
  auto type = cast<RankedTensorType>(t.getType());
  if (!type.isDynamicDim(dim))
    return indexConst(b, loc, type.getDimSize(dim));
  return tensor::DimOp::create(b, loc, t, dim);
}

SmallVector<OpFoldResult> mixedSizes(OpBuilder &b, Location loc, Value t) {
  return tensor::getMixedSizes(b, loc, t);
}

Value emptyTensor(OpBuilder &b, Location loc, ArrayRef<OpFoldResult> sizes,
                  Type elementType) {
  return tensor::EmptyOp::create(b, loc, sizes, elementType);
}

Value filledTensor(OpBuilder &b, Location loc, ArrayRef<OpFoldResult> sizes,
                   Type elementType, Value fill) {
  Value empty = emptyTensor(b, loc, sizes, elementType);
  return linalg::FillOp::create(b, loc, fill, empty).getResult(0);
}

Value toF32(OpBuilder &b, Location loc, Value v) {
  Type f32 = b.getF32Type();
  if (v.getType() == f32)
    return v;
  return arith::ExtFOp::create(b, loc, f32, v);
}

Value fromF32(OpBuilder &b, Location loc, Value v, Type type) {
  if (v.getType() == type)
    return v;
  if (type.getIntOrFloatBitWidth() < 32)
    return arith::TruncFOp::create(b, loc, type, v);
  return arith::ExtFOp::create(b, loc, type, v);
}

ValueRange generic(OpBuilder &b, Location loc, ValueRange inputs,
                   ValueRange inits, ArrayRef<AffineMap> maps,
                   ArrayRef<utils::IteratorType> iterators,
                   const BodyBuilder &body) {
  SmallVector<Type> resultTypes;
  for (Value init : inits)
    resultTypes.push_back(init.getType());
  auto op = linalg::GenericOp::create(
      b, loc, resultTypes, inputs, inits, maps, iterators,
      [&](OpBuilder &nb, Location nloc, ValueRange args) {
        body(nb, nloc, args);
      });
  return op.getResults();
}

Value elementwise(OpBuilder &b, Location loc, ValueRange inputs, Value init,
                  const BodyBuilder &body) {
  auto rank = cast<RankedTensorType>(init.getType()).getRank();
  SmallVector<AffineMap> maps(inputs.size() + 1,
                              b.getMultiDimIdentityMap(rank));
  SmallVector<utils::IteratorType> iterators(rank,
                                             utils::IteratorType::parallel);
  return generic(b, loc, inputs, init, maps, iterators, body)[0];
}

Value convertTensor(OpBuilder &b, Location loc, Value t, Type elementType) {
  auto type = cast<RankedTensorType>(t.getType());
  if (type.getElementType() == elementType)
    return t;
  Value init = emptyTensor(b, loc, mixedSizes(b, loc, t), elementType);
  return elementwise(b, loc, t, init,
                     [&](OpBuilder &nb, Location nloc, ValueRange args) {
                       Value v = toF32(nb, nloc, args[0]);
                       yieldOp(
                           nb, nloc, fromF32(nb, nloc, v, elementType));
                     });
}

Value contractTransposedB(OpBuilder &b, Location loc, Value a, Value bt,
                          const ContractionOptions &options) {
  if (canVectorizeContraction(a, bt))
    return contractTransposedBVectorized(b, loc, a, bt, options);
  Type f32 = b.getF32Type();
  SmallVector<OpFoldResult> sizes = {tensor::getMixedSize(b, loc, a, 0),
                                     tensor::getMixedSize(b, loc, bt, 0)};
  Value init = filledTensor(b, loc, sizes, f32, f32Const(b, loc, 0.0));
  MLIRContext *ctx = b.getContext();
  AffineExpr n, m, k;
  bindDims(ctx, n, m, k);
  SmallVector<AffineMap> maps = {AffineMap::get(3, 0, {n, k}, ctx),
                                 AffineMap::get(3, 0, {m, k}, ctx),
                                 AffineMap::get(3, 0, {n, m}, ctx)};
  return generic(b, loc, ValueRange{a, bt}, init, maps,
                 {utils::IteratorType::parallel, utils::IteratorType::parallel,
                  utils::IteratorType::reduction},
                 [](OpBuilder &nb, Location nloc, ValueRange args) {
                   Value p = arith::MulFOp::create(nb, nloc,
                                                   toF32(nb, nloc, args[0]),
                                                   toF32(nb, nloc, args[1]));
                   yieldOp(
                       nb, nloc, arith::AddFOp::create(nb, nloc, args[2], p));
                 })[0];
}

Value capacityValue(OpBuilder &b, Location loc,
                    std::optional<uint64_t> expertCapacity,
                    std::optional<float> capacityFactor, Value numTokens,
                    int64_t k, int64_t numExperts) {
  if (expertCapacity)
    return indexConst(b, loc, static_cast<int64_t>(*expertCapacity));
  // ceil(((factor * T) * k) / E) in f64, in the same order as the static
  // rule (moe::computeCapacity), so static and dynamic shapes agree.
  double factor = capacityFactor ? static_cast<double>(*capacityFactor) : 1.0;
  Type f64 = b.getF64Type();
  auto f64Const = [&](double v) {
    return arith::ConstantOp::create(b, loc, f64, b.getF64FloatAttr(v));
  };
  Value tokens = arith::IndexCastOp::create(b, loc, b.getI64Type(), numTokens);
  Value value = arith::SIToFPOp::create(b, loc, f64, tokens);
  value = arith::MulFOp::create(b, loc, f64Const(factor), value);
  value = arith::MulFOp::create(b, loc, value,
                                f64Const(static_cast<double>(k)));
  Value scaled = arith::DivFOp::create(
      b, loc, value, f64Const(static_cast<double>(numExperts)));
  Value ceiled = math::CeilOp::create(b, loc, scaled);
  Value asInt = arith::FPToSIOp::create(b, loc, b.getI64Type(), ceiled);
  return arith::IndexCastOp::create(b, loc, b.getIndexType(), asInt);
}

Value castToResult(OpBuilder &b, Location loc, Value v, Value result) {
  if (v.getType() == result.getType())
    return v;
  return tensor::CastOp::create(b, loc, result.getType(), v);
}

LogicalResult reportUnlowered(Operation *root, StringRef dialectNamespace) {
  WalkResult left = root->walk([&](Operation *op) {
    if (op->getDialect() &&
        op->getDialect()->getNamespace() == dialectNamespace) {
      op->emitOpError("could not be lowered to linalg");
      return WalkResult::interrupt();
    }
    return WalkResult::advance();
  });
  return failure(left.wasInterrupted());
}

} // namespace moe_mlir::lowering
